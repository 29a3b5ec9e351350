"""Landing submitted campaign results, and what the loop derives from every result row.

`ingest` takes PENDING submissions (intake.py) and, under one lock so overlap checks cannot
race, resolves each row's campaign and variant among the submitter's own campaigns, adds the
reasons that need the database (unknown or ambiguous campaign or variant, a variant missing
where the campaign has variants, a period overlapping a stored result or another row of the
batch for the same variant), then lands the good rows: a new period is LANDED, the period of a
stored result with other values REVISED (late conversions; the stored row takes the new
values), the same values UNCHANGED. Every submission keeps its status and reasons; landing
and revisions are audited (`campaign.results_recorded`, as the submitting user).

Then, set-based over the rows concerned (each one UPDATE that writes only rows that change):

- `derive_metrics` — actual_ctr = clicks / impressions, actual_conversion_rate =
  conversions / clicks, actual_engagement_rate = engagements / impressions (4 decimals),
  actual_roas = revenue_cents / spend_cents (2 decimals). A zero or missing denominator gives
  NULL, never an error; so does a ratio the column cannot hold (rows written around the
  intake's checks).
- `freeze_predictions` — a row the loop sees for the first time gets the prediction in force
  when it was recorded (the campaign's predicted_at at or before recorded_at): the variant's
  success probability and predicted rates (a campaign without variants: its `forecast`), the
  primary metric, the benchmark and the recommended variant, and the linked events' log-odds
  shift of that moment (`event_shift`). A row recorded before any prediction keeps NULLs: a
  prediction made after it has seen it, so it is never scored. Frozen once (`scored_at`).
- `score_results` — prediction_error = |predicted − actual| on the primary metric;
  success = actual ≥ benchmark (4 decimals); prediction_direction_correct: among the rows of
  the same campaign and period, did the recommended variant beat the others? On the
  recommended variant's row, true when its rate is above every other variant's; on another
  variant's row, true when the recommended variant's rate is above this one's (a tie is not
  a win); NULL without a recommendation, without another variant's row in the period, or
  without the rates.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from predict_pipeline.audit import SERVICE
from predict_pipeline.campaigns.model import EVENT_CLIP, EVENT_WEIGHT
from predict_pipeline.db.rows import one_row

INGEST_LOCK = 7_242_031_070  # one ingestion at a time: overlap checks see every landed row
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
ZERO_UUID = "00000000-0000-0000-0000-000000000000"

# An event a campaign may read: one every reader of the campaign sees. Public events, the
# campaign's org's events, and, for a campaign outside any org, its owner's events and their
# orgs' (prediction_events' visibility, README "Tenancy in the database").
VISIBLE_EVENT = """(e.is_public IS TRUE
   OR (c.org_id IS NOT NULL AND e.org_id = c.org_id)
   OR (c.org_id IS NULL AND (e.created_by = c.user_id
       OR e.org_id IN (SELECT m.org_id FROM prediction_org_members m
                       WHERE m.user_id = c.user_id))))"""


@dataclass
class IngestReport:
    """What one ingestion did: counts per status, the rejected rows with their reasons, and the
    campaigns whose results changed."""

    statuses: dict[str, int] = field(default_factory=dict)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    campaigns: list[uuid.UUID] = field(default_factory=list)

    def count(self, status: str) -> int:
        return self.statuses.get(status, 0)


_INTAKE_SQL = f"""
CREATE TEMP TABLE campaign_intake ON COMMIT DROP AS
SELECT s.id, s.submitted_by, s.channel, s.origin, s.campaign_ref, s.variant_ref,
       s.impressions, s.clicks, s.conversions, s.engagements, s.spend_cents, s.revenue_cents,
       s.period_start, s.period_end, s.parse_faults AS reasons,
       camp.campaign_id, camp.matches AS campaign_matches,
       var.variants, var.matches AS variant_matches, var.variant_id,
       false AS resolved, NULL::text AS status, NULL::uuid AS result_id
