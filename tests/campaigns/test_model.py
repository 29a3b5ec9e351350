"""The prediction model: partial pooling against the closed-form Beta-binomial posterior (and a
numerical one), the success probability against simulation, and the linked events' part in each
relationship — through the database, as campaign_predictions computes them."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import special, stats

from predict_pipeline.campaigns import model
from predict_pipeline.campaigns.predict import predict_campaigns
from tests.support.campaigns import link, make_campaign, make_event, make_user
from tests.support.feeds import USER_ID

NOW = datetime(2025, 4, 1, tzinfo=UTC)
T0 = datetime(2025, 3, 3, tzinfo=UTC)


def _result(conn, campaign, variant, week, impressions, engagements, clicks=0, conversions=0):
    start = T0 + timedelta(weeks=week)
    conn.execute(
        "INSERT INTO prediction_campaign_results (campaign_id, variant_id, impressions,"
        " engagements, clicks, conversions, result_period_start, result_period_end, recorded_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            campaign,
            variant,
            impressions,
            engagements,
            clicks,
            conversions,
            start,
            start + timedelta(weeks=1),
            NOW - timedelta(days=1),
        ),
    )


def _factors(conn, variant):
    return conn.execute(
        "SELECT scoring_factors, success_probability::float8, predicted_engagement::float8"
        " FROM prediction_campaign_variants WHERE id = %s",
        (variant,),
    ).fetchone()


def test_partial_pooling_is_the_closed_form_beta_binomial_posterior(conn):
    # One tenant's tiktok/engagement group: two campaigns, three variants with results; a
    # variant with none; and another tenant's identical group, never pooled with this one.
    spring, ours = make_campaign(conn, USER_ID, "Spring", variants=("A", "B", "new"))
    autumn, theirs = make_campaign(conn, USER_ID, "Autumn", variants=("X",), status="COMPLETED")
    _result(conn, spring, ours["A"], 0, 20_000, 900, clicks=400, conversions=30)
    _result(conn, spring, ours["A"], 1, 10_000, 420, clicks=180, conversions=9)
    _result(conn, spring, ours["B"], 0, 5_000, 120, clicks=60, conversions=2)
    _result(conn, autumn, theirs["X"], 0, 40_000, 1_000, clicks=700, conversions=40)
    stranger = make_user(conn, "stranger")
    other, others = make_campaign(conn, stranger, "Elsewhere", variants=("Z",))
    _result(conn, other, others["Z"], 0, 1_000_000, 90_000)
    with conn.transaction():
        predict_campaigns(conn, now=NOW)

    for metric, (k, n) in {
        "engagement_rate": ({"A": 1320, "B": 120, "new": 0}, {"A": 30_000, "B": 5_000, "new": 0}),
        "conversion_rate": ({"A": 39, "B": 2, "new": 0}, {"A": 580, "B": 60, "new": 0}),
    }.items():
        prior = model.PRIORS[metric]
        extra_k, extra_n = (1000, 40_000) if metric == "engagement_rate" else (40, 700)
        group_k, group_n = sum(k.values()) + extra_k, sum(n.values()) + extra_n
        # Group: Beta(s0·m0 + K, s0·(1 − m0) + N − K); its mean is the benchmark.
        a_g = prior.strength * prior.mean + group_k
        b_g = prior.strength * (1 - prior.mean) + group_n - group_k
        m_g = a_g / (a_g + b_g)
        kappa = (1 - m_g) / (m_g * model.VARIANT_SPREAD_CV**2) - 1
        for label in ("A", "B", "new"):
            factors = _factors(conn, ours[label])[0][metric]
            a, b = kappa * m_g + k[label], kappa * (1 - m_g) + n[label] - k[label]
            assert factors["posterior_a"] == pytest.approx(a, rel=1e-6), (metric, label)
            assert factors["posterior_b"] == pytest.approx(b, rel=1e-6), (metric, label)
            assert factors["benchmark"] == pytest.approx(m_g, rel=1e-5)
            # The conjugate update is Bayes' rule: the same posterior numerically, prior
            # Beta(κ·m_g, κ·(1 − m_g)) times the binomial likelihood on a grid.
            grid = np.linspace(1e-6, 0.5, 400_001)
            weights = stats.beta.pdf(grid, kappa * m_g, kappa * (1 - m_g)) * stats.binom.pmf(
                k[label], n[label], grid
            )
            mean = np.sum(grid * weights) / np.sum(weights)
            assert a / (a + b) == pytest.approx(mean, rel=1e-4)
    # The stranger's campaign pooled only its own results.
    z = _factors(conn, others["Z"])[0]["engagement_rate"]
    assert z["benchmark"] == pytest.approx((1000 * 0.03 + 90_000) / (1000 + 1_000_000), rel=1e-5)


def test_digamma_and_trigamma_match_scipy():
    x = np.array([0.05, 0.3, 1.0, 2.5, 5.999, 6.0, 17.3, 350.0, 1e6])
    assert model.digamma(x) == pytest.approx(special.digamma(x), rel=1e-10, abs=1e-10)
    assert model.trigamma(x) == pytest.approx(special.polygamma(1, x), rel=1e-10)


@pytest.mark.parametrize(
    ("a", "b", "shift", "benchmark", "trials"),
    [
        (60.0, 1900.0, 0.0, 0.03, 20_000),
        (12.0, 260.0, 0.35, 0.05, 500),
        (4.0, 150.0, -0.6, 0.02, 300),
    ],
)
def test_success_probability_matches_a_simulation_of_the_next_period(
    a, b, shift, benchmark, trials
):
    rng = np.random.default_rng(11)
    draws = 400_000
    theta = rng.beta(a, b, draws)
    moved = 1 / (1 + np.exp(-(np.log(theta / (1 - theta)) + rng.normal(0, 0.15, draws) + shift)))
    observed = rng.binomial(trials, moved) / trials
    simulated = float(np.mean(observed >= benchmark))
    computed = float(model.success_probability(a, b, shift, benchmark, trials)[0])
    # The model reads the period's binomial noise as normal in log-odds: close, not exact.
    assert computed == pytest.approx(simulated, abs=0.02)


def test_neutral_successes_leave_unshifted_rows_alone_and_undo_a_shift():
    assert model.neutral_successes([450.0], [10_000.0], [0.0])[0] == 450.0
    moved = model.neutral_successes([450.0], [10_000.0], [0.4])[0]
    observed = (450.5) / 10_001
    expected = 10_000 / (1 + math.exp(-(math.log(observed / (1 - observed)) - 0.4)))
    assert moved == pytest.approx(expected)


def test_linked_events_in_each_relationship(conn):
    # Three tenants with identical campaigns and no results: only the links differ.
    owners = {rel: make_user(conn, rel) for rel in ("depends_on", "contraindicates", "monitors")}
    event = make_event(conn, "launch-approved", 0.8)
    private = make_event(conn, "someone-elses", 0.99, public=False)
    campaigns = {}
    for relationship, owner in owners.items():
        campaign, variants = make_campaign(conn, owner, f"Linked {relationship}", variants=("A",))
        link(conn, campaign, event, relationship)
        link(conn, campaign, private, "depends_on")  # not visible to its readers: ignored
        campaigns[relationship] = (campaign, variants["A"])
    alone, alone_variants = make_campaign(
        conn, make_user(conn, "alone"), "No links", variants=("A",)
    )
    with conn.transaction():
        predict_campaigns(conn, now=NOW)

    base = _factors(conn, alone_variants["A"])
    shifts = {
        "depends_on": 0.25 * math.log(0.8 / 0.2),  # the pooled probability, weight 0.25
        "contraindicates": 0.25 * math.log(0.2 / 0.8),  # the complement
        "monitors": 0.0,  # context only
    }
    m0 = model.PRIORS["engagement_rate"].mean
    for relationship, (campaign, variant) in campaigns.items():
        factors = conn.execute(
            "SELECT factors FROM prediction_campaigns WHERE id = %s", (campaign,)
        ).fetchone()[0]
        inputs = [i for i in factors["inputs"] if i["input"] == "linked_event"]
        assert [i["title"] for i in inputs] == ["Event launch-approved"]
        [item] = inputs
        assert item["relationship"] == relationship and item["probability"] == 0.8
        value = {"depends_on": 0.8, "contraindicates": 0.2, "monitors": None}[relationship]
        assert item["value"] == (pytest.approx(value) if value is not None else None)
        assert item["weight"] == (0.0 if relationship == "monitors" else model.EVENT_WEIGHT)
        assert item["log_odds_shift"] == pytest.approx(shifts[relationship], abs=1e-6)
        assert factors["event_shift"] == pytest.approx(shifts[relationship], abs=1e-6)
        _, success, engagement = _factors(conn, variant)
        # Without results the variant's rate is the group's (the prior mean), moved by the shift.
        expected = 1 / (1 + math.exp(-(math.log(m0 / (1 - m0)) + shifts[relationship])))
        assert engagement == pytest.approx(expected, abs=5e-5)
        if relationship == "monitors":
            assert (success, engagement) == base[1:]
    ordered = [_factors(conn, campaigns[r][1])[1] for r in shifts]
    assert ordered[0] > ordered[2] > ordered[1]  # depends_on > monitors > contraindicates
