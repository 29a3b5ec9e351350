"""Derived metrics, frozen predictions and scores of result rows, against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
from psycopg.types.json import Jsonb

from predict_pipeline.campaigns.results import refresh_results
from predict_pipeline.defs.campaigns import campaign_results
from predict_pipeline.defs.resources import PostgresResource
from tests.support.campaigns import make_campaign
from tests.support.feeds import USER_ID

T0 = datetime(2025, 3, 3, tzinfo=UTC)
WEEK = timedelta(days=7)


def _result(conn, campaign, variant, start, recorded_at=None, **metrics):
    columns = ", ".join(metrics)
    marks = ", ".join(["%s"] * len(metrics))
    return conn.execute(
        f"INSERT INTO prediction_campaign_results (campaign_id, variant_id, result_period_start,"  # noqa: S608
        f" result_period_end, recorded_at, {columns}) VALUES (%s, %s, %s, %s,"
        f" coalesce(%s, now()), {marks}) RETURNING id",
        (campaign, variant, start, start + WEEK, recorded_at, *metrics.values()),
    ).fetchone()[0]


def _derived(conn, result_id):
    return conn.execute(
        "SELECT actual_ctr, actual_conversion_rate, actual_engagement_rate, actual_roas"
        " FROM prediction_campaign_results WHERE id = %s",
        (result_id,),
    ).fetchone()


def test_the_results_asset_derives_every_rate_and_a_zero_denominator_is_null(
    conn, db_url, dagster_instance
):
    campaign, variants = make_campaign(conn, USER_ID, "Rates", variants=("A", "B", "C", "D", "E"))
    rows = {
        # ctr 30/1000, conversion 3/30, engagement 45/1000, roas 9000/2000
        "plain": _result(
            conn,
            campaign,
            variants["A"],
            T0,
            impressions=1000,
            clicks=30,
            conversions=3,
            engagements=45,
            spend_cents=2000,
            revenue_cents=9000,
        ),
        # 1/3, 1/1, 2/3, 10/3: rounded half away from zero at 4 and 2 decimals
        "thirds": _result(
            conn,
            campaign,
            variants["B"],
            T0,
            impressions=3,
            clicks=1,
            conversions=1,
            engagements=2,
            spend_cents=3,
            revenue_cents=10,
        ),
        # every denominator zero
        "zeros": _result(
            conn,
            campaign,
            variants["C"],
            T0,
            impressions=0,
            clicks=0,
            conversions=0,
            engagements=0,
            spend_cents=0,
            revenue_cents=500,
        ),
        # no clicks: no conversion rate; no engagements reported: no engagement rate
        "no_clicks": _result(
            conn,
            campaign,
            variants["D"],
            T0,
            impressions=500,
            clicks=0,
            conversions=0,
            spend_cents=100,
            revenue_cents=0,
        ),
        # 1/8 = 0.125 exactly: 0.1250 and ROAS 0.13
        "eighths": _result(
            conn,
            campaign,
            variants["E"],
            T0,
            impressions=8,
            clicks=1,
            conversions=1,
            engagements=1,
            spend_cents=8,
            revenue_cents=1,
        ),
    }
    resources = {"database": PostgresResource(url=db_url)}
    result = dg.materialize([campaign_results], instance=dagster_instance, resources=resources)
    assert result.success
    expected = {
        "plain": (Decimal("0.0300"), Decimal("0.1000"), Decimal("0.0450"), Decimal("4.50")),
        "thirds": (Decimal("0.3333"), Decimal("1.0000"), Decimal("0.6667"), Decimal("3.33")),
        "zeros": (None, None, None, None),
        "no_clicks": (Decimal("0.0000"), None, None, Decimal("0.00")),
        "eighths": (Decimal("0.1250"), Decimal("1.0000"), Decimal("0.1250"), Decimal("0.13")),
    }
    for name, result_id in rows.items():
        assert _derived(conn, result_id) == expected[name], name
    [materialization] = result.asset_materializations_for_node("campaign_results")
    assert materialization.metadata["metrics_derived"].value == 4  # "zeros" stays all NULL
    # Nothing changed: a second run writes no row.
    again = dg.materialize([campaign_results], instance=dagster_instance, resources=resources)
    [materialization] = again.asset_materializations_for_node("campaign_results")
    assert materialization.metadata["metrics_derived"].value == 0
    # A revised value is derived again.
    conn.execute(
        "UPDATE prediction_campaign_results SET clicks = 60 WHERE id = %s", (rows["plain"],)
    )
    with conn.transaction():
        refresh_results(conn, now=datetime.now(UTC), campaign_ids=[campaign])
    assert _derived(conn, rows["plain"])[:2] == (Decimal("0.0600"), Decimal("0.0500"))


def _predicted(conn, campaign, variants, at):
    """A prediction in force since `at`: A recommended; engagement is the primary metric."""
    for label, (success, engagement) in {
        "A": (0.7, 0.050),
        "B": (0.4, 0.040),
        "C": (0.3, 0.035),
    }.items():
        conn.execute(
            "UPDATE prediction_campaign_variants SET success_probability = %s,"
            " predicted_engagement = %s, predicted_conversion = 0.02 WHERE id = %s",
            (success, engagement, variants[label]),
        )
    conn.execute(
        "UPDATE prediction_campaigns SET predicted_at = %s, recommended_variant_id = %s,"
        " overall_success_probability = 0.7, factors = %s WHERE id = %s",
        (
            at,
            variants["A"],
            Jsonb({"primary_metric": "engagement_rate", "benchmark": {"rate": 0.045}}),
            campaign,
        ),
    )


def _scores(conn, result_id):
    return conn.execute(
        "SELECT predicted_success_probability, predicted_engagement_rate, benchmark_rate,"
        " success, prediction_error, prediction_direction_correct, scored_at IS NOT NULL"
        " FROM prediction_campaign_results WHERE id = %s",
        (result_id,),
    ).fetchone()


def test_rows_are_scored_against_the_prediction_in_force_when_recorded(conn):
    campaign, variants = make_campaign(conn, USER_ID, "Scored", variants=("A", "B", "C"))
    predicted_at = T0 + 3 * WEEK
    _predicted(conn, campaign, variants, predicted_at)
    after = predicted_at + timedelta(hours=1)
    engagement = {"A": 500, "B": 300, "C": 600}  # rates 0.05, 0.03, 0.06 of 10,000
    week = {
        label: _result(
            conn,
            campaign,
            variants[label],
            T0 + 2 * WEEK,
            after,
            impressions=10_000,
            engagements=count,
        )
        for label, count in engagement.items()
    }
    # Recorded before the prediction: that prediction had seen it, it is never scored.
    early = _result(
        conn,
        campaign,
        variants["A"],
        T0,
        predicted_at - timedelta(hours=1),
        impressions=10_000,
        engagements=450,
    )
    # A period where A and B tie.
    tie = {
        label: _result(
            conn, campaign, variants[label], T0 + WEEK, after, impressions=10_000, engagements=400
        )
        for label in ("A", "B")
    }
    with conn.transaction():
        report = refresh_results(conn, now=after, campaign_ids=[campaign])
    assert report.frozen == 6
    # A: predicted 0.05, actual 0.05 (error 0); recommended, but C beat it: wrong direction.
    assert _scores(conn, week["A"]) == (
        Decimal("0.7000"),
        Decimal("0.0500"),
        Decimal("0.0450"),
        True,
        Decimal("0.0000"),
        False,
        True,
    )
    # B: predicted 0.04, actual 0.03; below the benchmark; A did beat B: right.
    assert _scores(conn, week["B"]) == (
        Decimal("0.4000"),
        Decimal("0.0400"),
        Decimal("0.0450"),
        False,
        Decimal("0.0100"),
        True,
        True,
    )
    # C: predicted 0.035, actual 0.06; A did not beat C: wrong.
    assert _scores(conn, week["C"]) == (
        Decimal("0.3000"),
        Decimal("0.0350"),
        Decimal("0.0450"),
        True,
        Decimal("0.0250"),
        False,
        True,
    )
    assert _scores(conn, early) == (None, None, None, None, None, None, True)
    # A tie is not a win, on either row.
    assert [_scores(conn, tie[label])[5] for label in ("A", "B")] == [False, False]
    # Frozen once: a later prediction changes no stored score.
    _predicted(conn, campaign, variants, after + timedelta(hours=1))
    conn.execute(
        "UPDATE prediction_campaign_variants SET success_probability = 0.99 WHERE id = %s",
        (variants["B"],),
    )
    with conn.transaction():
        assert refresh_results(conn, now=after, campaign_ids=[campaign]).frozen == 0
    assert _scores(conn, week["B"])[0] == Decimal("0.4000")
