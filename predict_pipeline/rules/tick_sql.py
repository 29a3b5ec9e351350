"""The rule tick's evaluation SQL: the changed events, the rules that can fire, the event keys
their scopes join on, and every trigger type's condition (see `engine` for the tick itself).

The conditions mirror `triggers.evaluate` (exact numeric arithmetic, as there); the two are held
equal by tests/rules/test_tick_sql.py. Every statement is built from module constants only.
"""

from __future__ import annotations

CHANGED_SQL = """
SELECT event_id, max(changed_at) AS changed_at FROM (
  SELECT id AS event_id, updated_at AS changed_at FROM prediction_events
  WHERE updated_at > %(since)s AND updated_at <= %(until)s
  UNION ALL
  SELECT event_id, created_at FROM prediction_trust_flags
  WHERE created_at > %(since)s AND created_at <= %(until)s) changes
GROUP BY event_id ORDER BY changed_at, event_id LIMIT %(limit)s
"""


def _num(key: str) -> str:
    """A numeric param, NULL unless it is a JSON number (a cast of anything else would raise)."""
    return (
        f"CASE WHEN jsonb_typeof(r.trigger_params->'{key}') = 'number'"
        f" THEN (r.trigger_params->>'{key}')::numeric END"
    )


def _whole(key: str, low: int, high: int) -> str:
    """An integer param within [low, high], NULL otherwise (as its schema requires)."""
    value = f"({_num(key)})"
    return (
        f"CASE WHEN {value} BETWEEN {low} AND {high} AND {value} = trunc({value})"
        f" THEN {value}::int END"
    )


def _texts(key: str) -> str:
    return (
        f"CASE WHEN jsonb_typeof(r.trigger_params->'{key}') = 'array'"
        f" THEN ARRAY(SELECT jsonb_array_elements_text(r.trigger_params->'{key}')) END"
    )


# Tenancy clauses (sql/0050): whom each rule sees as (`viewer`, `viewer_orgs`); a campaign-scoped
# rule is live only if its viewer sees the campaign; a rule meets only the events its viewer sees.
_RULE_VIEWER = "CROSS JOIN LATERAL predict_rule_viewer(r.user_id, r.org_id, r.is_system) AS v"
_RULE_SEES_ITS_CAMPAIGN = """(r.scope_type <> 'campaign' OR EXISTS (
      SELECT 1 FROM prediction_campaigns c WHERE c.id = r.scope_id
        AND predict_sees_campaign(v.viewer, v.viewer_orgs, c.user_id, c.org_id)))"""


def _rule_sees_event(rules: str) -> str:
    """Rules `rules` (tick_live or its groups) see the event key `k`."""
    return (
        f"predict_sees_event({rules}.viewer, {rules}.viewer_orgs, k.is_public, k.org_id,"
        " k.created_by)"
    )


# The rules that can fire, with their params read once (rules whose params do not parse this
# way do not fire; their faults are reported from the reference validation), and the changed
# events once per scope key that reaches them: ('all', ''), ('event', id), ('category', id),
# ('tag', tag) and ('campaign', id) with the campaign link. A rule meets its events by one
# hash join on (scope_type, scope_key), filtered by what its viewer sees.
LIVE_SQL = f"""
CREATE TEMP TABLE tick_live AS
  SELECT r.id AS rule_id, r.scope_type, r.trigger_type,
         CASE r.scope_type WHEN 'all' THEN '' WHEN 'tag' THEN r.scope_tag
                           ELSE r.scope_id::text END AS scope_key,
         {_num("threshold")} AS threshold,
         {_num("min_change")} AS min_change,
         {_whole("window_minutes", 1, 10080)} AS window_minutes,
         r.trigger_params->>'direction' AS direction,
         array_position(%(levels)s::text[], r.trigger_params->>'level') AS level_rank,
         {_texts("flag_types")} AS flag_types,
         array_position(%(severities)s::text[],
                        coalesce(r.trigger_params->>'min_severity', 'INFO')) AS severity_rank,
         {_num("min_ratio")} AS min_ratio,
         {_whole("window_hours", 1, 720)} AS window_hours,
         coalesce({_texts("outcomes")}, %(outcomes)s::text[]) AS outcomes,
         {_num("min_edge")} AS min_edge, r.trigger_params->>'source' AS edge_source,
         r.user_id AS owner, v.viewer, v.viewer_orgs
  FROM prediction_rules r
  {_RULE_VIEWER}
  WHERE r.enabled AND (r.expires_at IS NULL OR r.expires_at > %(until)s)
    AND jsonb_typeof(r.trigger_params) = 'object'
    AND r.id IN (SELECT rule_id FROM predict_tick_rules(%(until)s, %(cadence)s))  -- plans
    AND {_RULE_SEES_ITS_CAMPAIGN}
"""  # noqa: S608 (module constants only)

