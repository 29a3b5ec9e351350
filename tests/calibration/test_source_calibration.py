"""Per-source calibration over prediction_market_scores, its filters and the asset, for real."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg.types.json import Jsonb
from sklearn.metrics import accuracy_score, brier_score_loss

from predict_pipeline.calibration.source_calibration import (
    SeriesFilters,
    SourceCalibrationError,
    scored_series,
    source_calibration_rows,
)
from predict_pipeline.defs.calibration import SourceCalibrationConfig, source_calibration
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.retention.partitions import make_partitions_between

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WINDOW_DAYS = {"7D": 7, "30D": 30, "90D": 90, "ALL_TIME": None}
SLUGS = ("finance", "sports", None)


def categories(conn: psycopg.Connection) -> dict[str, uuid.UUID]:
    return dict(conn.execute("SELECT slug, id FROM prediction_categories").fetchall())


def seed(conn: psycopg.Connection, *, events: int = 90, seed_value: int = 7) -> pd.DataFrame:
    """Generated resolved events with pooled, kalshi and polymarket scores at CLOSE and 1D,
    market volumes, trader counts and trust snapshots; the truth, one row per scored series."""
    rng = np.random.default_rng(seed_value)
    slug_ids = categories(conn)
    for table in ("prediction_signals", "prediction_snapshots"):
        make_partitions_between(conn, table, NOW - timedelta(days=200), NOW + timedelta(days=40))
    truth = []
    signals = []
    snapshots = []
    for i in range(events):
        slug = SLUGS[i % 3]
        resolved_at = NOW - timedelta(days=float(rng.uniform(0.5, 150)))
        closes_at = resolved_at - timedelta(hours=2)
        outcome = int(rng.random() < 0.5)
        trust = float(np.round(rng.uniform(0.2, 0.99), 4))
        event = conn.execute(
            "INSERT INTO prediction_events (title, slug, category_id, resolution_date)"
            " VALUES (%s, %s, %s, %s) RETURNING id",
            (f"Event {i}", f"ev-{i}", slug_ids[slug] if slug else None, closes_at),
        ).fetchone()[0]
        resolution = conn.execute(
            "INSERT INTO prediction_resolutions (event_id, outcome, resolved_at)"
            " VALUES (%s, %s, %s) RETURNING id",
            (event, "YES" if outcome else "NO", resolved_at),
        ).fetchone()[0]
        snapshots += [
            (event, trust, closes_at - timedelta(hours=3)),
            # After close: must not be read as the trust at close.
            (event, 0.01, closes_at + timedelta(minutes=30)),
        ]
        latent = float(np.clip(0.5 + (outcome - 0.5) * rng.uniform(-0.4, 1.6), 0.01, 0.99))
        markets = [("pooled", None, None, None)]
        if rng.random() < 0.8:
            volume = float(rng.integers(1, 500)) * 1000
            markets.append(("kalshi", f"K-{i}", volume, None))
            signals += [
                (
                    event,
                    "kalshi",
                    f"K-{i}",
                    volume / 2000,
                    {"volume_scope": "lifetime_usd"},
                    closes_at - timedelta(days=1),
                ),
                (
                    event,
                    "kalshi",
                    f"K-{i}",
                    volume / 1000,
                    {"volume_scope": "lifetime_usd"},
                    closes_at - timedelta(hours=1),
                ),
                (
                    event,
                    "kalshi",
                    f"K-{i}",
                    900.0,
                    {"volume_scope": "lifetime_usd"},
                    closes_at + timedelta(hours=1),
                ),
            ]
        for m in range(int(rng.integers(0, 3))):
            flows = [float(rng.integers(1, 100)), float(rng.integers(1, 100))]
            traders = float(rng.integers(1, 300)) if m == 0 else None
            market = f"P-{i}-{m}"
            markets.append(("polymarket", market, 1000 * sum(flows), traders))
            signals += [
                (
                    event,
                    "polymarket",
                    market,
                    f,
                    {"volume_scope": "interval"},
                    closes_at - timedelta(hours=4 + k),
                )
                for k, f in enumerate(flows)
            ]
            if traders is not None:
                signals.append(
                    (
                        event,
                        "polymarket",
                        market,
                        None,
                        {"unique_bettors": traders},
                        closes_at - timedelta(hours=1),
                    )
                )
        market_rows = [m for m in markets if m[0] != "pooled"]
        for source, market, volume, traders in markets:
            if source == "pooled":
                volume = sum(m[2] for m in market_rows)
                known = [m[3] for m in market_rows if m[3] is not None]
                traders = sum(known) if known else None
            for horizon in ("CLOSE", "1D"):
                p = float(np.clip(latent + rng.normal(0, 0.15), 0.0, 1.0))
                conn.execute(
                    "INSERT INTO prediction_market_scores (resolution_id, event_id, source,"
                    " source_event_id, horizon, probability, observed_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (resolution, event, source, market, horizon, p, closes_at),
                )
                truth.append(
                    {
                        "event_id": event,
                        "source": source,
                        "market": market,
                        "horizon": horizon,
                        "slug": slug,
                        "resolved_at": resolved_at,
                        "p": p,
                        "o": outcome,
                        "volume": volume,
                        "traders": traders,
                        "trust": trust,
                    }
                )
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
            " value, raw_data, fetched_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    e,
                    s,
                    m,
                    "VOLUME" if v is not None else "MARKET_PRICE",
                    v if v is not None else 0.5,
                    Jsonb(raw),
                    at,
                )
                for e, s, m, v, raw, at in signals
            ],
        )
        cur.executemany(
            "INSERT INTO prediction_snapshots (event_id, probability, trust_score, snapshot_at)"
            " VALUES (%s, 0.5, %s, %s)",
            snapshots,
        )
    return pd.DataFrame(truth)


def expected_scores(rows: pd.DataFrame) -> dict:
    """The same scores taken independently: sklearn for Brier and accuracy, numpy bins."""
    p, o = rows["p"].to_numpy(), rows["o"].to_numpy()
    clipped = np.clip(p, 0.0001, 0.9999)
    called = np.abs(p - 0.5) > 1e-9
    sure = np.maximum(p, 1 - p) >= 0.7
    counts, _ = np.histogram(p, bins=np.linspace(0, 1, 11))
    yes, _ = np.histogram(p, bins=np.linspace(0, 1, 11), weights=o)
    return {
        "n": len(rows),
        "brier": brier_score_loss(o, p) if len(rows) else None,
        "log": float(np.mean(np.where(o == 1, np.log(clipped), np.log(1 - clipped))))
        if len(rows)
        else None,
        "acc50": accuracy_score(o[called], p[called] > 0.5) if called.any() else None,
        "acc70": accuracy_score(o[sure], p[sure] > 0.5) if sure.any() else None,
        "counts": list(counts),
        "yes": list(yes),
    }


def test_per_source_rows_match_an_independent_computation(conn):
    truth = seed(conn)
    ids = categories(conn)
    scored = scored_series(conn, SeriesFilters())
    rows = source_calibration_rows(scored, now=NOW, categories=[ids["finance"], ids["sports"]])

    slug_of = {v: k for k, v in ids.items()}
    # 3 sources × 2 horizons × (global + 2 categories) × 4 windows.
    assert len(rows) == 3 * 2 * 3 * 4
    assert [r.source for r in rows[:24]] == ["pooled"] * 24
    for r in rows:
        scope = truth[(truth["source"] == r.source) & (truth["horizon"] == r.horizon)]
        if r.row.category_id is not None:
            scope = scope[scope["slug"] == slug_of[r.row.category_id]]
        days = WINDOW_DAYS[r.row.time_window]
        if days is not None:
            scope = scope[scope["resolved_at"] > NOW - timedelta(days=days)]
        expected = expected_scores(scope)
        assert r.row.resolved_predictions == r.row.total_predictions == expected["n"]
        if expected["n"] == 0:
            assert r.row.brier_score is None
            continue
        assert r.row.brier_score == pytest.approx(expected["brier"], abs=1e-12)
        assert r.row.log_score == pytest.approx(expected["log"], abs=1e-12)
        assert r.row.accuracy_at_50 == pytest.approx(expected["acc50"], abs=1e-12)
        assert r.row.accuracy_at_70 == pytest.approx(expected["acc70"], abs=1e-12)
        bins = r.row.calibration_curve["bins"]
        assert [b["count"] for b in bins] == expected["counts"]
        assert [
            round(b["observed_frequency"] * b["count"]) if b["count"] else 0 for b in bins
        ] == expected["yes"]
    global_all_time = [
        r for r in rows if r.row.category_id is None and r.row.time_window == "ALL_TIME"
    ]
    assert sum(r.row.resolved_predictions for r in global_all_time) == len(truth)


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        (SeriesFilters(min_volume=60_000), lambda t: t["volume"] >= 60_000),
        (SeriesFilters(min_traders=100), lambda t: t["traders"].fillna(-1) >= 100),
        (SeriesFilters(min_trust=0.6), lambda t: t["trust"] >= 0.6),
        (
            SeriesFilters(min_volume=20_000, min_trust=0.4),
            lambda t: (t["volume"] >= 20_000) & (t["trust"] >= 0.4),
        ),
    ],
)
def test_filters_change_the_rows_counted(conn, filters, keep):
    truth = seed(conn)
    everything = scored_series(conn, SeriesFilters())
    kept = scored_series(conn, filters)

    expected = truth[keep(truth)]
    assert len(everything) == len(truth)
    assert 0 < len(kept) < len(everything)
    assert sorted(
        zip(kept["source"], kept["source_event_id"].fillna(""), kept["horizon"], strict=True)
    ) == sorted(
        zip(expected["source"], expected["market"].fillna(""), expected["horizon"], strict=True)
    )
    rows = source_calibration_rows(kept, now=NOW, categories=[])
    counted = {
        (r.source, r.horizon): r.row.resolved_predictions
        for r in rows
        if r.row.time_window == "ALL_TIME"
    }
    assert counted == expected.groupby(["source", "horizon"]).size().to_dict()


def test_a_filter_out_of_range_is_refused():
    with pytest.raises(SourceCalibrationError, match=r"min_trust must be in \[0, 1\]"):
        SeriesFilters(min_trust=1.5)


def test_asset_writes_rows_and_compares_pooled_with_the_best_source(conn, db_url, dagster_instance):
    truth = seed(conn)
    result = dg.materialize(
        [source_calibration],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert result.success
    stored = conn.execute(
        "SELECT source, horizon, resolved_predictions, brier_score::float8"
        " FROM prediction_source_calibration"
        " WHERE category_id IS NULL AND time_window = 'ALL_TIME'"
    ).fetchall()
    expected_counts = truth.groupby(["source", "horizon"]).size().to_dict()
    assert {(s, h): n for s, h, n, _ in stored} == expected_counts
    for source, horizon, _, brier in stored:
        rows = truth[(truth["source"] == source) & (truth["horizon"] == horizon)]
        assert brier == round(brier_score_loss(rows["o"], rows["p"]), 4)
    # Six active categories + global, 4 windows, 3 sources × 2 horizons.
    assert conn.execute("SELECT count(*) FROM prediction_source_calibration").fetchone() == (
        7 * 4 * 6,
    )

    close = truth[truth["horizon"] == "CLOSE"].assign(brier=lambda t: (t["p"] - t["o"]) ** 2)
    per_event = close.groupby(["event_id", "source", "slug"], dropna=False)["brier"].mean()
    per_event = per_event.reset_index()
    pooled = per_event[per_event["source"] == "pooled"][["event_id", "brier"]]
    paired = per_event[per_event["source"] != "pooled"].merge(
        pooled, on="event_id", suffixes=("", "_pooled")
    )
    expected = {}
    for category, scope in [("global", paired)] + [
        (slug, paired[paired["slug"] == slug]) for slug in ("finance", "sports")
    ]:
        by_source = scope.groupby("source").agg(
            brier=("brier", "mean"), pooled=("brier_pooled", "mean"), n=("event_id", "count")
        )
        best = by_source["brier"].idxmin()
        expected[category] = (
            best,
            by_source.loc[best, "pooled"],
            by_source.loc[best, "brier"],
            by_source.loc[best, "pooled"] - by_source.loc[best, "brier"],
            int(by_source.loc[best, "n"]),
        )
    [materialization] = result.asset_materializations_for_node("source_calibration")
    table = materialization.metadata["pooled_vs_best_source"].value
    got = {
        r.data["category"]: (
            r.data["best_source"],
            r.data["pooled_brier"],
            r.data["best_source_brier"],
            r.data["difference"],
            r.data["events"],
        )
        for r in table.records
    }
    assert list(got) == ["global", "finance", "sports"]
    for category, values in expected.items():
        assert got[category][0] == values[0] and got[category][4] == values[4]
        assert got[category][1:4] == pytest.approx(values[1:4], abs=1e-12)
    assert materialization.metadata["pooled_minus_best_source_brier"].value == pytest.approx(
        expected["global"][3], abs=1e-12
    )
    assert "data:image/png;base64," in materialization.metadata["reliability_by_source"].value

    # A filter changes what the asset counts and writes.
    filtered = dg.materialize(
        [source_calibration],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
        run_config=dg.RunConfig({"source_calibration": SourceCalibrationConfig(min_trust=0.6)}),
    )
    assert filtered.success
    pooled_close = conn.execute(
        "SELECT resolved_predictions, min_trust FROM prediction_source_calibration"
        " WHERE source = 'pooled' AND horizon = 'CLOSE' AND category_id IS NULL"
        " AND time_window = 'ALL_TIME'"
    ).fetchone()
    kept = truth[(truth["source"] == "pooled") & (truth["horizon"] == "CLOSE")]
    assert pooled_close == ((kept["trust"] >= 0.6).sum(), 0.6)