FROM predict_meta.campaign_result_submissions s
LEFT JOIN LATERAL (
  SELECT CASE WHEN count(*) = 1 THEN (array_agg(c.id))[1] END AS campaign_id,
         count(*) AS matches
  FROM prediction_campaigns c
  WHERE c.user_id = s.submitted_by  -- only the submitter's own campaigns
    AND CASE WHEN s.campaign_ref ~ '{UUID_PATTERN}' THEN c.id = s.campaign_ref::uuid
             ELSE c.name = s.campaign_ref END
) camp ON true
LEFT JOIN LATERAL (
  SELECT count(*) AS variants, count(*) FILTER (WHERE x.hit) AS matches,
         CASE WHEN count(*) FILTER (WHERE x.hit) = 1
              THEN (array_agg(v.id) FILTER (WHERE x.hit))[1] END AS variant_id
  FROM prediction_campaign_variants v
  CROSS JOIN LATERAL (
    SELECT CASE WHEN s.variant_ref ~ '{UUID_PATTERN}' THEN v.id = s.variant_ref::uuid
                ELSE v.label = s.variant_ref END IS TRUE AS hit) x
  WHERE v.campaign_id = camp.campaign_id
) var ON true
WHERE s.status = 'PENDING' AND (%(ids)s::bigint[] IS NULL OR s.id = ANY(%(ids)s::bigint[]))
"""  # noqa: S608 (module constants only)

_REFERENCE_REASONS_SQL = """
UPDATE campaign_intake SET reasons = reasons || array_remove(ARRAY[
  CASE WHEN campaign_ref IS NOT NULL AND campaign_matches = 0
         THEN format('campaign: no campaign %s of yours', campaign_ref)
       WHEN campaign_matches > 1
         THEN format('campaign: %s of your campaigns are named %s; give its id',
                     campaign_matches, campaign_ref) END,
  CASE WHEN campaign_id IS NULL THEN NULL
       WHEN variants > 0 AND variant_ref IS NULL
         THEN 'variant: missing; the campaign has variants: name one (its id or label)'
       WHEN variants = 0 AND variant_ref IS NOT NULL
         THEN format('variant: the campaign has no variants; leave out %s', variant_ref)
       WHEN variant_ref IS NOT NULL AND variant_matches = 0
         THEN format('variant: no variant %s in this campaign', variant_ref)
       WHEN variant_matches > 1
         THEN format('variant: %s variants are labelled %s; give its id',
                     variant_matches, variant_ref) END], NULL);
UPDATE campaign_intake SET resolved = campaign_id IS NOT NULL
  AND period_start IS NOT NULL AND period_end IS NOT NULL AND period_end > period_start
  AND ((variants > 0 AND variant_id IS NOT NULL) OR (variants = 0 AND variant_ref IS NULL));
"""

_WHEN = "to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI\"Z\"')"
_OVERLAP_SQL = f"""
UPDATE campaign_intake i SET reasons = i.reasons || o.reasons
FROM (
  SELECT a.id, array_agg(format('period: overlaps the stored result of %s .. %s for this variant',
                                {_WHEN.format("r.result_period_start")},
                                {_WHEN.format("r.result_period_end")})
                         ORDER BY r.result_period_start) AS reasons
  FROM campaign_intake a
  JOIN prediction_campaign_results r
    ON r.campaign_id = a.campaign_id AND r.variant_id IS NOT DISTINCT FROM a.variant_id
   AND r.result_period_start < a.period_end AND a.period_start < r.result_period_end
   AND (r.result_period_start, r.result_period_end) <> (a.period_start, a.period_end)
  WHERE a.resolved
  GROUP BY a.id) o
WHERE o.id = i.id;
UPDATE campaign_intake i SET reasons = i.reasons || o.reasons
FROM (
  SELECT a.id, array_agg(
           format(CASE WHEN (a.period_start, a.period_end) = (b.period_start, b.period_end)
                       THEN 'period: the same period as %s with other values'
                       ELSE 'period: overlaps %s for the same variant' END,
                  coalesce(b.origin->>'name', 'another row')
                  || coalesce(' line ' || (b.origin->>'line'), ''))
           ORDER BY b.id) AS reasons
  FROM campaign_intake a
  JOIN campaign_intake b
    ON b.id <> a.id AND b.resolved AND b.campaign_id = a.campaign_id
   AND b.variant_id IS NOT DISTINCT FROM a.variant_id
   AND a.period_start < b.period_end AND b.period_start < a.period_end
  WHERE a.resolved
  GROUP BY a.id) o
WHERE o.id = i.id;
"""  # noqa: S608 (module constants only)

_OUTCOME_SQL = f"""
UPDATE campaign_intake i SET result_id = (
  SELECT r.id FROM prediction_campaign_results r
  WHERE r.campaign_id = i.campaign_id
    AND coalesce(r.variant_id, '{ZERO_UUID}') = coalesce(i.variant_id, '{ZERO_UUID}')
    AND r.result_period_start = i.period_start AND r.result_period_end = i.period_end)