KEYS_SQL = """
CREATE TEMP TABLE tick_keys AS
WITH ev AS MATERIALIZED (
  SELECT e.id, e.category_id, e.tags, e.is_public, e.org_id, e.created_by,
         e.current_probability, e.previous_probability,
         e.sentiment_score, e.previous_sentiment, e.trust_score, e.previous_trust_score,
         array_position(%(levels)s::text[], e.divergence) AS divergence_rank,
         array_position(%(levels)s::text[], e.previous_divergence) AS previous_divergence_rank,
         CASE e.status WHEN 'RESOLVED_YES' THEN 'YES' WHEN 'RESOLVED_NO' THEN 'NO'
                       WHEN 'RESOLVED_AMBIGUOUS' THEN 'AMBIGUOUS'
                       WHEN 'CANCELLED' THEN 'CANCELLED' END AS resolution,
         EXISTS (SELECT 1 FROM prediction_trust_flags f WHERE f.event_id = e.id
                 AND f.created_at > %(since)s AND f.created_at <= %(until)s) AS flagged
  FROM prediction_events e WHERE e.id = ANY(%(events)b::uuid[])
    AND e.id NOT IN (SELECT resource_id FROM predict_plan_holds_live(%(until)s)
                     WHERE kind = 'event')  -- plans
)
  SELECT k.scope_type, k.scope_key, k.campaign_id, k.relationship, k.link_threshold,
         e.id, e.is_public, e.org_id, e.created_by, e.current_probability,
         e.previous_probability, e.sentiment_score, e.previous_sentiment, e.trust_score,
         e.previous_trust_score, e.divergence_rank, e.previous_divergence_rank, e.resolution,
         e.flagged
  FROM ev e CROSS JOIN LATERAL (
    SELECT 'all' AS scope_type, '' AS scope_key, NULL::uuid AS campaign_id,
           NULL::text AS relationship, NULL::numeric AS link_threshold
    UNION ALL SELECT 'event', e.id::text, NULL, NULL, NULL
    UNION ALL SELECT 'category', e.category_id::text, NULL, NULL, NULL
              WHERE e.category_id IS NOT NULL
    UNION ALL SELECT DISTINCT 'tag', t.tag, NULL::uuid, NULL::text, NULL::numeric
              FROM unnest(e.tags) AS t(tag) WHERE t.tag IS NOT NULL
    UNION ALL SELECT 'campaign', ce.campaign_id::text, ce.campaign_id, ce.relationship,
                     ce.probability_threshold
              FROM prediction_campaign_events ce WHERE ce.event_id = e.id
                AND ce.campaign_id NOT IN (SELECT resource_id
                                           FROM predict_plan_holds_live(%(until)s)
                                           WHERE kind = 'campaign')) k  -- plans
"""

_DIRECTION = "coalesce(l.direction, 'any')"

# The newest interval with market edges of the event `k` up to the tick's end: the interval
# EDGE_AT_LEAST reads (the primary key's (event_id, snapshot_at) prefix finds it).
LATEST_EDGES_AT = (
    "SELECT max(x.snapshot_at) FROM prediction_market_edges x"
    " WHERE x.event_id = k.id AND x.snapshot_at <= %(until)s"
)
# The markets' edges at that interval, for each of %(events)s: the reference's input.
LATEST_EDGES_SQL = f"""
SELECT m.event_id, m.source, m.source_event_id, m.price, m.pooled_probability, m.edge,
       m.snapshot_at
FROM unnest(%(events)s::uuid[]) AS k(id)
JOIN prediction_market_edges m ON m.event_id = k.id AND m.snapshot_at = ({LATEST_EDGES_AT})
"""  # noqa: S608 (module constants only)
_CAMPAIGN_DIRECTION = (
    "coalesce(l.direction, CASE k.relationship WHEN 'depends_on' THEN 'down'"
    " WHEN 'contraindicates' THEN 'up' ELSE 'any' END)"
)

