"""Volume spikes and wash trading are seen per venue: markets with several venues of very
different volume, written to Postgres and scored by the trust_scores asset for one hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.trust import TrustConfig
from predict_pipeline.trust.measure import measure
from predict_pipeline.trust.store import load_inputs
from tests.trust.venue_scenarios import KINDS, VenueMarket, event_uuid, market, write_markets

START = datetime(2026, 6, 1, 12, tzinfo=UTC)  # the hour scored: 12:00-13:00
END = START + timedelta(hours=1)
CONFIG = TrustConfig(snapshot_stamp="end")
VOLUME_FLAGS = ("VOLUME_SPIKE", "WASH_TRADING")
EXPECTED = {"spike": "VOLUME_SPIKE", "wash": "WASH_TRADING"}


def _score_hour(db_url: str, instance) -> None:
    import dagster as dg

    from predict_pipeline.defs.resources import PostgresResource
    from predict_pipeline.defs.trust import trust_scores

    result = dg.materialize(
        [trust_scores],
        instance=instance,
        resources={"database": PostgresResource(url=db_url)},
        partition_key=HOURLY.get_partition_key_for_timestamp(START.timestamp()),
    )
    assert result.success


def _flags(conn: psycopg.Connection) -> dict[str, dict[str, dict]]:
    """event_id -> flag_type -> evidence, as written."""
    flags: dict[str, dict[str, dict]] = {}
    for event_id, flag_type, evidence in conn.execute(
        "SELECT event_id::text, flag_type, evidence FROM prediction_trust_flags"
    ):
        flags.setdefault(event_id, {})[flag_type] = evidence
    return flags


def _event_level(conn: psycopg.Connection):
    """The old measure: each event's volume summed over its venues, from the same rows."""
    signals, snapshots, events = load_inputs(conn, START, END, CONFIG)
    m = measure(signals, snapshots, events, interval_start=START, interval_end=END, config=CONFIG)
    return m.volume


def _minor_venue_market(kind: str) -> VenueMarket:
    """The first seed whose market has >= 3 venues, the largest >= 100x the smallest, and the
    manipulated venue trading at most a tenth of the event (so the sum dilutes it)."""
    for seed in range(1000):
        candidate = market(seed, kind, event_uuid(seed, kind), START)
        volumes = candidate.hourly_volume
        share = volumes[candidate.venues.index(candidate.target)] / sum(volumes)
        if len(volumes) >= 3 and volumes[0] >= 100 * volumes[-1] and share <= 0.1:
            return candidate
    raise AssertionError(f"no {kind} seed with a minor venue among 1,000")


def test_a_spike_and_a_wash_on_minor_venues_are_flagged_where_the_event_sum_misses_them(
    conn, db_url, dagster_instance
):
    spike = _minor_venue_market("spike")
    wash = _minor_venue_market("wash")
    news = market(7, "news", event_uuid(7, "news"), START)
    # the same broad rise and repricing with no one reporting it is not explained
    unreported = market(7, "news", event_uuid(7, "unreported"), START)
    unreported = VenueMarket(
        **{
            **{f: getattr(unreported, f) for f in VenueMarket.__dataclass_fields__},
            "rows": [r for r in unreported.rows if r[3] != "NEWS"],
        }
    )
    clean = market(7, "clean", event_uuid(7, "clean"), START)
    write_markets(conn, [spike, wash, news, unreported, clean], START)
    _score_hour(db_url, dagster_instance)
    flags = _flags(conn)
    summed = _event_level(conn)
    cfg = CONFIG

    for case, flag_type in ((spike, "VOLUME_SPIKE"), (wash, "WASH_TRADING")):
        evidence = flags[case.event_id][flag_type]
        assert evidence["venue"] == case.target
        assert evidence["market"] == f"{case.target}-{case.event_id[:8]}"
        typical = case.hourly_volume[case.venues.index(case.target)]
        assert typical / 2 < evidence["baseline"] < typical * 2
        ratio = evidence["ratio"] if flag_type == "VOLUME_SPIKE" else evidence["volume_ratio"]
        assert ratio == pytest.approx(evidence["observed"] / evidence["baseline"], rel=1e-4)
        assert ratio >= cfg.volume_spike_min_ratio and evidence["z"] > cfg.volume_spike_z
        assert any(v["venue"] == case.target for v in evidence["venues"])
        # the event-level sum stays under the thresholds: the old detector saw nothing
        old = summed.loc[case.event_id]
        assert old["observed"] < cfg.volume_spike_min_ratio * old["baseline"]
        assert evidence["event_level"]["ratio"] == pytest.approx(
            old["observed"] / old["baseline"], rel=1e-4
        )
    assert flags[wash.event_id]["WASH_TRADING"]["price_move"] == 0.0
    assert flags[wash.event_id]["WASH_TRADING"]["statistic"] == "volume_without_price_impact"

    # news-driven repricing: every venue's volume rose, the sum spikes, yet no flag
    old = summed.loc[news.event_id]
    assert old["z"] > cfg.volume_spike_z
    assert old["observed"] >= cfg.volume_spike_min_ratio * old["baseline"]
    assert not set(flags.get(news.event_id, {})) & set(VOLUME_FLAGS)
    assert "VOLUME_SPIKE" in flags[unreported.event_id]
    assert clean.event_id not in flags

    rows = conn.execute(
        "SELECT f.event_id::text, f.related_signals FROM prediction_trust_flags f"
        " WHERE f.flag_type = 'VOLUME_SPIKE' AND f.event_id = %s",
        (spike.event_id,),
    ).fetchall()
    (related,) = [r[1] for r in rows]
    sources = conn.execute(
        "SELECT DISTINCT source FROM prediction_signals WHERE id = ANY(%s)", (related,)
    ).fetchall()
    assert sources == [(spike.target,)]


@pytest.mark.slow
def test_recall_and_false_alarms_over_seeds(conn, db_url, dagster_instance):
    seeds = range(25)
    markets = [market(s, kind, event_uuid(s, kind), START) for s in seeds for kind in KINDS]
    write_markets(conn, markets, START)
    _score_hour(db_url, dagster_instance)
    flags = _flags(conn)

    table = {}
    for kind in KINDS:
        of_kind = [m for m in markets if m.kind == kind]
        raised = [set(flags.get(m.event_id, {})) for m in of_kind]
        if kind in EXPECTED:
            table[kind] = sum(EXPECTED[kind] in r for r in raised) / len(of_kind)
        else:
            table[kind] = sum(bool(r & set(VOLUME_FLAGS)) for r in raised) / len(of_kind)
    print(f"\nper-venue detection over {len(seeds)} seeds: {table}")
    assert table["spike"] >= 0.90 and table["wash"] >= 0.90  # recall
    assert table["clean"] <= 0.05 and table["news"] <= 0.05  # false alarms
