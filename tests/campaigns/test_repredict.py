"""A rule re-predicts a campaign when its linked event really moves: signals → event_snapshots →
rule_trigger_sensor → rule_actions_job → campaign_repredict_sensor → campaign_predictions, for
that campaign only, audited; the same rule's campaign_pause leaves it PAUSED with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
from psycopg.types.json import Jsonb

from predict_pipeline.campaigns.predict import predict_campaigns
from predict_pipeline.defs.campaigns import (
    campaign_predictions,
    campaign_predictions_job,
    campaign_repredict_sensor,
)
from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.defs.rules import rule_actions_job, rule_trigger_sensor
from predict_pipeline.defs.snapshots import event_snapshots
from predict_pipeline.secrets import generate_key
from tests.snapshots.test_compute import _event, _signal
from tests.support.campaigns import link, make_campaign
from tests.support.feeds import USER_ID

T0 = datetime(2026, 11, 22, 10, tzinfo=UTC)


def _snapshot_hour(conn, event, at, price, instance, resources) -> None:
    for source in ("kalshi", "polymarket"):
        _signal(conn, event, source, price, at + timedelta(minutes=50))
    result = dg.materialize(
        [event_snapshots],
        instance=instance,
        resources=resources,
        partition_key=at.strftime("%Y-%m-%d-%H:%M"),
    )
    assert result.success


def _linked_probability(conn, campaign) -> float:
    factors = conn.execute(
        "SELECT factors FROM prediction_campaigns WHERE id = %s", (campaign,)
    ).fetchone()[0]
    [event_input] = [i for i in factors["inputs"] if i["input"] == "linked_event"]
    return event_input["probability"]


def test_a_rule_on_a_real_event_move_repredicts_exactly_its_campaign(
    conn, db_url, dagster_instance, monkeypatch
):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    resources = {"database": PostgresResource(url=db_url), "secrets": SecretsResource()}
    event = _event(conn, "approval")
    campaign, _ = make_campaign(conn, USER_ID, "Launch", campaign_type="launch")
    other, _ = make_campaign(conn, USER_ID, "Untouched")
    link(conn, campaign, event, "depends_on", threshold=0.5)
    conn.execute(
        """INSERT INTO prediction_rules (user_id, name, scope_type, scope_id, trigger_type,
             trigger_params, actions, cooldown_minutes)
           VALUES (%s, 'approval slipping', 'campaign', %s, 'CAMPAIGN_THRESHOLD', '{}', %s, 0)""",
        (
            USER_ID,
            campaign,
            Jsonb(
                [
                    {"type": "campaign_pause", "reason": "{event_title}: {summary}"},
                    {"type": "campaign_repredict"},
                ]
            ),
        ),
    )
    # The event stands at 70 %, and the campaign is predicted on that.
    _snapshot_hour(conn, event, T0, 0.7, dagster_instance, resources)
    with conn.transaction():
        predict_campaigns(conn, now=datetime.now(UTC), campaign_ids=[campaign])
    before = conn.execute(
        "SELECT overall_success_probability, predicted_at FROM prediction_campaigns WHERE id = %s",
        (campaign,),
    ).fetchone()
    assert _linked_probability(conn, campaign) == 0.7

    # The next hour's signals move it to 30 %: below the link's threshold.
    cursor = datetime.now(UTC).isoformat()
    _snapshot_hour(conn, event, T0 + timedelta(hours=1), 0.3, dagster_instance, resources)
    assert conn.execute(
        "SELECT previous_probability::float8, current_probability::float8 FROM prediction_events"
        " WHERE id = %s",
        (event,),
    ).fetchone() == (0.7, 0.3)

    tick = rule_trigger_sensor(
        dg.build_sensor_context(instance=dagster_instance, cursor=cursor, resources=resources)
    )
    [request] = tick.run_requests
    actions = rule_actions_job.execute_in_process(
        run_config=request.run_config, instance=dagster_instance, resources=resources
    )
    assert actions.success
    status, results = conn.execute(
        "SELECT status, action_results FROM prediction_rule_executions"
    ).fetchone()
    assert status == "COMPLETED", results
    paused = conn.execute(
        "SELECT status, factors->'paused_by_rule'->>'reason' FROM prediction_campaigns"
        " WHERE id = %s",
        (campaign,),
    ).fetchone()
    assert paused[0] == "PAUSED"
    assert paused[1].startswith("Event approval: ") and "0.5" in paused[1]

    # The request reaches campaign_predictions for that campaign alone.
    requested = campaign_repredict_sensor(
        dg.build_sensor_context(instance=dagster_instance, resources=resources)
    )
    [run] = requested.run_requests
    assert run.run_config["ops"]["campaign_predictions"]["config"] == {
        "campaign_ids": [str(campaign)]
    }
    job = dg.Definitions(
        assets=[campaign_predictions], jobs=[campaign_predictions_job], resources=resources
    ).resolve_job_def("campaign_predictions_job")
    predicted = job.execute_in_process(run_config=run.run_config, instance=dagster_instance)
    assert predicted.success
    [materialization] = predicted.asset_materializations_for_node("campaign_predictions")
    assert materialization.metadata["campaigns_predicted"].value == 1

    after = conn.execute(
        "SELECT overall_success_probability, predicted_at, status FROM prediction_campaigns"
        " WHERE id = %s",
        (campaign,),
    ).fetchone()
    assert _linked_probability(conn, campaign) == 0.3
    assert after[0] < before[0] and after[1] > before[1]
    assert after[2] == "PAUSED"  # a re-prediction does not un-pause
    assert conn.execute(
        "SELECT predicted_at FROM prediction_campaigns WHERE id = %s", (other,)
    ).fetchone() == (None,)
    handled = conn.execute(
        "SELECT handled_by_run FROM predict_meta.campaign_repredict_requests"
    ).fetchall()
    assert handled == [(predicted.run_id,)]
    audit = conn.execute(
        "SELECT action, details->>'run_id' FROM prediction_audit_log WHERE resource_id = %s"
        " ORDER BY created_at, action",
        (campaign,),
    ).fetchall()
    assert [a for a, _ in audit] == ["campaign.pause", "campaign.repredict", "campaign.predicted"]
    assert audit[-1][1] == predicted.run_id
    # Handled: the next tick asks for nothing.
    quiet = campaign_repredict_sensor(
        dg.build_sensor_context(
            instance=dagster_instance, cursor=requested.cursor, resources=resources
        )
    )
    assert quiet.skip_message == "no new re-prediction request"


def test_a_rule_cannot_repredict_another_users_campaign(conn):
    from predict_pipeline.campaigns.predict import request_repredict
    from tests.support.campaigns import make_user

    stranger = make_user(conn, "stranger")
    theirs, _ = make_campaign(conn, stranger, "Theirs")
    try:
        request_repredict(conn, theirs, requested_by=USER_ID, rule_id=None, rule_execution_id=None)
    except ValueError as exc:
        assert "no campaign" in str(exc)
    else:
        raise AssertionError("a request for another user's campaign was accepted")
    assert conn.execute(
        "SELECT count(*) FROM predict_meta.campaign_repredict_requests"
    ).fetchone() == (0,)
