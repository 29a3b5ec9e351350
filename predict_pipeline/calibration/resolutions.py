"""Resolving events from settled markets, closing dispute windows, and reading what
calibration scores: every step set-based and audit-logged.

An ACTIVE event is resolved from its markets when every linked market that reported a
settlement reports the same outcome (`resolution_method = 'market_settled'`); when they
disagree the event is left open and an audit entry says which markets said what.
`market_final_probability` is the settled markets' mean last price.

**The scored probability is the last one before close.** A resolution's close is the event's
resolution date or the resolution time, whichever is earlier. `final_probability` is the
event's pooled probability at its last observation at or before close, however long before
close that was: at that moment t*, each market's (source, market id, signal type) latest
probability at or before t* (within the pooling's 30-day carry-forward of t*) is pooled in
log-odds space as the snapshots pool, with weights
`weight × reliability × 0.5^((t* − t_i) / 60 min)`, from the exact value
(`raw_data.value_exact` where the DECIMAL column rounded it). It is read from the signals,
not from the hourly snapshots, so an observation in the last partial hour counts.
`final_probability_exact` keeps it unrounded (calibration scores it), `final_observed_at` is
t*, and `probability_1d/7d/30d` are the same at the last observation a day, a week and 30
days before close.

**Scores do not depend on arrival order.** Stage 2 clears `scored_at` of a resolution when
it writes signals for its event; every run scores the resolutions without `scored_at`
(set-based, one statement, which also writes each series' reads at every horizon into
prediction_market_scores, market_scores.py, after their earlier rows are deleted), and a
resolution whose scores change when history arrived after it is audited as
`resolution.rescored` with the scores before and after.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pandas as pd
import psycopg

from predict_pipeline.audit import SERVICE, record_audits
from predict_pipeline.calibration.market_scores import (
    MARKET_SCORES_SQL,
    OBSERVED_AND_TARGETS_SQL,
    clear_market_scores,
    horizon_parameters,
)
from predict_pipeline.db.rows import one_row
from predict_pipeline.model import PROBABILITY_TYPES
from predict_pipeline.snapshots.compute import (
    CLIP_EPSILON,
    LOGIT_TERM,
    PoolingSettings,
    pooled_probability_sql,
)

DEFAULT_DISPUTE_WINDOW = timedelta(hours=48)
EVENT_STATUS = {
    "YES": "RESOLVED_YES",
    "NO": "RESOLVED_NO",
    "AMBIGUOUS": "RESOLVED_AMBIGUOUS",
    "CANCELLED": "CANCELLED",
}


@dataclass(frozen=True, slots=True)
class ResolutionReport:
    resolved: list[tuple[str, str]]  # (event title, outcome)
    conflicts: list[str]  # event titles left open because markets disagree
    finalised: int
    rescored: int = 0  # resolutions whose scores changed because history arrived after them


_SETTLED_SQL = """
SELECT ms.event_id, e.title, array_agg(DISTINCT ms.resolution ORDER BY ms.resolution),
       max(ms.resolved_at), avg(ms.last_price)::float8,
       jsonb_object_agg(ms.source || ':' || ms.source_event_id, ms.resolution),
       array_agg(DISTINCT ms.source_url) FILTER (WHERE ms.source_url IS NOT NULL),
       jsonb_object_agg(ms.source || ':' || ms.source_event_id, ms.resolution_probability)
         FILTER (WHERE ms.resolution_probability IS NOT NULL)
