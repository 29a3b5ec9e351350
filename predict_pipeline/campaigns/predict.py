"""Campaign and variant predictions in the database: the model's inputs read set-based, its
outputs written in one statement per table, and re-predictions asked for by rules.

Which campaigns are predicted: every campaign not COMPLETED or ARCHIVED whose owner's plan
does not hold it (README "Plans"), or those of `campaign_ids`. Every campaign's results count
in its group's pooling, finished ones included: past campaigns are the history. Before a
campaign's prediction is replaced, its result rows not yet seen get the outgoing prediction
frozen (results.freeze_predictions), so no row is ever scored against a prediction that
had seen it.

A written campaign gets overall_success_probability, recommended_variant_id,
prediction_explanation, predicted_at and `factors` (merged: keys the prediction does not write,
such as `paused_by_rule`, stay), and a DRAFT campaign becomes PREDICTED; each variant gets
success_probability, predicted_engagement, predicted_conversion, reasoning and
scoring_factors. Open re-prediction requests of the written campaigns are marked handled by
the run, each audited (`campaign.predicted`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.audit import record_audit
from predict_pipeline.campaigns import model
from predict_pipeline.campaigns.results import VISIBLE_EVENT, freeze_predictions

FINAL_STATUSES = ("COMPLETED", "ARCHIVED")

_UNITS_SQL = """
SELECT c.id AS campaign_id, v.id AS variant_id, v.label, c.user_id, c.org_id, c.platform,
       c.campaign_type, c.name,
       c.status NOT IN ('COMPLETED', 'ARCHIVED')
         AND c.id NOT IN (SELECT resource_id FROM predict_plan_holds_live(%(now)s)
                          WHERE kind = 'campaign')
         AND (%(campaigns)s::uuid[] IS NULL OR c.id = ANY(%(campaigns)s::uuid[])) AS predict
FROM prediction_campaigns c
LEFT JOIN prediction_campaign_variants v ON v.campaign_id = c.id
ORDER BY c.id, v.label, v.id
"""

# A campaign with variants is predicted from its variants' rows; one without, from its own.
_RESULTS_SQL = """
SELECT r.campaign_id, r.variant_id, r.impressions, r.engagements, r.clicks, r.conversions,
       coalesce(r.event_shift, 0)::float8 AS event_shift
FROM prediction_campaign_results r
WHERE r.variant_id IS NOT NULL
   OR NOT EXISTS (SELECT 1 FROM prediction_campaign_variants v
                  WHERE v.campaign_id = r.campaign_id)
"""

_LINKS_SQL = f"""
SELECT ce.campaign_id, ce.event_id, e.title, ce.relationship,
       e.current_probability::float8 AS probability
FROM prediction_campaign_events ce
JOIN prediction_campaigns c ON c.id = ce.campaign_id
JOIN prediction_events e ON e.id = ce.event_id
WHERE {VISIBLE_EVENT}
  AND (%(campaigns)s::uuid[] IS NULL OR ce.campaign_id = ANY(%(campaigns)s::uuid[]))
ORDER BY ce.campaign_id, ce.relationship, e.title, ce.event_id
"""  # noqa: S608 (module constants only)

_WRITE_VARIANTS_SQL = """
UPDATE prediction_campaign_variants v SET
  success_probability = round(x.success_probability, 4),
  predicted_engagement = round(x.predicted_engagement, 4),
  predicted_conversion = round(x.predicted_conversion, 4),
  reasoning = x.reasoning, scoring_factors = x.scoring_factors
FROM jsonb_to_recordset(%(rows)s) AS x(variant_id uuid, success_probability numeric,
  predicted_engagement numeric, predicted_conversion numeric, reasoning text,
  scoring_factors jsonb)
WHERE v.id = x.variant_id
"""

_WRITE_CAMPAIGNS_SQL = """
UPDATE prediction_campaigns c SET
  overall_success_probability = round(x.overall, 4),
  recommended_variant_id = x.recommended_variant_id,
  prediction_explanation = x.explanation,
  factors = coalesce(c.factors, '{}'::jsonb) || x.factors,
  predicted_at = %(now)s,
  status = CASE WHEN c.status = 'DRAFT' THEN 'PREDICTED' ELSE c.status END,
  updated_at = now()
