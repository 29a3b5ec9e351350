"""Resolution agreement on real recordings: what each platform reports against what the
pipeline resolves, through the real path (adapter -> validated_signals' ingest -> settlements
-> event_resolutions -> prediction_resolutions), one event per question of the recording.

Every case names its source (repo@commit:path, fixtures/real/SOURCES.md). The table is
printed (`pytest -s`) and asserted: no disagreement, nothing the platform resolved left open,
nothing open resolved.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.calibration.resolutions import resolve_from_markets
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.model import PageRequest
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.sources.base import read_page
from predict_pipeline.sources.registry import source_definition
from tests.real.recordings import (
    Recording,
    kalshi_finalized,
    manifold_listing,
    metaculus_api2_questions,
    platform_outcomes,
    polymarket_btc_5m,
    polymarket_open_listing,
    predictit_snapshot,
)
from tests.support.feeds import make_feed


def parse(recording: Recording):
    adapter = source_definition(recording.platform).adapter
    request = (
        PageRequest("markets", "https://recorded.invalid", context=recording.request_context)
        if recording.request_context
        else None
    )
    return read_page(adapter, recording.payload, fetched_at=recording.fetched_at, request=request)


def pipeline_outcomes(
    conn: psycopg.Connection, recording: Recording, questions: list[str]
) -> dict[str, tuple[str | None, str | None]]:
    """Each question's (outcome, outcome_details) in prediction_resolutions after the recording
    went through ingest and event_resolutions, with every question linked to an event."""
    events = {question: uuid.uuid4() for question in questions}
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction_events (id, title, slug) VALUES (%s, %s, %s)",
            [
                (e, f"{recording.platform} {q}", f"{recording.platform}-{e}")
                for q, e in events.items()
            ],
        )
    mapping = {question: str(event) for question, event in events.items()}
    feed = load_feed(
        conn, make_feed(conn, recording.platform, {}, manual_event_mappings=Jsonb(mapping))
    )
    page = parse(recording)
    now = recording.fetched_at + timedelta(minutes=5)
    report = FeedValidationReport(str(feed.id), feed.name, feed.source)
    with conn.transaction():
        ingest_batches(
            conn,
            feed,
            [RecordBatch(page.records, rejects=page.rejects)],
            report,
            now=now,
            matching=MatchingSettings(),
            events=lambda: [],
            timings={},
        )
    with conn.transaction():
        resolve_from_markets(conn, now=now)
    rows = conn.execute(
        "SELECT e.id, r.outcome, r.outcome_details FROM prediction_events e"
        " LEFT JOIN prediction_resolutions r ON r.event_id = e.id WHERE e.id = ANY(%s)",
        (list(events.values()),),
    ).fetchall()
    by_event = {event: (outcome, details) for event, outcome, details in rows}
    return {question: by_event[event] for question, event in events.items()}


def agreement(recording: Recording, resolved: dict[str, tuple[str | None, str | None]]):
    view = platform_outcomes(recording)
    tally = Counter()
    wrong = []
    for question, reported in view.outcomes.items():
        outcome = resolved.get(question, (None, None))[0]
        if reported is None:
            tally["open, left open" if outcome is None else "open, resolved"] += 1
        elif outcome == reported:
            tally["agree"] += 1
        elif outcome is None:
            tally["missing"] += 1
            wrong.append((question, reported, None))
        else:
            tally["disagree"] += 1
            wrong.append((question, reported, outcome))
    return tally, wrong, view


CASES = {
    "manifold": manifold_listing,
    "polymarket-btc-5m": polymarket_btc_5m,
    "polymarket-btc-5m-history-proposed": lambda: polymarket_btc_5m('["proposed"]'),
    "polymarket-open-listing": polymarket_open_listing,
    "kalshi-finalized": kalshi_finalized,
    "predictit": predictit_snapshot,
    "metaculus-api2-questions": metaculus_api2_questions,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_pipeline_resolves_what_the_platform_reports(conn, case):
    recording = CASES[case]()
    view = platform_outcomes(recording)
    resolved = pipeline_outcomes(conn, recording, sorted(view.outcomes))
    tally, wrong, view = agreement(recording, resolved)
    reported = sum(1 for outcome in view.outcomes.values() if outcome is not None)
    print(
        f"\n{recording.platform} | {recording.name} | {recording.source} | markets"
        f" {len(recording.items)} | questions {len(view.outcomes)} | resolved per platform"
        f" {reported} | {dict(sorted(tally.items()))} | not told by the recording"
        f" {len(view.untold)}"
    )
    assert wrong == []
    assert tally["open, resolved"] == 0
    assert tally["agree"] == reported


EXPECTED_RESOLVED = {
    # (questions the platform resolved, of which AMBIGUOUS, CANCELLED), counted from the
    # payload's own fields (the breakdown is in fixtures/real/SOURCES.md).
    "manifold": (110, 13, 51),
    "polymarket-btc-5m": (292, 0, 0),
    "polymarket-btc-5m-history-proposed": (292, 0, 0),
    "polymarket-open-listing": (0, 0, 0),
    "kalshi-finalized": (13, 0, 0),
    "predictit": (0, 0, 0),
    "metaculus-api2-questions": (2, 1, 0),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_recordings_hold_the_resolutions_they_are_cited_for(case):
    outcomes = platform_outcomes(CASES[case]()).outcomes.values()
    counts = Counter(outcomes)
    resolved = sum(n for outcome, n in counts.items() if outcome is not None)
    assert (resolved, counts["AMBIGUOUS"], counts["CANCELLED"]) == EXPECTED_RESOLVED[case]


def test_manifold_mkt_keeps_the_probability_it_resolved_to(conn):
    """MKT settles AMBIGUOUS (calibration scores YES/NO only) and the resolution names the
    probability Manifold resolved the market to."""
    recording = manifold_listing()
    mkt = {
        m["id"]: m["resolutionProbability"]
        for m in recording.items
        if m.get("resolution") == "MKT" and m["outcomeType"] == "BINARY"
    }
    resolved = pipeline_outcomes(conn, recording, sorted(mkt))
    assert len(mkt) == 8
    for market, probability in mkt.items():
        outcome, details = resolved[market]
        assert outcome == "AMBIGUOUS"
        assert f"manifold:{market} (resolved to probability {probability:.4g})" in details
    stored = dict(
        conn.execute(
            "SELECT source_event_id, resolution_probability FROM predict_meta.market_settlements"
            " WHERE source = 'manifold' AND resolution = 'AMBIGUOUS' AND resolution_probability"
            " IS NOT NULL"
        ).fetchall()
    )
    assert stored == mkt


def test_auto_resolved_polymarket_markets_resolve_whatever_their_status_history(conn):
    """Issue 18: auto-resolved markets keep umaResolutionStatuses ["proposed"] once resolved;
    umaResolutionStatus, closed and prices at exactly 1/0 decide. A proposal still pending
    (umaResolutionStatus "proposed") leaves the market open."""
    recording = polymarket_btc_5m('["proposed"]')
    pending = [
        {**market, "umaResolutionStatus": "proposed"} if index % 2 else market
        for index, market in enumerate(recording.items)
    ]
    recording = Recording(
        recording.platform,
        recording.name,
        recording.source,
        pending,
        recording.fetched_at,
        pending,
    )
    resolved = pipeline_outcomes(conn, recording, [m["id"] for m in pending])
    expected = {
        m["id"]: ("YES" if m["outcomePrices"].startswith('["1"') else "NO") if i % 2 == 0 else None
        for i, m in enumerate(pending)
    }
    assert {market: outcome for market, (outcome, _) in resolved.items()} == expected