# Each trigger type's condition on a rule `l` and an event key `k` (with the look-back of
# its window, for shift and spike), mirroring `triggers.evaluate`; NULL (a missing input)
# never fires. Each starts with what it implies of the event alone (a crossing above needs a
# rise; a shift of at least min_change > 0 needs a change), which is applied before the join.
_CONDITIONS = {
    "PROBABILITY_CROSSES_ABOVE": (
        "k.previous_probability < k.current_probability"
        " AND k.previous_probability < l.threshold AND l.threshold <= k.current_probability"
    ),
    "PROBABILITY_CROSSES_BELOW": (
        "k.previous_probability > k.current_probability"
        " AND k.previous_probability > l.threshold AND l.threshold >= k.current_probability"
    ),
    "PROBABILITY_SHIFT": (
        "k.current_probability <> k.probability_ago"
        f" AND (({_DIRECTION} IN ('up', 'any')"
        " AND k.current_probability - k.probability_ago >= l.min_change)"
        f" OR ({_DIRECTION} IN ('down', 'any')"
        " AND k.probability_ago - k.current_probability >= l.min_change))"
    ),
    "SENTIMENT_SHIFT": (
        "k.sentiment_score <> k.previous_sentiment"
        f" AND (({_DIRECTION} IN ('up', 'any')"
        " AND k.sentiment_score - k.previous_sentiment >= l.min_change)"
        f" OR ({_DIRECTION} IN ('down', 'any')"
        " AND k.previous_sentiment - k.sentiment_score >= l.min_change))"
    ),
    "TRUST_BELOW": (
        "k.previous_trust_score > k.trust_score"
        " AND k.previous_trust_score >= l.threshold AND l.threshold > k.trust_score"
    ),
    "DIVERGENCE_AT_LEAST": (
        "k.previous_divergence_rank < k.divergence_rank"
        " AND k.previous_divergence_rank < l.level_rank AND l.level_rank <= k.divergence_rank"
    ),
    "EDGE_AT_LEAST": (
        "EXISTS (SELECT 1 FROM prediction_market_edges m WHERE m.event_id = k.id"  # noqa: S608
        f" AND m.snapshot_at = ({LATEST_EDGES_AT})"
        " AND (l.edge_source IS NULL OR m.source = l.edge_source)"
        f" AND (({_DIRECTION} IN ('up', 'any') AND m.edge >= l.min_edge)"
        f" OR ({_DIRECTION} IN ('down', 'any') AND -m.edge >= l.min_edge)))"
    ),
    "FLAG_RAISED": (
        "k.flagged AND EXISTS (SELECT 1 FROM new_flags f WHERE f.event_id = k.id"
        " AND f.flag_type = ANY(l.flag_types) AND f.rank >= l.severity_rank)"
    ),
    "VOLUME_SPIKE": "k.spike_median > 0 AND k.spike_volume >= l.min_ratio * k.spike_median",
    "EVENT_RESOLVED": "k.resolution IS NOT NULL AND k.resolution = ANY(l.outcomes)",
    "CAMPAIGN_THRESHOLD": (
        "k.scope_type = 'campaign' AND k.previous_probability <> k.current_probability"
        f" AND (({_CAMPAIGN_DIRECTION} IN ('up', 'any')"
        " AND k.previous_probability < k.link_threshold"
        " AND k.link_threshold <= k.current_probability)"
        f" OR ({_CAMPAIGN_DIRECTION} IN ('down', 'any')"
        " AND k.previous_probability > k.link_threshold"
        " AND k.link_threshold >= k.current_probability))"
    ),
}


def _extreme(function: str, column: str, trigger_type: str) -> str:
    """The least or greatest `column` over the tick's rules of one trigger type, computed once."""
    return (
        f"(SELECT {function}(b.{column}) FROM tick_live b"  # noqa: S608 (module constants only)
        f" WHERE b.trigger_type = '{trigger_type}')"
    )


