"""rules: one rule-sensor tick (evaluate_tick: changed events, rules in scope, trigger
conditions, throttling, executions and audit written) with 10,000 enabled rules over every
scope and trigger type, for 1,000 / 10,000 / 50,000 changed events out of 50,000, against a
baseline measured in the same transaction: one SQL statement that hash-joins the changed events
to the enabled rules in scope (a UNION ALL of one equi-join per scope type) and counts the
pairs (the tick's `evaluated` must equal that count).

Rules: 60 % scoped to one event, 20 % to a category, 10 % to a tag, 8 % to a campaign and 2 %
(200 rules) to all events; trigger types in turn. Every event has a day of hourly snapshots
(for the shift and volume-spike look-backs) and a probability move in the tick. Each tick runs
in a transaction that is rolled back, so every size starts from the same state.
Prints `rules tick: X.XX s at 10,000 (target <= 1.0), ratio R.RR of one hash join ...`, then
per size the tick, its cost per 1,000 changed events (the target is linear: the same at every
size) and the baseline; at 50,000 the target is <= 5.0 s.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _db import fresh_database

from predict_pipeline.db.connection import PIPELINE_ROLE, connect
from predict_pipeline.rules.engine import evaluate_tick

EVENTS = 50_000
RULES = 10_000
TARGETS_S = {10_000: 1.0, 50_000: 5.0}
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
USER = "00000000-0000-4000-8000-0000000000b1"

_SEED = [
    "INSERT INTO auth.users (id, email) VALUES (%(user)s, 'bench@example.com')",
    """INSERT INTO prediction_categories (id, name, slug)
       SELECT md5('c' || i)::uuid, 'bench ' || i, 'bench-' || i FROM generate_series(0, 19) i""",
    """INSERT INTO prediction_events (id, title, slug, category_id, tags, current_probability,
         previous_probability, sentiment_score, previous_sentiment, trust_score,
         previous_trust_score, divergence, previous_divergence, updated_at)
       SELECT md5('e' || i)::uuid, 'Event ' || i, 'event-' || i, md5('c' || (i %% 20))::uuid,
              ARRAY['tag' || (i %% 12), 'tag' || ((i / 12) %% 12)],
              p.now, p.now + ((i %% 9) - 4) / 200.0,
              round((((i * 31) %% 200) / 100.0 - 1)::numeric, 4),
              round(least(1, greatest(-1, ((i * 31) %% 200) / 100.0 - 1 + ((i %% 7) - 3) / 50.0))
                    ::numeric, 4),
              round((((i * 13) %% 100) / 100.0)::numeric, 4),
              round(least(1, ((i * 13) %% 100) / 100.0 + (i %% 5) / 100.0)::numeric, 4),
              (ARRAY['NONE', 'LOW', 'MEDIUM', 'HIGH', 'EXTREME'])[1 + i %% 5],
              (ARRAY['NONE', 'LOW', 'MEDIUM', 'HIGH', 'EXTREME'])[
                1 + CASE WHEN i %% 20 = 0 THEN (i / 20) %% 5 ELSE i %% 5 END],
              %(old)s
       FROM generate_series(0, %(events)s - 1) i
       CROSS JOIN LATERAL (SELECT round((0.06 + 0.88 * ((i * 7919) %% 1000) / 1000.0)::numeric,
                                        4) AS now) p""",
    """INSERT INTO prediction_snapshots (event_id, snapshot_at, probability, volume)
       SELECT md5('e' || i)::uuid, %(now)s - make_interval(hours => h),
              round((0.06 + 0.88 * ((i * 7919) %% 1000) / 1000.0 + ((h * 13 + i) %% 11 - 5) / 100.0)
                    ::numeric, 4),
              CASE WHEN h = 1 AND i %% 50 = 0 THEN 400 ELSE 100 + (i + h * 37) %% 50 END
       FROM generate_series(0, %(events)s - 1) i, generate_series(1, 24) h""",
    """INSERT INTO prediction_campaigns (id, user_id, name)
       SELECT md5('k' || i)::uuid, %(user)s, 'campaign ' || i FROM generate_series(0, 49) i""",
    """INSERT INTO prediction_campaign_events (campaign_id, event_id, relationship,
         probability_threshold)
       SELECT md5('k' || (i %% 50))::uuid, md5('e' || (i * 37 %% %(events)s))::uuid,
              (ARRAY['monitors', 'depends_on', 'contraindicates'])[1 + i %% 3],
              round((0.2 + (i %% 7) / 10.0)::numeric, 2)
       FROM generate_series(0, 999) i ON CONFLICT DO NOTHING""",
    """INSERT INTO prediction_rules (user_id, name, scope_type, scope_id, scope_tag,
         trigger_type, trigger_params, cooldown_minutes, max_fires_per_day, updated_at)
       SELECT %(user)s, 'rule ' || i, s.scope_type,
              CASE s.scope_type
                WHEN 'event' THEN md5('e' || (i * 5 %% %(events)s))::uuid
                WHEN 'category' THEN md5('c' || (i %% 20))::uuid
                WHEN 'campaign' THEN md5('k' || (i %% 50))::uuid END,
              CASE WHEN s.scope_type = 'tag' THEN 'tag' || (i %% 12) END,
              t.types[1 + i %% 10], t.params[1 + i %% 10], 60, 10, %(old)s
       FROM generate_series(0, %(rules)s - 1) i
       CROSS JOIN LATERAL (SELECT CASE WHEN i %% 100 < 60 THEN 'event'
                                       WHEN i %% 100 < 80 THEN 'category'
                                       WHEN i %% 100 < 90 THEN 'tag'
                                       WHEN i %% 100 < 98 THEN 'campaign'
                                       ELSE 'all' END AS scope_type) s
       CROSS JOIN (SELECT ARRAY['PROBABILITY_CROSSES_ABOVE', 'PROBABILITY_CROSSES_BELOW',
                                'PROBABILITY_SHIFT', 'SENTIMENT_SHIFT', 'TRUST_BELOW',
                                'DIVERGENCE_AT_LEAST', 'FLAG_RAISED', 'VOLUME_SPIKE',
                                'EVENT_RESOLVED', 'CAMPAIGN_THRESHOLD'] AS types,
                          ARRAY['{"threshold": 0.5}', '{"threshold": 0.3}',
                                '{"min_change": 0.3, "window_minutes": 240}',
                                '{"min_change": 0.8}', '{"threshold": 0.4}',
                                '{"level": "HIGH"}',
                                '{"flag_types": ["WASH_TRADING", "VOLUME_SPIKE"]}',
                                '{"min_ratio": 1.9, "window_hours": 6}',
                                '{}', '{}']::jsonb[] AS params) t""",
    "ANALYZE",
]

# The changed events of a tick: their state moved just now, and some got a trust flag.
_CHANGE = [
    """UPDATE prediction_events SET updated_at = %(at)s
       WHERE id IN (SELECT md5('e' || i)::uuid FROM generate_series(0, %(n)s - 1) i)""",
    """INSERT INTO prediction_trust_flags (event_id, flag_type, severity, description, created_at)
       SELECT md5('e' || i)::uuid, 'WASH_TRADING', 'ALERT', 'bench', %(at)s
       FROM generate_series(0, %(n)s - 1, 50) i""",
]


# The baseline: the changed events joined to the enabled rules in their scope, one equi-join
# per scope type (a tag rule meets each of the event's tags), every pair produced and counted
# (counted, not written: millions of pairs in a temp table would measure the write instead).
_BASELINE = """
WITH changed AS MATERIALIZED (
  SELECT id, category_id, tags FROM prediction_events
  WHERE updated_at > %(since)s AND updated_at <= %(until)s),