FROM predict_meta.market_settlements ms
JOIN prediction_events e ON e.id = ms.event_id AND e.status = 'ACTIVE'
WHERE NOT EXISTS (SELECT 1 FROM prediction_resolutions r WHERE r.event_id = ms.event_id)
GROUP BY ms.event_id, e.title
"""


# The batch's settled events, read once: each resolved, or its conflict audited, below.
_RESOLVE_SQL = """
WITH settled AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
    event_id uuid, outcomes text[], outcome text, status text, details text, urls text[],
    market_p numeric, resolved_at timestamptz, markets jsonb)
),
conflicted AS (
  -- Once per distinct disagreement, not on every run.
  INSERT INTO prediction_audit_log
    (actor_type, action, resource_type, resource_id, details, service, severity)
  SELECT 'system', 'event.resolution_conflict', 'prediction_events', s.event_id,
         jsonb_build_object('outcomes', to_jsonb(s.outcomes), 'markets', s.markets,
                            'reason', 'settled markets disagree; the event was not auto-resolved'),
         %(service)s, 'WARNING'
  FROM settled s
  WHERE s.outcome IS NULL
    AND NOT EXISTS (SELECT 1 FROM prediction_audit_log a
                    WHERE a.action = 'event.resolution_conflict' AND a.resource_id = s.event_id
                      AND a.details->'markets' = s.markets)
),
created AS (
  INSERT INTO prediction_resolutions
    (event_id, outcome, outcome_details, evidence_urls, market_final_probability,
     resolution_method, resolved_at, dispute_window_end)
  SELECT s.event_id, s.outcome, s.details, s.urls, s.market_p, 'market_settled', s.resolved_at,
         %(window_end)s
  FROM settled s WHERE s.outcome IS NOT NULL
  RETURNING id, event_id
),
closed AS (
  UPDATE prediction_events e SET status = s.status, resolved_at = s.resolved_at,
                                 updated_at = now()
  FROM settled s JOIN created c USING (event_id)
  WHERE e.id = s.event_id
),
audited AS (
  INSERT INTO prediction_audit_log
    (actor_type, action, resource_type, resource_id, details, previous_state, new_state,
     service, severity)
  SELECT 'system', 'event.resolved', 'prediction_events', s.event_id,
         jsonb_build_object('method', 'market_settled', 'markets', s.markets,
                            'resolution_id', c.id::text),
         '{"status": "ACTIVE"}'::jsonb,
         jsonb_build_object('status', s.status, 'outcome', s.outcome), %(service)s, 'INFO'
  FROM settled s JOIN created c USING (event_id)
)
SELECT id FROM created
"""


def resolve_from_markets(
    conn: psycopg.Connection, *, now: datetime, dispute_window: timedelta = DEFAULT_DISPUTE_WINDOW
) -> ResolutionReport:
    """Resolve every event whose settled markets agree, audit those that disagree, score and
    finalise: a fixed number of statements, whatever the number of events."""
    resolved: list[tuple[str, str]] = []
    conflicts: list[str] = []
    batch = []
    for (
        event_id,
        title,
        outcomes,
        settled_at,
        market_p,
        by_market,
        urls,
        resolved_to,
    ) in conn.execute(_SETTLED_SQL).fetchall():
        row = {"event_id": event_id, "outcomes": outcomes, "markets": by_market}
        if len(outcomes) > 1:
            conflicts.append(title)
        else:
            outcome = outcomes[0]
            row |= {
                "outcome": outcome,
                "status": EVENT_STATUS[outcome],
                "details": settlement_details(by_market, resolved_to),
                "urls": urls,
                "market_p": None if market_p is None else round(market_p, 4),
                "resolved_at": min(settled_at, now) if settled_at else now,
            }
            resolved.append((title, outcome))
        batch.append(row)
    created: set = set()
    if batch:
        created = {
            resolution_id
            for (resolution_id,) in conn.execute(
                _RESOLVE_SQL,
                {
                    "rows": orjson.dumps(batch).decode(),
                    "window_end": now + dispute_window,
                    "service": SERVICE,
                },
            )
        }
    rescored = score_resolutions(conn, now=now, created=created)
    return ResolutionReport(resolved, conflicts, finalise_resolutions(conn, now=now), rescored)


def settlement_details(by_market: dict[str, str], resolved_to: dict[str, float] | None) -> str:
    """`outcome_details` of a resolution from settled markets: the markets, and the probability
    each resolved to where it settled at neither 1 nor 0 (Manifold MKT, Kalshi scalar, a
    Polymarket split), which the outcome AMBIGUOUS alone would lose."""
    shares = resolved_to or {}
    return f"settled by {len(by_market)} market(s): " + ", ".join(
        f"{market} (resolved to probability {shares[market]:.4g})" if market in shares else market
        for market in sorted(by_market)
    )


_FINALISE_SQL = """
WITH final AS (
  UPDATE prediction_resolutions r SET is_final = true
  WHERE NOT r.is_final AND r.dispute_window_end <= %(now)s
    AND NOT EXISTS (SELECT 1 FROM prediction_resolution_disputes d
                    WHERE d.resolution_id = r.id AND d.status IN ('open', 'under_review'))
  RETURNING r.id, r.event_id
),
audited AS (
  INSERT INTO prediction_audit_log
    (actor_type, action, resource_type, resource_id, details, new_state, service, severity)
  SELECT 'system', 'resolution.finalised', 'prediction_resolutions', f.id,
         jsonb_build_object('event_id', f.event_id::text), '{"is_final": true}'::jsonb,
         %(service)s, 'INFO'
  FROM final f
)
SELECT count(*) FROM final
"""


def finalise_resolutions(conn: psycopg.Connection, *, now: datetime) -> int:
    """Resolutions whose dispute window closed with no open dispute become final (one
    statement, audited)."""
    return one_row(conn.execute(_FINALISE_SQL, {"now": now, "service": SERVICE}))[0]


# Ids as text, times as epoch microseconds and probabilities as float8: what the frame holds,
# read without a Python object per uuid, datetime and decimal (half the time at 100k rows).
_SCORED_SQL = """
SELECT r.event_id::text AS event_id, e.category_id::text AS category_id, r.outcome,
       coalesce(r.final_probability_exact, r.final_probability::float8) AS final_probability,
       (extract(epoch FROM r.resolved_at) * 1000000)::bigint AS resolved_at,
       r.probability_1d::float8 AS p_1d, r.probability_7d::float8 AS p_7d,
       r.probability_30d::float8 AS p_30d
