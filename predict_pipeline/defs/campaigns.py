"""Dagster layer of the campaign loop: campaign_results → campaign_predictions →
campaign_calibration, their job and schedule, and the two sensors that launch them (pushed
results waiting; re-predictions asked for by rules)."""

import uuid
from datetime import UTC, datetime

import dagster as dg
from psycopg.rows import dict_row

from predict_pipeline.calibration.diagram import diagram_markdown, reliability_diagram_png
from predict_pipeline.campaigns.calibration import (
    calibrate_campaigns,
    read_scored,
    save_campaign_calibration,
)
from predict_pipeline.campaigns.predict import open_requests, predict_campaigns
from predict_pipeline.campaigns.results import (
    inconsistent_results,
    ingest,
    refresh_results,
)
from predict_pipeline.db.rows import one_row
from predict_pipeline.defs.catalog import (
    preview_table,
    table_definition_metadata,
    with_table_metadata,
)
from predict_pipeline.defs.resources import PostgresResource

RESULTS_TABLE = "prediction_campaign_results"
CAMPAIGNS_TABLE = "prediction_campaigns"
CALIBRATION_TABLE = "prediction_campaign_calibration"
GROUP = "campaigns"
OWNERS = ["team:data-platform"]

_LATEST_RESULTS_SQL = """
SELECT c.name AS campaign, v.label AS variant,
       to_char(r.result_period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS period_start,
       to_char(r.result_period_end AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS period_end,
       r.impressions, r.clicks, r.conversions, r.engagements,
       r.actual_ctr::float8 AS ctr, r.actual_conversion_rate::float8 AS conversion_rate,
       r.actual_engagement_rate::float8 AS engagement_rate, r.actual_roas::float8 AS roas,
       r.predicted_metric AS metric,
       r.predicted_success_probability::float8 AS predicted_success,
       r.benchmark_rate::float8 AS benchmark, r.success,
       r.prediction_error::float8 AS prediction_error,
       r.prediction_direction_correct AS direction_correct
FROM prediction_campaign_results r
JOIN prediction_campaigns c ON c.id = r.campaign_id
LEFT JOIN prediction_campaign_variants v ON v.id = r.variant_id
ORDER BY r.recorded_at DESC, r.result_period_end DESC, c.name, v.label
LIMIT 50
"""
# The columns of the latest-results preview, with their Dagster types.
RESULT_PREVIEW = {
    "campaign": "string",
    "variant": "string",
    "period_start": "string",
    "period_end": "string",
    "impressions": "int",
    "clicks": "int",
    "conversions": "int",
    "engagements": "int",
    "ctr": "float",
    "conversion_rate": "float",
    "engagement_rate": "float",
    "roas": "float",
    "metric": "string",
    "predicted_success": "float",
    "benchmark": "float",
    "success": "bool",
    "prediction_error": "float",
    "direction_correct": "bool",
}


@dg.asset(
    group_name=GROUP,
    kinds={"postgres", "sql"},
    owners=OWNERS,
    description=(
        "prediction_campaign_results: lands the results pushed by ad platforms (rows waiting "
        "in predict_meta.campaign_result_submissions; the CLI lands its own at once), with "
        "every bad row rejected with its reasons; then, set-based over every row, the derived "
        "metrics (CTR, conversion, engagement rate, ROAS; a zero denominator is NULL), the "
        "prediction in force when each row was recorded, prediction_error, "
        "prediction_direction_correct and success (predict_pipeline/campaigns/results.py)."
    ),
    metadata=table_definition_metadata(RESULTS_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            "no_rejected_results",
            asset="campaign_results",
            description="Warns when this run rejected pushed result rows (see rejections).",
        ),
        dg.AssetCheckSpec(
            "stored_results_consistent",
            asset="campaign_results",
            description="Warns when stored rows break the intake's rules (negative counts, "
            "clicks above impressions, conversions above clicks, empty periods): rows written "
            "around the intake.",
        ),
    ],
)
def campaign_results(database: PostgresResource) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    with database.connection(autocommit=True) as conn:
        report = ingest(conn, now=now)
        with conn.transaction():
            refreshed = refresh_results(conn, now=now)
        inconsistent = inconsistent_results(conn)
        with conn.cursor(row_factory=dict_row) as cursor:
            latest = cursor.execute(_LATEST_RESULTS_SQL).fetchall()
        mean_error = one_row(
            conn.execute(
                "SELECT avg(prediction_error)::float8, count(prediction_error)"
                " FROM prediction_campaign_results"
            )
        )
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata={
            "landed": report.count("LANDED"),
            "revised": report.count("REVISED"),
            "unchanged": report.count("UNCHANGED"),
            "rejected": report.count("REJECTED"),
            "metrics_derived": refreshed.derived,
            "predictions_frozen": refreshed.frozen,
            "rows_scored": refreshed.scored,
            "mean_prediction_error": mean_error[0] if mean_error[0] is not None else float("nan"),
            "rows_with_an_error": mean_error[1],
            "rejections": preview_table(
                {"submission": "int", "from": "string", "reasons": "string"},
                [
                    {
                        "submission": r["submission"],
                        "from": f"{r['origin'].get('name')} line {r['origin'].get('line')}",
                        "reasons": "; ".join(r["reasons"]),
                    }
                    for r in report.rejected
                ],
                limit=100,
            ),
            "latest_results": preview_table(RESULT_PREVIEW, latest, limit=50),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_rejected_results",
                passed=report.count("REJECTED") == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"rejected": report.count("REJECTED")},
            ),
            dg.AssetCheckResult(
                check_name="stored_results_consistent",
                passed=inconsistent == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"inconsistent_rows": inconsistent},
            ),
        ],
    )
    return with_table_metadata(result, database, RESULTS_TABLE)