WHERE cardinality(i.reasons) = 0;
UPDATE campaign_intake i SET status = CASE
  WHEN cardinality(i.reasons) > 0 THEN 'REJECTED'
  WHEN i.result_id IS NULL THEN 'LANDED'
  WHEN EXISTS (
    SELECT 1 FROM prediction_campaign_results r
    WHERE r.id = i.result_id
      AND (r.impressions, r.clicks, r.conversions, r.engagements, r.spend_cents, r.revenue_cents)
          IS NOT DISTINCT FROM (i.impressions::integer, i.clicks::integer,
                                i.conversions::integer, i.engagements::integer,
                                i.spend_cents::integer, i.revenue_cents::integer))
    THEN 'UNCHANGED'
  ELSE 'REVISED' END;
UPDATE campaign_intake SET result_id = gen_random_uuid() WHERE status = 'LANDED';
UPDATE campaign_intake SET result_id = NULL WHERE status = 'REJECTED';
"""  # noqa: S608 (module constants only)

_LAND_SQL = (
    """
INSERT INTO prediction_campaign_results
  (id, campaign_id, variant_id, impressions, clicks, conversions, engagements, spend_cents,
   revenue_cents, result_period_start, result_period_end, recorded_at, recorded_by)
SELECT result_id, campaign_id, variant_id, impressions, clicks, conversions, engagements,
       spend_cents, revenue_cents, period_start, period_end, %(now)s, submitted_by
FROM campaign_intake WHERE status = 'LANDED'
""",
    """
UPDATE prediction_campaign_results r SET
  impressions = i.impressions, clicks = i.clicks, conversions = i.conversions,
  engagements = i.engagements, spend_cents = i.spend_cents, revenue_cents = i.revenue_cents,
  recorded_by = i.submitted_by
FROM campaign_intake i WHERE i.status = 'REVISED' AND r.id = i.result_id
""",
    """
UPDATE predict_meta.campaign_result_submissions s SET
  status = i.status, reasons = i.reasons, result_id = i.result_id, processed_at = %(now)s
FROM campaign_intake i WHERE s.id = i.id
""",
    """
INSERT INTO prediction_audit_log
  (actor_id, actor_type, action, resource_type, resource_id, details, service)
SELECT submitted_by, 'user', 'campaign.results_recorded', 'prediction_campaigns', campaign_id,
       jsonb_build_object('landed', count(*) FILTER (WHERE status = 'LANDED'),
                          'revised', count(*) FILTER (WHERE status = 'REVISED'),
                          'channels', array_agg(DISTINCT channel),
                          'submissions', array_agg(id ORDER BY id)),
       %(service)s
