"""prediction_usage_metrics, written here and nowhere else: what each user's feeds, rules,
events, campaigns and explanations used in a usage period; and the feeds' own counter
(`signals_ingested_24h`), corrected from the rows by the daily refresh.

A user's usage period at a time is the billing period of their subscription that contains it
(`current_period_start` .. `current_period_end`), else the calendar month in UTC
(`predict_user_plans`, sql/0041_plans.sql). Each metric:

- signals_ingested: signals the user's feeds wrote in the period (added by the signals stage
  as it writes them; recounted from the feed runs by the daily refresh);
- feeds_active, rules_active: the user's enabled feeds, enabled (non-system) rules, now;
- events_tracked: events the user created that are ACTIVE or PAUSED, now (what max_events
  limits);
- campaigns_created: campaigns the user created in the period;
- explanations_generated: explanations written in the period for events the user created;
- storage_bytes_used: an estimate, the rows the user owns times each table's average bytes
  per row (heap, indexes and TOAST: pg_total_relation_size over the table's row estimate):
  their feeds' signals (signals_ingested_total), feed runs, review items, rules and rule
  executions, events created, campaigns with variants and results. Derived rows (snapshots,
  trust, explanations) are the platform's and not counted.

A refresh computes the chosen metrics for every user with anything to count in one statement
and writes only rows that changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

from predict_pipeline.db.rows import one_row

# Cheap counts of what exists now: kept current by the rule sensor's every tick.
LIVE_COUNTS = ("feeds_active", "rules_active", "events_tracked", "campaigns_created")
ALL_METRICS = (
    "signals_ingested",
    *LIVE_COUNTS,
    "explanations_generated",
    "storage_bytes_used",
)

# Tables whose rows storage_bytes_used counts, each with the SQL of the user's row count (the
# estimate multiplies it by the table's average row size).
_STORAGE_TABLES = {
    "prediction_signals": "coalesce(fd.signals_total, 0)",
    "prediction_data_feeds": "coalesce(fd.feeds_total, 0)",
    "prediction_feed_runs": "coalesce(fr.runs, 0)",
    "prediction_unmatched_signals": "coalesce(fr.unmatched, 0)",
    "prediction_rules": "coalesce(ru.rules_total, 0)",
    "prediction_rule_executions": "coalesce(ru.executions, 0)",
    "prediction_events": "coalesce(ev.events_total, 0)",
    "prediction_campaigns": "coalesce(ca.campaigns_total, 0)",
    "prediction_campaign_variants": "coalesce(ca.variants, 0)",
    "prediction_campaign_results": "coalesce(ca.results, 0)",
}

# Each metric: the CTEs it reads (below) and its value per user `p`.
_METRICS = {
    "signals_ingested": (("sig",), "coalesce(sig.written, 0)"),
    "feeds_active": (("fd",), "coalesce(fd.feeds_active, 0)"),
    "rules_active": (("ru",), "coalesce(ru.rules_active, 0)"),
    "events_tracked": (("ev",), "coalesce(ev.events_tracked, 0)"),
    "campaigns_created": (("ca",), "coalesce(ca.created_in_period, 0)"),
    "explanations_generated": (("ex",), "coalesce(ex.explanations, 0)"),
    "storage_bytes_used": (
        ("fd", "fr", "ru", "ev", "ca"),
        "round("
        + " + ".join(f"{count} * %({table})s" for table, count in _STORAGE_TABLES.items())
        + ")::bigint",
    ),
}

_CTES = {
    "sig": """sig AS (
  SELECT f.user_id, sum(r.signals_written) AS written
  FROM prediction_feed_runs r
  JOIN prediction_data_feeds f ON f.id = r.feed_id
  JOIN periods p ON p.user_id = f.user_id
  WHERE r.started_at >= p.period_start AND r.started_at < p.period_end
  GROUP BY f.user_id)""",
    "fd": """fd AS (
  SELECT user_id, count(*) FILTER (WHERE enabled) AS feeds_active, count(*) AS feeds_total,
         sum(signals_ingested_total) AS signals_total
  FROM prediction_data_feeds GROUP BY user_id)""",
    "fr": """fr AS (
  SELECT f.user_id, sum(r.n) AS runs, sum(u.n) AS unmatched
  FROM prediction_data_feeds f
  LEFT JOIN (SELECT feed_id, count(*) AS n FROM prediction_feed_runs GROUP BY feed_id) r
    ON r.feed_id = f.id
  LEFT JOIN (SELECT feed_id, count(*) AS n FROM prediction_unmatched_signals GROUP BY feed_id) u
    ON u.feed_id = f.id
  GROUP BY f.user_id)""",
    "ru": """ru AS (
  SELECT r.user_id,
         count(*) FILTER (WHERE r.enabled AND r.is_system IS NOT TRUE) AS rules_active,
         count(*) AS rules_total, sum(x.n) AS executions
  FROM prediction_rules r
  LEFT JOIN (SELECT rule_id, count(*) AS n FROM prediction_rule_executions GROUP BY rule_id) x
    ON x.rule_id = r.id
  GROUP BY r.user_id)""",
    "ev": """ev AS (
  SELECT created_by AS user_id,
         count(*) FILTER (WHERE status IN ('ACTIVE', 'PAUSED')) AS events_tracked,
         count(*) AS events_total
  FROM prediction_events WHERE created_by IS NOT NULL GROUP BY created_by)""",
    "ca": """ca AS (
  SELECT c.user_id,
         count(*) FILTER (WHERE c.created_at >= p.period_start AND c.created_at < p.period_end)
           AS created_in_period,
         count(*) AS campaigns_total, sum(v.n) AS variants, sum(x.n) AS results
  FROM prediction_campaigns c
  JOIN periods p ON p.user_id = c.user_id
  LEFT JOIN (SELECT campaign_id, count(*) AS n FROM prediction_campaign_variants
             GROUP BY campaign_id) v ON v.campaign_id = c.id
  LEFT JOIN (SELECT campaign_id, count(*) AS n FROM prediction_campaign_results
             GROUP BY campaign_id) x ON x.campaign_id = c.id
  GROUP BY c.user_id)""",
    "ex": """ex AS (
  SELECT e.created_by AS user_id, count(*) AS explanations
  FROM prediction_explanations x
  JOIN prediction_events e ON e.id = x.event_id
  JOIN periods p ON p.user_id = e.created_by
  WHERE x.created_at >= (SELECT min(period_start) FROM periods)
    AND x.created_at >= p.period_start AND x.created_at < p.period_end
  GROUP BY e.created_by)""",
}

# The users with something to count, and the period of each at %(at)s.
_PERIODS = """periods AS (
  SELECT p.user_id, p.period_start, p.period_end FROM predict_user_plans(%(at)s) p
  WHERE p.user_id IN (SELECT user_id FROM prediction_data_feeds
                      UNION SELECT user_id FROM prediction_rules
                      UNION SELECT created_by FROM prediction_events WHERE created_by IS NOT NULL
                      UNION SELECT user_id FROM prediction_campaigns
                      UNION SELECT user_id FROM prediction_usage_metrics
                            WHERE period_end > %(at)s))"""


def _refresh_sql(metrics: Sequence[str], *, dry_run: bool) -> str:
    unknown = set(metrics) - set(_METRICS)
    if unknown or not metrics:
        raise ValueError(f"unknown usage metrics: {sorted(unknown) or 'none given'}")
    ctes = [_PERIODS] + [
        _CTES[name] for name in _CTES if any(name in _METRICS[m][0] for m in metrics)
    ]
    joins = "".join(
        f" LEFT JOIN {name} ON {name}.user_id = p.user_id"
        for name in _CTES
        if any(name in _METRICS[m][0] for m in metrics)
    )
    values = ", ".join(f"{_METRICS[m][1]} AS {m}" for m in metrics)
    columns = ", ".join(metrics)
    # Only the known metric names above reach the SQL.
    truth = f"truth AS (SELECT p.user_id, p.period_start, p.period_end, {values} FROM periods p"  # noqa: S608
    truth += f"{joins})"
    mine, theirs = ", ".join(f"m.{c}" for c in metrics), ", ".join(f"t.{c}" for c in metrics)
    stale = (
        "stale AS (SELECT t.* FROM truth t LEFT JOIN prediction_usage_metrics m"  # noqa: S608
        " ON m.user_id = t.user_id AND m.period_start = t.period_start"
        " WHERE m.id IS NULL OR (" + mine + ") IS DISTINCT FROM (" + theirs + "))"
    )
    head = "WITH " + ",\n".join([*ctes, truth, stale])
    if dry_run:
        return f"{head}\nSELECT count(*) FROM stale"
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in metrics)
    return (
        f"{head}\nINSERT INTO prediction_usage_metrics (user_id, period_start, period_end,"
        f" {columns})\nSELECT user_id, period_start, period_end, {columns} FROM stale\n"
        "ON CONFLICT (user_id, period_start) DO UPDATE SET "
        f"{updates}, period_end = EXCLUDED.period_end, updated_at = now()"
    )


def _bytes_per_row(conn: psycopg.Connection) -> dict[str, float]:
    """Each counted table's average bytes per row: its total size (partitions included) over
    the planner's row estimate, or the exact count while the table was never analysed."""
    sizes = {}
    for table in _STORAGE_TABLES:
        size, rows = one_row(
            conn.execute(
                """SELECT sum(pg_total_relation_size(c.oid)), sum(greatest(c.reltuples, 0))
               FROM pg_class c
               WHERE c.oid = %s::regclass
                  OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = %s::regclass)""",
                (table, table),
            )
        )
        if not rows:
            rows = one_row(conn.execute(f"SELECT count(*) FROM {table}"))[0]  # noqa: S608
        # An empty table tells no row size; it holds nothing of anyone either.
        sizes[table] = float(size or 0) / float(rows) if rows else 0.0
    return sizes


