"""Trust scores: the five components of each scored event, the flags' penalties, the overall
score and the manipulation risk (the series and statistics are defined in `measure`).

Components, each in [0, 1]:
- source_diversity = H / ln k, H = -sum_s q_s ln q_s, where q_s is source s's share of the total
  weight x reliability of the interval's signals and k the number of distinct sources present;
  0 when k <= 1 (one source: nothing to diversify; k equal sources: exactly 1).
- volume_consistency = 1 / (1 + (z_v / volume_spike_z)^2), z_v = (ln(1 + v_0) - med) / sigma over
  ln(1 + v_k), floor volume_min_log_scale. Volumes are log-normal, so the MAD is calibrated on
  the log scale.
- temporal_consistency = 1 / (1 + (z_j (1 - e) / jump_z)^2), z_j = |d_0 - med| / sigma over the
  logit moves d_k = logit p_k - logit p_{k-1} (floor price_min_logit_scale), e = the highest
  reliability among the NEWS signals whose sentiment sign matches the move and the EXPERT
  forecasts beyond half the move on its side, in [interval_start - explain_lookback,
  interval_end): a jump a reliable signal explains is not penalised.
- market_integrity = f_agree x f_impact x f_accounts, with
  f_agree = 1 / (1 + (D / disagreement_scale)^2), D = the weighted mean |p_s - p_0| over the
  event's sources at the interval's end (1 with fewer than two sources);
  f_impact = 1 - 0.5 s^2 q, s = clip(z_v / volume_spike_z, 0, 1), q = clip(1 - |p_0 - p_-1| /
  (5 wash_max_move), 0, 1): volume that arrives without moving the price;
  f_accounts = 1 - the share of the interval's account-level trade amount (trades whose raw_data
  names the account, e.g. Manifold bets) that round-trips (see WASH_TRADING).
- sentiment_authenticity = A x f_burst over the interval's SENTIMENT, SOCIAL and NEWS signals:
  A = sum(weight x reliability / m) / sum(weight), m = the number of the interval's signals in
  the signal's near-duplicate narrative cluster (k copies count once); f_burst = 1 / (1 +
  (max(z_b, 0) / burst_z)^2), z_b the burst statistic of BOT_SENTIMENT. 1 with no such signals.

A raised flag multiplies each component it maps to (FLAG_COMPONENTS) by 1 - FLAG_PENALTY of its
severity: VOLUME_SPIKE -> volume_consistency; WASH_TRADING -> market_integrity; INSIDER_TIMING and
NARRATIVE_PLANT -> temporal_consistency; COORDINATED_ACTION and BOT_SENTIMENT ->
sentiment_authenticity; SOURCE_MANIPULATION -> source_diversity and market_integrity.

overall_score = 0.25 market_integrity + 0.20 sentiment_authenticity + 0.15 source_diversity
+ 0.20 volume_consistency + 0.20 temporal_consistency.
manipulation_risk = CRITICAL with a CRITICAL flag or overall_score < 0.25; else HIGH with an ALERT
flag, flags of two or more types, or overall_score < 0.45; else MEDIUM with any flag or
overall_score < 0.65; else LOW.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import (
    FLAG_COMPONENTS,
    FLAG_PENALTY,
    NARRATIVE_TYPES,
    OVERALL_WEIGHTS,
    SCORE_COLUMNS,
    SEVERITIES,
)
from predict_pipeline.trust.explain import interval_explanations
from predict_pipeline.trust.measure import Measurements


def source_diversity(current: pd.DataFrame, event_ids: pd.Index) -> pd.Series:
    """Normalised Shannon entropy of each event's weight x reliability per source."""
    per_source = current.groupby(["event_id", "source"])["w"].sum()
    total = per_source.groupby(level=0).transform("sum")
    share = (per_source / total.where(total > 0)).fillna(0.0)
    terms = -(share * np.log(share.where(share > 0, 1.0)))
    entropy = terms.groupby(level=0).sum()
    k = per_source.groupby(level=0).size()
    diversity = (entropy / np.log(k.where(k > 1))).where(total.groupby(level=0).first() > 0)
    return diversity.reindex(event_ids).fillna(0.0).clip(0.0, 1.0)