rules AS MATERIALIZED (
  SELECT id, scope_type, scope_id, scope_tag FROM prediction_rules WHERE enabled)
SELECT count(*) FROM (
  SELECT r.id AS rule_id, c.id AS event_id
  FROM rules r JOIN changed c ON c.id = r.scope_id WHERE r.scope_type = 'event'
  UNION ALL
  SELECT r.id, c.id
  FROM rules r JOIN changed c ON c.category_id = r.scope_id WHERE r.scope_type = 'category'
  UNION ALL
  SELECT r.id, t.id
  FROM rules r JOIN (SELECT DISTINCT c.id, u.tag FROM changed c, unnest(c.tags) u(tag)) t
    ON t.tag = r.scope_tag WHERE r.scope_type = 'tag'
  UNION ALL
  SELECT r.id, c.id
  FROM rules r JOIN prediction_campaign_events ce ON ce.campaign_id = r.scope_id
  JOIN changed c ON c.id = ce.event_id WHERE r.scope_type = 'campaign'
  UNION ALL
  SELECT r.id, c.id FROM rules r CROSS JOIN changed c WHERE r.scope_type = 'all'
) pairs
"""


def _tick(url: str, changed: int) -> tuple[float, int, int, float, int]:
    """The tick's seconds, pairs and firings, and the baseline's seconds and pairs, on the
    same changed events (rolled back after)."""
    since = NOW - timedelta(minutes=5)
    with connect(url, role=PIPELINE_ROLE) as conn:
        at = NOW - timedelta(minutes=1)
        for statement in _CHANGE:
            conn.execute(statement, {"n": changed, "at": at})
        # The rows just changed still have their old statistics (one changed event expected),
        # so the planner would nest-loop the joins; the baseline is the hash join.
        conn.execute("SET enable_nestloop = off")
        started = time.perf_counter()
        pairs = conn.execute(_BASELINE, {"since": since, "until": NOW}).fetchone()[0]
        baseline = time.perf_counter() - started
        conn.execute("RESET enable_nestloop")
        started = time.perf_counter()
        report = evaluate_tick(conn, since=since, until=NOW)
        seconds = time.perf_counter() - started
        conn.rollback()
    if report.changed_events != changed or pairs != report.evaluated:
        raise SystemExit(
            f"rules bench: {changed:,} events changed; the tick saw {report.changed_events:,} "
            f"and evaluated {report.evaluated:,} pairs, the baseline joined {pairs:,}"
        )
    return seconds, report.evaluated, len(report.fired), baseline, pairs


def main() -> None:
    with fresh_database() as url:
        with connect(url, role=None, autocommit=True) as conn:
            conn.execute(
                "SELECT predict_ensure_snapshot_partitions(%s, %s)", (NOW - timedelta(days=2), NOW)
            )
            params = {
                "user": USER,
                "events": EVENTS,
                "rules": RULES,
                "now": NOW,
                "old": NOW - timedelta(days=1),
            }
            for statement in _SEED:
                conn.execute(statement, params)
        _tick(url, 1_000)  # warm the caches once
        results = {n: _tick(url, n) for n in (1_000, 10_000, 50_000)}
    seconds, _, _, baseline, _ = results[10_000]
    print(
        f"rules tick: {seconds:.2f} s at 10,000 (target <= {TARGETS_S[10_000]}), ratio "
        f"{seconds / baseline:.2f} of one hash join of changed events to rules in scope"
    )
    for n, (s, evaluated, fired, base, _) in results.items():
        target = f" (target <= {TARGETS_S[n]})" if n in TARGETS_S else ""
        print(
            f"  {n:>6,} changed events: {s:.2f} s{target}, {s / n * 1000:.3f} s per 1,000 "
            f"changed events (target: linear), {evaluated:,} rule-event pairs, {fired:,} fired; "
            f"baseline {base:.3f} s (ratio {s / base:.1f})"
        )


if __name__ == "__main__":
    main()
