"""Counters kept true: each feed's signals_ingested_24h and every user's usage of their usage
period (predict_pipeline.usage), recomputed from the rows (stages only ever add to them)."""

from __future__ import annotations

from datetime import datetime, timedelta

import psycopg

from predict_pipeline import usage
from predict_pipeline.retention.report import StepReport

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


def refresh_counters(conn: psycopg.Connection, now: datetime, *, dry_run: bool) -> StepReport:
    report = StepReport("counters", dry_run)
    since = now - timedelta(hours=24)
    with conn.transaction():
        if dry_run:
            feeds = conn.execute(
                _FEEDS_24H.format(action=_FEEDS_24H_COUNT), {"since": since}
            ).fetchone()[0]
        else:
            feeds = conn.execute(
                _FEEDS_24H.format(action=_FEEDS_24H_UPDATE), {"since": since}
            ).rowcount
        users = usage.refresh_usage(conn, now, dry_run=dry_run)
    report.add("feed_counters_corrected", feeds)
    report.add("usage_rows_refreshed", users)
    report.details["usage_at"] = now.isoformat()
    return report
