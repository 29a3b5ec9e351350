"""`predict-pipeline campaigns results add|upload|push` and `campaigns show`: campaign results in,
and a campaign's prediction, factors and scored results out, always as one user acting on
their own campaigns."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from predict_pipeline.errors import CommandError, uuid_argument


class CampaignCommandError(CommandError):
    pass


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a count cannot be negative: {text}")
    return value


def _money(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an amount: {text}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"an amount cannot be negative: {text}")
    return text


def _when(text: str) -> str:
    from predict_pipeline.sources.parsing import utc_from_iso

    try:
        utc_from_iso(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a date or ISO-8601 time: {text} (e.g. 2025-03-01 or 2025-03-01T00:00Z)"
        ) from None
    return text


def _connected(step: Callable[..., Any]) -> Any:
    """Run `step(conn, user_id)` on the pipeline's connection, as the user of --user-email."""
    from predict_pipeline.db.bootstrap import bootstrap
    from predict_pipeline.db.connection import connect

    def run(args: argparse.Namespace) -> int:
        target = bootstrap()
        with connect(target.app_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT id FROM auth.users WHERE email = %s", (args.user_email,)
            ).fetchone()
            if row is None:
                raise CampaignCommandError(f"no user with email {args.user_email} in auth.users")
            return int(step(conn, row[0], args) or 0)

    return run