class CampaignPredictionConfig(dg.Config):
    campaign_ids: list[str] = []  # empty: every campaign that is not finished or held


@dg.asset(
    deps=["campaign_results", "event_snapshots"],
    group_name=GROUP,
    kinds={"pandas", "postgres"},
    owners=OWNERS,
    description=(
        "Campaign and variant predictions in prediction_campaigns and "
        "prediction_campaign_variants: Beta-binomial partial pooling of past results by "
        "tenant, platform and campaign type, with the linked events' pooled probabilities "
        "(depends_on: p, contraindicates: 1 − p, monitors: context) moving the rates; "
        "success probabilities, predicted rates, the recommended variant and `factors` with "
        "every input and its weight (predict_pipeline/campaigns/model.py). Run for chosen "
        "campaigns by campaign_repredict_sensor."
    ),
    metadata=table_definition_metadata(CAMPAIGNS_TABLE),
    check_specs=[
        dg.AssetCheckSpec(
            "every_open_campaign_predicted",
            asset="campaign_predictions",
            description="Warns when a campaign that is neither finished nor held by its "
            "owner's plan has no prediction after a run over every campaign.",
        )
    ],
)
def campaign_predictions(
    context: dg.AssetExecutionContext,
    config: CampaignPredictionConfig,
    database: PostgresResource,
) -> dg.MaterializeResult:
    try:
        chosen = [uuid.UUID(c) for c in config.campaign_ids] or None
    except ValueError as exc:
        raise dg.Failure(f"campaign_ids: not a campaign id: {exc}") from None
    now = datetime.now(UTC)
    with database.connection(autocommit=True) as conn:
        report = predict_campaigns(conn, now=now, campaign_ids=chosen, run_id=context.run.run_id)
        [unpredicted] = one_row(
            conn.execute(
                "SELECT count(*) FROM prediction_campaigns WHERE predicted_at IS NULL"
                " AND status NOT IN ('COMPLETED', 'ARCHIVED') AND id NOT IN"
                " (SELECT resource_id FROM predict_plan_holds_live(%s) WHERE kind = 'campaign')",
                (now,),
            )
        )
    campaigns = report.campaigns
    variants = report.variants
    metadata: dict[str, str | int | dg.MetadataValue] = {
        "scope": "every campaign" if chosen is None else f"{len(chosen)} campaign(s) asked for",
        "campaigns_predicted": len(campaigns),
        "variants_predicted": int(variants["variant_id"].notna().sum()) if len(variants) else 0,
        "result_rows_frozen_first": report.frozen,
        "finished_or_held_skipped": report.held_or_final,
        "repredict_requests_handled": len(report.handled_requests),
        "predictions": preview_table(
            {
                "campaign": "string",
                "platform": "string",
                "type": "string",
                "overall_success": "float",
                "recommended": "string",
                "explanation": "string",
            },
            [
                {
                    "campaign": row.name,
                    "platform": row.platform,
                    "type": row.campaign_type,
                    "overall_success": row.overall,
                    "recommended": row.recommended,
                    "explanation": row.explanation,
                }
                for row in campaigns.itertuples(index=False)
            ],
            limit=100,
        ),
        "variants": preview_table(
            {
                "campaign": "string",
                "variant": "string",
                "success_probability": "float",
                "predicted_engagement": "float",
                "predicted_conversion": "float",
            },
            [
                {
                    "campaign": str(row.campaign_id),
                    "variant": row.label,
                    "success_probability": row.success_probability,
                    "predicted_engagement": row.engagement_rate_predicted,
                    "predicted_conversion": row.conversion_rate_predicted,
                }
                for row in variants.itertuples(index=False)
            ],
            limit=200,
        ),
        "factors": dg.MetadataValue.json(
            {str(r.campaign_id): r.factors for r in campaigns.head(20).itertuples(index=False)}
        ),
        "handled_requests": dg.MetadataValue.json(report.handled_requests),
    }
    result: dg.MaterializeResult[None] = dg.MaterializeResult(
        metadata=metadata,
        check_results=[
            dg.AssetCheckResult(
                check_name="every_open_campaign_predicted",
                passed=chosen is not None or unpredicted == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"unpredicted_open_campaigns": unpredicted},
            )
        ],
    )
    return with_table_metadata(result, database, CAMPAIGNS_TABLE)


