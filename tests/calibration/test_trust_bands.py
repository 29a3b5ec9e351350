"""Pooled at close scored by trust band at close, and the check that warns when trust and
accuracy disagree, on constructed events in a real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import psycopg
import pytest

from predict_pipeline.calibration.trust_bands import (
    MIN_BAND_EVENTS,
    band_order_violations,
    pooled_at_close_by_band,
    trust_band_report,
)
from predict_pipeline.defs.calibration import TRUST_BAND_CHECK, source_calibration
from predict_pipeline.defs.resources import PostgresResource
from predict_pipeline.retention.partitions import make_partitions_between

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
Z = 1.959963984540054


def seed_band(
    conn: psycopg.Connection, label: str, trust: float | None, errors: list[float]
) -> None:
    """One resolved YES event per error: pooled at CLOSE said 1 − error; the last snapshot at
    or before close has `trust` (a later one says 0.99 and must be ignored)."""
    make_partitions_between(conn, "prediction_snapshots", NOW - timedelta(days=60), NOW)
    for i, error in enumerate(errors):
        closes_at = NOW - timedelta(days=10, hours=i)
        event = conn.execute(
            "INSERT INTO prediction_events (title, slug, resolution_date) VALUES (%s, %s, %s)"
            " RETURNING id",
            (f"{label} {i}", f"{label}-{i}", closes_at),
        ).fetchone()[0]
        resolution = conn.execute(
            "INSERT INTO prediction_resolutions (event_id, outcome, resolved_at)"
            " VALUES (%s, 'YES', %s) RETURNING id",
            (event, closes_at + timedelta(hours=1)),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO prediction_market_scores (resolution_id, event_id, source, horizon,"
            " probability) VALUES (%s, %s, 'pooled', 'CLOSE', %s)",
            (resolution, event, 1 - error),
        )
        if trust is not None:
            conn.execute(
                "INSERT INTO prediction_snapshots (event_id, trust_score, snapshot_at)"
                " VALUES (%s, 0.1, %s), (%s, %s, %s), (%s, 0.99, %s)",
                (
                    event,
                    closes_at - timedelta(days=2),
                    event,
                    trust,
                    closes_at,
                    event,
                    closes_at + timedelta(minutes=5),
                ),
            )


def textbook_wilson(k: int, n: int) -> tuple[float, float]:
    centre = (k / n + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * np.sqrt(k / n * (1 - k / n) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_bands_score_pooled_at_close_by_trust_at_close(conn):
    # 0.4 error → wrong side (p = 0.6 for YES is right; 0.6 error → p = 0.4, wrong).
    low = [0.6] * 5 + [0.4] * 20
    fair = [0.3] * 22
    seed_band(conn, "low", 0.3, low)
    seed_band(conn, "fair", 0.5, fair)  # 0.5 exactly is the fair band
    seed_band(conn, "good", 0.7, [0.2] * 3)
    seed_band(conn, "none", None, [0.1] * 4)

    report = trust_band_report(pooled_at_close_by_band(conn))

    assert report.untrusted_events == 4
    assert [b.band for b in report.bands] == ["< 0.5", "0.5–0.7", "0.7–0.85", "≥ 0.85"]
    assert [b.events for b in report.bands] == [25, 22, 3, 0]
    assert report.bands[0].brier_score == pytest.approx(np.mean(np.square(low)), abs=1e-12)
    assert report.bands[1].brier_score == pytest.approx(0.09, abs=1e-12)
    assert report.bands[3].brier_score is None
    # Accuracy at 50 %: 20 right of 25, with its Wilson interval.
    first = report.bands[0]
    assert first.accuracy_at_50 == pytest.approx(0.8)
    assert (first.accuracy_low, first.accuracy_high) == pytest.approx(
        textbook_wilson(20, 25), abs=1e-12
    )
    # The bootstrap band brackets the mean; a band of equal errors has a zero-width one.
    assert first.brier_low < first.brier_score < first.brier_high
    assert report.bands[1].brier_low == pytest.approx(0.09) == report.bands[1].brier_high
    assert band_order_violations(report) == []


def _check(conn, db_url, dagster_instance) -> dg.AssetCheckEvaluation:
    result = dg.materialize(
        [source_calibration],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert result.success
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.check_name == TRUST_BAND_CHECK
    return evaluation


def test_check_passes_when_higher_trust_scores_better(conn, db_url, dagster_instance):
    seed_band(conn, "low", 0.2, [0.4] * MIN_BAND_EVENTS)
    seed_band(conn, "fair", 0.6, [0.3] * MIN_BAND_EVENTS)
    seed_band(conn, "good", 0.8, [0.2] * MIN_BAND_EVENTS)
    # Too few to judge: a worse top band of 5 events raises no warning.
    seed_band(conn, "high", 0.9, [0.5] * 5)

    evaluation = _check(conn, db_url, dagster_instance)

    assert evaluation.passed
    assert evaluation.metadata["violations"].value == []


def test_check_warns_when_a_higher_band_scores_worse(conn, db_url, dagster_instance):
    seed_band(conn, "low", 0.2, [0.4] * MIN_BAND_EVENTS)
    seed_band(conn, "fair", 0.6, [0.2] * MIN_BAND_EVENTS)
    seed_band(conn, "good", 0.8, [0.3] * MIN_BAND_EVENTS)
    seed_band(conn, "high", 0.9, [0.1] * MIN_BAND_EVENTS)

    evaluation = _check(conn, db_url, dagster_instance)

    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    [violation] = evaluation.metadata["violations"].value
    assert violation["lower"] == "0.5–0.7" and violation["higher"] == "0.7–0.85"
    assert violation["lower_brier"] == pytest.approx(0.04)
    assert violation["higher_brier"] == pytest.approx(0.09)
