"""Campaign calibration against scikit-learn on generated scored results, and each tenant's rows
readable by that tenant only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, log_loss, mean_absolute_error

from predict_pipeline.defs.campaigns import campaign_calibration
from predict_pipeline.defs.resources import PostgresResource
from tests.support.campaigns import make_campaign, make_user
from tests.support.tenants import as_user

NOW = datetime.now(UTC)


def _generated(conn, rng, user, platform, kind, rows, *, days_ago):
    """Scored result rows with a frozen prediction: p, an outcome drawn with probability p
    (then bent, so the predictions are not perfectly calibrated), predicted and actual rates."""
    campaign, variants = make_campaign(
        conn,
        user,
        f"{platform} {kind} {days_ago}",
        platform=platform,
        campaign_type=kind,
        variants=("A", "B"),
    )
    p = np.round(rng.uniform(0.02, 0.98, rows), 4)
    p = np.where(np.isclose((p * 10) % 1, 0), p + 0.0003, p)  # no p on a bin edge
    success = rng.uniform(size=rows) < p**1.3
    predicted_engagement = np.round(rng.uniform(0.01, 0.08, rows), 4)
    actual_engagement = np.round(np.clip(predicted_engagement + rng.normal(0, 0.01, rows), 0, 1), 4)
    predicted_conversion = np.round(rng.uniform(0.02, 0.1, rows), 4)
    actual_conversion = np.round(np.clip(predicted_conversion + rng.normal(0, 0.02, rows), 0, 1), 4)
    direction = rng.uniform(size=rows) < 0.6
    for i in range(rows):
        end = NOW - timedelta(days=days_ago, minutes=30 * i)
        conn.execute(
            """INSERT INTO prediction_campaign_results
                 (campaign_id, variant_id, result_period_start, result_period_end, scored_at,
                  predicted_metric, predicted_success_probability, success,
                  predicted_engagement_rate, actual_engagement_rate, predicted_conversion_rate,
                  actual_conversion_rate, prediction_direction_correct)
               VALUES (%s, %s, %s, %s, now(), 'engagement_rate', %s, %s, %s, %s, %s, %s, %s)""",
            (
                campaign,
                variants["AB"[i % 2]],
                end - timedelta(days=7),
                end,
                float(p[i]),
                bool(success[i]),
                float(predicted_engagement[i]),
                float(actual_engagement[i]),
                float(predicted_conversion[i]),
                float(actual_conversion[i]),
                bool(direction[i]),
            ),
        )
    return {
        "p": p,
        "success": success,
        "pe": predicted_engagement,
        "ae": actual_engagement,
        "pc": predicted_conversion,
        "ac": actual_conversion,
        "direction": direction,
    }


def _concat(*parts):
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _row(conn, user, platform, kind, window):
    return conn.execute(
        """SELECT scored_results, successes, brier_score::float8, log_score::float8,
                  mae_engagement_rate::float8, mae_conversion_rate::float8,
                  direction_accuracy::float8, direction_scored, calibration_curve
           FROM prediction_campaign_calibration
           WHERE user_id = %s AND platform = %s AND campaign_type = %s AND time_window = %s""",
        (user, platform, kind, window),
    ).fetchone()


def _assert_matches_sklearn(row, data):
    scored, successes, brier, log_score, mae_e, mae_c, direction, directed, curve = row
    y, p = data["success"].astype(int), data["p"]
    assert (scored, successes, directed) == (len(y), int(y.sum()), len(y))
    assert brier == pytest.approx(brier_score_loss(y, p), abs=5e-5)
    assert log_score == pytest.approx(-log_loss(y, p), abs=5e-5)
    assert mae_e == pytest.approx(mean_absolute_error(data["ae"], data["pe"]), abs=5e-7)
    assert mae_c == pytest.approx(mean_absolute_error(data["ac"], data["pc"]), abs=5e-7)
    assert direction == pytest.approx(data["direction"].mean(), abs=5e-5)
    observed, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    filled = [b for b in curve["bins"] if b["count"]]
    assert [b["observed_frequency"] for b in filled] == pytest.approx(list(observed))
    assert [b["mean_predicted"] for b in filled] == pytest.approx(list(predicted))


def test_campaign_calibration_matches_scikit_learn_on_generated_results(
    conn, db_url, dagster_instance
):
    rng = np.random.default_rng(20250401)
    alice, bob = make_user(conn, "alice"), make_user(conn, "bob")
    recent = _generated(conn, rng, alice, "tiktok", "engagement", 150, days_ago=2)
    older = _generated(conn, rng, alice, "tiktok", "engagement", 120, days_ago=60)
    meta = _generated(conn, rng, alice, "meta", "conversion", 90, days_ago=20)
    bobs = _generated(conn, rng, bob, "tiktok", "engagement", 80, days_ago=3)
    result = dg.materialize(
        [campaign_calibration],
        instance=dagster_instance,
        resources={"database": PostgresResource(url=db_url)},
    )
    assert result.success

    _assert_matches_sklearn(_row(conn, alice, "tiktok", "engagement", "7D"), recent)
    _assert_matches_sklearn(
        _row(conn, alice, "tiktok", "engagement", "ALL_TIME"), _concat(recent, older)
    )
    _assert_matches_sklearn(_row(conn, alice, "meta", "conversion", "30D"), meta)
    _assert_matches_sklearn(_row(conn, alice, "all", "all", "90D"), _concat(recent, older, meta))
    _assert_matches_sklearn(_row(conn, bob, "tiktok", "engagement", "ALL_TIME"), bobs)
    # Bob's results are pooled into no row of Alice's.
    assert _row(conn, alice, "all", "all", "7D")[0] == len(recent["p"])
    # The materialisation: every tenant's global scores, and the reliability diagram.
    [materialization] = result.asset_materializations_for_node("campaign_calibration")
    everyone = _concat(recent, older, meta, bobs)
    assert materialization.metadata["brier_all_time"].value == pytest.approx(
        brier_score_loss(everyone["success"].astype(int), everyone["p"])
    )
    assert materialization.metadata["reliability_diagram"].value.startswith(
        "![Reliability diagram](data:image/png;base64,"
    )
    # Each tenant reads its own rows only.
    with as_user(db_url, alice) as reader:
        users = {
            u for (u,) in reader.execute("SELECT user_id FROM prediction_campaign_calibration")
        }
    assert users == {alice}
    with as_user(db_url, bob) as reader:
        users = {
            u for (u,) in reader.execute("SELECT user_id FROM prediction_campaign_calibration")
        }
    assert users == {bob}
