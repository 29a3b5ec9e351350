"""Reading a delivery into records: an upload (`parse_upload`), a webhook body
(`parse_webhook`), or other pushed rows with their places (`read_delivery`); a record
with a well-formed value the product does not accept is rejected alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from predict_pipeline.model import NormalisedRecord, RecordReject
from predict_pipeline.sources.push.config import (
    CONFIG_SCHEMA,
    DEFAULT_CONFIG,
    FIELD_NAMES,
    REQUIRED_CSV_COLUMNS,
    validated_config,
)
from predict_pipeline.sources.push.decode import (
    UploadError,
    _csv_rows,
    _decode,
    _json_rows,
    _Places,
    _Row,
)
from predict_pipeline.sources.push.fields import FieldError, FieldRules, normalise_fields
from predict_pipeline.sources.push.signature import verify_signature


def parse_upload(
    data: bytes,
    filename: str,
    *,
    feed_config: Mapping[str, Any] | None,
    received_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Every record of an uploaded CSV/JSON/JSON Lines file and the records rejected alone
    (see FieldError.code), or UploadError for the whole file."""
    config = validated_config(
        feed_config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source="upload"
    )
    observed_at = _aware_utc(received_at, "upload")
    rows, places = _delivery_rows(data, filename, _names_in_data(config))
    return _records(rows, places, config, "upload", filename, observed_at)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One record as delivered, with where each of its fields sits in the delivery."""

    raw: dict[str, Any]
    fields: dict[str, Any]
    start: tuple[int, int | None]
    places: dict[str, tuple[int, int | None, str]]  # field -> (line, column, name in data)


def read_delivery(
    data: bytes,
    filename: str,
    names: Mapping[str, str],
    *,
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> list[DeliveryRow]:
    """The rows of a CSV, JSON or JSON Lines file (by its suffix), each with where its fields
    sit, or UploadError for the whole file. `names` maps each accepted field to its column or
    key in the data; a CSV header must hold the `required` fields. Other pushed data (campaign
    results) is read here too, so a file reads the same whatever it carries; every field is
    placed, so it is meant for files of hundreds of rows, not feed deliveries."""
    rows, places = _delivery_rows(data, filename, names, required, source)
    return [
        DeliveryRow(
            raw=row.raw,
            fields=row.fields,
            start=places.of(index, "")[:2],
            places={name: places.of(index, name) for name in row.fields},
        )
        for index, row in enumerate(rows)
    ]


def _delivery_rows(
    data: bytes,
    filename: str,
    names: Mapping[str, str],
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> tuple[list[_Row], _Places]:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    if suffix not in ("csv", "json", "jsonl", "ndjson"):
        raise UploadError(
            source, filename, "unsupported file type; expected .csv, .json, .jsonl or .ndjson"
        )
    text = _decode(data, source, filename)
    if suffix == "csv":
        return _csv_rows(text, names, filename, required, source)
    return _json_rows(text, names, source, filename)


def parse_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    feed_config: Mapping[str, Any] | None,
    secret: bytes | None,
    received_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    """Every record of a webhook delivery (JSON) and the records rejected alone, after checking
    its signature when the feed has a secret. SignatureError when the signature is missing or
    wrong, UploadError when the body is malformed."""
    config = validated_config(
        feed_config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source="webhook"
    )
    observed_at = _aware_utc(received_at, "webhook")
    if secret is not None:
        verify_signature(body, headers, secret, header=config["signature_header"], now=observed_at)
    text = _decode(body, "webhook", "body")
    rows, places = _json_rows(text, _names_in_data(config), "webhook", "body")
    return _records(rows, places, config, "webhook", "body", observed_at)


def _names_in_data(config: Mapping[str, Any]) -> dict[str, str]:
    """Accepted field name -> the column/key that carries it in this feed's data."""
    renames = config.get("columns") or {}
    return {name: renames.get(name, name) for name in FIELD_NAMES}


def _records(
    rows: list[_Row],
    places: _Places,
    config: Mapping[str, Any],
    source: str,
    name: str,
    observed_at: datetime,
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    rules = FieldRules.from_config(config)
    records, rejects = [], []
    for index, row in enumerate(rows):
        try:
            record = normalise_fields(
                row.fields, source=source, rules=rules, observed_at=observed_at, raw_data=row.raw
            )
        except FieldError as fault:
            line, column, label = places.of(index, fault.field)
            if fault.code is None:
                raise UploadError(
                    source, name, fault.reason, line=line, column=column, field=label
                ) from fault
            at = f"line {line}" + (f", column {column}" if column is not None else "")
            identity = row.fields.get("source_event_id")
            readable = isinstance(identity, str | int) and fault.field != "source_event_id"
            rejects.append(
                RecordReject(
                    reason=fault.code,
                    detail=f"{at} ({label}): {fault.reason}",
                    item_index=index,
                    source_event_id=str(identity).strip() if readable else None,
                    item=row.raw,
                )
            )
            continue
        records.append(record)
    if not rows:
        raise UploadError(source, name, "holds no records")
    return records, rejects


def _aware_utc(moment: datetime, source: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{source}: received_at must be timezone-aware")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PushSource:
    """A source whose records are delivered to us rather than fetched."""

    source: str
    parse: Callable[..., tuple[list[NormalisedRecord], list[RecordReject]]]


WEBHOOK = PushSource("webhook", parse_webhook)
UPLOAD = PushSource("upload", parse_upload)