# What a firing of some rule of the type implies of the event alone, from the extremes of the
# rules' params (a crossing above some threshold ends at or above the least one), applied to
# the event keys before the join: events no rule of the type can fire on meet no rule. A NULL
# param never fires and is left out of the extremes, as min() and max() leave it.
_BOUNDS = {
    "PROBABILITY_CROSSES_ABOVE": (
        f"k.current_probability >= {_extreme('min', 'threshold', 'PROBABILITY_CROSSES_ABOVE')}"
        " AND k.previous_probability < "
        f"{_extreme('max', 'threshold', 'PROBABILITY_CROSSES_ABOVE')}"
    ),
    "PROBABILITY_CROSSES_BELOW": (
        f"k.current_probability <= {_extreme('max', 'threshold', 'PROBABILITY_CROSSES_BELOW')}"
        " AND k.previous_probability > "
        f"{_extreme('min', 'threshold', 'PROBABILITY_CROSSES_BELOW')}"
    ),
    "PROBABILITY_SHIFT": (
        "abs(k.current_probability - k.probability_ago) >= "
        f"{_extreme('min', 'min_change', 'PROBABILITY_SHIFT')}"
    ),
    "SENTIMENT_SHIFT": (
        "abs(k.sentiment_score - k.previous_sentiment) >= "
        f"{_extreme('min', 'min_change', 'SENTIMENT_SHIFT')}"
    ),
    "TRUST_BELOW": (
        f"k.trust_score < {_extreme('max', 'threshold', 'TRUST_BELOW')}"
        f" AND k.previous_trust_score >= {_extreme('min', 'threshold', 'TRUST_BELOW')}"
    ),
    "DIVERGENCE_AT_LEAST": (
        f"k.divergence_rank >= {_extreme('min', 'level_rank', 'DIVERGENCE_AT_LEAST')}"
        " AND k.previous_divergence_rank < "
        f"{_extreme('max', 'level_rank', 'DIVERGENCE_AT_LEAST')}"
    ),
    "VOLUME_SPIKE": (
        f"k.spike_volume >= {_extreme('min', 'min_ratio', 'VOLUME_SPIKE')} * k.spike_median"
    ),
}
# The look-back table each windowed type joins, on its window column.
_LOOKBACKS = {
    "PROBABILITY_SHIFT": ("ev_keys_ago", "window_minutes"),
    "VOLUME_SPIKE": ("ev_keys_spike", "window_hours"),
}
_LOOKBACK_VALUES = {
    "PROBABILITY_SHIFT": "k.probability_ago, NULL::numeric, NULL::numeric",
    "VOLUME_SPIKE": "NULL::numeric, k.spike_volume, k.spike_median",
}


def _branch(trigger_type: str) -> str:
    """The firings of one trigger type: its rules joined to the event keys in their scope (with
    the look-back of their window, for shift and spike) by one hash join, the condition applied
    inside the join."""
    keys, window = _LOOKBACKS.get(trigger_type, ("tick_keys", None))
    on = f" AND k.{window} = l.{window}" if window else ""
    return (
        f"SELECT l.rule_id, k.id, k.campaign_id, k.relationship, k.link_threshold,"  # noqa: S608
        f" {_LOOKBACK_VALUES.get(trigger_type, 'NULL::numeric, NULL::numeric, NULL::numeric')}"
        f" FROM tick_live l JOIN {keys} k"
        f" ON k.scope_type = l.scope_type AND k.scope_key = l.scope_key{on}"
        f" WHERE l.trigger_type = '{trigger_type}' AND ({_CONDITIONS[trigger_type]})"
        f" AND ({_BOUNDS.get(trigger_type, 'true')})"
        f" AND {_rule_sees_event('l')}"
    )