FROM prediction_resolutions r
JOIN prediction_events e ON e.id = r.event_id
"""

# The snapshots' pooling (predict_pipeline/snapshots/compute.py): clip, half-life, carry-forward,
# extremizing, at their defaults.
_POOLING = {
    "eps": CLIP_EPSILON,
    "half_life": PoolingSettings().half_life_minutes,
    "carry": timedelta(days=PoolingSettings().carry_forward_days),
    "alpha": PoolingSettings().extremize,
}

# Every resolution to score, at close and at each horizon before it: the last observation at
# or before that moment, each market's latest probability at or before it, pooled; and in the
# same statement each series' reads at every horizon (market_scores.py) into
# prediction_market_scores.
_SCORE_SQL = (
    """
WITH closes AS (
  SELECT r.id AS resolution_id, r.event_id,
         least(coalesce(e.resolution_date, r.resolved_at), r.resolved_at) AS close
  FROM prediction_resolutions r
  JOIN prediction_events e ON e.id = r.event_id
  WHERE r.scored_at IS NULL AND (%(ids)s::uuid[] IS NULL OR r.id = ANY(%(ids)s::uuid[]))
),
{observed_and_targets},
last_seen AS (
  -- Each target's last observation of the event at or before it: a running max over the
  -- event's observation moments and targets on one time line. Each step is its own.
  SELECT resolution_id, event_id, horizon, at FROM (
    SELECT resolution_id, event_id, horizon, kind,
           max(at) OVER (PARTITION BY resolution_id ORDER BY moment, kind
                         ROWS UNBOUNDED PRECEDING) AS at
    FROM (SELECT resolution_id, event_id, NULL::text AS horizon, at AS moment, 0 AS kind, at
          FROM steps
          UNION ALL
          SELECT resolution_id, event_id, horizon, cutoff, 1, NULL FROM targets) x
  ) y
  WHERE kind = 1 AND at IS NOT NULL
  UNION ALL
  SELECT resolution_id, event_id, horizon, at FROM steps
),
pooled_line AS (
  -- Each pooled read beside each market's (source, market, signal type) observations; a
  -- read's group is the number of that market's observations before it, so its latest one
  -- (of equal times the higher value) leads the group.
  SELECT x.*, count(x.fetched_at) OVER (
           PARTITION BY x.resolution_id, x.source, x.market_key, x.signal_type
           ORDER BY x.moment, x.kind, x.v ROWS UNBOUNDED PRECEDING) AS grp
  FROM (
    SELECT resolution_id, source, market_key, signal_type, NULL::text AS horizon,
           fetched_at AS moment, 0 AS kind, v, base_w, fetched_at
    FROM observed
    UNION ALL
    SELECT l.resolution_id, k.source, k.market_key, k.signal_type, l.horizon, l.at, 1, NULL,
           NULL, NULL
    FROM last_seen l
    JOIN (SELECT DISTINCT resolution_id, source, market_key, signal_type FROM observed) k
      USING (resolution_id)
  ) x
),
latest AS (
  -- Within the pooling's carry-forward, weighted by age as the snapshots weigh it.
  SELECT resolution_id, horizon, at, v,
         base_w * power(0.5, extract(epoch FROM at - fetched_at)::float8
                             / (60.0 * %(half_life)s)) AS w
  FROM (
    SELECT resolution_id, horizon, moment AS at, kind, grp,
           max(v) OVER g AS v, max(base_w) OVER g AS base_w, max(fetched_at) OVER g AS fetched_at
    FROM pooled_line
    WINDOW g AS (PARTITION BY resolution_id, source, market_key, signal_type, grp)
  ) r
  WHERE kind = 1 AND grp > 0 AND fetched_at > at - %(carry)s
),
pooled AS (
  SELECT t.resolution_id, t.horizon, t.at, {pooled} AS p
  FROM latest t GROUP BY 1, 2, 3
),
pooled_steps AS (
  SELECT resolution_id, at, p FROM pooled WHERE horizon = 'STEP'
),
at_each AS (
  -- Without signals (retention dropped them), the last snapshot at or before the moment.
  SELECT t.resolution_id, t.event_id, t.horizon, coalesce(p.p, snap.probability) AS p,
         coalesce(p.at, snap.snapshot_at) AS at
  FROM targets t
  LEFT JOIN pooled p USING (resolution_id, horizon)
  LEFT JOIN LATERAL (
    SELECT s.probability::float8 AS probability, s.snapshot_at FROM prediction_snapshots s
    WHERE p.p IS NULL AND s.event_id = t.event_id AND s.snapshot_at <= t.cutoff
    ORDER BY s.snapshot_at DESC LIMIT 1
  ) snap ON true
),
{market_scores},
scores AS (
  SELECT resolution_id,
         max(p) FILTER (WHERE horizon = 'CLOSE') AS p0,
         max(at) FILTER (WHERE horizon = 'CLOSE') AS at0,
         max(p) FILTER (WHERE horizon = '1D') AS p1, max(p) FILTER (WHERE horizon = '7D') AS p7,
         max(p) FILTER (WHERE horizon = '30D') AS p30
  FROM at_each GROUP BY 1
)
UPDATE prediction_resolutions r SET
  -- A resolution with no observation keeps a final probability set by hand.
  final_probability = CASE WHEN s.p0 IS NULL THEN old.final_probability
                           ELSE round(s.p0::numeric, 4) END,
  final_probability_exact = s.p0, final_observed_at = s.at0,
  probability_1d = s.p1, probability_7d = s.p7, probability_30d = s.p30, scored_at = %(now)s
