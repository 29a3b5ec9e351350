"""Manipulation-flag detectors: one function per flag type, each over all scored events at once.

Every detector reads the interval's shared measurements (`measure.measure`: the series, robust
statistics and origins are defined there) and raises at most one Flag per event and interval;
`dedup_key` = "event_id|flag_type|interval_start" makes re-running an interval idempotent. A
"matching" NEWS signal has the sign of the move (positive sentiment = toward YES) and |value| >=
news_min_sentiment; all thresholds are TrustConfig fields.

Volume is read per venue (a market: source, source_event_id; `measure`'s venue volume), never
summed over an event's venues for a flag: a 9x spike on a venue trading a tenth of the event
shows as under 2x in the sum. An event none of whose venues has a baseline is read as a whole.

- VOLUME_SPIKE: on some venue, z_v, the robust z of ln(1 + the venue's interval volume) against
  its trailing intervals, exceeds volume_spike_z (3.5), and the volume is at least
  volume_spike_min_ratio (3) times its trailing median (a spike is a multiple, not the wobble of
  a very steady market); unless it is a news-driven repricing: at least volume_shared_share
  (half) of the event's other venues rose to >= volume_shared_ratio (1.5) times their own
  median, >= news_min_reports (2) reliable NEWS (reliability >= low_reliability) came in
  [interval_start - explain_lookback, interval_end), and the event's price jumped (jump z >=
  repricing_jump_z, 3). One flag per event, led by its strongest venue; the evidence names the
  venue, its ratio and baseline, every venue that hit, and the event-level sum.
- WASH_TRADING: (a) volume without price impact on a venue: z_v >= volume_spike_z and the
  venue's volume is >= wash_volume_ratio (3) times its trailing median while its own price
  (its MARKET_PRICE quotes; the event's where it quotes none) barely moved: |p_0 - p_-1| <=
  wash_max_move and no larger than usual (jump z <= wash_max_move_z, where known); a
  news-driven repricing (as above) is not; or (b) account round trips, where trades name the
  account (Manifold bets: `userId`, `outcome`, signed
  `amount`; redemptions ignored; a bet's price and volume signals are one trade; an account is
  its venue's): a trade in the
  opposite direction (YES vs NO, buy vs sell) to the same account's previous trade within
  wash_window is a round trip; at least wash_min_round_trips of them in the interval, carrying
  >= wash_min_share of its account-level amount. One flag; (b)'s evidence leads when both hold.
- INSIDER_TIMING: the event resolved YES or NO (outcome, or status RESOLVED_YES/NO); the
  interval overlaps [close - insider_window, close), close = the earlier of resolved_at and
  resolution_date; the interval's move toward the outcome is >= insider_min_move with jump z >=
  insider_jump_z; and no matching NEWS signal came between interval_start - explain_lookback and
  the move (the first price of the interval past half of it). Only known once the event
  resolves: re-run the intervals before close then.
- COORDINATED_ACTION: SOCIAL posts whose narratives are near-duplicates (Jaccard of word
  shingles >= narrative_similarity, joined transitively): >= coordination_min_signals of them
  within coordination_window from >= coordination_min_origins distinct origins (the source, or
  source/account when raw_data names the account), the window ending inside the interval. A
  cluster that repeats a reliable NEWS headline is people sharing news, not coordination.
- BOT_SENTIMENT: a burst, z_b = (A(c_0) - med A(c_k)) / max(1, 1.4826 MAD) >= burst_z with
  A(c) = 2 sqrt(c + 3/8) (Anscombe: Poisson counts at unit variance) and c_0 >=
  burst_min_signals; >= bot_min_share of the interval's SENTIMENT/SOCIAL weight from
  low-reliability (< low_reliability) or duplicate posts (not the first of their near-duplicate
  cluster); and no support for its direction (the sign of its weighted mean sentiment): no
  price move that way of >= support_min_move that is also unusual (jump z >= support_jump_z),
  and no matching NEWS of reliability >= low_reliability in [interval_start - explain_lookback,
  interval_end).
- NARRATIVE_PLANT: a NEWS signal in [interval_start - plant_lookback, interval_end) of
  reliability < low_reliability and |value| >= plant_min_sentiment; from the consensus just
  before it to the interval's end the probability moved >= plant_min_move its way, >=
  plant_jump_z hourly sigmas in logit (and had not yet by interval_start, so one plant is flagged
  once); no matching NEWS from another origin in [news - corroboration_window, interval_end).
- SOURCE_MANIPULATION: (a) an outlier: with >= 3 sources giving the event a probability
  (MARKET_PRICE, EXPERT or MANUAL), one that quoted in the interval stands >=
  source_outlier_gap from every other while the others agree within that gap, at each of its
  quotes for >= source_outlier_duration up to its last one (looking back at most
  source_outlier_lookback); or (b) a takeover: with >= 2 sources in the interval, one carries >=
  source_dominance_share of its weight x reliability, >= source_dominance_rise above its share of
  the trailing window, with >= source_flood_ratio times its mean weight per trailing interval.

Severity grows with strength = the weakest of a detector's statistic / threshold ratios: below 2
WARNING, below 4 ALERT, else CRITICAL. INFO is left for flags reviewers raise by hand.
"""

from __future__ import annotations

from predict_pipeline.trust.flags import Flag
from predict_pipeline.trust.market_detectors import (
    insider_timing,
    source_manipulation,
    volume_spike,
    wash_trading,
)
from predict_pipeline.trust.measure import Measurements
from predict_pipeline.trust.narrative_detectors import (
    bot_sentiment,
    coordinated_action,
    narrative_plant,
)

__all__ = ["DETECTORS", "Flag", "detect_all"]


def detect_all(m: Measurements) -> list[Flag]:
    """Every detector's flags, in (event_id, flag_type) order."""
    flags = [flag for detector in DETECTORS.values() for flag in detector(m)]
    return sorted(flags, key=lambda f: (f.event_id, f.flag_type))


DETECTORS = {
    "VOLUME_SPIKE": volume_spike,
    "WASH_TRADING": wash_trading,
    "INSIDER_TIMING": insider_timing,
    "COORDINATED_ACTION": coordinated_action,
    "BOT_SENTIMENT": bot_sentiment,
    "NARRATIVE_PLANT": narrative_plant,
    "SOURCE_MANIPULATION": source_manipulation,
}
