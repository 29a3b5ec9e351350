"""Campaign results as users and ad platforms send them: one period's metrics per campaign and
variant, read from a CSV/JSON file, a push body or the command line, checked row by row, and
recorded as submissions (predict_meta.campaign_result_submissions) for `results.ingest` to land.

Accepted fields (CSV columns or JSON keys; the mapping's `columns` renames them, the way a feed
upload's config does):

- `campaign` (required): the campaign's id, or its name among the submitter's campaigns.
- `variant`: the variant's id, or its label in the campaign. Required when the campaign has
  variants; left out for a campaign without variants (its results are the campaign's).
- `period_start`, `period_end` (required): the result period. A date (YYYY-MM-DD) is that day
  in the mapping's `timezone` (UTC by default), and an end date is inclusive, as ad platforms
  export "Reporting starts / Reporting ends": 2025-03-01 .. 2025-03-07 is the week
  [03-01 00:00, 03-08 00:00). A timestamp (`timestamp_format`, ISO-8601 by default, with an
  offset or the mapping's timezone) is taken as is, the end exclusive.
- `impressions`, `clicks`, `conversions`, `engagements`: whole numbers.
- `spend`, `revenue`: money in the currency's units (19.99), or in cents with
  `"money_unit": "cents"`; stored as cents.

Empty cells, JSON nulls and the mapping's `missing_values` count as absent. Other columns are
kept in the submission's `raw`.

A row is rejected, with every reason, when a field cannot be read, a count is negative,
clicks exceed impressions, conversions exceed clicks, engagements exceed impressions, the
period ends at or before it starts, or a value does not fit its column (counts and cents up to
2,147,483,647; revenue / spend below 100,000, what actual_roas holds). `results.ingest` adds
what needs the database: an unknown campaign or variant, and periods that overlap for the same
variant. A malformed file (not UTF-8, unreadable CSV, invalid JSON, a missing required column)
is refused whole with an UploadError naming its line and column, and nothing of it is recorded.

A row's `row_key` digests the submitter and its values: sending the same row again, by any
channel, finds its submission instead of adding one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.sources.push.config import validated_config
from predict_pipeline.sources.push.decode import UploadError
from predict_pipeline.sources.push.delivery import read_delivery
from predict_pipeline.sources.push.fields import FieldRules, read_number, read_timestamp

FIELD_NAMES = (
    "campaign",
    "variant",
    "period_start",
    "period_end",
    "impressions",
    "clicks",
    "conversions",
    "engagements",
    "spend",
    "revenue",
)
REQUIRED_COLUMNS = ("campaign", "period_start", "period_end")
COUNT_FIELDS = ("impressions", "clicks", "conversions", "engagements")
MONEY_FIELDS = ("spend", "revenue")
CHANNELS = ("cli", "upload", "push")
INTEGER_MAX = 2_147_483_647  # INTEGER columns of prediction_campaign_results
ROAS_LIMIT = Decimal("100000")  # actual_roas is DECIMAL(7,2)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

MAPPING_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Campaign results mapping",
    "description": "How a results file or push body is read (README: Campaigns).",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "columns": {
            "description": "Renames: accepted field name -> the column or key used in the data.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                name: {"type": "string", "minLength": 1, "description": f"Holds {name}."}
                for name in FIELD_NAMES
            },
        },
        "money_unit": {
            "description": "spend and revenue in currency units (19.99) or in cents (1999).",
            "enum": ["units", "cents"],
        },
        "timestamp_format": {
            "description": "How timestamps are written: ISO-8601 text, epoch seconds or epoch ms.",
            "enum": ["iso", "epoch_s", "epoch_ms"],
        },
        "timezone": {
            "description": "IANA zone of dates and of ISO timestamps without an offset.",
            "type": "string",
            "minLength": 1,
        },
        "missing_values": {
            "description": "Text values meaning 'no value' (e.g. \"--\"), besides empty and null.",
            "type": "array",
            "items": {"type": "string"},
        },
    },
}
DEFAULT_MAPPING: dict[str, Any] = {
    "columns": {},
    "money_unit": "units",
    "timestamp_format": "iso",
    "missing_values": [],
}


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One delivered row, read: references, metrics (money in cents), period, and faults."""

    origin: dict[str, Any]  # where it came from: {"name": ..., "line": ..., ...}
    raw: dict[str, Any]
    campaign_ref: str | None = None
    variant_ref: str | None = None
    metrics: dict[str, int | None] = field(default_factory=dict)  # COUNT_FIELDS + *_cents
    period_start: datetime | None = None
    period_end: datetime | None = None
    faults: tuple[str, ...] = ()

    def key(self, submitted_by: Any) -> str:
        """The digest that makes a re-sent row the same submission."""
        content = {
            "by": str(submitted_by),
            "campaign": self.campaign_ref,
            "variant": self.variant_ref,
            "metrics": self.metrics,
            "start": self.period_start.isoformat() if self.period_start else None,
            "end": self.period_end.isoformat() if self.period_end else None,
            "faults": list(self.faults),
            "raw": self.raw if self.faults else None,
        }
        text = json.dumps(content, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ResultMapping:
    """A validated mapping: column names, field readers and the money unit."""

    names: dict[str, str]
    rules: FieldRules
    money_unit: str
    zone: tzinfo


def result_mapping(config: Mapping[str, Any] | None) -> ResultMapping:
    """The mapping over the defaults; ValueError names what is wrong with it."""
    merged = validated_config(
        config, schema=MAPPING_SCHEMA, defaults=DEFAULT_MAPPING, source="results mapping"
    )
    renames = merged.get("columns") or {}
    zone = ZoneInfo(merged["timezone"]) if merged.get("timezone") else UTC
    return ResultMapping(
        names={name: renames.get(name, name) for name in FIELD_NAMES},
        rules=FieldRules.from_config(merged),
        money_unit=merged["money_unit"],
        zone=zone,
    )


def read_results(data: bytes, filename: str, config: Mapping[str, Any] | None) -> list[ResultRow]:
    """Every row of a results file (.csv, .json, .jsonl, .ndjson), each read and checked; an
    UploadError refuses the whole file, ValueError a bad mapping."""
    spec = result_mapping(config)
    rows = read_delivery(data, filename, spec.names, required=REQUIRED_COLUMNS, source="results")
    if not rows:
        raise UploadError("results", filename, "holds no rows")
    read = []
    for row in rows:
        origin: dict[str, Any] = {"name": filename, "line": row.start[0]}
        places = {f: {"line": p[0], "column": p[1], "as": p[2]} for f, p in row.places.items()}
        read.append(result_row(row.fields, spec, origin=origin, raw=row.raw, places=places))
    return read


def result_row(
    fields: Mapping[str, Any],
    spec: ResultMapping,
    *,
    origin: dict[str, Any],
    raw: dict[str, Any],
    places: Mapping[str, Mapping[str, Any]] | None = None,
) -> ResultRow:
    """One row from its accepted fields; every fault becomes a reason, none is raised."""
    present = {k: v for k, v in fields.items() if not _absent(v, spec.rules.missing_values)}
    faults: list[str] = []

    def fault(name: str, reason: str) -> None:
        where = (places or {}).get(name)
        at = ""
        if where and where["column"]:
            at = f" (line {where['line']}, column {where['column']})"
        faults.append(f"{name}: {reason}{at}")

    refs: dict[str, str | None] = {}
    for name in ("campaign", "variant"):
        value = present.get(name)
        if value is None:
            refs[name] = None
        elif isinstance(value, int | str) and not isinstance(value, bool) and str(value).strip():
            refs[name] = str(value).strip()
        else:
            refs[name] = None
            fault(name, f"expected text, got {value!r}"[:120])
    if refs["campaign"] is None and "campaign" not in present:
        fault("campaign", "missing")

    metrics: dict[str, int | None] = {}
    for name in (*COUNT_FIELDS, *MONEY_FIELDS):
        column = f"{name}_cents" if name in MONEY_FIELDS else name
        value = present.get(name)
        metrics[column] = None
        if value is None:
            continue
        try:
            number = Decimal(repr(read_number(value)))
        except ValueError as exc:
            fault(name, str(exc))
            continue
        if name in MONEY_FIELDS and spec.money_unit == "units":
            number = (number * 100).quantize(Decimal(1), ROUND_HALF_UP)
        if number != number.to_integral_value():
            unit = "cents" if name in MONEY_FIELDS else "a count"
            fault(name, f"expected a whole number ({unit}), got {value!r}"[:120])
            continue
        metrics[column] = int(number)

    period: dict[str, datetime | None] = {}
    for name in ("period_start", "period_end"):
        value = present.get(name)
        period[name] = None
        if value is None:
            fault(name, "missing")
            continue
        try:
            period[name] = _moment(value, spec, end=name == "period_end")
        except ValueError as exc:
            fault(name, str(exc))

    faults.extend(metric_faults(metrics, period["period_start"], period["period_end"]))
    return ResultRow(
        origin=origin,
        raw=_jsonable(raw),
        campaign_ref=refs["campaign"],
        variant_ref=refs["variant"],
        metrics=metrics,
        period_start=period["period_start"],
        period_end=period["period_end"],
        faults=tuple(faults),
    )


def metric_faults(
    metrics: Mapping[str, int | None], start: datetime | None, end: datetime | None
) -> list[str]:
    """The row rules that need no database (module docstring), as reasons."""
    reasons = []
    for name, value in metrics.items():
        if value is not None and value < 0:
            reasons.append(f"{name} is negative ({value})")
        elif value is not None and value > INTEGER_MAX:
            reasons.append(f"{name} ({value}) is more than its column holds ({INTEGER_MAX})")
    impressions, clicks = metrics.get("impressions"), metrics.get("clicks")
    conversions, engagements = metrics.get("conversions"), metrics.get("engagements")
    if clicks is not None and impressions is not None and clicks > impressions >= 0:
        reasons.append(f"clicks ({clicks}) exceed impressions ({impressions})")
    if conversions is not None and clicks is not None and conversions > clicks >= 0:
        reasons.append(f"conversions ({conversions}) exceed clicks ({clicks})")
    if engagements is not None and impressions is not None and engagements > impressions >= 0:
        reasons.append(f"engagements ({engagements}) exceed impressions ({impressions})")
    spend, revenue = metrics.get("spend_cents"), metrics.get("revenue_cents")
    if spend and revenue and spend > 0 and Decimal(revenue) / Decimal(spend) >= ROAS_LIMIT:
        reasons.append(
            f"revenue / spend ({revenue / spend:,.0f}) is more than actual_roas holds (99,999.99)"
        )
    if start is not None and end is not None and end <= start:
        reasons.append(
            f"the period ends ({end.isoformat()}) at or before it starts ({start.isoformat()})"
        )
    return reasons


def _moment(value: Any, spec: ResultMapping, *, end: bool) -> datetime:
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        day = datetime.fromisoformat(value.strip()).replace(tzinfo=spec.zone)
        return (day + timedelta(days=1) if end else day).astimezone(UTC)
    try:
        return read_timestamp(value, spec.rules)
    except ValueError as exc:  # the feeds' reader speaks of a feed; here it is a mapping
        reason = str(exc).replace("the feed's timezone", "the mapping's timezone")
        raise ValueError(reason) from None


def _absent(value: Any, missing: frozenset[str]) -> bool:
    if value is None:
        return True
    return isinstance(value, str) and (not value.strip() or value.strip() in missing)


def _jsonable(raw: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(raw, default=str))


# ---------------------------------------------------------------------------------------------
# Recording submissions

_SUBMIT_SQL = """
INSERT INTO predict_meta.campaign_result_submissions AS s
  (row_key, submitted_by, channel, origin, received_at, campaign_ref, variant_ref, impressions,
   clicks, conversions, engagements, spend_cents, revenue_cents, period_start, period_end,
   parse_faults, raw)
SELECT x.row_key, %(by)s, %(channel)s, x.origin, %(at)s, x.campaign_ref, x.variant_ref,
       x.impressions, x.clicks, x.conversions, x.engagements, x.spend_cents, x.revenue_cents,
       x.period_start, x.period_end, x.parse_faults, x.raw
FROM jsonb_to_recordset(%(rows)s) AS x(
  row_key text, origin jsonb, campaign_ref text, variant_ref text, impressions bigint,
  clicks bigint, conversions bigint, engagements bigint, spend_cents bigint,
  revenue_cents bigint, period_start timestamptz, period_end timestamptz,
  parse_faults text[], raw jsonb)
-- A rejected row sent again is checked again (its campaign may exist now); a landed one whose
-- result was deleted lands again. Anything else is already done: nothing changes.
ON CONFLICT (row_key) DO UPDATE SET
  status = 'PENDING', reasons = '{}', origin = EXCLUDED.origin, channel = EXCLUDED.channel,
  received_at = EXCLUDED.received_at, processed_at = NULL
WHERE s.status = 'REJECTED' OR (s.status <> 'PENDING' AND s.result_id IS NULL)
"""


def submit(
    conn: psycopg.Connection,
    rows: Iterable[ResultRow],
    *,
    submitted_by: Any,
    channel: str,
    received_at: datetime,
) -> list[int]:
    """Record the rows as submissions (one statement); their ids, in the rows' order (a row
    sent twice in one delivery is one submission)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    keyed: dict[str, ResultRow] = {}
    keys = []
    for row in rows:
        key = row.key(submitted_by)
        keyed.setdefault(key, row)
        keys.append(key)
    payload = [
        {
            "row_key": key,
            "origin": row.origin,
            "campaign_ref": row.campaign_ref,
            "variant_ref": row.variant_ref,
            **{name: row.metrics.get(name) for name in _METRIC_COLUMNS},
            "period_start": row.period_start.isoformat() if row.period_start else None,
            "period_end": row.period_end.isoformat() if row.period_end else None,
            "parse_faults": list(row.faults),
            "raw": row.raw,
        }
        for key, row in keyed.items()
    ]
    if not payload:
        return []
    conn.execute(
        _SUBMIT_SQL,
        {
            "by": submitted_by,
            "channel": channel,
            "at": received_at,
            "rows": Jsonb(payload),
        },
    )
    ids: dict[str, int] = dict(
        conn.execute(
            "SELECT row_key, id FROM predict_meta.campaign_result_submissions"
            " WHERE row_key = ANY(%s)",
            (list(keyed),),
        ).fetchall()
    )
    return [ids[key] for key in keys]


_METRIC_COLUMNS = (*COUNT_FIELDS, "spend_cents", "revenue_cents")


@dataclass(frozen=True, slots=True)
class PushReceipt:
    """What a push landed: its submissions (PENDING until campaign_results ingests them)."""

    submission_ids: list[int]
    rows: int
    faulty_rows: int


def receive_push(
    conn: psycopg.Connection,
    body: bytes,
    filename: str,
    *,
    submitted_by: Any,
    mapping_config: Mapping[str, Any] | None,
    received_at: datetime,
) -> PushReceipt:
    """The push path for ad platforms' exports: what an HTTP receiver calls once it has
    authenticated the sender as `submitted_by` (and the CLI's `campaigns results push`). The
    body is read like an upload (`filename` names its format: .csv, .json, .jsonl) and every
    row is recorded PENDING in one statement; the campaign_results asset lands them (its
    sensor launches it), so a receiver answers at once and nothing is lost. UploadError or
    ValueError (a bad mapping) refuse the whole body, and nothing is recorded."""
    rows = read_results(body, filename, mapping_config)
    ids = submit(conn, rows, submitted_by=submitted_by, channel="push", received_at=received_at)
    return PushReceipt(
        submission_ids=sorted(set(ids)),
        rows=len(rows),
        faulty_rows=sum(1 for row in rows if row.faults),
    )
