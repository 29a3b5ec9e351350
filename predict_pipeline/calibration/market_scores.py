"""Per-market scores: every series of a resolved event read at each horizon, written to
`prediction_market_scores` in the statement that scores the resolution (resolutions.py), and
scored against the resolution's current outcome by the view `v_market_scores` (sql/0133).

**Series.** `pooled` (the platform's own forecast, as `final_probability` pools it) and each
market linked to the event: a (source, source_event_id) with probability signals
(PROBABILITY_TYPES) at or before close. A market read with several of those types is scored
on one only, the first of PROBABILITY_TYPES it has (MARKET_PRICE, then EXPERT, then MANUAL),
for all its horizons. Values are the exact ones (`raw_data.value_exact` where the DECIMAL
column rounded it); two observations of a series at the same moment count once, the higher
(as the pooling breaks that tie). Signals without a source_event_id have no market to name:
they count in `pooled` only.

**Horizons.** close = the event's resolution date or the resolution time, whichever is
earlier (as `final_probability`); only observations at or before close count.

- `CLOSE`, `12H`, `1D`, `7D`, `30D`: the series' last observation at or before close minus
  0, 12 hours, 1, 7 or 30 days. Pooled: the pooled probability at the event's last observation
  at or before that moment, exactly as `final_probability` / `probability_1d/7d/30d` are
  computed (so `CLOSE` is `final_probability_exact`).
- `MIDPOINT`: the series' last observation at or before the midpoint between the event's first
  probability observation (any series) and close. The moment is the event's, not the series',
  so every series of the event is read at the same moment and relative_brier compares like
  with like.
- `TIME_AVERAGE`: the time-weighted mean of the series' step function (each observation held
  until the next one, the last until close) from the series' first observation to close;
  `observed_at` is close. Pooled: the same over the pooled step function whose steps are the
  pooled probabilities at each of the event's observation moments (the value `CLOSE` would
  read at any moment in between). A series whose only observation is at close averages to it.

A horizon whose moment is before the series' first observation has no row: nothing is
invented (a history starting 10 days before close has no `30D` row). A re-score replaces the
resolution's rows (`clear_market_scores` runs first in the same transaction).
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

# The horizons read at a fixed time before close; MIDPOINT and TIME_AVERAGE are computed below.
HORIZONS_BEFORE_CLOSE: dict[str, timedelta] = {
    "CLOSE": timedelta(0),
    "12H": timedelta(hours=12),
    "1D": timedelta(days=1),
    "7D": timedelta(days=7),
    "30D": timedelta(days=30),
}
HORIZONS = (*HORIZONS_BEFORE_CLOSE, "MIDPOINT", "TIME_AVERAGE")


def horizon_parameters() -> dict[str, list]:
    """The bound parameters the horizon CTEs read: labels and how long before close."""
    return {
        "horizons": list(HORIZONS_BEFORE_CLOSE),
        "backs": list(HORIZONS_BEFORE_CLOSE.values()),
    }


# CTEs of the scoring statement, after `closes` (resolution_id, event_id, close) of the
# resolutions being scored. `observed`: every probability observation up to close.
# `targets`: each resolution's moment per horizon read at a moment (all but TIME_AVERAGE).
OBSERVED_AND_TARGETS_SQL = """
observed AS (
  SELECT c.resolution_id, c.event_id, c.close, s.source, s.source_event_id,
         coalesce(s.source_event_id, s.id::text) AS market_key, s.signal_type, s.fetched_at,
         coalesce((s.raw_data->>'value_exact')::float8, s.value::float8) AS v,
         coalesce(s.weight::float8, 1) * coalesce(s.reliability::float8, 1) AS base_w
  FROM closes c
  JOIN prediction_signals s ON s.event_id = c.event_id AND s.fetched_at <= c.close
  WHERE s.signal_type = ANY(%(types)s) AND s.value IS NOT NULL
),
firsts AS (
  SELECT resolution_id, min(fetched_at) AS first_at FROM observed GROUP BY 1
),
targets AS (
  SELECT c.resolution_id, c.event_id, h.horizon, c.close - h.back AS cutoff
  FROM closes c
  CROSS JOIN unnest(%(horizons)s::text[], %(backs)s::interval[]) AS h(horizon, back)
  UNION ALL
  -- The event's moment, so every series is read at the same one.
  SELECT c.resolution_id, c.event_id, 'MIDPOINT', f.first_at + (c.close - f.first_at) / 2
  FROM closes c JOIN firsts f USING (resolution_id)
),
steps AS (
  -- The pooled step function's moments: each distinct observation moment of the event.
  SELECT DISTINCT resolution_id, event_id, 'STEP'::text AS horizon, fetched_at AS at
  FROM observed
)"""

# CTEs reading each market at each target and averaging its step function; then the rows to
# write, given `at_each` (pooled per target: resolution_id, event_id, horizon, p, at) and
# `pooled_steps` (resolution_id, at, p) of the scoring statement.
MARKET_SCORES_SQL = """
market_types AS (
  SELECT resolution_id, source, source_event_id,
         min(array_position(%(types)s::text[], signal_type)) AS type_rank
  FROM observed WHERE source_event_id IS NOT NULL GROUP BY 1, 2, 3
),
market_steps AS (
  SELECT DISTINCT ON (o.resolution_id, o.source, o.source_event_id, o.fetched_at)
         o.resolution_id, o.event_id, o.close, o.source, o.source_event_id, o.fetched_at AS at,
         o.v
  FROM observed o
  JOIN market_types m ON m.resolution_id = o.resolution_id AND m.source = o.source
   AND m.source_event_id = o.source_event_id
   AND array_position(%(types)s::text[], o.signal_type) = m.type_rank
  ORDER BY o.resolution_id, o.source, o.source_event_id, o.fetched_at, o.v DESC
),
market_marks AS (
  -- Observations and targets on one time line per market; a target's group is the number of
  -- observations at or before it (0: before the first, no read).
  SELECT x.*, count(x.at) OVER (PARTITION BY x.resolution_id, x.source, x.source_event_id
                                ORDER BY x.moment, x.kind) AS grp
  FROM (
    SELECT resolution_id, event_id, source, source_event_id, NULL::text AS horizon,
           at AS moment, 0 AS kind, at, v
    FROM market_steps
    UNION ALL
    SELECT t.resolution_id, t.event_id, m.source, m.source_event_id, t.horizon, t.cutoff, 1,
           NULL, NULL
    FROM targets t JOIN market_types m USING (resolution_id)
  ) x
),
market_reads AS (
  SELECT resolution_id, event_id, source, source_event_id, horizon, grp,
         max(v) OVER g AS p, max(at) OVER g AS at
  FROM market_marks
  WINDOW g AS (PARTITION BY resolution_id, source, source_event_id, grp)
),
market_spans AS (
  SELECT resolution_id, event_id, close, source, source_event_id, v,
         extract(epoch FROM lead(at, 1, close) OVER (
           PARTITION BY resolution_id, source, source_event_id ORDER BY at) - at)::float8 AS span
  FROM market_steps
),
pooled_spans AS (
  SELECT p.resolution_id, c.event_id, c.close, p.p AS v,
         extract(epoch FROM lead(p.at, 1, c.close) OVER (
           PARTITION BY p.resolution_id ORDER BY p.at) - p.at)::float8 AS span
  FROM pooled_steps p JOIN closes c USING (resolution_id)
),
market_scores AS (
  SELECT resolution_id, event_id, 'pooled' AS source, NULL::text AS source_event_id, horizon,
         p, at
  FROM at_each WHERE p IS NOT NULL
  UNION ALL
  SELECT resolution_id, event_id, source, source_event_id, horizon, p, at
  FROM market_reads WHERE horizon IS NOT NULL AND grp > 0
  UNION ALL
  -- A single observation at close spans nothing: the average is that observation.
  SELECT resolution_id, event_id, source, source_event_id, 'TIME_AVERAGE',
         coalesce(sum(v * span) / nullif(sum(span), 0), max(v)), max(close)
  FROM market_spans GROUP BY 1, 2, 3, 4
  UNION ALL
  SELECT resolution_id, event_id, 'pooled', NULL, 'TIME_AVERAGE',
         coalesce(sum(v * span) / nullif(sum(span), 0), max(v)), max(close)
  FROM pooled_spans GROUP BY 1, 2
),
written AS (
  INSERT INTO prediction_market_scores
    (resolution_id, event_id, source, source_event_id, horizon, probability, observed_at,
     scored_at)
  SELECT resolution_id, event_id, source, source_event_id, horizon, p, at, %(now)s
  FROM market_scores
)"""

_CLEAR_SQL = """
DELETE FROM prediction_market_scores ms USING prediction_resolutions r
WHERE ms.resolution_id = r.id AND r.scored_at IS NULL
  AND (%(ids)s::uuid[] IS NULL OR r.id = ANY(%(ids)s::uuid[]))
"""


def clear_market_scores(conn: psycopg.Connection, *, resolution_ids: list | None) -> int:
    """Delete the rows of the resolutions about to be scored (those without `scored_at`, or
    only `resolution_ids`), so a re-score replaces them; returns how many went."""
    return conn.execute(_CLEAR_SQL, {"ids": resolution_ids}).rowcount
