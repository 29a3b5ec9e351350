"""Counters kept true: each feed's signals_ingested_24h and every user's usage for the month,
recomputed from the rows (stages only ever add to them)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from predict_pipeline.retention.report import StepReport
from predict_pipeline.retention.snapshots import month_start, next_month

# Same definition as the signals stage's running total: what the feed's runs of the last 24
# hours wrote.
_FEEDS_24H = """
WITH truth AS (
  SELECT f.id, LEAST(coalesce(sum(r.signals_written), 0), 2147483647)::int AS ingested
  FROM prediction_data_feeds f
  LEFT JOIN prediction_feed_runs r ON r.feed_id = f.id AND r.started_at > %(since)s
  GROUP BY f.id
)
{action}
"""
_FEEDS_24H_COUNT = (
    "SELECT count(*) FROM truth t JOIN prediction_data_feeds f ON f.id = t.id"
    " WHERE f.signals_ingested_24h IS DISTINCT FROM t.ingested"
)
_FEEDS_24H_UPDATE = """UPDATE prediction_data_feeds f
  SET signals_ingested_24h = t.ingested, updated_at = now()
  FROM truth t
  WHERE f.id = t.id AND f.signals_ingested_24h IS DISTINCT FROM t.ingested"""

# The calendar month (UTC) of every user with feeds, rules, created events or a row already.
# events_tracked: the user's events still open (ACTIVE or PAUSED), what a plan's max_events
# limits.
_USAGE = """
WITH users AS (
  SELECT user_id FROM prediction_data_feeds
  UNION SELECT user_id FROM prediction_rules
  UNION SELECT created_by FROM prediction_events WHERE created_by IS NOT NULL
  UNION SELECT user_id FROM prediction_usage_metrics WHERE period_start = %(start)s
),
truth AS (
  SELECT u.user_id,
         (SELECT coalesce(sum(r.signals_written), 0) FROM prediction_feed_runs r
          JOIN prediction_data_feeds f ON f.id = r.feed_id
          WHERE f.user_id = u.user_id
            AND r.started_at >= %(start)s AND r.started_at < %(end)s) AS signals_ingested,
         (SELECT count(*) FROM prediction_data_feeds f
          WHERE f.user_id = u.user_id AND f.enabled) AS feeds_active,
         (SELECT count(*) FROM prediction_rules r
          WHERE r.user_id = u.user_id AND r.enabled) AS rules_active,
         (SELECT count(*) FROM prediction_events e
          WHERE e.created_by = u.user_id AND e.status IN ('ACTIVE', 'PAUSED')) AS events_tracked
  FROM users u
),
stale AS (
  SELECT t.* FROM truth t
  LEFT JOIN prediction_usage_metrics m
    ON m.user_id = t.user_id AND m.period_start = %(start)s
  WHERE m.id IS NULL
     OR (m.signals_ingested, m.feeds_active, m.rules_active, m.events_tracked)
        IS DISTINCT FROM (t.signals_ingested, t.feeds_active, t.rules_active, t.events_tracked)
)
{action}
"""
_USAGE_COUNT = "SELECT count(*) FROM stale"
_USAGE_UPSERT = """INSERT INTO prediction_usage_metrics
    (user_id, period_start, period_end, signals_ingested, feeds_active, rules_active,
     events_tracked)
  SELECT user_id, %(start)s, %(end)s, signals_ingested, feeds_active, rules_active,
         events_tracked
  FROM stale
  ON CONFLICT (user_id, period_start) DO UPDATE SET
    signals_ingested = EXCLUDED.signals_ingested,
    feeds_active = EXCLUDED.feeds_active,
    rules_active = EXCLUDED.rules_active,
    events_tracked = EXCLUDED.events_tracked,
    updated_at = now()"""


def refresh_counters(conn: psycopg.Connection, now: datetime, *, dry_run: bool) -> StepReport:
    report = StepReport("counters", dry_run)
    since = now - timedelta(hours=24)
    start = month_start(now)
    usage = {"start": start, "end": next_month(start)}
    with conn.transaction():
        if dry_run:
            feeds = conn.execute(
                _FEEDS_24H.format(action=_FEEDS_24H_COUNT), {"since": since}
            ).fetchone()[0]
            users = conn.execute(_USAGE.format(action=_USAGE_COUNT), usage).fetchone()[0]
        else:
            feeds = conn.execute(
                _FEEDS_24H.format(action=_FEEDS_24H_UPDATE), {"since": since}
            ).rowcount
            users = conn.execute(_USAGE.format(action=_USAGE_UPSERT), usage).rowcount
    report.add("feed_counters_corrected", feeds)
    report.add("usage_rows_refreshed", users)
    report.details["usage_period_start"] = start.isoformat()
    return report
