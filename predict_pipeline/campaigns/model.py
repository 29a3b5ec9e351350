"""The campaign prediction model: frames in, frames out (no database, no Dagster).

Two rates are modelled, each as successes out of trials:

- engagement_rate = engagements / impressions
- conversion_rate = conversions / clicks

A campaign's type picks its primary rate (PRIMARY_METRIC): conversion and retention campaigns
are judged on conversion rate, the others (brand_awareness, engagement, launch, none) on
engagement rate.

**Partial pooling** (Beta-binomial, empirical Bayes in two levels, per rate). Results are
pooled within a *group*: one tenant (an org's campaigns, or a user's campaigns outside any
org: no prediction ever reads another tenant's results), one platform, one campaign type.

1. Group: Beta(a_g, b_g) with a_g = s0·m0 + K_g, b_g = s0·(1 − m0) + N_g − K_g, where K_g and
   N_g are the group's successes and trials and (m0, s0) the rate's prior (PRIORS: a mean and
   a strength in pseudo-trials). The group's rate m_g = a_g / (a_g + b_g) is the *benchmark*.
2. Unit (a variant, or a campaign without variants): Beta(a, b) with a = κ·m_g + k,
   b = κ·(1 − m_g) + n − k, its own successes k out of n trials shrunk toward the group's rate
   with κ = (1 − m_g) / (m_g·cv²) − 1 pseudo-trials: the prior that variants of one group
   spread around its rate with a coefficient of variation cv = VARIANT_SPREAD_CV. The own
   results weigh n / (n + κ), the group κ / (n + κ).

**Linked events** move a campaign's rates in log-odds: a `depends_on` event contributes its
pooled probability p, a `contraindicates` event the complement 1 − p, each clipped to
EVENT_CLIP, with the weight EVENT_WEIGHT: shift δ = Σ weight·logit(value). A `monitors` event
is listed as context with weight 0; an event without a probability yet contributes nothing.
Results are measured under the shift of their own time (`event_shift`, frozen on each result
row when the loop first sees it), so before pooling each row's successes are taken back to a
neutral environment: k' = n·σ(logit((k + ½)/(n + 1)) − event_shift) (k' = k when the shift is
0). The prediction then adds today's δ, so an event's effect is never counted twice.

**Predictions** of a unit: predicted rate = σ(logit(a / (a + b)) + δ) for each rate; success
probability = P(the next period's primary rate reaches the benchmark)
= Φ((ψ(a) − ψ(b) + δ − logit(m_g)) / √(ψ′(a) + ψ′(b) + τ² + 1 / (n̄·r·(1 − r)))), the logit of a
Beta variable having mean ψ(a) − ψ(b) and variance ψ′(a) + ψ′(b) (digamma, trigamma), plus a
period-to-period drift τ = PERIOD_DRIFT_SD in log-odds and the binomial noise of a period of
n̄ trials (the unit's mean trials per result, else its group's, else the prior's
`period_trials`) at the predicted rate r; m_g there is read with a continuity correction,
(⌈m_g·n̄⌉ − ½) / n̄, since a period reaches the benchmark with ⌈m_g·n̄⌉ successes. A campaign
recommends the variant with the highest success probability (then the higher predicted
primary rate, then the label); its overall success probability is the recommended variant's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MODEL_VERSION = "beta-binomial-v1"
METRICS = ("engagement_rate", "conversion_rate")
# metric -> (successes column, trials column) of prediction_campaign_results
METRIC_COUNTS = {
    "engagement_rate": ("engagements", "impressions"),
    "conversion_rate": ("conversions", "clicks"),
}
PRIMARY_METRIC = {
    "conversion": "conversion_rate",
    "retention": "conversion_rate",
    "brand_awareness": "engagement_rate",
    "engagement": "engagement_rate",
    "launch": "engagement_rate",
}
DEFAULT_PRIMARY_METRIC = "engagement_rate"  # a campaign without a type


@dataclass(frozen=True, slots=True)
class RatePrior:
    """The prior of one rate: a group without results has `mean`; `strength` is how many
    trials of evidence that mean is worth; `period_trials` the trials of a period when no
    result says otherwise."""

    mean: float
    strength: float
    period_trials: float


# A typical social-ad engagement rate (3 %) and landing conversion rate (5 %), each held
# weakly: a group's own results outweigh the prior after 1,000 impressions / 200 clicks.
PRIORS = {
    "engagement_rate": RatePrior(mean=0.03, strength=1_000, period_trials=20_000),
    "conversion_rate": RatePrior(mean=0.05, strength=200, period_trials=500),
}
VARIANT_SPREAD_CV = 0.3  # variants of one group: rates about ±30 % around the group's
PERIOD_DRIFT_SD = 0.15  # a variant's rate moves this much (log-odds sd) from period to period
EVENT_WEIGHT = 0.25  # log-odds of rate per unit of logit(event value)
EVENT_CLIP = (0.01, 0.99)
RELATIONSHIPS = ("depends_on", "contraindicates", "monitors")


def success_definition(metric: str) -> str:
    return (
        f"the variant's {metric.replace('_', ' ')} in a result period reaches the benchmark "
        "(its platform and campaign type group's pooled rate, frozen with the prediction)"
    )


def primary_metric(campaign_type: str | None) -> str:
    return PRIMARY_METRIC.get(campaign_type or "", DEFAULT_PRIMARY_METRIC)


# ---------------------------------------------------------------------------------------------
# Closed forms


def logit(p: np.ndarray | float) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def normal_cdf(z: np.ndarray | float) -> np.ndarray:
    values = np.atleast_1d(np.asarray(z, dtype=float))
    return np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in values])


_ASYMPTOTIC_FROM = 10.0  # the series below are accurate to about 1e-13 from here on


def digamma(x: np.ndarray | float) -> np.ndarray:
    """ψ(x) for x > 0: the recurrence ψ(x) = ψ(x + 1) − 1/x up to x ≥ 10, then the asymptotic
    series (relative error below 1e-12 there)."""
    x = np.atleast_1d(np.asarray(x, dtype=float)).copy()
    result = np.zeros_like(x)
    small = x < _ASYMPTOTIC_FROM
    while small.any():
        result[small] -= 1.0 / x[small]
        x[small] += 1.0
        small = x < _ASYMPTOTIC_FROM
    inverse2 = 1.0 / (x * x)
    series = inverse2 * (
        1 / 12 - inverse2 * (1 / 120 - inverse2 * (1 / 252 - inverse2 * (1 / 240 - inverse2 / 132)))
    )
    return result + np.log(x) - 0.5 / x - series


def trigamma(x: np.ndarray | float) -> np.ndarray:
    """ψ′(x) for x > 0: ψ′(x) = ψ′(x + 1) + 1/x² up to x ≥ 10, then the asymptotic series."""
    x = np.atleast_1d(np.asarray(x, dtype=float)).copy()
    result = np.zeros_like(x)
    small = x < _ASYMPTOTIC_FROM
    while small.any():
        result[small] += 1.0 / (x[small] * x[small])
        x[small] += 1.0
        small = x < _ASYMPTOTIC_FROM
    inverse = 1.0 / x
    inverse2 = inverse * inverse
    series = (
        inverse
        + inverse2 / 2
        + inverse * inverse2 * (1 / 6 - inverse2 * (1 / 30 - inverse2 * (1 / 42 - inverse2 / 30)))
    )
    return result + series


def group_posterior(successes, trials, prior: RatePrior) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a_g, b_g) of a group's rate from its pooled successes and trials."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    return prior.strength * prior.mean + k, prior.strength * (1.0 - prior.mean) + n - k


def variant_strength(group_mean) -> np.ndarray:
    """κ: the pseudo-trials behind the group's rate at the unit level (at least 1)."""
    m = np.asarray(group_mean, dtype=float)
    return np.maximum((1.0 - m) / (m * VARIANT_SPREAD_CV**2) - 1.0, 1.0)


