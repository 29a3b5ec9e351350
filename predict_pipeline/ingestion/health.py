"""Feed health: is each polled feed fresh and complete now, and how healthy was each source per day.

Definitions (the README's "Feed health" section restates them):

- **Expected interval** of a polled feed: its `poll_interval_minutes` (15 when unset), or for a
  `cron_expression` the longest gap between its fire times over the week before.
- **Fresh**: the last successful poll (a SUCCESS or PARTIAL run in poll mode) completed at most
  FRESHNESS_FACTOR expected intervals ago; a feed never polled successfully counts from its
  creation. Push-only sources (upload, webhook) have no freshness: their senders choose when.
- **Complete** (now): the latest successful poll fetched at least COMPLETENESS_DROP of the
  median of the MAX_TRAILING successful polls before it; judged once MIN_TRAILING exist.
  Backfill runs are left out: they fetch history, not the live rate.
- **Per day** (`prediction_source_health_daily`, per source and UTC day, per owner and for
  every owner together): freshness = the share of the day each polled feed was fresh, averaged
  over feeds; completeness = the day's polled records over the median of the feed's daily
  records in the seven days before (capped at 1, NULL without history), averaged; error rate
  = failed runs / runs; p50/p95 of the runs' durations; rejects by reason from stage 2's
  validation. `health_score` = 100 x the weighted mean of freshness (0.4), completeness (0.3)
  and 1 - error rate (0.3) over the measures the day has; healthy >= 80, degraded >= 50.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from croniter import croniter

FRESHNESS_FACTOR = 2.0  # one missed poll is noise; two in a row is a stale feed
COMPLETENESS_DROP = 0.5  # a poll bringing under half its usual records is a drop
MIN_TRAILING = 6
MAX_TRAILING = 24
DEFAULT_POLL_MINUTES = 15
HEALTHY, DEGRADED = 80, 50
_CRON_FIRES = 500  # bounds the walk over an every-minute cron's week


@dataclass(frozen=True, slots=True)
class FeedFreshness:
    feed_id: uuid.UUID
    name: str
    source: str
    expected: timedelta
    last_success: datetime | None
    age: timedelta

    @property
    def stale(self) -> bool:
        return self.age > FRESHNESS_FACTOR * self.expected


@dataclass(frozen=True, slots=True)
class FeedCompleteness:
    feed_id: uuid.UUID
    name: str
    source: str
    latest: int
    median: float
    trailing: int

    @property
    def dropped(self) -> bool:
        return self.trailing >= MIN_TRAILING and self.latest < COMPLETENESS_DROP * self.median


def expected_interval(
    poll_interval_minutes: int | None, cron_expression: str | None, at: datetime
) -> timedelta:
    """How often a feed is due: its poll interval, or its cron's longest gap in the past week."""
    if not cron_expression:
        return timedelta(minutes=poll_interval_minutes or DEFAULT_POLL_MINUTES)
    fires = croniter(cron_expression, at - timedelta(days=7))
    previous = fires.get_next(datetime)
    longest = timedelta(0)
    for _ in range(_CRON_FIRES):
        fire = fires.get_next(datetime)
        longest = max(longest, fire - previous)
        if fire >= at:
            break
        previous = fire
    return longest


_POLLED_FEEDS = """
SELECT f.id, f.name, s.source_id, f.poll_interval_minutes, f.cron_expression, f.created_at,
       ok.last_success
FROM prediction_data_feeds f
JOIN prediction_data_sources s ON s.id = f.source_id
LEFT JOIN (
  SELECT r.feed_id, max(r.completed_at) AS last_success
  FROM prediction_feed_runs r
  WHERE r.status IN ('SUCCESS', 'PARTIAL') AND r.error_details->>'mode' = 'poll'
  GROUP BY r.feed_id
) ok ON ok.feed_id = f.id
WHERE f.enabled AND s.supports_pull AND s.status = 'ACTIVE'
ORDER BY s.source_id, f.name
"""