def _decay(z: pd.Series, scale: float) -> pd.Series:
    return (1.0 / (1.0 + (z / scale) ** 2)).fillna(1.0)


def raw_components(m: Measurements) -> pd.DataFrame:
    """The five components before flag penalties, one row per scored event."""
    cfg = m.config
    current = m.current()
    ids = m.event_ids

    volume = _decay(m.volume["z"], cfg.volume_spike_z)

    explained = interval_explanations(m)["reliability"].reindex(ids).fillna(0.0)
    temporal = _decay(m.move["jump_z"] * (1.0 - explained), cfg.jump_z)

    now = m.source_probability[0].dropna()
    weight = m.source_weight.reindex(now.index)
    p0 = m.probability[0].reindex(now.index.get_level_values(0)).to_numpy()
    deviation = (now - p0).abs() * weight
    disagreement = deviation.groupby(level=0).sum() / weight.groupby(level=0).sum()
    sources = now.groupby(level=0).size()
    agree = _decay(disagreement.where(sources > 1), cfg.disagreement_scale).reindex(ids)
    s = (m.volume["z"] / cfg.volume_spike_z).clip(0.0, 1.0).fillna(0.0)
    q = (1.0 - m.move["dp"].abs() / (5 * cfg.wash_max_move)).clip(0.0, 1.0).fillna(0.0)
    impact = 1.0 - 0.5 * s**2 * q
    accounts = 1.0 - m.wash["share"].reindex(ids).fillna(0.0)
    integrity = agree.fillna(1.0) * impact * accounts

    posts = current[current["signal_type"].isin(NARRATIVE_TYPES)]
    cluster = m.narratives.set_index("id")["cluster_size"]
    copies = cluster.reindex(posts["id"]).fillna(1.0).clip(lower=1.0).to_numpy()
    authentic = (posts["w"] / copies).groupby(posts["event_id"]).sum()
    total = posts.groupby("event_id")["weight"].sum()
    base = (authentic / total.where(total > 0)).reindex(ids).fillna(1.0)
    burst = _decay(m.burst["z"].clip(lower=0.0), cfg.burst_z)
    sentiment = base * burst

    return pd.DataFrame(
        {
            "market_integrity": integrity,
            "sentiment_authenticity": sentiment,
            "source_diversity": source_diversity(current, ids),
            "volume_consistency": volume,
            "temporal_consistency": temporal,
        },
        index=ids,
    ).clip(0.0, 1.0)


def score(raw: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """Apply the flags' penalties, combine the components, grade the manipulation risk.

    flags: one row per raised flag with event_id, flag_type and severity.
    """
    scores = raw.copy()
    if not flags.empty:
        for flag_type, components in FLAG_COMPONENTS.items():
            of_type = flags[flags["flag_type"] == flag_type]
            factor = (
                (1.0 - of_type["severity"].map(FLAG_PENALTY)).groupby(of_type["event_id"]).prod()
            )
            factor = factor.reindex(scores.index).fillna(1.0)
            for component in components:
                scores[component] = scores[component] * factor
    overall = sum(scores[c] * w for c, w in OVERALL_WEIGHTS.items())
    count = flags.groupby("event_id").size().reindex(scores.index).fillna(0).astype("int64")
    types = flags.groupby("event_id")["flag_type"].nunique().reindex(scores.index).fillna(0)
    rank = flags["severity"].map({s: i for i, s in enumerate(SEVERITIES)}).astype("float64")
    severity = rank.groupby(flags["event_id"]).max().reindex(scores.index).fillna(-1.0)
    critical = (severity >= SEVERITIES.index("CRITICAL")) | (overall < 0.25)
    high = (severity >= SEVERITIES.index("ALERT")) | (types >= 2) | (overall < 0.45)
    medium = (count > 0) | (overall < 0.65)
    scores["overall_score"] = overall.clip(0.0, 1.0)
    scores["manipulation_risk"] = np.select(
        [critical, high, medium], ["CRITICAL", "HIGH", "MEDIUM"], "LOW"
    )
    scores["flagged_activity"] = count > 0
    scores["flag_count"] = count
    return scores.reset_index(names="event_id")[SCORE_COLUMNS]