def unit_posterior(successes, trials, group_mean) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) of a unit's rate: its own results with the group's rate as the prior."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    m = np.asarray(group_mean, dtype=float)
    kappa = variant_strength(m)
    return kappa * m + k, kappa * (1.0 - m) + n - k


def neutral_successes(successes, trials, event_shift) -> np.ndarray:
    """Successes taken back to a neutral environment (see the module docstring)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    shift = np.asarray(event_shift, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = n * sigmoid(logit((k + 0.5) / (n + 1.0)) - shift)
    return np.where(shift == 0.0, k, moved)


def success_probability(a, b, shift, benchmark, period_trials) -> np.ndarray:
    """P(next period's rate ≥ benchmark) of units with Beta(a, b) rates under `shift`."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    shift = np.asarray(shift, dtype=float)
    trials = np.asarray(period_trials, dtype=float)
    rate = sigmoid(logit(a / (a + b)) + shift)
    variance = trigamma(a) + trigamma(b) + PERIOD_DRIFT_SD**2 + 1.0 / (trials * rate * (1.0 - rate))
    # Continuity: a period reaches b with ⌈b·n⌉ successes, read halfway below that count.
    needed = np.ceil(np.asarray(benchmark, dtype=float) * trials - 1e-9)
    threshold = np.clip((needed - 0.5) / trials, 1e-9, 1.0 - 1e-9)
    z = (digamma(a) - digamma(b) + shift - logit(threshold)) / np.sqrt(variance)
    return normal_cdf(z)


def event_contribution(relationship: str, probability: float | None) -> dict[str, Any]:
    """What one linked event puts into a prediction: value, weight and log-odds shift."""
    if relationship not in RELATIONSHIPS:
        raise ValueError(f"unknown relationship {relationship!r}")
    if relationship == "monitors" or probability is None or math.isnan(probability):
        note = "context only" if relationship == "monitors" else "no probability yet"
        return {"value": None, "weight": 0.0, "log_odds_shift": 0.0, "note": note}
    value = probability if relationship == "depends_on" else 1.0 - probability
    clipped = min(max(value, EVENT_CLIP[0]), EVENT_CLIP[1])
    shift = EVENT_WEIGHT * float(logit(clipped))
    return {"value": value, "weight": EVENT_WEIGHT, "log_odds_shift": shift, "note": None}


# ---------------------------------------------------------------------------------------------
# The model over frames


@dataclass(frozen=True, slots=True)
class Predictions:
    """`units`: one row per unit (variant, or a campaign without variants) that is predicted;
    `campaigns`: one row per predicted campaign, with its factors (JSON-ready)."""

    units: pd.DataFrame
    campaigns: pd.DataFrame


UNIT_COLUMNS = ("campaign_id", "variant_id", "label", "group", "primary_metric", "predict")
RESULT_COLUMNS = (
    "campaign_id",
    "variant_id",
    "impressions",
    "engagements",
    "clicks",
    "conversions",
    "event_shift",
)
LINK_COLUMNS = ("campaign_id", "event_id", "title", "relationship", "probability")


def _unit_key(frame: pd.DataFrame) -> pd.Series:
    variant = frame["variant_id"].astype(object).where(frame["variant_id"].notna(), "")
    return frame["campaign_id"].astype(str) + "/" + variant.astype(str)


def pooled_counts(units: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per unit and rate: neutral successes, trials and result rows (usable rows only: a rate's
    trials > 0 and 0 ≤ successes ≤ trials)."""
    frame = units[["campaign_id", "variant_id"]].copy()
    frame["key"] = _unit_key(units)
    rows = results.copy()
    rows["key"] = _unit_key(rows)
    shift = rows["event_shift"].fillna(0.0).astype(float)
    for metric, (successes, trials) in METRIC_COUNTS.items():
        k = pd.to_numeric(rows[successes], errors="coerce").astype(float)
        n = pd.to_numeric(rows[trials], errors="coerce").astype(float)
        usable = (n > 0) & (k >= 0) & (k <= n)
        neutral = neutral_successes(k.fillna(0), n.fillna(1), shift)
        rows[f"{metric}_k"] = np.where(usable, neutral, 0.0)
        rows[f"{metric}_n"] = np.where(usable, n, 0.0)
        rows[f"{metric}_rows"] = usable.astype(float)
    sums = rows.groupby("key")[[f"{m}_{s}" for m in METRICS for s in ("k", "n", "rows")]].sum()
    return frame.join(sums, on="key").fillna(
        {f"{m}_{s}": 0.0 for m in METRICS for s in ("k", "n", "rows")}
    )


def predict(units: pd.DataFrame, results: pd.DataFrame, links: pd.DataFrame) -> Predictions:
    """Predictions for the units marked `predict`, pooling every unit's results by group."""
    counts = pooled_counts(units, results)
    frame = units.reset_index(drop=True).copy()
    for column in counts.columns:
        if column not in ("campaign_id", "variant_id"):
            frame[column] = counts[column].to_numpy()
    shifts = _event_shifts(links)
    frame["event_shift"] = frame["campaign_id"].astype(str).map(shifts["shift"]).fillna(0.0)
    for metric in METRICS:
        prior = PRIORS[metric]
        group = frame.groupby("group")[[f"{metric}_k", f"{metric}_n", f"{metric}_rows"]].sum()
        a_g, b_g = group_posterior(group[f"{metric}_k"], group[f"{metric}_n"], prior)
        group_mean = pd.Series(a_g / (a_g + b_g), index=group.index)
        group_period = pd.Series(
            np.where(
                group[f"{metric}_rows"] > 0,
                group[f"{metric}_n"] / group[f"{metric}_rows"].where(group[f"{metric}_rows"] > 0),
                prior.period_trials,
            ),
            index=group.index,
        )
        m_g = frame["group"].map(group_mean).to_numpy(dtype=float)
        a, b = unit_posterior(frame[f"{metric}_k"], frame[f"{metric}_n"], m_g)
        own_rows = frame[f"{metric}_rows"].to_numpy(dtype=float)
        period = np.where(
            own_rows > 0,
            frame[f"{metric}_n"].to_numpy(dtype=float) / np.maximum(own_rows, 1.0),
            frame["group"].map(group_period).to_numpy(dtype=float),
        )
        frame[f"{metric}_a"], frame[f"{metric}_b"] = a, b
        frame[f"{metric}_benchmark"] = m_g
        frame[f"{metric}_group_trials"] = frame["group"].map(group[f"{metric}_n"]).to_numpy()
        frame[f"{metric}_group_rows"] = frame["group"].map(group[f"{metric}_rows"]).to_numpy()
        frame[f"{metric}_kappa"] = variant_strength(m_g)
        frame[f"{metric}_predicted"] = sigmoid(logit(a / (a + b)) + frame["event_shift"])
        frame[f"{metric}_success"] = success_probability(a, b, frame["event_shift"], m_g, period)
    primary = frame["primary_metric"]
    frame["success_probability"] = np.where(
        primary == "conversion_rate",
        frame["conversion_rate_success"],
        frame["engagement_rate_success"],
    )
    frame["primary_predicted"] = np.where(
        primary == "conversion_rate",
        frame["conversion_rate_predicted"],
        frame["engagement_rate_predicted"],
    )
    chosen = frame[frame["predict"].astype(bool)].copy()
    return Predictions(units=chosen, campaigns=_campaigns(chosen, links, shifts))


def _event_shifts(links: pd.DataFrame) -> pd.DataFrame:
    """Per campaign: the summed log-odds shift of its linked events."""
    if links.empty:
        return pd.DataFrame({"shift": pd.Series(dtype=float)})
    shifts = [
        event_contribution(relationship, None if pd.isna(p) else float(p))["log_odds_shift"]
        for relationship, p in zip(links["relationship"], links["probability"], strict=True)
    ]
    frame = pd.DataFrame({"campaign_id": links["campaign_id"].astype(str), "shift": shifts})
    return frame.groupby("campaign_id")[["shift"]].sum()


def _campaigns(units: pd.DataFrame, links: pd.DataFrame, shifts: pd.DataFrame) -> pd.DataFrame:
    if units.empty:
        return pd.DataFrame(
            columns=["campaign_id", "recommended_variant_id", "overall", "explanation", "factors"]
        )
    ranked = units.assign(
        _label=units["label"].fillna(""), _variant=units["variant_id"].astype(str)
    ).sort_values(
        ["campaign_id", "success_probability", "primary_predicted", "_label", "_variant"],
        ascending=[True, False, False, True, True],
        kind="mergesort",
    )
    best = ranked.groupby("campaign_id", sort=False).head(1)
    links_by_campaign = {
        str(c): group for c, group in links.groupby(links["campaign_id"].astype(str))
    }
    rows = []
    for unit in best.itertuples(index=False):
        campaign_links = links_by_campaign.get(str(unit.campaign_id), links.iloc[0:0])
        variants = units[units["campaign_id"] == unit.campaign_id]
        factors = _factors(unit, campaign_links, variants)
        rows.append(
            {
                "campaign_id": unit.campaign_id,
                "recommended_variant_id": unit.variant_id
                if unit.variant_id is not None and not pd.isna(unit.variant_id)
                else None,
                "overall": float(unit.success_probability),
                "explanation": _explanation(unit, factors),
                "factors": factors,
            }
        )
    return pd.DataFrame(rows)


def _factors(unit: Any, links: pd.DataFrame, variants: pd.DataFrame) -> dict[str, Any]:
    metric = unit.primary_metric
    n = float(getattr(unit, f"{metric}_n"))
    kappa = float(getattr(unit, f"{metric}_kappa"))
    own_rate = float(getattr(unit, f"{metric}_k")) / n if n > 0 else None
    inputs: list[dict[str, Any]] = [
        {
            "input": "own_results",
            "variant_id": None if pd.isna(unit.variant_id) else str(unit.variant_id),
            "label": unit.label if isinstance(unit.label, str) else None,
            "rate": _round(own_rate),
            "trials": int(n),
            "weight": _round(n / (n + kappa)),
        },
        {
            "input": "group_results",
            "rate": _round(getattr(unit, f"{metric}_benchmark")),
            "trials": int(getattr(unit, f"{metric}_group_trials")),
            "weight": _round(kappa / (n + kappa)),
        },
    ]
    for link in links.itertuples(index=False):
        probability = None if pd.isna(link.probability) else float(link.probability)
        contribution = event_contribution(link.relationship, probability)
        inputs.append(
            {
                "input": "linked_event",
                "event_id": str(link.event_id),
                "title": link.title,
                "relationship": link.relationship,
                "probability": _round(probability),
                "value": _round(contribution["value"]),
                "weight": contribution["weight"],
                "log_odds_shift": _round(contribution["log_odds_shift"]),
                **({"note": contribution["note"]} if contribution["note"] else {}),
            }
        )
    return {
        "model": MODEL_VERSION,
        "primary_metric": metric,
        "success": success_definition(metric),
        "benchmark": {
            "rate": _round(getattr(unit, f"{metric}_benchmark")),
            "group_results": int(getattr(unit, f"{metric}_group_rows")),
            "group_trials": int(getattr(unit, f"{metric}_group_trials")),
        },
        "event_shift": _round(unit.event_shift),
        "inputs": inputs,
        "forecast": {
            "variant_id": None if pd.isna(unit.variant_id) else str(unit.variant_id),
            "engagement_rate": _round(unit.engagement_rate_predicted),
            "conversion_rate": _round(unit.conversion_rate_predicted),
            "success_probability": _round(unit.success_probability),
        },
        "variants": [
            {
                "variant_id": str(v.variant_id),
                "label": v.label,
                "success_probability": _round(v.success_probability),
                "predicted_rate": _round(v.primary_predicted),
            }
            for v in variants.itertuples(index=False)
            if not pd.isna(v.variant_id)
        ],
        "priors": {
            "rate": {"mean": PRIORS[metric].mean, "strength": PRIORS[metric].strength},
            "variant_spread_cv": VARIANT_SPREAD_CV,
            "variant_strength": _round(kappa),
            "period_drift_sd": PERIOD_DRIFT_SD,
            "event_weight": EVENT_WEIGHT,
        },
    }


def _explanation(unit: Any, factors: dict[str, Any]) -> str:
    metric = factors["primary_metric"].replace("_", " ")
    who = f"variant {unit.label!r}" if isinstance(unit.label, str) else "the campaign"
    events = [i for i in factors["inputs"] if i["input"] == "linked_event" and i["weight"]]
    moved = f"; linked events shift it by {unit.event_shift:+.2f} log-odds" if events else ""
    return (
        f"{unit.success_probability:.0%} that {who} reaches the {metric} benchmark of "
        f"{factors['benchmark']['rate']:.2%} (predicted {unit.primary_predicted:.2%}; own results "
        f"weigh {factors['inputs'][0]['weight']:.0%}, the group's "
        f"{factors['inputs'][1]['weight']:.0%}{moved})."
    )


def unit_reasoning(unit: Any) -> str:
    """One sentence on a variant row: its predicted rates and success probability."""
    metric = unit.primary_metric.replace("_", " ")
    return (
        f"{unit.success_probability:.0%} to reach the {metric} benchmark; predicted engagement "
        f"{unit.engagement_rate_predicted:.2%}, conversion {unit.conversion_rate_predicted:.2%}."
    )


def scoring_factors(unit: Any) -> dict[str, Any]:
    """A variant's posterior per rate, for prediction_campaign_variants.scoring_factors."""
    return {
        "model": MODEL_VERSION,
        "primary_metric": unit.primary_metric,
        "event_shift": _round(unit.event_shift),
        **{
            metric: {
                "own_successes": _round(getattr(unit, f"{metric}_k")),
                "own_trials": int(getattr(unit, f"{metric}_n")),
                "posterior_a": _round(getattr(unit, f"{metric}_a")),
                "posterior_b": _round(getattr(unit, f"{metric}_b")),
                "benchmark": _round(getattr(unit, f"{metric}_benchmark")),
                "predicted": _round(getattr(unit, f"{metric}_predicted")),
                "success_probability": _round(getattr(unit, f"{metric}_success")),
            }
            for metric in METRICS
        },
    }


def _round(value: Any, digits: int = 6) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else round(number, digits)