FROM scores s, prediction_resolutions old
WHERE r.id = s.resolution_id AND old.id = r.id
RETURNING r.id, r.event_id, old.final_probability_exact, old.final_observed_at, old.probability_1d,
          old.probability_7d, old.probability_30d,
          r.final_probability_exact, r.final_observed_at, r.probability_1d, r.probability_7d,
          r.probability_30d
""".replace("{pooled}", pooled_probability_sql(f"(sum({LOGIT_TERM}) / nullif(sum(t.w), 0))"))
    .replace("{observed_and_targets}", OBSERVED_AND_TARGETS_SQL.strip())
    .replace("{market_scores}", MARKET_SCORES_SQL.strip())
)


def score_resolutions(
    conn: psycopg.Connection,
    *,
    now: datetime,
    resolution_ids: list | None = None,
    created: Collection = (),
) -> int:
    """Score every resolution that has no scores yet or whose event got signals since it was
    scored (scored_at cleared by stage 2), or only `resolution_ids`; returns how many earlier
    resolutions' scores changed, each audited as `resolution.rescored` (those `created` in
    the caller's run are audited as resolved instead)."""
    clear_market_scores(conn, resolution_ids=resolution_ids)
    rows = conn.execute(
        _SCORE_SQL,
        {
            **_POOLING,
            **horizon_parameters(),
            "types": list(PROBABILITY_TYPES),
            "ids": resolution_ids,
            "now": now,
        },
    ).fetchall()
    entries = []
    for row in rows:
        resolution_id, event_id = row[:2]
        before, after = row[2:7], row[7:12]
        if resolution_id in created or before == after:
            continue
        names = ("final_probability", "final_observed_at", "p_1d", "p_7d", "p_30d")
        entries.append(
            (
                resolution_id,
                {
                    "event_id": str(event_id),
                    "reason": "signals were written for the event after it was scored",
                    "before": dict(zip(names, before, strict=True)),
                    "after": dict(zip(names, after, strict=True)),
                },
            )
        )
    record_audits(
        conn,
        action="resolution.rescored",
        resource_type="prediction_resolutions",
        entries=entries,
        actor_type="system",
    )
    return len(entries)


def mark_for_rescoring(conn: psycopg.Connection, event_ids: list) -> int:
    """Resolutions of these events are scored again at the next run (their history grew)."""
    if not event_ids:
        return 0
    return conn.execute(
        "UPDATE prediction_resolutions SET scored_at = NULL"
        " WHERE event_id = ANY(%s) AND scored_at IS NOT NULL",
        (list(event_ids),),
    ).rowcount


def resolved_events(conn: psycopg.Connection) -> pd.DataFrame:
    """Every resolution with its final and horizon probabilities, as calibration reads it:
    event_id and category_id as text (None: no category), resolved_at in UTC, the
    probabilities as float64 (NaN: none)."""
    with conn.cursor() as cur:
        rows = cur.execute(_SCORED_SQL).fetchall()
        columns = [c.name for c in cur.description or []]
    frame = pd.DataFrame(rows, columns=columns)
    frame["resolved_at"] = pd.to_datetime(frame["resolved_at"], unit="us", utc=True)
    for column in ("final_probability", "p_1d", "p_7d", "p_30d"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame
