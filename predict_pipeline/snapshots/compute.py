"""Stage 3: per-event snapshots of each hourly interval, computed set-based in PostgreSQL.

For every ACTIVE event with signals in an interval, or with an earlier state to carry forward,
one `prediction_snapshots` row at the interval's end (`snapshot_at` = interval end, UTC); a
resolved or cancelled event gets them too for the intervals up to the one its resolution falls
in, so history that arrives after the resolution is snapshotted like any other:

**Pooled probability.** MARKET_PRICE, EXPERT and MANUAL signals are pooled in log-odds space:

    w_i   = weight_i × reliability_i × 0.5 ^ ((snapshot_at − fetched_at_i) / half_life)
    p_i'  = clip(p_i, ε, 1 − ε)                                    (ε = 0.001)
    L     = Σ w_i · ln(p_i' / (1 − p_i')) / Σ w_i
    p     = 1 / (1 + e^(−α·L))                                     (α = extremizing factor, 1 = off)

Each source is pooled the same way first (its own L_s and weight W_s = Σ w_i of the source);
L = Σ W_s·L_s / Σ W_s is the same number, and the per-source probabilities give divergence and
each market's edge. An event with no probability signal in the interval carries its last
probability forward (counted as carried forward in the materialisation's metadata), never a
fabricated value; an event with no state at all gets no row.

**Sentiment** = Σ w_i·v_i / Σ w_i over SENTIMENT, SOCIAL and NEWS signals with a value, in
[−1, 1]. **Volume** = the interval's traded volume, back in source units (× 1000: signals
hold thousands), as an integer: VOLUME values that are flows are summed; a market's lifetime
total (`raw_data.volume_scope` "lifetime_…", a level that grows with every poll) contributes
its increase — its last total in the interval minus its last total before (within a day),
or minus its first total in the interval when none is known; never negative.
**signal_count** = every signal of the interval.

**Volatility** = min(1, σ / 1.0) where σ is the sample standard deviation of the interval-to-
interval changes of L over the trailing 24 intervals (stored snapshots before the batch
included); one log-odds unit of typical hourly change is the top of the scale, a flat series
is 0, fewer than two changes is 0.

**Divergence** from the spread between sources' pooled probabilities (max − min, rounded to 6
decimals so the edges are exact): NONE < 0.05 ≤ LOW < 0.10 ≤ MEDIUM < 0.20 ≤ HIGH < 0.35 ≤
EXTREME; a single source is NONE.

**Confidence**: VERY_HIGH with ≥ 3 sources, ≥ 20 signals and volatility < 0.10; HIGH with ≥ 2
sources, ≥ 10 signals and volatility < 0.25; MEDIUM with ≥ 3 signals and volatility < 0.50;
LOW otherwise (a carried-forward state is LOW).

**Edge** of a market (source, source_event_id) = its latest MARKET_PRICE in the interval − the
interval's stored pooled probability, written to prediction_market_edges (sql/0135) by the
statement that writes the snapshots, from the quotes the pooling aggregate gathers on its one
pass over the signals; a market without a price in an interval has no edge there.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from predict_pipeline.db.rows import one_row
from predict_pipeline.model import PROBABILITY_TYPES
from predict_pipeline.retention.partitions import make_partitions_between

INTERVAL = timedelta(hours=1)
CLIP_EPSILON = 0.001
VOLATILITY_WINDOW = 24
VOLATILITY_SCALE = 1.0


@dataclass(frozen=True, slots=True)
class PoolingSettings:
    half_life_minutes: float = 60.0
    extremize: float = 1.0  # 1 = off; > 1 pushes the pooled probability away from 0.5
    # How far back an earlier state may be carried forward into an interval with no signal.
    carry_forward_days: int = 30


@dataclass(frozen=True, slots=True)
class SnapshotBatch:
    """What compute_snapshots wrote: the snapshots at the ends of the hourly intervals in
    [start, end), pooled with `settings`. Readers of the batch (explanations) read
    prediction_snapshots in that window; nothing of the compute outlives its call."""

    snapshots: int
    events: int
    market_edges: int
    carried_forward: int
    intervals: int
    start: datetime
    end: datetime
    settings: PoolingSettings
    # The largest probability moves, when asked for: title, probability, previous, divergence,
    # confidence, carried_forward.
    largest_moves: tuple[tuple, ...] = ()


# The batch's events are cut into this many ranges of ids, each aggregated whole by its own
# process (every formula is per event); see compute_snapshots for the planner setting.
EVENT_RANGES = 2
# Raised for the compute so that the planner parallelises those ranges whole (a parallel append)
# rather than splitting each range's scan and merging partial aggregates: with about one signal
# per group, partial aggregates merge almost as many rows as they read, which costs more than
# it saves. A small batch stays serial; the results are the same either way.
_PARALLEL_SETUP_COST = 80000
# Up to this many distinct sources, each source's pool is a pair of filtered sums in the one
# (event, interval) aggregate; with more, a per-(event, interval, source) aggregate comes first.
SOURCE_SLOTS = 12

# One row per signal of the batch with its terms computed once. The UNION ALL with an empty
# copy keeps the planner from copying these expressions into every aggregate that reads them (a
# plain subquery is flattened into its parent; OFFSET 0 would keep it, but rules out a parallel
# scan). A probability signal's slot is its source's place in %(sources)s; a source missing
# from it (one that appeared after the list was read) fails the cast, and the caller retries.
_SIGNAL_TERMS = """
SELECT s.event_id, s.source, s.value::float8 AS v,{extra}
       date_bin('1 hour', s.fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
         + interval '1 hour' AS snapshot_at,
       coalesce(s.weight::float8, 1) * coalesce(s.reliability::float8, 1)
         * exp(-0.6931471805599453
               * date_part('epoch', date_bin('1 hour', s.fetched_at,
                                             TIMESTAMPTZ '2000-01-01 00:00:00+00')
                                    + interval '1 hour' - s.fetched_at)
               / (60.0 * %(half_life)s)) AS w,
       -- A MANUAL signal may come without a value: it is counted, never pooled.
       s.signal_type IN (PROBABILITY_TYPES) AND s.value IS NOT NULL AS prob,
       {slot} AS slot,
       s.signal_type IN ('SENTIMENT', 'SOCIAL', 'NEWS') AND s.value IS NOT NULL AS sentiment,
       s.signal_type = 'VOLUME'
         AND coalesce(s.raw_data->>'volume_scope', '') NOT LIKE 'lifetime%%' AS flow_volume,
       -- A market's price (read into prediction_market_edges with the snapshot it differs from).
       CASE WHEN s.signal_type = 'MARKET_PRICE' AND s.value IS NOT NULL
                 AND s.source_event_id IS NOT NULL
            THEN ROW(s.source, s.source_event_id, s.fetched_at, s.value)::prediction_market_quote
       END AS quote
FROM prediction_signals s
WHERE s.fetched_at >= %(start)s AND s.fetched_at < %(end)s{event_range}
"""
_SLOT = """CASE WHEN s.signal_type IN (PROBABILITY_TYPES) AND s.value IS NOT NULL
            THEN coalesce(array_position(%(sources)s::text[], s.source),
                          ('source not in the slots: ' || s.source)::int) END"""

# The probability types, as model.PROBABILITY_TYPES names them (SQL literals of a constant).
_PROBABILITY_IN = ", ".join(f"'{t}'" for t in PROBABILITY_TYPES)
_SIGNAL_TERMS = _SIGNAL_TERMS.replace("PROBABILITY_TYPES", _PROBABILITY_IN)
_SLOT = _SLOT.replace("PROBABILITY_TYPES", _PROBABILITY_IN)

# w · logit(clip(p)) of a probability signal `t` with its weight w and value v (the weight 0
# of a signal adds exact zeros); resolutions' scores pool with it too.
LOGIT_TERM = (
    "t.w * ln(least(greatest(t.v, %(eps)s), 1 - %(eps)s)"
    " / (1 - least(greatest(t.v, %(eps)s), 1 - %(eps)s)))"
)
_OTHER_SUMS = """
       sum(t.w * t.v) FILTER (WHERE t.sentiment) AS sent_num,
       sum(t.w) FILTER (WHERE t.sentiment) AS sent_w,
       sum(t.v) FILTER (WHERE t.flow_volume) AS volume,
       -- array_agg with its state's size declared (sql/0137): the hash aggregate stays in memory.
       predict_quote_agg(t.quote) FILTER (WHERE t.quote IS NOT NULL) AS quotes,
       count(*) AS n"""


def signal_terms_sql(where: str = "", *, slots: bool = False, extra: str = "") -> str:
    """_SIGNAL_TERMS of the signals in [%(start)s, %(end)s) that also meet `where` (an
    `AND ...` on `s`), with each probability signal's source slot when `slots`, and `extra`
    columns of `s` (`s.id,`) for a reader that needs them."""
    terms = _SIGNAL_TERMS.replace("{slot}", _SLOT if slots else "NULL::int")
    terms = terms.replace("{event_range}", where).replace("{extra}", extra)
    return f"{terms} UNION ALL {terms} AND false"


def source_sums_sql(terms: str, extra_sums: str = "") -> str:
    """Each (event, interval, source) of `terms`: Σ w·logit and Σ w of its probability signals
    (prob_num, prob_w), and the other terms' sums; `extra_sums` adds `, sum(...) AS ...`."""
    return f"""SELECT t.event_id, t.snapshot_at, t.source,
                     sum({LOGIT_TERM}) FILTER (WHERE t.prob) AS prob_num,
                     sum(t.w) FILTER (WHERE t.prob) AS prob_w,{_OTHER_SUMS}{extra_sums}
              FROM ({terms}) t GROUP BY 1, 2, 3"""  # noqa: S608 (module constants only)


def _source_logit(num: str, weight: str) -> str:
    """A source's pooled log-odds from its sums; NULL for a source without weight."""
    return f"CASE WHEN {weight} > 0 THEN {num} / {weight} END"


def _sigmoid(logit: str) -> str:
    return f"1 / (1 + exp(-{logit}))"


def source_probability_sql(num: str, weight: str) -> str:
    """A source's own pooled probability from its sums (never extremized): divergence and
    explanations read it."""
    return _sigmoid(_source_logit(num, weight))


def pooled_probability_sql(logit: str) -> str:
    """The pooled probability of pooled log-odds `logit`, extremized by %(alpha)s."""
    return _sigmoid(f"%(alpha)s * {logit}")


def _per_event_sql(slots: int, event_range: str = "") -> str:
    """Each (event, interval) of the batch: pooled log-odds, sources, spread, other terms.

    With slots, each source's sums (Σ w·logit, Σ w) are filtered sums of the one aggregate, and
    the event's are their sum; without, a per-source aggregate comes first, as the formulas say.
    The sigmoid never decreases, so the spread is σ(max L_s) − σ(min L_s): two exp, not one
    per source and side.
    """
    terms = signal_terms_sql(event_range, slots=bool(slots))
    if slots:
        ks = range(1, slots + 1)
        # Repeated aggregate calls are computed once (PostgreSQL shares identical ones).
        num = {k: f"sum({LOGIT_TERM}) FILTER (WHERE t.slot = {k})" for k in ks}
        weight = {k: f"sum(t.w) FILTER (WHERE t.slot = {k})" for k in ks}
        logits = ", ".join(_source_logit(num[k], weight[k]) for k in ks)
        aggregated = f"""(SELECT t.event_id, t.snapshot_at,
               {" + ".join(f"coalesce({num[k]}, 0)" for k in ks)} AS prob_num,
               {" + ".join(f"coalesce({weight[k]}, 0)" for k in ks)} AS prob_w,
               {" + ".join(f"(({weight[k]} > 0) IS TRUE)::int" for k in ks)} AS n_sources,
               {_sigmoid(f"greatest({logits})")} - {_sigmoid(f"least({logits})")} AS spread,{
            _OTHER_SUMS
        }
        FROM ({terms}) t GROUP BY 1, 2) a"""  # noqa: S608 (module constants and slot numbers)
    else:
        logit = _source_logit("b.prob_num", "b.prob_w")
        aggregated = f"""(SELECT b.event_id, b.snapshot_at,
               sum(b.prob_num) AS prob_num, sum(b.prob_w) AS prob_w,
               count(*) FILTER (WHERE b.prob_w > 0) AS n_sources,
               {_sigmoid(f"max({logit})")} - {_sigmoid(f"min({logit})")} AS spread,
               sum(b.sent_num) AS sent_num, sum(b.sent_w) AS sent_w, sum(b.volume) AS volume,
               predict_array_cat_agg(b.quotes) AS quotes, sum(b.n) AS n
        FROM ({source_sums_sql(terms)}) b
        GROUP BY 1, 2) a"""  # noqa: S608 (module constants only)
    return f"""SELECT a.event_id, a.snapshot_at, a.prob_num / nullif(a.prob_w, 0) AS logit,
         a.n_sources, CASE WHEN a.n_sources >= 2 THEN round(a.spread::numeric, 6) END AS spread,
         a.n AS signal_count, a.sent_num / nullif(a.sent_w, 0) AS sentiment, a.volume,
         a.quotes
  FROM {aggregated}
  JOIN prediction_events e ON e.id = a.event_id
   AND (e.status = 'ACTIVE' OR a.snapshot_at - interval '1 hour' < e.resolved_at)"""  # noqa: S608


def _per_event_ranges_sql(slots: int, ranges: int) -> tuple[str, dict[str, uuid.UUID]]:
    """_per_event_sql for each of `ranges` equal ranges of the uuid space, and their bounds."""
    bounds = {f"event_from_{i}": uuid.UUID(int=(i << 128) // ranges) for i in range(1, ranges)}
    parts = []
    for i in range(ranges):
        lower = f" AND s.event_id >= %(event_from_{i})s" if i else ""
        upper = f" AND s.event_id < %(event_from_{i + 1})s" if i + 1 < ranges else ""
        parts.append(_per_event_sql(slots, lower + upper))
    return "\n  UNION ALL\n".join(parts), bounds


# The batch's results, before they are written: one row per event and interval, in a temp
# table that compute_snapshots drops before it returns.
_COMPUTE_SQL = """
CREATE TEMP TABLE snapshot_batch ON COMMIT DROP AS
WITH intervals AS (
  SELECT generate_series(%(first_end)s::timestamptz, %(last_end)s::timestamptz,
                         interval '1 hour') AS snapshot_at
),
per_event AS (
{per_event}
),
lifetime_flow AS (
  -- Lifetime-total markets (a partial index finds them): per interval, the last total minus
  -- the one before (the day before the batch gives the base), else the interval's first.
  SELECT event_id, snapshot_at, sum(flow) AS volume FROM (
    SELECT event_id, snapshot_at,
           greatest(0, last_v - coalesce(lag(last_v) OVER (
             PARTITION BY source, source_event_id ORDER BY snapshot_at), first_v)) AS flow
    FROM (SELECT s.event_id, s.source, s.source_event_id,
                 date_bin('1 hour', s.fetched_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
                   + interval '1 hour' AS snapshot_at,
                 (array_agg(s.value::float8 ORDER BY s.fetched_at DESC))[1] AS last_v,
                 (array_agg(s.value::float8 ORDER BY s.fetched_at))[1] AS first_v
          FROM prediction_signals s
          WHERE s.signal_type = 'VOLUME' AND s.raw_data->>'volume_scope' LIKE 'lifetime%%'
            AND s.value IS NOT NULL
            AND s.fetched_at >= %(start)s - interval '1 day' AND s.fetched_at < %(end)s
          GROUP BY 1, 2, 3, 4) i) f
  WHERE snapshot_at > %(start)s
  GROUP BY 1, 2
),
prior AS (
  -- Stored states before the batch: what is carried forward, and volatility's history.
  -- Stored probabilities are extremized: dividing by alpha gives back the pooled log-odds.
  SELECT p.event_id, p.snapshot_at, ln(pp / (1 - pp)) / %(alpha)s AS logit, p.sentiment,
         p.divergence
  FROM (SELECT event_id, snapshot_at, probability::float8, sentiment_score::float8 AS sentiment,
               divergence,
               row_number() OVER (PARTITION BY event_id ORDER BY snapshot_at DESC) AS back
        FROM prediction_snapshots
        WHERE snapshot_at <= %(start)s AND snapshot_at > %(start)s - %(carry)s
          AND probability IS NOT NULL) p
  CROSS JOIN LATERAL (SELECT least(greatest(p.probability, %(eps)s), 1 - %(eps)s) AS pp) c
  WHERE p.back <= %(window)s
),
candidates AS (
  -- Events with a state to snapshot, and how many of the batch's intervals have signals.
  SELECT event_id, sum(n) AS intervals_with_signals FROM (
    SELECT event_id, 1 AS n FROM per_event
    UNION ALL
    SELECT p.event_id, 0 FROM prior p JOIN prediction_events e ON e.id = p.event_id
    WHERE e.status = 'ACTIVE' OR e.resolved_at > %(start)s
  ) c GROUP BY 1
),
grid AS (
  -- The intervals with signals; a lifetime total's flow always comes with a signal of its own.
  SELECT pe.event_id, pe.snapshot_at, false AS stored, pe.logit, pe.n_sources,
         CASE WHEN pe.spread >= 0.35 THEN 'EXTREME' WHEN pe.spread >= 0.20 THEN 'HIGH'
              WHEN pe.spread >= 0.10 THEN 'MEDIUM' WHEN pe.spread >= 0.05 THEN 'LOW'
              ELSE 'NONE' END AS divergence,
         pe.signal_count, pe.sentiment,
         round((coalesce(pe.volume, 0) + coalesce(lf.volume, 0)) * 1000) AS volume, pe.quotes
  FROM per_event pe
  LEFT JOIN lifetime_flow lf ON lf.event_id = pe.event_id AND lf.snapshot_at = pe.snapshot_at
  UNION ALL
  -- The candidates' intervals without signals: carried forward, or dropped before any state.
  SELECT c.event_id, i.snapshot_at, false, NULL, NULL, 'NONE', NULL, NULL, 0, NULL
  FROM candidates c CROSS JOIN intervals i
  WHERE c.intervals_with_signals < %(intervals)s
    AND NOT EXISTS (SELECT FROM per_event pe
                      WHERE pe.event_id = c.event_id AND pe.snapshot_at = i.snapshot_at)
  UNION ALL
  SELECT p.event_id, p.snapshot_at, true, p.logit, NULL, p.divergence, NULL, p.sentiment, NULL,
         NULL
  FROM prior p JOIN candidates c USING (event_id)
),
filled AS (
  SELECT *, count(logit) OVER (PARTITION BY event_id ORDER BY snapshot_at) AS run
  FROM grid
),
carried AS (
  -- The probability of each row once here; the next row's prev_probability is this value.
  SELECT *, logit IS NULL AS carried_forward,
         coalesce(logit, first_value(logit) OVER run_rows) AS state_logit,
         round(({probability})::numeric, 4) AS probability
  FROM filled
  WINDOW run_rows AS (PARTITION BY event_id, run ORDER BY snapshot_at)
),
moves AS (
  SELECT *, state_logit - lag(state_logit) OVER series AS change,
         lag(probability) OVER series AS prev_probability,
         lag(sentiment) OVER series AS prev_sentiment,
         lag(divergence) OVER series AS prev_divergence
  FROM carried
  -- run never decreases along snapshot_at: this is the order by time, and the rows are already
  -- sorted so for the carry-forward above (one sort fewer).
  WINDOW series AS (PARTITION BY event_id ORDER BY run, snapshot_at)
),
volatile AS (
  SELECT *, coalesce(stddev_samp(change) OVER (PARTITION BY event_id ORDER BY run, snapshot_at
                                             ROWS BETWEEN %(window_rows)s PRECEDING
                                             AND CURRENT ROW), 0) AS sigma
  FROM moves
)
SELECT v.event_id, v.snapshot_at, v.probability,
       -- greatest/least skip NULLs: an interval without sentiment must stay NULL, not 1.
       CASE WHEN v.sentiment IS NOT NULL
            THEN round(greatest(-1, least(1, v.sentiment))::numeric, 4) END AS sentiment_score,
       coalesce(v.volume, 0)::integer AS volume,
       round(least(1, v.sigma / %(vol_scale)s)::numeric, 4) AS volatility,
       v.divergence,
       coalesce(v.signal_count, 0)::integer AS signal_count,
       coalesce(v.n_sources, 0)::integer AS n_sources,
       v.carried_forward,
       CASE WHEN v.carried_forward THEN 'LOW'
            WHEN v.n_sources >= 3 AND v.signal_count >= 20 AND v.sigma / %(vol_scale)s < 0.10
              THEN 'VERY_HIGH'
            WHEN v.n_sources >= 2 AND v.signal_count >= 10 AND v.sigma / %(vol_scale)s < 0.25
              THEN 'HIGH'
            WHEN v.signal_count >= 3 AND v.sigma / %(vol_scale)s < 0.50 THEN 'MEDIUM'
            ELSE 'LOW' END AS confidence,
       v.prev_probability,
       round(v.prev_sentiment::numeric, 4) AS prev_sentiment,
       v.prev_divergence,
       v.quotes
FROM volatile v JOIN prediction_events e ON e.id = v.event_id
WHERE NOT v.stored AND v.state_logit IS NOT NULL
  -- A resolved event's intervals end with the one its resolution falls in.
  AND (e.status = 'ACTIVE' OR v.snapshot_at - interval '1 hour' < e.resolved_at)
"""


def _compute_sql(per_event: str) -> str:
    state = pooled_probability_sql("coalesce(logit, first_value(logit) OVER run_rows)")
    return _COMPUTE_SQL.replace("{per_event}", per_event).replace("{probability}", state)


_SOURCES_SQL = """
WITH RECURSIVE seen(source) AS (
  (SELECT source FROM prediction_signals ORDER BY source LIMIT 1)
  UNION ALL
  SELECT (SELECT s.source FROM prediction_signals s WHERE s.source > seen.source
          ORDER BY s.source LIMIT 1)
  FROM seen WHERE seen.source IS NOT NULL
)
SELECT array_agg(source ORDER BY source) FROM seen WHERE source IS NOT NULL
"""

# The snapshots and their markets' edges in one statement: a failed write leaves neither. Each
# market's latest quote of the interval against the probability the snapshot stores.
_WRITE_SQL = """
WITH written AS (
  INSERT INTO prediction_snapshots
    (event_id, probability, sentiment_score, trust_score, volatility, volume, divergence,
     signal_count, snapshot_at)
  SELECT b.event_id, b.probability, b.sentiment_score, e.trust_score, b.volatility, b.volume,
         b.divergence, b.signal_count, b.snapshot_at
  FROM snapshot_batch b JOIN prediction_events e ON e.id = b.event_id
  RETURNING 1
),
edges AS (
  INSERT INTO prediction_market_edges
    (event_id, source, source_event_id, price, observed_at, pooled_probability, edge,
     snapshot_at)
  SELECT b.event_id, q.source, q.source_event_id, q.price, q.fetched_at, b.probability,
         q.price - b.probability, b.snapshot_at
  FROM snapshot_batch b
  -- Each row's few quotes sorted on their own: one sort of every edge of the batch cost more.
  CROSS JOIN LATERAL (
    SELECT DISTINCT ON (u.source, u.source_event_id) u.*
    FROM unnest(b.quotes) u
    ORDER BY u.source, u.source_event_id, u.fetched_at DESC, u.price
  ) q
  WHERE b.quotes IS NOT NULL
  RETURNING 1
)
SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM edges)
"""

# current_* of each event become its newest snapshot's values and previous_* the snapshot
# before it (read from the table, so re-running an interval does not shift them again); an
# event whose newest snapshot is later than this batch (a backfill of old windows) is left.
# A state, once there, is carried to the batch's last interval: every event of the batch has
# its newest row there, and the row before it, when the batch has one, is the interval before
# (just written, with the event's trust score); otherwise the table is asked.
_EVENT_STATE_SQL = """
WITH last_two AS MATERIALIZED (  -- one scan of the batch, whatever plan the joins below get
  SELECT b.* FROM snapshot_batch b WHERE b.snapshot_at >= %(last_end)s - interval '1 hour'
),
newest AS (
  SELECT t.* FROM last_two t WHERE t.snapshot_at = %(last_end)s
),
current_state AS (
  SELECT n.event_id, n.probability, n.sentiment_score, n.volatility, n.divergence,
         n.confidence, coalesce(before.probability, prev.probability) AS prev_probability,
         coalesce(before.sentiment_score, prev.sentiment_score) AS prev_sentiment,
         CASE WHEN before.event_id IS NOT NULL THEN e.trust_score ELSE prev.trust_score END
           AS prev_trust,
         coalesce(before.divergence, prev.divergence) AS prev_divergence
  FROM newest n
  JOIN prediction_events e ON e.id = n.event_id
  LEFT JOIN last_two before
    ON before.event_id = n.event_id AND before.snapshot_at = %(last_end)s - interval '1 hour'
  LEFT JOIN LATERAL (
    SELECT probability, sentiment_score, trust_score, divergence FROM prediction_snapshots s
    WHERE before.event_id IS NULL AND s.event_id = n.event_id AND s.snapshot_at < n.snapshot_at
    ORDER BY s.snapshot_at DESC LIMIT 1
  ) prev ON true
  WHERE NOT EXISTS (SELECT 1 FROM prediction_snapshots later
                    WHERE later.event_id = n.event_id AND later.snapshot_at > %(last_end)s)
)
UPDATE prediction_events e SET
  previous_probability = c.prev_probability,
  previous_sentiment = c.prev_sentiment,
  previous_trust_score = c.prev_trust,
  previous_divergence = c.prev_divergence,
  current_probability = c.probability,
  sentiment_score = c.sentiment_score,
  volatility = c.volatility,
  divergence = c.divergence,
  confidence = c.confidence,
  updated_at = now()
FROM current_state c
WHERE e.id = c.event_id AND e.status = 'ACTIVE'
"""


_LARGEST_MOVES_SQL = """
SELECT e.title, b.probability::float8, b.prev_probability::float8, b.divergence, b.confidence,
       b.carried_forward
FROM snapshot_batch b JOIN prediction_events e ON e.id = b.event_id
ORDER BY abs(coalesce(b.probability - b.prev_probability, 0)) DESC LIMIT %s
"""

# Events held by their creator's plan (sql/0041_plans.sql), now.
HELD_EVENTS_SQL = "SELECT resource_id FROM predict_plan_holds_live(now()) WHERE kind = 'event'"

# The intervals' snapshots and edges, deleted together before they are written again.
_REPLACE_SQL = f"""
WITH held AS MATERIALIZED ({HELD_EVENTS_SQL}),
snapshots AS (
  DELETE FROM prediction_snapshots
  WHERE snapshot_at >= %(first_end)s AND snapshot_at <= %(last_end)s
    AND event_id NOT IN (SELECT resource_id FROM held)
)
DELETE FROM prediction_market_edges
WHERE snapshot_at >= %(first_end)s AND snapshot_at <= %(last_end)s
  AND event_id NOT IN (SELECT resource_id FROM held)
"""  # noqa: S608 (module constants only)


def compute_snapshots(
    conn: psycopg.Connection,
    start: datetime,
    end: datetime,
    settings: PoolingSettings | None = None,
    *,
    largest_moves: int = 0,
) -> SnapshotBatch:
    """Replace the snapshots of the hourly intervals in [start, end) and update event state;
    `largest_moves` of the batch's rows with the largest probability change come back too.

    Runs inside the caller's transaction: partitions are made sure of first, the intervals'
    rows are deleted and written again, so a re-run gives the same rows, not twice the rows.
    """
    settings = settings or PoolingSettings()
    if start >= end or (end - start) % INTERVAL:
        raise ValueError(f"[{start}, {end}) is not a whole number of hourly intervals")
    first_end, last_end = start + INTERVAL, end
    make_partitions_between(conn, "prediction_snapshots", first_end, last_end)
    make_partitions_between(conn, "prediction_market_edges", first_end, last_end)
    # Events their creator's plan holds (beyond max_events) keep what they have: no snapshot
    # (or edge) of theirs is replaced or added, and their state stays as it was.
    conn.execute(_REPLACE_SQL, {"first_end": first_end, "last_end": last_end})
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "first_end": first_end,
        "last_end": last_end,
        "half_life": settings.half_life_minutes,
        "eps": CLIP_EPSILON,
        "alpha": settings.extremize,
        "carry": timedelta(days=settings.carry_forward_days),
        "window": VOLATILITY_WINDOW,
        "window_rows": VOLATILITY_WINDOW - 1,
        "vol_scale": VOLATILITY_SCALE,
        "intervals": (end - start) // INTERVAL,
    }
    # Every source ever seen (a loose scan of the source index): each gets a slot of sums.
    sources = one_row(conn.execute(_SOURCES_SQL))[0] or []
    slots = len(sources) if len(sources) <= SOURCE_SLOTS else 0
    params["sources"] = sources
    conn.execute("DROP TABLE IF EXISTS snapshot_batch")
    # Room to hash-aggregate a day of signals in memory instead of sorting them to disk.
    conn.execute("SET LOCAL work_mem = '256MB'")
    setup_cost = one_row(conn.execute("SELECT current_setting('parallel_setup_cost')"))[0]
    conn.execute("SELECT set_config('parallel_setup_cost', %s, true)", (str(_PARALLEL_SETUP_COST),))
    try:
        with conn.transaction():
            per_event, bounds = _per_event_ranges_sql(slots, EVENT_RANGES)
            conn.execute(_compute_sql(per_event), params | bounds)
    except psycopg.errors.InvalidTextRepresentation:  # a source newer than the list: no slots
        per_event, bounds = _per_event_ranges_sql(0, EVENT_RANGES)
        conn.execute(_compute_sql(per_event), params | bounds)
    conn.execute("SELECT set_config('parallel_setup_cost', %s, true)", (setup_cost,))
    conn.execute(f"DELETE FROM snapshot_batch WHERE event_id IN ({HELD_EVENTS_SQL})")  # noqa: S608
    # A temp table has no statistics until analysed: the joins below are planned on its size
    # and on these keys (the quotes' array statistics would take most of the time, unread).
    conn.execute("ANALYZE snapshot_batch (event_id, snapshot_at)")
    written, edges = one_row(conn.execute(_WRITE_SQL))
    conn.execute(_EVENT_STATE_SQL, {"last_end": last_end})
    # Every event of the batch has a row at its last interval (see _EVENT_STATE_SQL).
    events, carried = one_row(
        conn.execute(
            "SELECT count(*) FILTER (WHERE snapshot_at = %s),"
            " count(*) FILTER (WHERE carried_forward) FROM snapshot_batch",
            (last_end,),
        )
    )
    moves = conn.execute(_LARGEST_MOVES_SQL, (largest_moves,)).fetchall() if largest_moves else []
    # The batch's readers read prediction_snapshots: the working table ends with this call.
    conn.execute("DROP TABLE snapshot_batch")
    return SnapshotBatch(
        snapshots=written,
        events=events,
        market_edges=edges,
        carried_forward=carried,
        intervals=int((end - start) / INTERVAL),
        start=start,
        end=end,
        settings=settings,
        largest_moves=tuple(moves),
    )