FROM jsonb_to_recordset(%(rows)s) AS x(campaign_id uuid, overall numeric,
  recommended_variant_id uuid, explanation text, factors jsonb)
WHERE c.id = x.campaign_id
"""

_HANDLE_REQUESTS_SQL = """
UPDATE predict_meta.campaign_repredict_requests SET handled_at = %(now)s, handled_by_run = %(run)s
WHERE handled_at IS NULL AND requested_at <= %(now)s AND campaign_id = ANY(%(campaigns)s::uuid[])
RETURNING id, campaign_id, rule_id, rule_execution_id
"""


@dataclass
class PredictionReport:
    """What one run wrote: the predicted campaigns (a preview frame), variants written, result
    rows frozen first, and the re-prediction requests it handled."""

    campaigns: pd.DataFrame = field(default_factory=pd.DataFrame)
    variants: pd.DataFrame = field(default_factory=pd.DataFrame)
    frozen: int = 0
    handled_requests: list[dict[str, Any]] = field(default_factory=list)
    held_or_final: int = 0


def predict_campaigns(
    conn: psycopg.Connection,
    *,
    now: datetime,
    campaign_ids: Sequence[uuid.UUID | str] | None = None,
    run_id: str | None = None,
) -> PredictionReport:
    """Predict the campaigns (module docstring) and write everything; one transaction."""
    wanted = [str(c) for c in campaign_ids] if campaign_ids is not None else None
    report = PredictionReport()
    with conn.transaction():
        units = _frame(conn, _UNITS_SQL, {"now": now, "campaigns": wanted})
        if units.empty:
            return report
        units["group"] = _groups(units)
        units["primary_metric"] = units["campaign_type"].map(model.primary_metric)
        chosen = units.loc[units["predict"], "campaign_id"].unique().tolist()
        asked = units["campaign_id"].unique() if wanted is None else wanted
        report.held_or_final = len(set(map(str, asked)) - set(map(str, chosen)))
        if not chosen:
            return report
        report.frozen = freeze_predictions(conn, now=now, campaign_ids=chosen)
        results = _frame(conn, _RESULTS_SQL, {})
        links = _frame(conn, _LINKS_SQL, {"campaigns": [str(c) for c in chosen]})
        if links.empty:
            links = pd.DataFrame(columns=list(model.LINK_COLUMNS))
        if results.empty:
            results = pd.DataFrame(columns=list(model.RESULT_COLUMNS))
        predictions = model.predict(units, results, links)
        _write(conn, predictions, now)
        report.campaigns = _campaign_preview(predictions, units)
        report.variants = predictions.units
        report.handled_requests = _handle_requests(conn, chosen, predictions, now, run_id)
    return report


def _frame(conn: psycopg.Connection, query: str, params: dict[str, Any]) -> pd.DataFrame:
    cursor = conn.execute(query, params)
    columns = [d.name for d in cursor.description or []]
    return pd.DataFrame(cursor.fetchall(), columns=columns)


def _groups(units: pd.DataFrame) -> pd.Series:
    """The pooling group: tenant (org, else the owner), platform, campaign type."""
    tenant = ("org:" + units["org_id"].astype(str)).where(
        units["org_id"].notna(), "user:" + units["user_id"].astype(str)
    )
    platform = units["platform"].fillna("unknown").astype(str)
    kind = units["campaign_type"].fillna("unknown").astype(str)
    return tenant + "|" + platform + "|" + kind


def _write(conn: psycopg.Connection, predictions: model.Predictions, now: datetime) -> None:
    variants = [
        {
            "variant_id": str(unit.variant_id),
            "success_probability": float(unit.success_probability),
            "predicted_engagement": float(unit.engagement_rate_predicted),
            "predicted_conversion": float(unit.conversion_rate_predicted),
            "reasoning": model.unit_reasoning(unit),
            "scoring_factors": model.scoring_factors(unit),
        }
        for unit in predictions.units.itertuples(index=False)
        if unit.variant_id is not None and not pd.isna(unit.variant_id)
    ]
    if variants:
        conn.execute(_WRITE_VARIANTS_SQL, {"rows": Jsonb(variants)})
    campaigns = [
        {
            "campaign_id": str(row.campaign_id),
            "overall": row.overall,
            "recommended_variant_id": None
            if row.recommended_variant_id is None
            else str(row.recommended_variant_id),
            "explanation": row.explanation,
            "factors": row.factors,
        }
        for row in predictions.campaigns.itertuples(index=False)
    ]
    conn.execute(_WRITE_CAMPAIGNS_SQL, {"rows": Jsonb(campaigns), "now": now})


def _campaign_preview(predictions: model.Predictions, units: pd.DataFrame) -> pd.DataFrame:
    names = units.drop_duplicates("campaign_id").set_index("campaign_id")
    labels = units.dropna(subset=["variant_id"]).set_index("variant_id")["label"]
    frame = predictions.campaigns.copy()
    frame["name"] = frame["campaign_id"].map(names["name"])
    frame["platform"] = frame["campaign_id"].map(names["platform"])
    frame["campaign_type"] = frame["campaign_id"].map(names["campaign_type"])
    frame["recommended"] = frame["recommended_variant_id"].map(
        lambda v: labels.get(v) if v is not None else None
    )
    return frame


def _handle_requests(
    conn: psycopg.Connection,
    chosen: list[Any],
    predictions: model.Predictions,
    now: datetime,
    run_id: str | None,
) -> list[dict[str, Any]]:
    handled = conn.execute(
        _HANDLE_REQUESTS_SQL,
        {"now": now, "run": run_id, "campaigns": [str(c) for c in chosen]},
    ).fetchall()
    by_campaign = predictions.campaigns.set_index(predictions.campaigns["campaign_id"].astype(str))
    requests: dict[str, list[dict[str, Any]]] = {}
    for request_id, campaign_id, rule_id, execution_id in handled:
        requests.setdefault(str(campaign_id), []).append(
            {
                "request_id": request_id,
                "rule_id": str(rule_id) if rule_id else None,
                "rule_execution_id": str(execution_id) if execution_id else None,
            }
        )
    entries = []
    for campaign_id, asked in requests.items():
        row = by_campaign.loc[campaign_id]
        details = {
            "run_id": run_id,
            "requests": asked,
            "overall_success_probability": round(float(row["overall"]), 4),
            "recommended_variant_id": None
            if row["recommended_variant_id"] is None
            else str(row["recommended_variant_id"]),
        }
        # A rule asked for it: the fulfilment is audited beside the request.
        record_audit(
            conn,
            action="campaign.predicted",
            resource_type="prediction_campaigns",
            resource_id=campaign_id,
            actor_type="system",
            details=details,
        )
        entries.append({"campaign_id": campaign_id, **details})
    return entries


def request_repredict(
    conn: psycopg.Connection,
    campaign_id: uuid.UUID | str,
    *,
    requested_by: uuid.UUID | str,
    rule_id: uuid.UUID | str | None,
    rule_execution_id: uuid.UUID | str | None,
) -> int:
    """Ask for `campaign_predictions` of one campaign (campaign_repredict_sensor launches it):
    only a campaign `requested_by` owns. The request's id; ValueError otherwise."""
    row = conn.execute(
        """INSERT INTO predict_meta.campaign_repredict_requests
             (campaign_id, requested_by, rule_id, rule_execution_id)
           SELECT c.id, %s, %s, %s FROM prediction_campaigns c
           WHERE c.id = %s AND c.user_id = %s
           RETURNING id""",
        (requested_by, rule_id, rule_execution_id, campaign_id, requested_by),
    ).fetchone()
    if row is None:
        raise ValueError(f"campaign_repredict: no campaign {campaign_id} of the rule's owner")
    return int(row[0])


def open_requests(conn: psycopg.Connection, after_id: int) -> list[tuple[int, uuid.UUID]]:
    """Unhandled re-prediction requests after `after_id`: (request id, campaign id)."""
    return [
        (int(request_id), campaign_id)
        for request_id, campaign_id in conn.execute(
            "SELECT id, campaign_id FROM predict_meta.campaign_repredict_requests"
            " WHERE handled_at IS NULL AND id > %s ORDER BY id",
            (after_id,),
        )
    ]