def feed_freshness(conn: psycopg.Connection, now: datetime) -> list[FeedFreshness]:
    """Every enabled polled feed's age against its expected interval."""
    result = []
    for feed_id, name, source, minutes, cron, created, last in conn.execute(_POLLED_FEEDS):
        result.append(
            FeedFreshness(
                feed_id=feed_id,
                name=name,
                source=source,
                expected=expected_interval(minutes, cron, now),
                last_success=last,
                age=now - (last or created),
            )
        )
    return result


_COMPLETENESS = """
WITH ranked AS (
  SELECT r.feed_id, r.signals_fetched,
         row_number() OVER (PARTITION BY r.feed_id ORDER BY r.started_at DESC, r.id) AS n
  FROM prediction_feed_runs r
  JOIN prediction_data_feeds f ON f.id = r.feed_id AND f.enabled
  WHERE r.status IN ('SUCCESS', 'PARTIAL') AND r.error_details->>'mode' = 'poll'
    AND r.started_at <= %(now)s
)
SELECT k.feed_id, f.name, s.source_id,
       max(k.signals_fetched) FILTER (WHERE k.n = 1),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY k.signals_fetched) FILTER (WHERE k.n > 1),
       count(*) FILTER (WHERE k.n > 1)
FROM ranked k
JOIN prediction_data_feeds f ON f.id = k.feed_id
JOIN prediction_data_sources s ON s.id = f.source_id
WHERE k.n <= %(window)s + 1
GROUP BY k.feed_id, f.name, s.source_id
ORDER BY s.source_id, f.name
"""


def feed_completeness(conn: psycopg.Connection, now: datetime) -> list[FeedCompleteness]:
    """Each enabled feed's latest successful poll against the median of the polls before it."""
    rows = conn.execute(_COMPLETENESS, {"now": now, "window": MAX_TRAILING}).fetchall()
    return [
        FeedCompleteness(
            feed_id=feed_id,
            name=name,
            source=source,
            latest=int(latest or 0),
            median=float(median or 0.0),
            trailing=int(trailing),
        )
        for feed_id, name, source, latest, median, trailing in rows
    ]


