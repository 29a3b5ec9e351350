"""Stage 4's vocabulary and settings: flag types, severities, components and their weights,
the input frames' columns, and TrustConfig (every window and threshold, with its default)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import timedelta

FLAG_TYPES = (
    "VOLUME_SPIKE",
    "WASH_TRADING",
    "INSIDER_TIMING",
    "COORDINATED_ACTION",
    "BOT_SENTIMENT",
    "NARRATIVE_PLANT",
    "SOURCE_MANIPULATION",
)
SEVERITIES = ("INFO", "WARNING", "ALERT", "CRITICAL")
COMPONENTS = (
    "market_integrity",
    "sentiment_authenticity",
    "source_diversity",
    "volume_consistency",
    "temporal_consistency",
)
OVERALL_WEIGHTS = {
    "market_integrity": 0.25,
    "sentiment_authenticity": 0.20,
    "source_diversity": 0.15,
    "volume_consistency": 0.20,
    "temporal_consistency": 0.20,
}
FLAG_PENALTY = {"INFO": 0.10, "WARNING": 0.25, "ALERT": 0.50, "CRITICAL": 0.75}
FLAG_COMPONENTS = {
    "VOLUME_SPIKE": ("volume_consistency",),
    "WASH_TRADING": ("market_integrity",),
    "INSIDER_TIMING": ("temporal_consistency",),
    "NARRATIVE_PLANT": ("temporal_consistency",),
    "COORDINATED_ACTION": ("sentiment_authenticity",),
    "BOT_SENTIMENT": ("sentiment_authenticity",),
    "SOURCE_MANIPULATION": ("source_diversity", "market_integrity"),
}
SCORE_COLUMNS = [
    "event_id",
    *COMPONENTS,
    "overall_score",
    "manipulation_risk",
    "flagged_activity",
    "flag_count",
]

MAD_SCALE = 1.4826  # makes the MAD a consistent estimate of a normal standard deviation
SENTIMENT_TYPES = ("SENTIMENT", "SOCIAL")
NARRATIVE_TYPES = ("SENTIMENT", "SOCIAL", "NEWS")
# raw_data keys that name the account behind a post or trade, most specific first.
ACCOUNT_KEYS = ("userId", "user_id", "author_id", "author", "username", "handle", "account")
SIGNAL_INPUT_COLUMNS = (
    "id",
    "event_id",
    "source",
    "source_event_id",
    "signal_type",
    "value",
    "weight",
    "reliability",
    "fetched_at",
    "narrative",
    "raw_data",
)
SNAPSHOT_INPUT_COLUMNS = (
    "event_id",
    "snapshot_at",
    "probability",
    "sentiment_score",
    "volume",
    "signal_count",
)
EVENT_INPUT_COLUMNS = ("event_id", "status", "resolution_date", "resolved_at", "outcome")
PROBABILITY_CLIP = 0.005  # logit of 0 or 1 is infinite; a settled market still moves this far


class TrustInputError(ValueError):
    """An input frame stage 4 cannot read; names the frame, the column and the fault."""

    def __init__(self, frame: str, reason: str):
        self.frame = frame
        self.reason = reason
        super().__init__(f"trust input {frame}: {reason}")


@dataclass(frozen=True, slots=True)
class TrustConfig:
    """Every window and threshold of stage 4; the defaults are the documented ones."""

    trailing_window: timedelta = timedelta(hours=24)  # the baseline before the interval
    snapshot_stamp: str = "start"  # snapshots stamped at their interval's "start" or "end"
    min_baseline_intervals: int = 6  # trailing values a robust statistic needs
    low_reliability: float = 0.5  # a source below this reliability is low-reliability
    news_min_sentiment: float = 0.1  # |NEWS value| from which a headline states a direction
    explain_lookback: timedelta = timedelta(hours=2)  # NEWS/EXPERT this recent explains a move
    max_related_signals: int = 50  # ids kept per flag (the evidence counts them all)
    # VOLUME_SPIKE and volume_consistency
    volume_spike_z: float = 3.5
    volume_min_log_scale: float = 0.1  # sigma floor of ln(1 + volume): a 10 % wobble
    volume_spike_min_ratio: float = 3.0  # a spike is also a multiple of the trailing median
    # A venue's rise is the news's when this share of its other venues rose ...
    volume_shared_share: float = 0.5
    volume_shared_ratio: float = 1.5  # ... to this multiple of their own trailing median ...
    news_min_reports: int = 2  # ... reliable NEWS reported it (within explain_lookback) ...
    repricing_jump_z: float = 3.0  # ... and the event's price jumped this far: a repricing
    # temporal_consistency and price jumps
    jump_z: float = 3.5
    price_min_logit_scale: float = 0.1  # sigma floor of hourly logit moves
    # WASH_TRADING and market_integrity
    wash_volume_ratio: float = 3.0  # interval volume / trailing median: "far above"
    wash_max_move: float = 0.01  # |p_0 - p_-1| that counts as "barely moved"
    wash_max_move_z: float = 1.0  # ... as does a move no larger than the market's usual one
    wash_window: timedelta = timedelta(minutes=30)  # an account's opposite trade this soon
    wash_min_round_trips: int = 3
    wash_min_share: float = 0.3  # of the interval's account-level trade amount
    disagreement_scale: float = 0.1  # D at which f_agree is 1/2
    # INSIDER_TIMING
    insider_window: timedelta = timedelta(hours=12)  # before resolution or scheduled close
    insider_min_move: float = 0.10  # probability points toward the outcome
    insider_jump_z: float = 3.0
    # COORDINATED_ACTION (and the near-duplicate clusters sentiment_authenticity uses)
    narrative_similarity: float = 0.6  # Jaccard of word shingles
    narrative_shingle: int = 2  # words per shingle
    coordination_window: timedelta = timedelta(minutes=10)
    coordination_min_signals: int = 5
    coordination_min_origins: int = 3
    # BOT_SENTIMENT
    burst_z: float = 3.5
    burst_min_signals: int = 8
    bot_min_share: float = 0.6  # of the burst's weight from low-reliability or duplicate posts
    support_min_move: float = 0.02  # a price move this large its way supports a burst ...
    support_jump_z: float = 2.0  # ... when it is also unusual (jump z) for the market
    # NARRATIVE_PLANT
    plant_lookback: timedelta = timedelta(hours=1)  # news this far before the interval qualifies
    plant_min_sentiment: float = 0.3
    plant_min_move: float = 0.08
    plant_jump_z: float = 3.0
    corroboration_window: timedelta = timedelta(hours=2)  # before the news, up to interval end
    # SOURCE_MANIPULATION
    source_outlier_gap: float = 0.15  # from every other source, which agree within this
    source_outlier_duration: timedelta = timedelta(minutes=30)
    source_outlier_lookback: timedelta = timedelta(hours=6)
    source_dominance_share: float = 0.75
    source_dominance_rise: float = 0.25  # over the source's trailing-window share
    source_flood_ratio: float = 3.0  # its interval weight / its mean weight per trailing interval

    def __post_init__(self) -> None:
        if self.snapshot_stamp not in ("start", "end"):
            raise ValueError(
                f"TrustConfig.snapshot_stamp must be 'start' or 'end', got {self.snapshot_stamp!r}"
            )
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, timedelta) and value <= timedelta(0):
                raise ValueError(f"TrustConfig.{f.name} must be a positive duration, got {value}")
            if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
                raise ValueError(f"TrustConfig.{f.name} must be positive, got {value!r}")
        for name in (
            "low_reliability",
            "narrative_similarity",
            "bot_min_share",
            "wash_min_share",
            "source_dominance_share",
            "volume_shared_share",
        ):
            if getattr(self, name) > 1:
                raise ValueError(f"TrustConfig.{name} must be at most 1, got {getattr(self, name)}")


def nanoseconds(span: timedelta) -> int:
    return span // timedelta(microseconds=1) * 1000
