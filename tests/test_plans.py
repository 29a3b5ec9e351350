"""Plans (sql/0041_plans.sql, predict_pipeline/plans.py, predict_pipeline/usage.py): status
stops and resumes feeds and rules, each limit holds at creation and at run time with its reason
recorded, realtime_enabled sets the rules' cadence, and usage is metered per period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from predict_pipeline import cli
from predict_pipeline.db.connection import APP_ROLE, PIPELINE_ROLE, connect
from predict_pipeline.defs.ingestion import FeedFetchConfig, due_feeds_sensor, raw_feed_fetches
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.defs.rules import hourly_window, rule_trigger_sensor
from predict_pipeline.demo import REPLAY_DIR
from predict_pipeline.ingestion.store import create_feed
from predict_pipeline.plans import PlanLimitError, live_holds, record_plan_holds
from predict_pipeline.rules.engine import evaluate_tick
from predict_pipeline.secrets import generate_key
from predict_pipeline.snapshots.compute import compute_snapshots
from predict_pipeline.usage import ALL_METRICS, record_signals_ingested, refresh_usage

T0 = datetime(2026, 11, 22, 12, tzinfo=UTC)
# The plan 0041 ships for users without a subscription (tests/conftest.py lifts it).
FREE_PLAN = {
    "tier": "free",
    "max_events": 10,
    "max_rules": 5,
    "max_campaigns_per_month": 3,
    "max_feeds": 3,
    "max_team_members": 3,
    "realtime_enabled": False,
}


def restore_free_plan(conn: psycopg.Connection) -> None:
    sets = ", ".join(f"{k} = %s" for k in FREE_PLAN)
    conn.execute(f"UPDATE predict_meta.default_plan SET {sets}", list(FREE_PLAN.values()))  # noqa: S608


def user(conn: psycopg.Connection, name: str) -> uuid.UUID:
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO auth.users (id, email) VALUES (%s, %s)",
        (user_id, f"{name}-{user_id.hex[:6]}@example.com"),
    )
    return user_id


def subscribe(conn: psycopg.Connection, user_id: uuid.UUID, **columns) -> None:
    columns = {"tier": "pro", "status": "active", **columns}
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns)
    conn.execute(
        f"INSERT INTO prediction_subscriptions (user_id, {names}) VALUES (%s, {marks})"  # noqa: S608
        f" ON CONFLICT (user_id) DO UPDATE SET {updates}, updated_at = now()",
        (user_id, *columns.values()),
    )


def feed(conn, owner, name: str, *, created_at: datetime | None = None, **columns) -> uuid.UUID:
    feed_id = uuid.uuid4()
    columns = {"created_at": created_at or datetime.now(UTC), **columns}
    extra = "".join(f", {c}" for c in columns)
    marks = "".join(", %s" for _ in columns)
    conn.execute(
        f"INSERT INTO prediction_data_feeds (id, source_id, user_id, name, config{extra})"  # noqa: S608
        f" SELECT %s, s.id, %s, %s, '{{}}'{marks} FROM prediction_data_sources s"
        " WHERE s.source_id = 'predictit'",
        (feed_id, owner, name, *columns.values()),
    )
    return feed_id


def rule(conn, owner, name: str, *, created_at: datetime | None = None, **columns) -> uuid.UUID:
    values = {
        "user_id": owner,
        "name": name,
        "scope_type": "all",
        "trigger_type": "PROBABILITY_CROSSES_ABOVE",
        "trigger_params": Jsonb({"threshold": 0.6}),
        "actions": Jsonb([{"type": "explain"}]),
        "cooldown_minutes": 0,
        "created_at": created_at or datetime.now(UTC),
        **columns,
    }
    return conn.execute(
        f"INSERT INTO prediction_rules ({', '.join(values)})"  # noqa: S608
        f" VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        list(values.values()),
    ).fetchone()[0]


def event(conn, owner=None, *, created_at: datetime | None = None, **columns) -> uuid.UUID:
    values = {
        "title": "Will it pass?",
        "slug": f"ev-{uuid.uuid4().hex[:8]}",
        "current_probability": 0.5,
        "created_by": owner,
        "created_at": created_at or datetime.now(UTC),
        **columns,
    }
    return conn.execute(
        f"INSERT INTO prediction_events ({', '.join(values)})"  # noqa: S608
        f" VALUES ({', '.join(['%s'] * len(values))}) RETURNING id",
        list(values.values()),
    ).fetchone()[0]


def move(conn, event_id, before: float, after: float, at: datetime) -> None:
    conn.execute(
        "UPDATE prediction_events SET previous_probability = %s, current_probability = %s,"
        " updated_at = %s WHERE id = %s",
        (before, after, at, event_id),
    )


def tick(conn, since, until, **options):
    with conn.transaction():
        return evaluate_tick(conn, since=since, until=until, **options)


def fired_rules(conn, report) -> set[uuid.UUID]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT rule_id FROM prediction_rule_executions WHERE id = ANY(%s)", (report.fired,)
        )
    }


def requested_rules(conn, requests) -> set[str]:
    """The rules whose firings these actions runs carry."""
    configs = [r.run_config["ops"]["run_rule_actions"]["config"] for r in requests]
    ids = [x for config in configs for x in config["execution_ids"]]
    rows = conn.execute(
        "SELECT rule_id FROM prediction_rule_executions WHERE id = ANY(%s::uuid[])", (ids,)
    )
    return {str(r[0]) for r in rows}


def audits(conn, action: str) -> list[tuple[uuid.UUID, str]]:
    return [
        (rid, reason)
        for rid, reason in conn.execute(
            "SELECT resource_id, details->>'reason' FROM prediction_audit_log WHERE action = %s"
            " ORDER BY created_at, resource_id",
            (action,),
        )
    ]


@pytest.fixture
def pipe(db_url) -> psycopg.Connection:
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as conn:
        yield conn


@pytest.fixture
def sensor_resources(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    return {
        "database": PostgresResource(url=db_url),
        "http": HttpClientResource(mode="replay", replay_dir=str(REPLAY_DIR)),
        "landing": LandingZoneResource(root=str(tmp_path / "landing")),
        "secrets": SecretsResource(),
    }


# ---------------------------------------------------------------------------------------
# Status


def test_a_plan_is_in_force_as_its_status_and_period_say(pipe, admin_conn):
    restore_free_plan(admin_conn)
    cases = {
        "none": (None, (True, None)),
        "active": (
            dict(
                current_period_start=T0 - timedelta(days=10),
                current_period_end=T0 + timedelta(days=20),
            ),
            (True, None),
        ),
        "past period": (
            dict(
                current_period_start=T0 - timedelta(days=31),
                current_period_end=T0 - timedelta(hours=1),
            ),
            (False, "the subscription is past its current period"),
        ),
        "cancelled": (dict(status="cancelled"), (False, "the subscription is cancelled")),
        "paused": (dict(status="paused"), (False, "the subscription is paused")),
        "past due in grace": (
            dict(status="past_due", current_period_end=T0 - timedelta(days=6)),
            (True, None),
        ),
        "past due beyond grace": (
            dict(status="past_due", current_period_end=T0 - timedelta(days=8)),
            (False, "the subscription is past due beyond the 7-day grace"),
        ),
        "trialing": (dict(status="trialing", trial_end=T0 + timedelta(days=3)), (True, None)),
        "trial ended": (
            dict(status="trialing", trial_end=T0 - timedelta(minutes=1)),
            (False, "the trial has ended"),
        ),
    }
    users = {}
    for name, (subscription, _) in cases.items():
        users[name] = user(pipe, name.replace(" ", "-"))
        if subscription is not None:
            subscribe(pipe, users[name], **subscription)
    plans = {
        row[0]: row[1:]
        for row in pipe.execute(
            "SELECT user_id, in_force, inactive_reason, tier, period_start, period_end"
            " FROM predict_user_plans(%s)",
            (T0,),
        )
    }
    for name, (_, expected) in cases.items():
        assert plans[users[name]][:2] == expected, name
    # No subscription: the free plan, usage by calendar month; a billing period otherwise.
    assert plans[users["none"]][2:] == (
        "free",
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert plans[users["active"]][2:] == ("pro", T0 - timedelta(days=10), T0 + timedelta(days=20))


def test_a_cancelled_plan_stops_feeds_and_rules_and_reactivation_resumes(
    pipe, db_url, dagster_instance, sensor_resources
):
    now = datetime.now(UTC)
    owner = user(pipe, "lapsed")
    subscribe(pipe, owner, status="cancelled", realtime_enabled=True)
    polled = feed(pipe, owner, "lapsed feed", next_run_at=now - timedelta(minutes=1))
    watching = rule(pipe, owner, "lapsed rule")
    other = user(pipe, "paying")
    subscribe(pipe, other, realtime_enabled=True)
    control = rule(pipe, other, "paying rule")
    watched = event(pipe)
    context = dg.build_sensor_context(
        instance=dagster_instance, resources={"database": sensor_resources["database"]}
    )

    first = due_feeds_sensor(context)
    assert first.run_requests == []
    assert "1 feed held by plan: lapsed feed (the subscription is cancelled)" in (
        first.skip_reason.skip_message
    )
    [observation] = first.asset_events
    assert observation.metadata["feeds_held_by_plan"].value == 1
    assert (
        pipe.execute(
            "SELECT next_run_at FROM prediction_data_feeds WHERE id = %s", (polled,)
        ).fetchone()[0]
        < now
    )  # still due: it is fetched as soon as the plan allows
    again = due_feeds_sensor(context)
    assert again.run_requests == [] and again.asset_events == []

    # The fetch path refuses it too, without a feed run.
    result = dg.materialize(
        [raw_feed_fetches],
        instance=dagster_instance,
        resources=sensor_resources,
        partition_key=HOURLY.get_partition_key_for_timestamp(now.timestamp()),
        run_config=dg.RunConfig(ops={"raw_feed_fetches": FeedFetchConfig(feed_ids=[str(polled)])}),
    )
    [materialization] = result.asset_materializations_for_node("raw_feed_fetches")
    assert materialization.metadata["feeds_held_by_plan"].value == 1
    assert materialization.metadata["feeds_failed"].value == 0
    assert pipe.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (0,)

    move(pipe, watched, 0.5, 0.65, now - timedelta(seconds=5))
    cursor = (now - timedelta(seconds=30)).isoformat()
    ticked = rule_trigger_sensor(
        dg.build_sensor_context(
            instance=dagster_instance,
            cursor=cursor,
            resources={"database": PostgresResource(url=db_url)},
        )
    )
    assert requested_rules(pipe, ticked.run_requests) == {str(control)}
    # Each hold is audited once, with its reason, however many ticks skip it.
    reason = "the subscription is cancelled"
    held = audits(pipe, "plan.hold")
    assert len(held) == 2 and set(held) == {(polled, reason), (watching, reason)}

    subscribe(pipe, owner, status="active", realtime_enabled=True)
    resumed = due_feeds_sensor(context)
    assert [
        r.run_config["ops"]["raw_feed_fetches"]["config"]["feed_ids"] for r in resumed.run_requests
    ] == [[str(polled)]]
    assert {rid for rid, _ in audits(pipe, "plan.release")} == {polled, watching}
    move(pipe, watched, 0.55, 0.7, datetime.now(UTC))  # after the last tick's cursor
    later = rule_trigger_sensor(
        dg.build_sensor_context(
            instance=dagster_instance,
            cursor=ticked.cursor,
            resources={"database": PostgresResource(url=db_url)},
        )
    )
    assert str(watching) in requested_rules(pipe, later.run_requests)


# ---------------------------------------------------------------------------------------
# Limits at creation


def _limit_error(excinfo) -> str:
    assert excinfo.value.sqlstate == "PL001"
    message = excinfo.value.diag.message_primary
    assert "\n" not in message
    return message


def test_each_limit_refuses_creation_with_one_line(pipe, db_url):
    owner = user(pipe, "small")
    subscribe(
        pipe,
        owner,
        max_feeds=1,
        max_rules=1,
        max_events=1,
        max_campaigns_per_month=1,
        max_team_members=2,
    )
    source = pipe.execute(
        "SELECT id FROM prediction_data_sources WHERE source_id = 'predictit'"
    ).fetchone()[0]

    def new_feed(name: str) -> uuid.UUID:
        return create_feed(
            pipe, feed_id=uuid.uuid4(), source_id=source, user_id=owner, name=name, config={}
        )

    first = new_feed("one")
    with pytest.raises(PlanLimitError) as refused:
        new_feed("two")
    assert str(refused.value) == (
        "plan limit: the pro plan allows 1 enabled feeds (max_feeds); this would make 2"
    )
    # A disabled feed does not count; enabling it again past the limit is refused.
    pipe.execute("UPDATE prediction_data_feeds SET enabled = false WHERE id = %s", (first,))
    new_feed("two")
    with pytest.raises(errors.ProgrammingError) as reenabled:
        pipe.execute("UPDATE prediction_data_feeds SET enabled = true WHERE id = %s", (first,))
    assert "max_feeds" in _limit_error(reenabled)

    # Rules, events, campaigns and members, through predict_app as the user (the API's path).
    with connect(db_url, role=APP_ROLE, autocommit=True) as app:
        app.execute("SELECT set_config('app.user_id', %s, false)", (str(owner),))
        statements = {
            "max_rules": lambda: app.execute(
                "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type)"
                " VALUES (%s, 'r', 'all', 'TRUST_BELOW')",
                (owner,),
            ),
            "max_events": lambda: app.execute(
                "INSERT INTO prediction_events (title, slug, created_by) VALUES ('e', %s, %s)",
                (f"e-{uuid.uuid4().hex[:8]}", owner),
            ),
            "max_campaigns_per_month": lambda: app.execute(
                "INSERT INTO prediction_campaigns (user_id, name) VALUES (%s, 'c')", (owner,)
            ),
        }
        for limit, create in statements.items():
            create()
            with pytest.raises(errors.ProgrammingError) as refused:
                create()
            assert "allows 1 " in _limit_error(refused) and limit in _limit_error(refused)
        org = uuid.uuid4()
        app.execute(
            "INSERT INTO prediction_orgs (id, name, slug, owner_id) VALUES (%s, 'Small', %s, %s)",
            (org, f"small-{org.hex[:6]}", owner),
        )
        mates = [user(pipe, "mate") for _ in range(2)]
        app.execute(
            "INSERT INTO prediction_org_members (org_id, user_id, invited_by) VALUES (%s, %s, %s)",
            (org, mates[0], owner),
        )
        with pytest.raises(errors.ProgrammingError) as refused:
            app.execute(
                "INSERT INTO prediction_org_members (org_id, user_id, invited_by)"
                " VALUES (%s, %s, %s)",
                (org, mates[1], owner),
            )
        assert _limit_error(refused) == (
            "plan limit: the org owner's pro plan allows 2 team members (max_team_members);"
            " this would make 3"
        )
    # The same limits hold for the pipeline (one database rule for every path)...
    with pytest.raises(errors.ProgrammingError) as refused:
        rule(pipe, owner, "from the pipeline")
    assert "max_rules" in _limit_error(refused)
    # ...and closing an event makes room for another.
    pipe.execute(
        "UPDATE prediction_events SET status = 'RESOLVED_YES' WHERE created_by = %s", (owner,)
    )
    event(pipe, owner)
    counts = pipe.execute(
        "SELECT (SELECT count(*) FROM prediction_data_feeds WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_rules WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_events WHERE created_by = %(u)s),"
        " (SELECT count(*) FROM prediction_campaigns WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_org_members WHERE org_id = %(o)s)",
        {"u": owner, "o": org},
    ).fetchone()
    assert counts == (2, 1, 2, 1, 2)


def test_feeds_add_refuses_past_the_free_plan_with_one_line(
    pipe, admin_conn, db_url, tmp_path, monkeypatch, capsys
):
    restore_free_plan(admin_conn)  # a user without a subscription has the free plan
    owner = user(pipe, "free")
    email = pipe.execute("SELECT email FROM auth.users WHERE id = %s", (owner,)).fetchone()[0]
    monkeypatch.setenv("PREDICT_DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    for n in range(FREE_PLAN["max_feeds"]):
        assert cli.main(["feeds", "add", "predictit", f"f{n}", "--user-email", email]) == 0
    capsys.readouterr()
    code = cli.main(["feeds", "add", "predictit", "one more", "--user-email", email])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "predict-pipeline: error: feed not created: plan limit: the free plan allows 3 enabled"
        " feeds (max_feeds); this would make 4\n"
    )
    names = {
        r[0]
        for r in pipe.execute("SELECT name FROM prediction_data_feeds WHERE user_id = %s", (owner,))
    }
    assert names == {"f0", "f1", "f2"}


# ---------------------------------------------------------------------------------------
# Limits at run time: after a downgrade the newest items beyond each limit are held


def test_a_downgrade_holds_the_newest_items_beyond_each_limit_and_deletes_nothing(
    pipe, db_url, dagster_instance, sensor_resources
):
    now = datetime.now(UTC)
    owner = user(pipe, "downgraded")
    # A billing period around now, so the campaigns all fall in it whatever the date.
    period = {
        "current_period_start": now - timedelta(days=10),
        "current_period_end": now + timedelta(days=20),
    }
    subscribe(pipe, owner, tier="team", realtime_enabled=True, **period)
    ages = [now - timedelta(days=3 - i) for i in range(3)]  # oldest first
    feeds = [
        feed(pipe, owner, f"feed {i}", created_at=at, next_run_at=now - timedelta(minutes=1))
        for i, at in enumerate(ages)
    ]
    events = [event(pipe, owner, created_at=at) for at in ages]
    campaigns = [
        pipe.execute(
            "INSERT INTO prediction_campaigns (user_id, name, created_at) VALUES (%s, %s, %s)"
            " RETURNING id",
            (owner, f"campaign {i}", at),
        ).fetchone()[0]
        for i, at in enumerate(ages)
    ]
    # The owner's rules: on campaign 0, on campaign 2 (to be held), and on everything (the
    # newest rule, to be held).
    rules = [
        rule(
            pipe, owner, "rule 0", created_at=ages[0], scope_type="campaign", scope_id=campaigns[0]
        ),
        rule(
            pipe, owner, "rule 1", created_at=ages[1], scope_type="campaign", scope_id=campaigns[2]
        ),
        rule(pipe, owner, "rule 2", created_at=ages[2]),
    ]
    org = pipe.execute(
        "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('Team', %s, %s) RETURNING id",
        (f"team-{uuid.uuid4().hex[:6]}", owner),
    ).fetchone()[0]
    mates = [user(pipe, f"mate{i}") for i in range(3)]
    members = [
        pipe.execute(
            "INSERT INTO prediction_org_members (org_id, user_id, created_at) VALUES (%s, %s, %s)"
            " RETURNING id",
            (org, mate, at),
        ).fetchone()[0]
        for mate, at in zip(mates, ages, strict=True)
    ]
    private = event(pipe, None, is_public=False, org_id=org)
    observer = user(pipe, "observer")  # an unlimited user whose rule watches every event
    subscribe(pipe, observer, tier="enterprise", realtime_enabled=True)
    watcher = rule(pipe, observer, "watch all")
    shared = event(pipe)
    for c in campaigns:
        pipe.execute(
            "INSERT INTO prediction_campaign_events (campaign_id, event_id) VALUES (%s, %s)",
            (c, shared),
        )
    before = _counts(pipe, owner, org)

    subscribe(
        pipe,
        owner,
        tier="pro",
        max_feeds=2,
        max_rules=2,
        max_events=2,
        max_campaigns_per_month=2,
        max_team_members=3,
        **period,
    )
    changes = record_plan_holds(pipe, now)
    held = {(h.kind, h.resource_id): h.reason for h in changes.held}
    assert held == {
        ("feed", feeds[2]): "beyond max_feeds (2) of the pro plan",
        ("rule", rules[2]): "beyond max_rules (2) of the pro plan",
        ("event", events[2]): "beyond max_events (2) of the pro plan",
        ("campaign", campaigns[2]): "beyond max_campaigns_per_month (2) of the pro plan",
        # The owner and the two most senior members fit in 3.
        ("member", members[2]): "beyond max_team_members (3) of the org owner's pro plan",
    }
    assert sorted(reason for _, reason in audits(pipe, "plan.hold")) == sorted(held.values())

    # Feeds: the newest is not polled.
    context = dg.build_sensor_context(
        instance=dagster_instance, resources={"database": sensor_resources["database"]}
    )
    polled = {
        r.run_config["ops"]["raw_feed_fetches"]["config"]["feed_ids"][0]
        for r in due_feeds_sensor(context).run_requests
    }
    assert polled == {str(feeds[0]), str(feeds[1])}
    # Rules: the newest does not fire; campaigns: a rule on a held campaign does not fire;
    # events: a held event fires nobody's rule.
    for e in (*events, shared):
        move(pipe, e, 0.5, 0.65, now - timedelta(seconds=5))
    report = tick(pipe, now - timedelta(minutes=1), now)
    fired = set(
        pipe.execute(
            "SELECT rule_id, event_id FROM prediction_rule_executions WHERE id = ANY(%s)",
            (report.fired,),
        ).fetchall()
    )
    assert fired == {
        (rules[0], shared),
        (watcher, events[0]),
        (watcher, events[1]),
        (watcher, shared),
    }
    # Members: the held member no longer sees the org's private event.
    for mate, sees in zip(mates, (True, True, False), strict=True):
        with connect(db_url, role=APP_ROLE) as app:
            app.execute("SELECT set_config('app.user_id', %s, true)", (str(mate),))
            seen = {r[0] for r in app.execute("SELECT id FROM prediction_events")}
        assert (private in seen) is sees
    # Nothing was deleted.
    assert _counts(pipe, owner, org) == before

    # Upgrading back releases every hold, audited, and the newest feed is polled again.
    subscribe(
        pipe,
        owner,
        tier="team",
        max_feeds=None,
        max_rules=None,
        max_events=None,
        max_campaigns_per_month=None,
        max_team_members=None,
    )
    released = record_plan_holds(pipe, datetime.now(UTC))
    assert {h.resource_id for h in released.released} == {
        feeds[2],
        rules[2],
        events[2],
        campaigns[2],
        members[2],
    }
    assert pipe.execute("SELECT count(*) FROM predict_meta.plan_holds").fetchone() == (0,)
    assert live_holds(pipe, "feed", datetime.now(UTC)) == {}


def _counts(conn, owner, org) -> tuple[int, ...]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM prediction_data_feeds WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_rules WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_events WHERE created_by = %(u)s),"
        " (SELECT count(*) FROM prediction_campaigns WHERE user_id = %(u)s),"
        " (SELECT count(*) FROM prediction_org_members WHERE org_id = %(o)s)",
        {"u": owner, "o": org},
    ).fetchone()


def test_a_held_event_keeps_its_snapshots_and_state(pipe):
    """Past max_events, the snapshot stage neither replaces nor adds the held event's
    snapshots, and its state stays; the events within the limit are snapshotted."""
    owner = user(pipe, "events")
    start = T0 - timedelta(hours=1)
    kept, held = (event(pipe, owner, created_at=T0 - timedelta(days=2 - i)) for i in range(2))
    subscribe(pipe, owner, max_events=1)  # the downgrade: the newer event is beyond it
    pipe.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (start, T0)).fetchall()
    pipe.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (start, T0)).fetchall()
    for e in (kept, held):
        pipe.execute(
            "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
            " value, fetched_at) VALUES (%s, 'kalshi', %s, 'MARKET_PRICE', 0.8, %s)",
            (e, f"K-{e}", start + timedelta(minutes=20)),
        )
    # The held event's snapshot of the interval, written before the downgrade, stays.
    pipe.execute(
        "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
        " VALUES (%s, 0.3, %s)",
        (held, T0),
    )
    with pipe.transaction():
        compute_snapshots(pipe, start, T0)
    rows = dict(
        pipe.execute(
            "SELECT event_id, probability::float8 FROM prediction_snapshots WHERE snapshot_at = %s",
            (T0,),
        ).fetchall()
    )
    assert rows[held] == 0.3 and rows[kept] > 0.5
    state = dict(
        pipe.execute(
            "SELECT id, current_probability::float8 FROM prediction_events WHERE id = ANY(%s)",
            ([kept, held],),
        ).fetchall()
    )
    assert state[held] == 0.5 and state[kept] > 0.5


# ---------------------------------------------------------------------------------------
# realtime_enabled


def test_hourly_window_is_the_tick_that_crosses_the_hour():
    assert hourly_window(T0 + timedelta(minutes=10), T0 + timedelta(minutes=10, seconds=30)) is None
    assert hourly_window(T0 - timedelta(seconds=30), T0 + timedelta(seconds=5)) == T0 - timedelta(
        hours=1
    )
    # After a stopped sensor, from the hour of its last tick.
    assert hourly_window(T0 - timedelta(hours=3, minutes=20), T0) == T0 - timedelta(hours=4)


def test_rules_without_realtime_are_evaluated_hourly_and_see_the_hours_changes(pipe):
    live, slow = user(pipe, "realtime"), user(pipe, "hourly")
    subscribe(pipe, live, realtime_enabled=True)
    subscribe(pipe, slow, realtime_enabled=False)
    fast_rule, slow_rule = rule(pipe, live, "fast"), rule(pipe, slow, "slow")
    watched = event(pipe)
    move(pipe, watched, 0.5, 0.65, T0 + timedelta(minutes=20))
    # Every tick of the hour: only the realtime rule.
    realtime = tick(
        pipe, T0 + timedelta(minutes=19), T0 + timedelta(minutes=21), cadence="realtime"
    )
    assert fired_rules(pipe, realtime) == {fast_rule}
    assert hourly_window(T0 + timedelta(minutes=19), T0 + timedelta(minutes=21)) is None
    # The tick crossing the next hour evaluates the hourly rule over the whole hour.
    since, until = T0 + timedelta(minutes=59, seconds=45), T0 + timedelta(hours=1, seconds=15)
    assert tick(pipe, since, until, cadence="realtime").fired == []
    hourly = tick(pipe, hourly_window(since, until), until, cadence="hourly")
    assert fired_rules(pipe, hourly) == {slow_rule}


def test_the_rule_sensor_runs_the_hourly_rules_on_the_tick_that_crosses_the_hour(
    pipe, db_url, dagster_instance
):
    live, slow = user(pipe, "realtime"), user(pipe, "hourly")
    subscribe(pipe, live, realtime_enabled=True)
    subscribe(pipe, slow, realtime_enabled=False)
    fast_rule, slow_rule = rule(pipe, live, "fast"), rule(pipe, slow, "slow")
    watched = event(pipe)
    now = datetime.now(UTC)
    move(pipe, watched, 0.5, 0.65, now - timedelta(seconds=5))
    # A cursor over an hour back: this tick crosses an hour.
    result = rule_trigger_sensor(
        dg.build_sensor_context(
            instance=dagster_instance,
            cursor=(now - timedelta(minutes=61)).isoformat(),
            resources={"database": PostgresResource(url=db_url)},
        )
    )
    assert requested_rules(pipe, result.run_requests) == {
        str(fast_rule),
        str(slow_rule),
    }


# ---------------------------------------------------------------------------------------
# Usage


def test_usage_is_metered_per_billing_period_or_calendar_month(pipe):
    billed, unbilled = user(pipe, "billed"), user(pipe, "unbilled")
    period = (datetime(2026, 11, 10, tzinfo=UTC), datetime(2026, 12, 10, tzinfo=UTC))
    subscribe(pipe, billed, current_period_start=period[0], current_period_end=period[1])
    month = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))

    billed_feed = feed(pipe, billed, "b1")
    feed(pipe, billed, "b2")
    feed(pipe, billed, "b3 (off)", enabled=False)
    unbilled_feed = feed(pipe, unbilled, "u1")
    rule(pipe, billed, "r1")
    rule(pipe, billed, "r2 (off)", enabled=False)
    open_event = event(pipe, billed)
    event(pipe, billed, status="RESOLVED_YES")
    event(pipe, unbilled)
    for at in (period[0] - timedelta(days=1), period[0] + timedelta(days=1), T0):
        pipe.execute(
            "INSERT INTO prediction_campaigns (user_id, name, created_at) VALUES (%s, 'c', %s)",
            (billed, at),
        )
    for at in (period[0] - timedelta(hours=2), T0 - timedelta(hours=1), T0):
        pipe.execute(
            "INSERT INTO prediction_explanations (event_id, trigger_type, headline, summary,"
            " created_at) VALUES (%s, 'PROBABILITY_SHIFT', 'h', 's', %s)",
            (open_event, at),
        )
    for feed_id, at, written in (
        (billed_feed, period[0] - timedelta(hours=1), 100),  # the previous period
        (billed_feed, T0 - timedelta(days=3), 7),
        (billed_feed, T0, 5),
        (unbilled_feed, datetime(2026, 11, 2, tzinfo=UTC), 11),
    ):
        pipe.execute(
            "INSERT INTO prediction_feed_runs (feed_id, started_at, status, signals_written)"
            " VALUES (%s, %s, 'SUCCESS', %s)",
            (feed_id, at, written),
        )

    # The signals stage adds as it writes, into the period of the write.
    record_signals_ingested(pipe, billed, 5, T0)
    record_signals_ingested(pipe, unbilled, 11, T0)
    rows = {
        r[0]: r[1:]
        for r in pipe.execute(
            "SELECT user_id, period_start, period_end, signals_ingested"
            " FROM prediction_usage_metrics"
        )
    }
    assert rows == {billed: (*period, 5), unbilled: (*month, 11)}

    assert refresh_usage(pipe, T0) == 2
    columns = ", ".join(ALL_METRICS)
    usage = {
        r[0]: dict(zip(ALL_METRICS, r[3:], strict=True))
        for r in pipe.execute(
            f"SELECT user_id, period_start, period_end, {columns} FROM prediction_usage_metrics"  # noqa: S608
        )
    }
    billed_usage = usage[billed]
    assert {k: v for k, v in billed_usage.items() if k != "storage_bytes_used"} == {
        "signals_ingested": 12,  # the period's runs: 7 + 5
        "feeds_active": 2,
        "rules_active": 1,
        "events_tracked": 1,
        "campaigns_created": 2,
        "explanations_generated": 2,
    }
    assert usage[unbilled]["signals_ingested"] == 11 and usage[unbilled]["feeds_active"] == 1
    assert 0 < usage[unbilled]["storage_bytes_used"] < billed_usage["storage_bytes_used"]
    # The estimate grows with the rows a user owns.
    pipe.execute(
        "INSERT INTO prediction_feed_runs (feed_id, started_at, status)"
        " SELECT %s, %s, 'FAILED' FROM generate_series(1, 50)",
        (unbilled_feed, T0),
    )
    refresh_usage(pipe, T0, ("storage_bytes_used",))
    grown = pipe.execute(
        "SELECT storage_bytes_used FROM prediction_usage_metrics WHERE user_id = %s", (unbilled,)
    ).fetchone()[0]
    assert grown > usage[unbilled]["storage_bytes_used"]
    # A refresh with nothing changed writes nothing.
    assert refresh_usage(pipe, T0) == 0


def test_usage_has_one_writer():
    """Every write of prediction_usage_metrics is in predict_pipeline/usage.py."""
    package = Path(__file__).resolve().parents[1] / "predict_pipeline"
    writers = {
        path.relative_to(package).as_posix()
        for path in package.rglob("*.py")
        if any(
            f"{verb} prediction_usage_metrics" in path.read_text()
            for verb in ("INSERT INTO", "UPDATE", "DELETE FROM")
        )
    }
    assert writers == {"usage.py"}


def test_demo_user_has_an_unlimited_realtime_plan(pipe, admin_conn):
    from predict_pipeline.demo import DEMO_USER_ID, seed_demo

    restore_free_plan(admin_conn)
    seed_demo(pipe, encryption_key=bytes(32), history_hours=1)
    plan = pipe.execute(
        "SELECT tier, in_force, realtime, max_feeds, max_rules, max_events"
        " FROM predict_user_plans(now()) WHERE user_id = %s",
        (DEMO_USER_ID,),
    ).fetchone()
    assert plan == ("enterprise", True, True, None, None, None)
    assert live_holds(pipe, "feed", datetime.now(UTC)) == {}
    feeds = pipe.execute(
        "SELECT count(*) FROM prediction_data_feeds WHERE user_id = %s", (DEMO_USER_ID,)
    ).fetchone()[0]
    assert feeds > FREE_PLAN["max_feeds"]