_DAILY = """
WITH feed AS (
  SELECT f.id AS feed_id, f.user_id, s.source_id AS source, f.created_at, t.allowed_s
  FROM prediction_data_feeds f
  JOIN prediction_data_sources s ON s.id = f.source_id
  LEFT JOIN unnest(%(ids)s::uuid[], %(allowed)s::float8[]) AS t(feed_id, allowed_s)
    ON t.feed_id = f.id
  WHERE f.created_at < %(until)s
),
feed_day AS (
  SELECT f.feed_id, f.user_id, f.source, f.created_at, f.allowed_s,
         (d AT TIME ZONE 'UTC')::date AS day,
         greatest(d, f.created_at) AS lo, least(d + interval '1 day', %(now)s) AS hi
  FROM feed f
  CROSS JOIN generate_series(%(since)s, %(until)s - interval '1 day', interval '1 day') d
  WHERE f.created_at < d + interval '1 day' AND d < %(now)s
),
run AS (
  SELECT r.feed_id, (r.started_at AT TIME ZONE 'UTC')::date AS day, r.status, r.duration_ms,
         coalesce(r.signals_fetched, 0) AS records, r.completed_at,
         r.error_details->>'mode' = 'poll' AND r.status IN ('SUCCESS', 'PARTIAL') AS polled_ok,
         coalesce(l.records_rejected, 0)::bigint AS rejected,
         l.rejected_reasons AS reasons
  FROM prediction_feed_runs r
  JOIN feed f ON f.feed_id = r.feed_id
  LEFT JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id
  WHERE r.started_at >= %(since)s - interval '7 days' AND r.started_at < %(until)s
),
-- Freshness: the day cut at each successful poll; a piece is stale from the last success
-- plus the allowed age to its end.
point AS (
  SELECT feed_id, completed_at AS at, true AS success FROM run
  WHERE polled_ok AND completed_at IS NOT NULL
  UNION ALL SELECT feed_id, lo, false FROM feed_day WHERE allowed_s IS NOT NULL AND hi > lo
  UNION ALL SELECT feed_id, hi, false FROM feed_day WHERE allowed_s IS NOT NULL AND hi > lo
),
piece AS (
  SELECT feed_id, at AS a, lead(at) OVER w AS b,
         max(at) FILTER (WHERE success) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
           AS last_ok
  FROM point
  WINDOW w AS (PARTITION BY feed_id ORDER BY at, success DESC)
),
stale AS (
  SELECT fd.feed_id, fd.day,
         sum(greatest(0, extract(epoch FROM p.b - greatest(
               p.a, coalesce(p.last_ok, fd.created_at) + make_interval(secs => fd.allowed_s)))))
           AS stale_s
  FROM feed_day fd
  JOIN piece p ON p.feed_id = fd.feed_id AND p.a >= fd.lo AND p.b <= fd.hi
  WHERE fd.allowed_s IS NOT NULL
  GROUP BY fd.feed_id, fd.day
),
polled AS (
  SELECT feed_id, day, sum(records) AS records FROM run WHERE polled_ok GROUP BY feed_id, day
),
scored AS (
  SELECT fd.feed_id, fd.user_id, fd.source, fd.day,
         CASE WHEN fd.allowed_s IS NOT NULL AND fd.hi > fd.lo
              THEN 1 - coalesce(st.stale_s, 0) / extract(epoch FROM fd.hi - fd.lo) END
           AS freshness,
         CASE WHEN base.median > 0
              THEN least(1, coalesce(today.records, 0) / base.median) END AS completeness
  FROM feed_day fd
  LEFT JOIN stale st ON st.feed_id = fd.feed_id AND st.day = fd.day
  LEFT JOIN polled today ON today.feed_id = fd.feed_id AND today.day = fd.day
  LEFT JOIN LATERAL (
    SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY p.records) AS median
    FROM polled p
    WHERE p.feed_id = fd.feed_id AND p.day >= fd.day - 7 AND p.day < fd.day
  ) base ON true
),
feeds_agg AS (
  SELECT source, day, user_id, GROUPING(user_id) = 1 AS platform, count(*) AS feeds,
         avg(freshness) AS freshness, avg(completeness) AS completeness
  FROM scored
  GROUP BY GROUPING SETS ((source, day, user_id), (source, day))
),
run_in_range AS (
  SELECT f.source, f.user_id, r.* FROM run r JOIN feed f ON f.feed_id = r.feed_id
  WHERE r.day >= %(first_day)s
),
runs_agg AS (
  SELECT source, day, user_id, GROUPING(user_id) = 1 AS platform, count(*) AS runs,
         count(*) FILTER (WHERE status IN ('FAILED', 'TIMEOUT', 'RATE_LIMITED', 'AUTH_FAILED'))
           AS failed,
         sum(records) AS records, sum(rejected) AS rejected,
         percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
         percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95
  FROM run_in_range
  GROUP BY GROUPING SETS ((source, day, user_id), (source, day))
),
reason_counts AS (
  SELECT source, day, user_id, GROUPING(user_id) = 1 AS platform, reason.key AS reason,
         sum(reason.value::text::bigint) AS n
  FROM run_in_range, jsonb_each(coalesce(reasons, '{}'::jsonb)) AS reason
  WHERE jsonb_typeof(reason.value) = 'number'
  GROUP BY GROUPING SETS ((source, day, user_id, reason.key), (source, day, reason.key))
),
reasons_agg AS (
  SELECT source, day, user_id, platform, jsonb_object_agg(reason, n) AS by_reason,
         (array_agg(reason ORDER BY n DESC, reason))[1] AS top_reason
  FROM reason_counts GROUP BY source, day, user_id, platform
),
measured AS (
  SELECT fa.source, fa.day, fa.user_id, fa.feeds,
         coalesce(ra.runs, 0) AS runs, coalesce(ra.failed, 0) AS failed,
         coalesce(ra.records, 0) AS records, coalesce(ra.rejected, 0) AS rejected,
         coalesce(rs.by_reason, '{}'::jsonb) AS by_reason, rs.top_reason,
         ra.failed::numeric / nullif(ra.runs, 0) AS error_rate, ra.p50, ra.p95,
         fa.freshness, fa.completeness
  FROM feeds_agg fa
  LEFT JOIN runs_agg ra ON (ra.source, ra.day, ra.platform) = (fa.source, fa.day, fa.platform)
    AND ra.user_id IS NOT DISTINCT FROM fa.user_id
  LEFT JOIN reasons_agg rs ON (rs.source, rs.day, rs.platform) = (fa.source, fa.day, fa.platform)
    AND rs.user_id IS NOT DISTINCT FROM fa.user_id
),
health AS (
  SELECT m.*,
         round(100 * (0.4 * coalesce(m.freshness, 0) + 0.3 * coalesce(m.completeness, 0)
                      + 0.3 * coalesce(1 - m.error_rate, 0))
               / nullif(0.4 * (m.freshness IS NOT NULL)::int
                        + 0.3 * (m.completeness IS NOT NULL)::int
                        + 0.3 * (m.error_rate IS NOT NULL)::int, 0)) AS score
  FROM measured m
)
INSERT INTO prediction_source_health_daily
  (source, day, user_id, feeds, runs, failed_runs, records_fetched, records_rejected,
   rejects_by_reason, error_rate, latency_p50_ms, latency_p95_ms, freshness_score,
   completeness_score, health_score, status, issues, computed_at)
SELECT h.source, h.day, h.user_id, h.feeds, h.runs, h.failed, h.records, h.rejected,
       h.by_reason, round(h.error_rate, 4), round(h.p50), round(h.p95),
       round(100 * h.freshness), round(100 * h.completeness), h.score,
       CASE WHEN h.score >= %(healthy)s THEN 'healthy' WHEN h.score >= %(degraded)s THEN 'degraded'
            WHEN h.score IS NOT NULL THEN 'unhealthy' END,
       to_jsonb(array_remove(ARRAY[
         CASE WHEN h.freshness < 0.95 THEN format('stale %%s %%%% of the day',
                                                  round(100 * (1 - h.freshness))) END,
         CASE WHEN h.completeness < 0.8 THEN format(
           'records at %%s %%%% of the trailing median', round(100 * h.completeness)) END,
         CASE WHEN h.failed > 0 THEN format('%%s of %%s runs failed', h.failed, h.runs) END,
         CASE WHEN h.rejected > 0 THEN format('%%s records rejected (mostly %%s)', h.rejected,
                                               h.top_reason) END
       ], NULL)),
       %(now)s
FROM health h
"""


def write_daily_health(
    conn: psycopg.Connection, first_day: date, last_day: date, now: datetime
) -> int:
    """Recompute prediction_source_health_daily for the UTC days first_day..last_day; rows."""
    since = datetime.combine(first_day, time(), tzinfo=UTC)
    until = datetime.combine(last_day + timedelta(days=1), time(), tzinfo=UTC)
    freshness = feed_freshness(conn, now)
    with conn.transaction():
        conn.execute(
            "DELETE FROM prediction_source_health_daily WHERE day BETWEEN %s AND %s",
            (first_day, last_day),
        )
        cursor = conn.execute(
            _DAILY,
            {
                "ids": [f.feed_id for f in freshness],
                "allowed": [(FRESHNESS_FACTOR * f.expected).total_seconds() for f in freshness],
                "since": since,
                "until": until,
                "first_day": first_day,
                "now": now,
                "healthy": HEALTHY,
                "degraded": DEGRADED,
            },
        )
        return cursor.rowcount