def _mapping(args: argparse.Namespace) -> dict[str, Any] | None:
    if not args.mapping:
        return None
    try:
        config = json.loads(Path(args.mapping).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CampaignCommandError(f"cannot read {args.mapping}: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise CampaignCommandError(f"{args.mapping} is not JSON: {exc}") from None
    if not isinstance(config, dict):
        raise CampaignCommandError(f"{args.mapping}: a mapping is a JSON object")
    return config


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CampaignCommandError(f"cannot read {path}: {exc.strerror}") from None


def _add(conn: Any, user_id: uuid.UUID, args: argparse.Namespace) -> int:
    """One row from the arguments: landed, or refused with its reasons and nothing recorded."""
    from predict_pipeline.campaigns.intake import result_mapping, result_row, submit
    from predict_pipeline.campaigns.results import ingest

    fields = {
        "campaign": args.campaign,
        "variant": args.variant,
        "period_start": args.start,
        "period_end": args.end,
        "impressions": args.impressions,
        "clicks": args.clicks,
        "conversions": args.conversions,
        "engagements": args.engagements,
        "spend": args.spend,
        "revenue": args.revenue,
    }
    row = result_row(
        {k: v for k, v in fields.items() if v is not None},
        result_mapping({"money_unit": args.money_unit}),
        origin={"name": "command line"},
        raw={k: v for k, v in fields.items() if v is not None},
    )
    if row.faults:
        raise CampaignCommandError("result refused: " + "; ".join(row.faults))
    now = datetime.now(UTC)
    # All or nothing: a refused row is told here and leaves no submission behind.
    with conn.transaction():
        ids = submit(conn, [row], submitted_by=user_id, channel="cli", received_at=now)
        report = ingest(conn, now=now, submission_ids=ids)
        if report.rejected:
            reasons = "; ".join(report.rejected[0]["reasons"])
            raise CampaignCommandError(f"result refused: {reasons}")
    status, result_id = conn.execute(
        "SELECT status, result_id FROM predict_meta.campaign_result_submissions WHERE id = %s",
        (ids[0],),
    ).fetchone()
    print(f"{status.lower()}: result {result_id}{_scored(conn, result_id)}")
    return 0


def _scored(conn: Any, result_id: uuid.UUID | None) -> str:
    if result_id is None:
        return ""
    row = conn.execute(
        """SELECT actual_ctr, actual_conversion_rate, actual_engagement_rate, actual_roas,
                  prediction_error, success
           FROM prediction_campaign_results WHERE id = %s""",
        (result_id,),
    ).fetchone()
    names = ("ctr", "conversion rate", "engagement rate", "roas", "prediction error", "success")
    shown = [f"{name} {value}" for name, value in zip(names, row, strict=True) if value is not None]
    return f" ({', '.join(shown)})" if shown else ""


def _upload(conn: Any, user_id: uuid.UUID, args: argparse.Namespace) -> int:
    """A file's rows: the good ones land, each bad one is listed with its reasons."""
    from predict_pipeline.campaigns.intake import read_results, submit
    from predict_pipeline.campaigns.results import ingest
    from predict_pipeline.sources.push.decode import UploadError

    config = _mapping(args)
    data = _read_file(args.file)
    name = Path(args.file).name
    try:
        rows = read_results(data, name, config)
    except (UploadError, ValueError) as exc:
        raise CampaignCommandError(f"upload refused, nothing recorded: {exc}") from None
    now = datetime.now(UTC)
    ids = submit(conn, rows, submitted_by=user_id, channel="upload", received_at=now)
    report = ingest(conn, now=now, submission_ids=ids)
    done = dict(
        conn.execute(
            "SELECT status, count(*) FROM predict_meta.campaign_result_submissions"
            " WHERE id = ANY(%s) GROUP BY status",
            (list(set(ids)),),
        ).fetchall()
    )
    for rejected in report.rejected:
        origin = rejected["origin"]
        print(
            f"rejected {origin.get('name')} line {origin.get('line')}: "
            + "; ".join(rejected["reasons"])
        )
    print(
        f"{name}: {len(rows)} rows: landed {done.get('LANDED', 0)}, revised "
        f"{done.get('REVISED', 0)}, unchanged {done.get('UNCHANGED', 0)}, rejected "
        f"{done.get('REJECTED', 0)}"
    )
    return 0


def _push(conn: Any, user_id: uuid.UUID, args: argparse.Namespace) -> int:
    """An ad platform's export as the HTTP receiver would take it: recorded for
    campaign_results, which lands it on its next run (campaign_results_sensor)."""
    from predict_pipeline.campaigns.intake import receive_push
    from predict_pipeline.sources.push.decode import UploadError

    config = _mapping(args)
    body = _read_file(args.file) if args.file else sys.stdin.buffer.read()
    try:
        receipt = receive_push(
            conn,
            body,
            f"push.{args.format}",
            submitted_by=user_id,
            mapping_config=config,
            received_at=datetime.now(UTC),
        )
    except (UploadError, ValueError) as exc:
        raise CampaignCommandError(f"push refused, nothing recorded: {exc}") from None
    waiting = conn.execute(
        "SELECT count(*) FROM predict_meta.campaign_result_submissions"
        " WHERE id = ANY(%s) AND status = 'PENDING'",
        (receipt.submission_ids,),
    ).fetchone()[0]
    print(
        f"received {receipt.rows} rows ({receipt.faulty_rows} unreadable); {waiting} wait for "
        "campaign_results, which lands them on its next run"
    )
    return 0


def _show(conn: Any, user_id: uuid.UUID, args: argparse.Namespace) -> int:
    """The campaign as its reader sees it: prediction, factors, variants, scored results."""
    campaign = conn.execute(
        """SELECT c.name, c.platform, c.campaign_type, c.status,
                  c.overall_success_probability, c.prediction_explanation, c.factors,
                  c.predicted_at
           FROM prediction_campaigns c
           WHERE c.id = %s AND (c.user_id = %s OR c.org_id IN
                 (SELECT org_id FROM prediction_org_members WHERE user_id = %s))""",
        (args.campaign_id, user_id, user_id),
    ).fetchone()
    if campaign is None:
        raise CampaignCommandError(f"no campaign {args.campaign_id} visible to {args.user_email}")
    name, platform, kind, status, overall, explanation, factors, predicted_at = campaign
    print(f"{name} ({platform or 'no platform'}, {kind or 'no type'}): {status}")
    if predicted_at is None:
        print("not predicted yet")
    else:
        print(f"predicted {predicted_at:%Y-%m-%d %H:%M} UTC: {overall} — {explanation}")
        for item in (factors or {}).get("inputs", []):
            label = item.get("title") or item.get("label") or item["input"]
            value = item.get("value", item.get("rate"))
            print(
                f"  input {item['input']:<13} {label[:40]:<40} value {value} weight "
                f"{item['weight']}"
            )
    for label, success, engagement, conversion in conn.execute(
        """SELECT label, success_probability, predicted_engagement, predicted_conversion
           FROM prediction_campaign_variants WHERE campaign_id = %s ORDER BY label""",
        (args.campaign_id,),
    ):
        print(
            f"variant {label}: success {success}, engagement {engagement}, conversion {conversion}"
        )
    for row in conn.execute(
        """SELECT v.label, r.result_period_start, r.result_period_end,
                  r.actual_engagement_rate, r.actual_conversion_rate,
                  r.predicted_success_probability, r.success, r.prediction_error,
                  r.prediction_direction_correct
           FROM prediction_campaign_results r
           LEFT JOIN prediction_campaign_variants v ON v.id = r.variant_id
           WHERE r.campaign_id = %s ORDER BY r.result_period_start, v.label""",
        (args.campaign_id,),
    ):
        label, start, end, engagement, conversion, predicted, success, error, direction = row
        print(
            f"result {label or '(campaign)'} {start:%Y-%m-%d}..{end:%Y-%m-%d}: engagement "
            f"{engagement}, conversion {conversion}; predicted success {predicted}, success "
            f"{success}, error {error}, direction right {direction}"
        )
    return 0


def _command(parser: argparse.ArgumentParser, example: str) -> argparse.ArgumentParser:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = f"example:\n  {example}"
    parser.add_argument("--user-email", required=True, help="who acts (auth.users.email)")
    return parser


def add_commands(commands: argparse._SubParsersAction) -> None:
    campaigns = commands.add_parser(
        "campaigns", help="campaign results in, predictions and their accuracy out"
    ).add_subparsers(dest="campaigns_command", required=True)
    results = campaigns.add_parser("results", help="record campaign results").add_subparsers(
        dest="results_command", required=True
    )

    add = _command(
        results.add_parser("add", help="record one period's metrics of a campaign or variant"),
        "predict-pipeline campaigns results add 'Spring drop' --variant A --start 2025-03-01 "
        "--end 2025-03-07 --impressions 48000 --engagements 1900 --clicks 960 "
        "--conversions 41 --spend 512.40 --revenue 2870 --user-email you@example.com",
    )
    add.add_argument("campaign", help="the campaign's id or name (yours)")
    add.add_argument("--variant", help="the variant's id or label (when the campaign has some)")
    add.add_argument("--start", required=True, type=_when, help="first day, or a UTC time")
    add.add_argument("--end", required=True, type=_when, help="last day (inclusive), or a time")
    for name in ("impressions", "clicks", "conversions", "engagements"):
        add.add_argument(f"--{name}", type=_count)
    add.add_argument("--spend", type=_money, help="in currency units (see --money-unit)")
    add.add_argument("--revenue", type=_money, help="in currency units (see --money-unit)")
    add.add_argument("--money-unit", choices=["units", "cents"], default="units")
    add.set_defaults(func=_connected(_add))

    upload = _command(
        results.add_parser("upload", help="record the rows of a CSV/JSON results file"),
        "predict-pipeline campaigns results upload week-10.csv --mapping meta-export.json "
        "--user-email you@example.com",
    )
    upload.add_argument("file", help=".csv, .json, .jsonl or .ndjson")
    upload.add_argument("--mapping", help="a JSON mapping (README: Campaigns)")
    upload.set_defaults(func=_connected(_upload))

    push = _command(
        results.add_parser(
            "push", help="hand an ad platform's export to campaign_results (stdin or --file)"
        ),
        "predict-pipeline campaigns results push --format csv --mapping meta-export.json "
        "--user-email you@example.com < export.csv",
    )
    push.add_argument("--format", required=True, choices=["csv", "json", "jsonl"])
    push.add_argument("--file", help="read the export from this file instead of stdin")
    push.add_argument("--mapping", help="a JSON mapping (README: Campaigns)")
    push.set_defaults(func=_connected(_push))

    show = _command(
        campaigns.add_parser("show", help="a campaign's prediction, factors and scored results"),
        "predict-pipeline campaigns show 6f1c0f9e-2d4b-4c61-9d3e-1a2b3c4d5e6f "
        "--user-email you@example.com",
    )
    show.add_argument("campaign_id", type=uuid_argument)
    show.set_defaults(func=_connected(_show))