CANDIDATES_SQL = f"""
WITH ago AS MATERIALIZED (
  -- The probability at or before `until - window` (the newest snapshot then), per changed
  -- event and window that some PROBABILITY_SHIFT rule in scope asks for.
  SELECT p.event_id, p.window_minutes,
         (SELECT s.probability FROM prediction_snapshots s
          WHERE s.event_id = p.event_id
            AND s.snapshot_at <= %(until)s - make_interval(mins => p.window_minutes)
          ORDER BY s.snapshot_at DESC LIMIT 1) AS probability_ago
  FROM (SELECT DISTINCT k.id AS event_id, l.window_minutes
        FROM (SELECT DISTINCT scope_type, scope_key, window_minutes FROM tick_live
              WHERE trigger_type = 'PROBABILITY_SHIFT' AND window_minutes IS NOT NULL) l
        JOIN tick_keys k ON k.scope_type = l.scope_type AND k.scope_key = l.scope_key) p
),
spike AS MATERIALIZED (
  -- The latest interval's volume (within the window and an hour) and the median interval
  -- volume of the trailing window before it, per changed event and window of some
  -- VOLUME_SPIKE rule in scope.
  SELECT p.event_id, p.window_hours, latest.volume AS spike_volume,
         (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY s.volume)
          FROM prediction_snapshots s
          WHERE s.event_id = p.event_id AND s.snapshot_at < latest.snapshot_at
            AND s.snapshot_at > latest.snapshot_at - make_interval(hours => p.window_hours)
         )::numeric AS spike_median
  FROM (SELECT DISTINCT k.id AS event_id, l.window_hours
        FROM (SELECT DISTINCT scope_type, scope_key, window_hours FROM tick_live
              WHERE trigger_type = 'VOLUME_SPIKE' AND window_hours IS NOT NULL) l
        JOIN tick_keys k ON k.scope_type = l.scope_type AND k.scope_key = l.scope_key) p
  CROSS JOIN LATERAL (
    SELECT s.snapshot_at, s.volume FROM prediction_snapshots s
    WHERE s.event_id = p.event_id AND s.snapshot_at <= %(until)s
      AND s.snapshot_at > %(until)s - make_interval(hours => p.window_hours + 1)
    ORDER BY s.snapshot_at DESC LIMIT 1) latest
),
-- The look-backs meet the event keys only where some rule of the type could fire (the
-- type's bound, as its branch applies it), so the keys of quiet events are not copied.
ev_keys_ago AS MATERIALIZED (
  SELECT k.*, a.window_minutes, a.probability_ago FROM tick_keys k JOIN ago a ON a.event_id = k.id
  WHERE {_BOUNDS["PROBABILITY_SHIFT"].replace("k.probability_ago", "a.probability_ago")}
),
ev_keys_spike AS MATERIALIZED (
  SELECT k.*, a.window_hours, a.spike_volume, a.spike_median
  FROM tick_keys k JOIN spike a ON a.event_id = k.id
  WHERE a.spike_median > 0
    AND {_BOUNDS["VOLUME_SPIKE"].replace("k.spike", "a.spike")}
),
new_flags AS MATERIALIZED (
  SELECT f.event_id, f.flag_type, array_position(%(severities)s::text[], f.severity) AS rank
  FROM prediction_trust_flags f
  WHERE f.created_at > %(since)s AND f.created_at <= %(until)s
    AND f.event_id = ANY(%(events)b::uuid[])
)
{" UNION ALL ".join(_branch(t) for t in _CONDITIONS)}
UNION ALL
-- An unknown trigger type reaches the reference validation, which reports it.
SELECT l.rule_id, k.id, k.campaign_id, k.relationship, k.link_threshold, NULL, NULL, NULL
FROM tick_live l JOIN tick_keys k ON k.scope_type = l.scope_type AND k.scope_key = l.scope_key
WHERE l.trigger_type <> ALL(%(types)s::text[]) AND {_rule_sees_event("l")}
"""  # noqa: S608 (module constants only)

CANDIDATE_COLUMNS = (
    "rule_id",
    "event_id",
    "campaign_id",
    "relationship",
    "probability_threshold",
    "probability_ago",
    "spike_volume",
    "spike_median",
)

# Rules in scope of each changed event, per rule owner: what the tick evaluated, credited to
# the feed runs of the same owner.
IN_SCOPE_COUNTS_SQL = f"""
CREATE TEMP TABLE tick_counts AS
SELECT k.id AS event_id, n.owner, sum(n.rules)::int AS evaluated
FROM tick_keys k
JOIN (SELECT scope_type, scope_key, viewer, viewer_orgs, owner, count(*) AS rules
      FROM tick_live GROUP BY 1, 2, 3, 4, 5) n
  ON n.scope_type = k.scope_type AND n.scope_key = k.scope_key AND {_rule_sees_event("n")}
GROUP BY k.id, n.owner
"""  # noqa: S608 (module constants only)