FROM campaign_intake WHERE status IN ('LANDED', 'REVISED')
GROUP BY submitted_by, campaign_id
""",
)


def ingest(
    conn: psycopg.Connection, *, now: datetime, submission_ids: Sequence[int] | None = None
) -> IngestReport:
    """Land the PENDING submissions (those of `submission_ids`, or all), then derive, freeze and
    score the results of the campaigns they touched. One transaction."""
    report = IngestReport()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (INGEST_LOCK,))
        conn.execute("DROP TABLE IF EXISTS campaign_intake")
        ids = list(submission_ids) if submission_ids is not None else None
        conn.execute(_INTAKE_SQL, {"ids": ids})
        conn.execute(_REFERENCE_REASONS_SQL)
        conn.execute(_OVERLAP_SQL)
        conn.execute(_OUTCOME_SQL)
        for statement in _LAND_SQL:
            conn.execute(statement, {"now": now, "service": SERVICE})
        report.statuses = dict(
            conn.execute("SELECT status, count(*) FROM campaign_intake GROUP BY status").fetchall()
        )
        report.rejected = [
            {"submission": sid, "origin": origin, "reasons": list(reasons)}
            for sid, origin, reasons in conn.execute(
                "SELECT id, origin, reasons FROM campaign_intake WHERE status = 'REJECTED'"
                " ORDER BY id"
            )
        ]
        report.campaigns = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT campaign_id FROM campaign_intake"
                " WHERE status IN ('LANDED', 'REVISED') ORDER BY 1"
            )
        ]
        if report.campaigns:
            refresh_results(conn, now=now, campaign_ids=report.campaigns)
    return report


@dataclass(frozen=True, slots=True)
class RefreshReport:
    derived: int
    frozen: int
    scored: int


def refresh_results(
    conn: psycopg.Connection, *, now: datetime, campaign_ids: Sequence[uuid.UUID] | None = None
) -> RefreshReport:
    """Derived metrics, frozen predictions and scores of the results of `campaign_ids` (None:
    every campaign's), in that order."""
    return RefreshReport(
        derived=derive_metrics(conn, campaign_ids),
        frozen=freeze_predictions(conn, now=now, campaign_ids=campaign_ids),
        scored=score_results(conn, campaign_ids),
    )


_DERIVE_SQL = """
WITH ratios AS (
  SELECT id,
         clicks::numeric / nullif(impressions, 0) AS ctr,
         conversions::numeric / nullif(clicks, 0) AS cvr,
         revenue_cents::numeric / nullif(spend_cents, 0) AS roas,
         engagements::numeric / nullif(impressions, 0) AS er
  FROM prediction_campaign_results
  WHERE %(campaigns)s::uuid[] IS NULL OR campaign_id = ANY(%(campaigns)s::uuid[])
), derived AS (
  SELECT id,
         CASE WHEN abs(ctr) < 1000 THEN round(ctr, 4) END AS ctr,
         CASE WHEN abs(cvr) < 1000 THEN round(cvr, 4) END AS cvr,
         CASE WHEN abs(roas) < 100000 THEN round(roas, 2) END AS roas,
         CASE WHEN abs(er) < 1000 THEN round(er, 4) END AS er
  FROM ratios)
UPDATE prediction_campaign_results r SET
  actual_ctr = d.ctr, actual_conversion_rate = d.cvr, actual_roas = d.roas,
  actual_engagement_rate = d.er
FROM derived d
WHERE r.id = d.id
  AND (r.actual_ctr, r.actual_conversion_rate, r.actual_roas, r.actual_engagement_rate)
      IS DISTINCT FROM (d.ctr, d.cvr, d.roas, d.er)
"""


def derive_metrics(conn: psycopg.Connection, campaign_ids: Sequence[uuid.UUID] | None) -> int:
    """Write the derived rates of the campaigns' results; how many rows changed."""
    campaigns = list(campaign_ids) if campaign_ids is not None else None
    return conn.execute(_DERIVE_SQL, {"campaigns": campaigns}).rowcount


# The linked events' log-odds shift per campaign, as the model computes it (model.py).
EVENT_SHIFT_SQL = f"""
SELECT ce.campaign_id,
       sum(%(weight)s * ln(v.x / (1 - v.x)))::float8 AS event_shift
FROM prediction_campaign_events ce
JOIN prediction_campaigns c ON c.id = ce.campaign_id
JOIN prediction_events e ON e.id = ce.event_id
CROSS JOIN LATERAL (
  SELECT least(greatest(CASE ce.relationship WHEN 'depends_on' THEN e.current_probability
                             ELSE 1 - e.current_probability END, %(low)s), %(high)s) AS x) v
WHERE ce.relationship IN ('depends_on', 'contraindicates')
  AND e.current_probability IS NOT NULL AND {VISIBLE_EVENT}
GROUP BY ce.campaign_id
"""  # noqa: S608 (module constants only)

_FREEZE_SQL = f"""
WITH shift AS ({EVENT_SHIFT_SQL}),
frozen AS (
  SELECT r.id, coalesce(s.event_shift, 0) AS event_shift,
         c.predicted_at IS NOT NULL AND c.predicted_at <= r.recorded_at
           AND c.factors ? 'benchmark' AS in_force,
         c.factors, c.recommended_variant_id,
         CASE WHEN r.variant_id IS NULL
              THEN (c.factors->'forecast'->>'success_probability')::numeric
              ELSE v.success_probability END AS success_probability,
         CASE WHEN r.variant_id IS NULL
              THEN (c.factors->'forecast'->>'engagement_rate')::numeric
              ELSE v.predicted_engagement END AS engagement,
         CASE WHEN r.variant_id IS NULL
              THEN (c.factors->'forecast'->>'conversion_rate')::numeric
              ELSE v.predicted_conversion END AS conversion,
         r.variant_id IS NULL AND c.factors->'forecast'->>'variant_id' IS NOT NULL AS mismatched
  FROM prediction_campaign_results r
  JOIN prediction_campaigns c ON c.id = r.campaign_id
  LEFT JOIN prediction_campaign_variants v ON v.id = r.variant_id
  LEFT JOIN shift s ON s.campaign_id = r.campaign_id
  WHERE r.scored_at IS NULL
    AND (%(campaigns)s::uuid[] IS NULL OR r.campaign_id = ANY(%(campaigns)s::uuid[])))
UPDATE prediction_campaign_results r SET
  event_shift = round(f.event_shift::numeric, 4),
  predicted_success_probability = CASE WHEN f.in_force AND NOT f.mismatched
                                       THEN round(f.success_probability, 4) END,
  predicted_engagement_rate = CASE WHEN f.in_force AND NOT f.mismatched
                                   THEN round(f.engagement, 4) END,
  predicted_conversion_rate = CASE WHEN f.in_force AND NOT f.mismatched
                                   THEN round(f.conversion, 4) END,
  predicted_metric = CASE WHEN f.in_force AND NOT f.mismatched
                          AND f.success_probability IS NOT NULL
                          THEN f.factors->>'primary_metric' END,
  benchmark_rate = CASE WHEN f.in_force AND NOT f.mismatched
                        THEN round((f.factors->'benchmark'->>'rate')::numeric, 4) END,
  recommended_variant_id = CASE WHEN f.in_force THEN f.recommended_variant_id END,
  scored_at = %(now)s
FROM frozen f WHERE f.id = r.id
"""  # noqa: S608 (module constants only)


def freeze_predictions(
    conn: psycopg.Connection, *, now: datetime, campaign_ids: Sequence[uuid.UUID] | None
) -> int:
    """Freeze the prediction in force on every result row not yet seen; how many rows."""
    campaigns = list(campaign_ids) if campaign_ids is not None else None
    return conn.execute(
        _FREEZE_SQL,
        {
            "campaigns": campaigns,
            "now": now,
            "weight": EVENT_WEIGHT,
            "low": EVENT_CLIP[0],
            "high": EVENT_CLIP[1],
        },
    ).rowcount


_SCORE_SQL = """
WITH rated AS (
  SELECT r.id, r.campaign_id, r.variant_id, r.result_period_start, r.result_period_end,
         r.recommended_variant_id AS recommended, r.benchmark_rate, r.predicted_metric,
         CASE r.predicted_metric WHEN 'conversion_rate' THEN r.actual_conversion_rate
                                 WHEN 'engagement_rate' THEN r.actual_engagement_rate END AS actual,
         CASE r.predicted_metric WHEN 'conversion_rate' THEN r.predicted_conversion_rate
                                 WHEN 'engagement_rate' THEN r.predicted_engagement_rate
                                 END AS predicted
  FROM prediction_campaign_results r
  WHERE %(campaigns)s::uuid[] IS NULL OR r.campaign_id = ANY(%(campaigns)s::uuid[])
), scored AS (
  SELECT x.id,
         CASE WHEN x.actual BETWEEN 0 AND 1 AND x.predicted IS NOT NULL
              THEN round(abs(x.predicted - x.actual), 4) END AS error,
         CASE WHEN x.actual IS NOT NULL AND x.benchmark_rate IS NOT NULL
              THEN x.actual >= x.benchmark_rate END AS success,
         CASE WHEN x.variant_id IS NULL OR x.recommended IS NULL OR x.actual IS NULL
                   OR peers.others = 0 THEN NULL
              WHEN x.variant_id = x.recommended THEN x.actual > peers.best_other
              ELSE peers.recommended_rate > x.actual END AS direction
  FROM rated x
  CROSS JOIN LATERAL (
    SELECT count(*) AS others, max(y.rate) AS best_other,
           max(y.rate) FILTER (WHERE p.variant_id = x.recommended) AS recommended_rate
    FROM prediction_campaign_results p
    CROSS JOIN LATERAL (
      SELECT CASE x.predicted_metric WHEN 'conversion_rate' THEN p.actual_conversion_rate
                                     ELSE p.actual_engagement_rate END AS rate) y
    WHERE p.campaign_id = x.campaign_id AND p.result_period_start = x.result_period_start
      AND p.result_period_end = x.result_period_end AND p.variant_id <> x.variant_id
      AND y.rate IS NOT NULL
  ) peers
)
UPDATE prediction_campaign_results r SET
  prediction_error = s.error, prediction_direction_correct = s.direction, success = s.success
FROM scored s
WHERE r.id = s.id
  AND (r.prediction_error, r.prediction_direction_correct, r.success)
      IS DISTINCT FROM (s.error, s.direction, s.success)
"""


def score_results(conn: psycopg.Connection, campaign_ids: Sequence[uuid.UUID] | None) -> int:
    """prediction_error, prediction_direction_correct and success; how many rows changed."""
    campaigns = list(campaign_ids) if campaign_ids is not None else None
    return conn.execute(_SCORE_SQL, {"campaigns": campaigns}).rowcount


_INCONSISTENT_SQL = """
SELECT count(*) FROM prediction_campaign_results
WHERE least(impressions, clicks, conversions, engagements, spend_cents, revenue_cents) < 0
   OR clicks > impressions OR conversions > clicks OR engagements > impressions
   OR result_period_end <= result_period_start
"""


def inconsistent_results(conn: psycopg.Connection) -> int:
    """Stored rows that break the intake's rules (written around it, e.g. by the app)."""
    return one_row(conn.execute(_INCONSISTENT_SQL))[0]