@dg.asset(
    deps=["campaign_results"],
    group_name=GROUP,
    kinds={"pandas", "postgres"},
    owners=OWNERS,
    description=(
        "prediction_campaign_calibration per tenant, platform and campaign type and window: "
        "Brier score on success (the primary rate reaching the benchmark frozen with the "
        "prediction), log score, a ten-bin reliability curve, mean absolute error of the "
        "predicted engagement and conversion rates, and direction accuracy "
        "(predict_pipeline/campaigns/calibration.py). The materialisation shows the "
        "reliability diagram over every campaign."
    ),
    metadata=table_definition_metadata(CALIBRATION_TABLE),
)
def campaign_calibration(database: PostgresResource) -> dg.MaterializeResult:
    now = datetime.now(UTC)
    with database.connection(autocommit=True) as conn:
        calibration = calibrate_campaigns(read_scored(conn), now=now)
        written = save_campaign_calibration(conn, calibration, now)
    png = reliability_diagram_png(
        calibration.global_rows,
        title=f"Campaign success, every campaign: computed {now:%Y-%m-%d %H:%M} UTC",
    )
    metadata: dict = {
        "rows": written,
        "reliability_diagram": dg.MetadataValue.md(diagram_markdown(png)),
        "global_scores": preview_table(
            {
                "window": "string",
                "scored": "int",
                "successes": "int",
                "brier": "float",
                "log_score": "float",
                "mae_engagement_rate": "float",
                "mae_conversion_rate": "float",
                "direction_accuracy": "float",
            },
            [
                {
                    "window": row.time_window,
                    "scored": row.resolved_predictions,
                    "brier": row.brier_score,
                    "log_score": row.log_score,
                    **calibration.global_errors[row.time_window],
                }
                for row in calibration.global_rows
            ],
        ),
    }
    for row in calibration.global_rows:
        window = row.time_window.lower()
        metadata[f"brier_{window}"] = (
            float(row.brier_score) if row.brier_score is not None else float("nan")
        )
        metadata[f"scored_{window}"] = row.resolved_predictions
    return with_table_metadata(dg.MaterializeResult(metadata=metadata), database, CALIBRATION_TABLE)


campaign_loop_job = dg.define_asset_job(
    "campaign_loop_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="campaign_results → campaign_predictions → campaign_calibration.",
)

campaign_predictions_job = dg.define_asset_job(
    "campaign_predictions_job",
    selection=dg.AssetSelection.assets("campaign_predictions"),
    description="campaign_predictions alone, for the campaigns of its config (re-predictions).",
)

campaign_loop_schedule = dg.ScheduleDefinition(
    name="campaign_loop_schedule",
    job=campaign_loop_job,
    cron_schedule="45 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Hourly at :45: lands waiting results, refreshes every campaign's prediction with the "
        "linked events' latest probabilities, and recomputes the campaign calibration."
    ),
)


@dg.sensor(
    job=campaign_loop_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches campaign_loop_job when ad platforms' pushed results wait in "
        "predict_meta.campaign_result_submissions (one run per newest waiting row)."
    ),
)
def campaign_results_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    seen = int(context.cursor or 0)
    with database.connection(autocommit=True) as conn:
        newest, waiting = one_row(
            conn.execute(
                "SELECT max(id), count(*) FROM predict_meta.campaign_result_submissions"
                " WHERE status = 'PENDING'"
            )
        )
    if newest is None or newest <= seen:
        return dg.SkipReason(f"{waiting} pushed result rows waiting, none new")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"campaign-results:{newest}")],
        cursor=str(newest),
    )


@dg.sensor(
    job=campaign_predictions_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches campaign_predictions for exactly the campaigns whose re-prediction a rule "
        "asked for (campaign_repredict action), one run per batch of new requests; the run "
        "marks them handled, audited."
    ),
)
def campaign_repredict_sensor(context: dg.SensorEvaluationContext, database: PostgresResource):
    seen = int(context.cursor or 0)
    with database.connection(autocommit=True) as conn:
        requests = open_requests(conn, seen)
    if not requests:
        return dg.SkipReason("no new re-prediction request")
    last = requests[-1][0]
    campaigns = sorted({str(campaign) for _, campaign in requests})
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"campaign-repredict:{last}",
                run_config=dg.RunConfig(
                    ops={"campaign_predictions": CampaignPredictionConfig(campaign_ids=campaigns)}
                ),
                tags={"predict/repredict_requests": f"{requests[0][0]}-{last}"},
            )
        ],
        cursor=str(last),
    )


CAMPAIGN_ASSETS = [campaign_results, campaign_predictions, campaign_calibration]
CAMPAIGN_JOBS = [campaign_loop_job, campaign_predictions_job]
CAMPAIGN_SENSORS = [campaign_results_sensor, campaign_repredict_sensor]


defs = dg.Definitions(
    assets=CAMPAIGN_ASSETS,
    jobs=CAMPAIGN_JOBS,
    schedules=[campaign_loop_schedule],
    sensors=CAMPAIGN_SENSORS,
)
