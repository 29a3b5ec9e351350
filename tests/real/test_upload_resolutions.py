"""`feeds upload` of platform-native resolution values, end to end: a file holding Manifold's
MKT and CANCEL, Kalshi's void, Metaculus's annulled, Polymarket's final prices and a value no
platform documents lands; the unmappable row alone is rejected with its reason; the settled
markets resolve their events, MKT with the probability Manifold resolved it to.

The Manifold rows are real markets of the recorded listing (fixtures/real/SOURCES.md:
BonelessWater/predict-ngin@3279d9d1e3fc04269618d3dbd2393738acc0d186:manifold_markets.json)
with their recorded resolution, resolutionProbability and resolutionTime.
"""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.resolutions import resolve_from_markets
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.signals.stage import validate_window
from tests.real.recordings import manifold_listing
from tests.support.feeds import feed_run, make_feed

NOW = datetime(2026, 1, 31, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)


def _manifold_rows() -> list[dict[str, str]]:
    """One real market of each resolution the listing holds: MKT, CANCEL, YES, NO."""
    picked: dict[str, dict] = {}
    for market in manifold_listing().items:
        resolution = market.get("resolution")
        if market["outcomeType"] == "BINARY" and resolution and resolution not in picked:
            picked[resolution] = market
    return [
        {
            "source_event_id": market["id"],
            "value": str(market["probability"]),
            "fetched_at": datetime.fromtimestamp(market["resolutionTime"] / 1000, UTC).isoformat(),
            "title": market["question"],
            "resolution": market["resolution"],
            "resolution_probability": str(market["resolutionProbability"])
            if market["resolution"] == "MKT"
            else "",
        }
        for market in picked.values()
    ]


def test_an_upload_of_platform_values_lands_and_resolves_its_events(conn, landing):
    manifold = _manifold_rows()
    assert sorted(row["resolution"] for row in manifold) == ["CANCEL", "MKT", "NO", "YES"]
    at = (WINDOW.start + timedelta(minutes=10)).isoformat()
    others = [
        {"source_event_id": "KXVOIDED", "value": "0.4", "resolution": "void"},
        {"source_event_id": "metaculus-annulled", "value": "0.3", "resolution": "annulled"},
        {"source_event_id": "polymarket-final", "value": "0.99", "resolution": '["1", "0"]'},
        {"source_event_id": "no-such-outcome", "value": "0.5", "resolution": "MAYBE"},
    ]
    rows = [*manifold, *({**row, "fetched_at": at} for row in others)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*manifold[0]], restval="")
    writer.writeheader()
    writer.writerows(rows)

    events = {row["source_event_id"]: uuid.uuid4() for row in rows}
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction_events (id, title, slug) VALUES (%s, %s, %s)",
            [(event, market, f"upload-{event}") for market, event in events.items()],
        )
    mapping = {market: str(event) for market, event in events.items()}
    feed_id = make_feed(conn, "upload", {}, manual_event_mappings=Jsonb(mapping))
    report = land_upload(
        conn, landing, load_feed(conn, feed_id), buffer.getvalue().encode(), "export.csv",
        now=lambda: NOW,
    )  # fmt: skip
    assert report.landing_file is not None  # the file landed: not refused whole
    [rejected] = report.rejected
    assert (rejected.source_event_id, rejected.reason) == (
        "no-such-outcome",
        "unmappable_resolution",
    )

    # Manifold's rows are dated at their resolution (2025-2026): validate every hour they are in.
    moments = {datetime.fromisoformat(row["fetched_at"]) for row in rows}
    for moment in sorted(moments):
        validate_window(conn, landing, hour_window(moment), now=NOW)
    run = feed_run(conn, feed_id)
    assert run["error_details"]["rejected_on_receipt"]["reasons"] == {"unmappable_resolution": 1}

    resolve_from_markets(conn, now=NOW)
    resolved = _resolutions(conn, list(events.values()))
    by_market = {market: resolved.get(event) for market, event in events.items()}
    mkt = next(row for row in manifold if row["resolution"] == "MKT")
    expected = {row["source_event_id"]: row["resolution"] for row in manifold}
    expected = {
        market: {"YES": "YES", "NO": "NO", "MKT": "AMBIGUOUS", "CANCEL": "CANCELLED"}[outcome]
        for market, outcome in expected.items()
    }
    expected |= {
        "KXVOIDED": "CANCELLED",
        "metaculus-annulled": "CANCELLED",
        "polymarket-final": "YES",
        "no-such-outcome": None,
    }
    assert {market: (r[0] if r else None) for market, r in by_market.items()} == expected
    probability = float(mkt["resolution_probability"])
    assert f"(resolved to probability {probability:.4g})" in by_market[mkt["source_event_id"]][1]


def _resolutions(conn: psycopg.Connection, events: list[uuid.UUID]) -> dict:
    rows = conn.execute(
        "SELECT event_id, outcome, outcome_details FROM prediction_resolutions"
        " WHERE event_id = ANY(%s)",
        (events,),
    ).fetchall()
    return {event: (outcome, details) for event, outcome, details in rows}