def refresh_usage(
    conn: psycopg.Connection,
    at: datetime,
    metrics: Sequence[str] = ALL_METRICS,
    *,
    dry_run: bool = False,
) -> int:
    """Recompute `metrics` of every user's usage period at `at` from the rows; returns the
    users whose row was (or, in a dry run, would be) written."""
    params: dict[str, object] = {"at": at}
    if "storage_bytes_used" in metrics:
        params |= _bytes_per_row(conn)
    cursor = conn.execute(_refresh_sql(metrics, dry_run=dry_run), params)
    if dry_run:
        row = cursor.fetchone()
        return int(row[0]) if row else 0
    return cursor.rowcount


def record_signals_ingested(
    conn: psycopg.Connection, user_id: uuid.UUID, written: int, at: datetime
) -> None:
    """Add signals a user's feed just wrote to their usage period at `at`."""
    if not written:
        return
    conn.execute(
        """INSERT INTO prediction_usage_metrics
             (user_id, period_start, period_end, signals_ingested)
           SELECT p.user_id, p.period_start, p.period_end, %(written)s
           FROM predict_user_plans(%(at)s) p WHERE p.user_id = %(user)s
           ON CONFLICT (user_id, period_start) DO UPDATE
             SET signals_ingested = prediction_usage_metrics.signals_ingested
                                    + EXCLUDED.signals_ingested,
                 updated_at = now()""",
        {"user": user_id, "written": written, "at": at},
    )


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


def correct_feed_counters(conn: psycopg.Connection, now: datetime, *, dry_run: bool) -> int:
    """Each feed's signals_ingested_24h recomputed from its runs of the 24 hours before `now`;
    the number of feeds whose counter was wrong (corrected, unless `dry_run`)."""
    since = now - timedelta(hours=24)
    if dry_run:
        counted = conn.execute(_FEEDS_24H.format(action=_FEEDS_24H_COUNT), {"since": since})
        return one_row(counted)[0]
    return conn.execute(_FEEDS_24H.format(action=_FEEDS_24H_UPDATE), {"since": since}).rowcount
