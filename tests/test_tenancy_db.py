"""Tenancy at the database layer (0040): two orgs with members and a user outside both, a row
in every table for each, attacked as predict_app (with app.user_id set) and as
predict_maintenance; every legitimate path still works."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from predict_pipeline.db.connection import (
    APP_ROLE,
    MAINTENANCE_ROLE,
    PIPELINE_ROLE,
    connect,
)
from tests.support.tenants import AT, World, as_user, build_world

# Who sees which labelled rows (tests/support/tenants.py): a3 is a plain member of org A, b2
# of org B, c belongs to no org.
EVENT_TABLES = (
    "prediction_events",
    "prediction_signals",
    "prediction_snapshots",
    "prediction_explanations",
    "prediction_trust_scores",
    "prediction_trust_flags",
    "prediction_resolutions",
    "prediction_resolution_disputes",
)
FEED_TABLES = ("prediction_data_feeds", "prediction_feed_runs", "prediction_unmatched_signals")
CAMPAIGN_TABLES = (
    "prediction_campaigns",
    "prediction_campaign_variants",
    "prediction_campaign_results",
    "prediction_campaign_events",
    "prediction_campaign_calibration",
)
SEES = {
    "a3": {
        "event": ("P", "A"),
        "feed": ("a3",),
        "org": ("A",),
        "execution": ("A", "system-P", "system-A"),
    },
    "b2": {"event": ("P", "B"), "feed": ("b2",), "org": ("B",), "execution": ("B", "system-P")},
    "c": {"event": ("P", "C"), "feed": ("c",), "org": ("C",), "execution": ("C", "system-P")},
}
# Readable by everyone, written by no user: no row names a user or an event.
PUBLIC_READ = {"prediction_calibration_scores", "prediction_data_sources", "prediction_categories"}


@pytest.fixture
def world(admin_conn) -> World:
    admin_conn.execute(
        "INSERT INTO prediction_calibration_scores (time_window, total_predictions)"
        " VALUES ('ALL_TIME', 4)"
    )
    return build_world(admin_conn)


def _visible(conn: psycopg.Connection, table: str) -> set[uuid.UUID]:
    return {r[0] for r in conn.execute(f"SELECT id FROM {table}")}  # noqa: S608


def _expected(world: World, viewer: str) -> dict[str, set[uuid.UUID]]:
    sees = SEES[viewer]
    expected = {t: world.ids(t, *sees["event"]) for t in EVENT_TABLES}
    expected |= {t: world.ids(t, *sees["feed"]) for t in FEED_TABLES}
    expected |= {t: world.ids(t, *sees["org"]) for t in CAMPAIGN_TABLES}
    expected["prediction_rules"] = world.ids("prediction_rules", *sees["org"])
    expected["prediction_rule_executions"] = world.ids(
        "prediction_rule_executions", *sees["execution"]
    )
    return expected


@pytest.mark.parametrize("viewer", ["a3", "b2", "c"])
def test_each_user_reads_only_what_their_tenancy_allows_in_every_table(db_url, world, viewer):
    expected = _expected(world, viewer)
    with as_user(db_url, world.users[viewer]) as conn:
        for table, ids in expected.items():
            known = world.ids(table, "P", "A", "B", "C", "a3", "b2", "c", "system-P", "system-A")
            assert _visible(conn, table) & known == ids, table
        # Raw data of a private event does not leak through the signals either.
        secrets = {r[0] for r in conn.execute("SELECT raw_data->>'secret' FROM prediction_signals")}
        assert secrets == set(SEES[viewer]["event"])
        orgs = {r[0] for r in conn.execute("SELECT id FROM prediction_orgs")}
        assert orgs == {world.orgs[o] for o in SEES[viewer]["org"] if o in world.orgs}
        members = {r[0] for r in conn.execute("SELECT user_id FROM prediction_org_members")}
        teammates = {
            "a3": {"a1", "a2", "a3"},
            "b2": {"b1", "b2"},
            "c": set(),
        }[viewer]
        assert members == {world.users[u] for u in teammates}
        # auth.users: oneself and one's teammates, not every email.
        users = {r[0] for r in conn.execute("SELECT id FROM auth.users")}
        assert users == {world.users[u] for u in teammates | {viewer}}
        for table in PUBLIC_READ:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0  # noqa: S608


def _refused(conn: psycopg.Connection, statement: str, params=()) -> None:
    """The statement fails for lack of privilege or by a policy, and leaves nothing behind."""
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
        conn.execute(statement, params)


def _no_effect(conn: psycopg.Connection, statement: str, params=()) -> None:
    """An update or delete that is refused, or finds no row it may touch."""
    try:
        with conn.transaction():
            touched = conn.execute(statement, params).rowcount
    except errors.InsufficientPrivilege:
        return
    assert touched == 0, statement


def _b_inserts(world: World, attacker: uuid.UUID) -> dict[str, tuple[str, tuple]]:
    """An insert into every table that would plant a row in B's tenancy (or act as B)."""
    ev, users, orgs = world.one("prediction_events", "B"), world.users, world.orgs
    feed, campaign = (
        world.one("prediction_data_feeds", "b2"),
        world.one("prediction_campaigns", "B"),
    )
    own_campaign = world.one("prediction_campaigns", "C")
    return {
        "prediction_signals": (
            "INSERT INTO prediction_signals (event_id, source, signal_type, value, fetched_at)"
            " VALUES (%s, 'x', 'MANUAL', 0.9, %s)",
            (ev, AT),
        ),
        "prediction_snapshots": (
            "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
            " VALUES (%s, 0.9, %s)",
            (ev, AT),
        ),
        "prediction_explanations": (
            "INSERT INTO prediction_explanations (event_id, trigger_type, headline, summary)"
            " VALUES (%s, 'MANUAL', 'x', 'x')",
            (ev,),
        ),
        "prediction_trust_scores": (
            "INSERT INTO prediction_trust_scores (event_id, overall_score) VALUES (%s, 0)",
            (ev,),
        ),
        "prediction_trust_flags": (
            "INSERT INTO prediction_trust_flags (event_id, flag_type, severity, description)"
            " VALUES (%s, 'OTHER', 'CRITICAL', 'x')",
            (ev,),
        ),
        "prediction_resolutions": (
            "INSERT INTO prediction_resolutions (event_id, outcome) VALUES (%s, 'NO')",
            (world.one("prediction_events", "C"),),
        ),
        "prediction_resolution_disputes": (
            "INSERT INTO prediction_resolution_disputes (resolution_id, event_id, disputed_by,"
            " reason) VALUES (%s, %s, %s, 'x')",
            (world.one("prediction_resolutions", "B"), ev, attacker),
        ),
        "prediction_feed_runs": (
            "INSERT INTO prediction_feed_runs (feed_id, status) VALUES (%s, 'SUCCESS')",
            (feed,),
        ),
        "prediction_unmatched_signals": (
            "INSERT INTO prediction_unmatched_signals (feed_id, source_event_id) VALUES (%s, 'x')",
            (feed,),
        ),
        "prediction_rule_executions": (
            "INSERT INTO prediction_rule_executions (rule_id, event_id, trigger_snapshot)"
            " VALUES (%s, %s, '{}')",
            (world.one("prediction_rules", "B"), ev),
        ),
        "prediction_campaign_variants": (
            "INSERT INTO prediction_campaign_variants (campaign_id, label) VALUES (%s, 'x')",
            (campaign,),
        ),
        "prediction_campaign_results": (
            "INSERT INTO prediction_campaign_results (campaign_id, revenue_cents, recorded_by)"
            " VALUES (%s, 1, %s)",
            (campaign, attacker),
        ),
        "prediction_campaign_events": (
            # Even from one's own campaign: linking B's private event would expose it.
            "INSERT INTO prediction_campaign_events (campaign_id, event_id) VALUES (%s, %s)",
            (own_campaign, ev),
        ),
        "prediction_calibration_scores": (
            "INSERT INTO prediction_calibration_scores (time_window) VALUES ('7D')",
            (),
        ),
        "prediction_campaign_calibration": (
            "INSERT INTO prediction_campaign_calibration (org_id, platform, campaign_type,"
            " time_window, scored_results, successes, engagement_scored, conversion_scored,"
            " direction_scored) VALUES (%s, 'all', 'all', '7D', 0, 0, 0, 0, 0)",
            (orgs["B"],),
        ),
        "prediction_data_sources": (
            "INSERT INTO prediction_data_sources (source_id, name, category, adapter_type)"
            " VALUES ('evil', 'evil', 'custom', 'custom_api')",
            (),
        ),
        "prediction_categories": (
            "INSERT INTO prediction_categories (name, slug) VALUES ('evil', 'evil')",
            (),
        ),
        "prediction_events": (
            "INSERT INTO prediction_events (title, slug, is_public, org_id, created_by)"
            " VALUES ('x', %s, false, %s, %s)",
            (f"x-{uuid.uuid4().hex[:6]}", orgs["B"], attacker),
        ),
        "prediction_rules": (
            "INSERT INTO prediction_rules (user_id, org_id, name, scope_type, trigger_type)"
            " VALUES (%s, %s, 'x', 'all', 'TRUST_BELOW')",
            (attacker, orgs["B"]),
        ),
        "prediction_campaigns": (
            "INSERT INTO prediction_campaigns (user_id, org_id, name) VALUES (%s, %s, 'x')",
            (attacker, orgs["B"]),
        ),
        "prediction_org_members": (
            "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
            " VALUES (%s, %s, 'member', %s)",
            (orgs["B"], attacker, attacker),
        ),
        "prediction_orgs": (
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('x', %s, %s)",
            (f"x-{uuid.uuid4().hex[:6]}", users["b1"]),
        ),
        "prediction_audit_log": (
            "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type)"
            " VALUES (%s, 'user', 'forged', 'x')",
            (users["b1"],),
        ),
        "prediction_subscriptions": (
            "INSERT INTO prediction_subscriptions (user_id, tier) VALUES (%s, 'enterprise')",
            (attacker,),
        ),
        "prediction_usage_metrics": (
            "INSERT INTO prediction_usage_metrics (user_id, period_start, period_end)"
            " VALUES (%s, now(), now())",
            (users["b2"],),
        ),
        "prediction_data_feeds": (
            "INSERT INTO prediction_data_feeds (source_id, user_id, name)"
            " SELECT id, %s, 'x' FROM prediction_data_sources WHERE source_id = 'kalshi'",
            (users["b2"],),
        ),
        "prediction_api_keys": (
            "INSERT INTO prediction_api_keys (user_id, name, key_prefix, key_hash)"
            " VALUES (%s, 'x', 'x', 'x')",
            (users["b2"],),
        ),
        "prediction_action_connections": (
            "INSERT INTO prediction_action_connections (user_id, platform, credentials)"
            " VALUES (%s, 'x', '{}')",
            (users["b2"],),
        ),
        "auth.users": (
            "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'x@example.com')",
            (),
        ),
    }


@pytest.mark.parametrize("attacker", ["c", "a3"])
def test_no_user_can_plant_a_row_in_another_tenancy_in_any_table(db_url, world, attacker):
    inserts = _b_inserts(world, world.users[attacker])
    with as_user(db_url, world.users[attacker]) as conn:
        for table, (statement, params) in inserts.items():
            try:
                _refused(conn, statement, params)
            except pytest.fail.Exception:
                raise AssertionError(f"{attacker} planted a row in {table}") from None


# A harmless-looking change per table (the column predict_app may write, if any).
_UPDATES = {
    "prediction_orgs": "name = 'taken'",
    "prediction_org_members": "role = 'viewer'",
    "prediction_events": "title = 'taken'",
    "prediction_rules": "name = 'taken'",
    "prediction_campaigns": "name = 'taken'",
    "prediction_campaign_variants": "label = 'taken'",
    "prediction_campaign_results": "revenue_cents = 0",
    "prediction_campaign_events": "notes = 'taken'",
    "prediction_data_feeds": "name = 'taken'",
}
B_ROWS = {
    **{t: ("B",) for t in EVENT_TABLES},
    **{t: ("b2",) for t in FEED_TABLES},
    **{t: ("B",) for t in CAMPAIGN_TABLES},
    "prediction_rules": ("B",),
    "prediction_rule_executions": ("B",),
    "prediction_audit_log": ("B",),
}


def _b_row_ids(world: World) -> dict[str, set[uuid.UUID]]:
    ids = {t: world.ids(t, *labels) for t, labels in B_ROWS.items()}
    ids["prediction_orgs"] = {world.orgs["B"]}
    return ids


def _snapshot(admin: psycopg.Connection, ids: dict[str, set[uuid.UUID]]) -> dict[str, list]:
    """Every B row as text, to prove nothing changed."""
    return {
        table: sorted(
            r[0]
            for r in admin.execute(
                f"SELECT t::text FROM {table} t WHERE id = ANY(%s)",  # noqa: S608
                (list(row_ids),),
            )
        )
        for table, row_ids in ids.items()
    }


@pytest.mark.parametrize("attacker", ["c", "a3"])
def test_no_user_can_change_or_delete_another_tenants_rows(db_url, admin_conn, world, attacker):
    ids = _b_row_ids(world)
    ids["prediction_org_members"] = {
        r[0]
        for r in admin_conn.execute(
            "SELECT id FROM prediction_org_members WHERE org_id = %s", (world.orgs["B"],)
        )
    }
    before = _snapshot(admin_conn, ids)
    with as_user(db_url, world.users[attacker]) as conn:
        for table, row_ids in ids.items():
            update = _UPDATES.get(table, "id = id")
            ids_of = (list(row_ids),)
            _no_effect(conn, f"UPDATE {table} SET {update} WHERE id = ANY(%s)", ids_of)  # noqa: S608
            _no_effect(conn, f"DELETE FROM {table} WHERE id = ANY(%s)", ids_of)  # noqa: S608
        # And owner_id cannot be written at all (so never taken).
        _refused(
            conn,
            "UPDATE prediction_orgs SET owner_id = %s WHERE id = %s",
            (world.users[attacker], world.orgs["B"]),
        )
    assert _snapshot(admin_conn, ids) == before


def test_org_takeover_attempts_all_fail(db_url, admin_conn, world):
    users, orgs = world.users, world.orgs
    with as_user(db_url, users["c"]) as c:
        for role in ("owner", "admin", "member"):
            _refused(
                c,
                "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
                " VALUES (%s, %s, %s, %s)",
                (orgs["B"], users["c"], role, users["b1"]),
            )
        _refused(
            c,
            "UPDATE prediction_orgs SET owner_id = %s WHERE id = %s",
            (users["c"], orgs["B"]),
        )
        # An org of one's own does not open anyone else's org, events or audit rows.
        c.execute(
            "INSERT INTO prediction_orgs (id, name, slug, owner_id) VALUES (%s, 'C org',"
            " 'c-org', %s)",
            (uuid.uuid4(), users["c"]),
        )
        [own_org] = [r[0] for r in c.execute("SELECT id FROM prediction_orgs")]
        assert c.execute(
            "SELECT user_id, role FROM prediction_org_members WHERE org_id = %s", (own_org,)
        ).fetchall() == [(users["c"], "owner")]
        _refused(
            c,
            "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
            " VALUES (%s, %s, 'owner', %s)",
            (own_org, users["b1"], users["c"]),
        )
        seen = {r[0] for r in c.execute("SELECT resource_id FROM prediction_audit_log")}
        assert world.ids("prediction_events", "A", "B") & seen == set()
        assert {r[0] for r in c.execute("SELECT details->>'org_id' FROM prediction_audit_log")} == {
            str(own_org)
        }
        # Moving one's own rule, campaign or event into org B.
        for table in ("prediction_rules", "prediction_campaigns"):
            _refused(
                c,
                f"UPDATE {table} SET org_id = %s WHERE id = %s",  # noqa: S608
                (orgs["B"], world.one(table, "C")),
            )
    with as_user(db_url, users["a2"]) as admin_a:
        # An admin may add members, not admins, and may not change roles.
        _refused(
            admin_a,
            "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
            " VALUES (%s, %s, 'admin', %s)",
            (orgs["A"], users["c"], users["a2"]),
        )
        _no_effect(
            admin_a,
            "UPDATE prediction_org_members SET role = 'admin' WHERE user_id = %s",
            (users["a3"],),
        )
        # Nor remove the owner.
        _no_effect(admin_a, "DELETE FROM prediction_org_members WHERE user_id = %s", (users["a1"],))
    with as_user(db_url, users["a3"]) as member:
        _refused(
            member,
            "UPDATE prediction_org_members SET role = 'admin' WHERE user_id = %s",
            (users["a3"],),
        )
        _no_effect(member, "DELETE FROM prediction_org_members WHERE user_id = %s", (users["a2"],))
    with as_user(db_url, users["b1"]) as owner_b:
        # The owner cannot hand the role 'owner' to someone else, nor drop their own.
        _refused(
            owner_b,
            "UPDATE prediction_org_members SET role = 'owner' WHERE user_id = %s",
            (users["b2"],),
        )
        _no_effect(owner_b, "DELETE FROM prediction_org_members WHERE user_id = %s", (users["b1"],))
    owners = admin_conn.execute(
        "SELECT o.id, o.owner_id, m.user_id FROM prediction_orgs o"
        " JOIN prediction_org_members m ON m.org_id = o.id AND m.role = 'owner'"
        " WHERE o.id = ANY(%s)",
        ([orgs["A"], orgs["B"]],),
    ).fetchall()
    assert set(owners) == {
        (orgs["A"], users["a1"], users["a1"]),
        (orgs["B"], users["b1"], users["b1"]),
    }
    roles = dict(
        admin_conn.execute(
            "SELECT user_id, role FROM prediction_org_members WHERE org_id = %s", (orgs["A"],)
        ).fetchall()
    )
    assert roles == {users["a1"]: "owner", users["a2"]: "admin", users["a3"]: "member"}


def test_membership_is_managed_by_the_org_as_the_roles_say(db_url, admin_conn, world):
    users, orgs = world.users, world.orgs
    with as_user(db_url, users["a2"]) as admin_a:
        admin_a.execute(
            "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
            " VALUES (%s, %s, 'member', %s)",
            (orgs["A"], users["c"], users["a2"]),
        )
    with as_user(db_url, users["c"]) as c:
        # The new member accepts, and now sees org A's private event.
        c.execute(
            "UPDATE prediction_org_members SET accepted_at = now() WHERE user_id = %s",
            (users["c"],),
        )
        assert world.one("prediction_events", "A") in _visible(c, "prediction_events")
    with as_user(db_url, users["a1"]) as owner:
        owner.execute(
            "UPDATE prediction_org_members SET role = 'admin' WHERE user_id = %s", (users["a3"],)
        )
        owner.execute("DELETE FROM prediction_org_members WHERE user_id = %s", (users["c"],))
    with as_user(db_url, users["c"]) as c:
        assert world.one("prediction_events", "A") not in _visible(c, "prediction_events")
    roles = dict(
        admin_conn.execute(
            "SELECT user_id, role FROM prediction_org_members WHERE org_id = %s", (orgs["A"],)
        ).fetchall()
    )
    assert roles == {users["a1"]: "owner", users["a2"]: "admin", users["a3"]: "admin"}
    actions = admin_conn.execute(
        "SELECT action, actor_id FROM prediction_audit_log WHERE details->>'user_id' = %s"
        " ORDER BY created_at, action",
        (str(users["c"]),),
    ).fetchall()
    assert sorted(actions) == sorted(
        [
            ("org.member_added", users["a2"]),
            ("org.member_changed", users["c"]),
            ("org.member_removed", users["a1"]),
        ]
    )


def test_admins_read_only_their_own_orgs_audit_rows(db_url, world):
    """The spec's "Audit log admin only" opened every org's rows to any org's admin."""
    audit = {label: world.ids("prediction_audit_log", label) for label in ("A", "B")}
    with as_user(db_url, world.users["a1"]) as owner_a:
        seen = _visible(owner_a, "prediction_audit_log")
        orgs = {
            r[0]
            for r in owner_a.execute(
                "SELECT details->>'org_id' FROM prediction_audit_log"
                " WHERE resource_type = 'prediction_org_members'"
            )
        }
    assert audit["A"] <= seen and not audit["B"] & seen
    assert orgs == {str(world.orgs["A"])}
    with as_user(db_url, world.users["a2"]) as admin_a:
        assert audit["A"] <= _visible(admin_a, "prediction_audit_log")
    with as_user(db_url, world.users["b1"]) as owner_b:
        seen = _visible(owner_b, "prediction_audit_log")
    assert audit["B"] <= seen and not audit["A"] & seen
    for plain in ("a3", "b2", "c"):
        with as_user(db_url, world.users[plain]) as conn:
            assert _visible(conn, "prediction_audit_log") == set(), plain


def test_audit_entries_cannot_be_forged(db_url, world):
    me = world.users["c"]
    with as_user(db_url, me) as c:
        for actor, actor_type in ((world.users["b1"], "user"), (None, "service"), (me, "system")):
            _refused(
                c,
                "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type)"
                " VALUES (%s, %s, 'forged', 'x')",
                (actor, actor_type),
            )
        _refused(
            c,
            "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type,"
            " created_at) VALUES (%s, 'user', 'backdated', 'x', '2020-01-01')",
            (me,),
        )
        # Nor an entry about another tenant's event, which would show in B's admins' view.
        _refused(
            c,
            "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type,"
            " resource_id) VALUES (%s, 'user', 'planted', 'prediction_events', %s)",
            (me, world.one("prediction_events", "B")),
        )
        # Writing as oneself (or one's own API key), about what one sees, is the legitimate
        # path.
        c.execute(
            "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type)"
            " VALUES (%s, 'user', 'feed.created', 'prediction_data_feeds')",
            (me,),
        )
        c.execute(
            "INSERT INTO prediction_audit_log (actor_id, actor_type, action, resource_type,"
            " resource_id) VALUES (%s, 'user', 'event.viewed', 'prediction_events', %s)",
            (me, world.one("prediction_events", "C")),
        )
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        _refused(
            pipeline,
            "INSERT INTO prediction_audit_log (actor_type, action, resource_type, created_at)"
            " VALUES ('service', 'backdated', 'x', '2020-01-01')",
        )
    with connect(db_url, role=MAINTENANCE_ROLE, autocommit=True) as maintenance:
        target = list(world.ids("prediction_audit_log", "A"))
        _refused(
            maintenance,
            "UPDATE prediction_audit_log SET action = 'tampered' WHERE id = ANY(%s)",
            (target,),
        )
        _refused(maintenance, "DELETE FROM prediction_audit_log WHERE id = ANY(%s)", (target,))
        _refused(
            maintenance,
            "INSERT INTO prediction_audit_log (actor_type, action, resource_type, created_at)"
            " VALUES ('service', 'backdated', 'x', '2020-01-01')",
        )
        _refused(maintenance, "TRUNCATE prediction_audit_log")
        # A verified slice, once recorded, is not rewritten to cover more.
        maintenance.execute(
            "INSERT INTO predict_meta.audit_archive (range_start, range_end, path, row_count,"
            " rows_sha256) VALUES ('2020-01-01', '2020-02-01', '/a.parquet', 1, 'x')"
        )
        _refused(
            maintenance,
            "UPDATE predict_meta.audit_archive SET range_end = now() + interval '1 day'",
        )
        assert (
            maintenance.execute(
                "SELECT count(*) FROM prediction_audit_log WHERE action = 'feed.created'"
            ).fetchone()[0]
            == 1
        )


def test_maintenance_writes_only_what_retention_writes(db_url, admin_conn, world):
    """predict_maintenance (retention) cannot plant or rewrite tenant data: only its deletes
    of old operational rows, its counter and usage updates, and audit appends."""
    ev, b1 = world.one("prediction_events", "B"), world.users["b1"]
    with connect(db_url, role=MAINTENANCE_ROLE, autocommit=True) as maintenance:
        for statement, params in (
            (
                "INSERT INTO prediction_signals (event_id, source, signal_type, value,"
                " fetched_at) VALUES (%s, 'x', 'MANUAL', 0.9, %s)",
                (ev, AT),
            ),
            (
                "INSERT INTO prediction_org_members (org_id, user_id, role) VALUES (%s, %s,"
                " 'admin')",
                (world.orgs["B"], world.users["c"]),
            ),
            ("UPDATE prediction_orgs SET owner_id = %s", (world.users["c"],)),
            ("UPDATE prediction_events SET title = 'x' WHERE id = %s", (ev,)),
            ("UPDATE prediction_rules SET org_id = NULL WHERE user_id = %s", (b1,)),
            ("DELETE FROM prediction_events WHERE id = %s", (ev,)),
            ("DELETE FROM prediction_data_feeds WHERE user_id = %s", (world.users["b2"],)),
            ("UPDATE prediction_subscriptions SET tier = 'enterprise'", ()),
            ("UPDATE prediction_data_feeds SET config = '{}'", ()),
            ("DELETE FROM auth.users WHERE id = %s", (b1,)),
        ):
            _refused(maintenance, statement, params)
        # What retention does still works.
        deleted = maintenance.execute(
            "DELETE FROM prediction_rule_executions WHERE id = ANY(%s)",
            (list(world.ids("prediction_rule_executions", "B")),),
        ).rowcount
        maintenance.execute("UPDATE prediction_data_feeds SET signals_ingested_24h = 0")
    assert deleted == 1
    assert (
        admin_conn.execute("SELECT title FROM prediction_events WHERE id = %s", (ev,))
        .fetchone()[0]
        .startswith("Will Acme")
    )


def test_legitimate_writes_of_members_still_work(db_url, admin_conn, world):
    users, orgs = world.users, world.orgs
    with as_user(db_url, users["a3"]) as member:
        event = uuid.uuid4()
        member.execute(
            "INSERT INTO prediction_events (id, title, slug, is_public, org_id, created_by)"
            " VALUES (%s, 'A member asks', %s, false, %s, %s)",
            (event, f"ask-{event.hex[:6]}", orgs["A"], users["a3"]),
        )
        rule = member.execute(
            "INSERT INTO prediction_rules (user_id, org_id, name, scope_type, trigger_type)"
            " VALUES (%s, %s, 'mine', 'all', 'TRUST_BELOW') RETURNING id",
            (users["a3"], orgs["A"]),
        ).fetchone()[0]
        member.execute("UPDATE prediction_rules SET org_id = NULL WHERE id = %s", (rule,))
    with as_user(db_url, users["b2"]) as other:
        # b2 sees neither the org-A event nor the rule; a1 (same org) sees the event.
        assert event not in _visible(other, "prediction_events")
    with as_user(db_url, users["a1"]) as owner:
        assert event in _visible(owner, "prediction_events")
        campaign = world.one("prediction_campaigns", "A")
        variant = owner.execute(
            "INSERT INTO prediction_campaign_variants (campaign_id, label) VALUES (%s, 'v2')"
            " RETURNING id",
            (campaign,),
        ).fetchone()[0]
        owner.execute(
            "INSERT INTO prediction_campaign_results (campaign_id, variant_id, clicks,"
            " recorded_by) VALUES (%s, %s, 7, %s)",
            (campaign, variant, users["a1"]),
        )
        owner.execute(
            "INSERT INTO prediction_campaign_events (campaign_id, event_id) VALUES (%s, %s)",
            (campaign, world.one("prediction_events", "P")),
        )
        owner.execute(
            "UPDATE prediction_orgs SET name = 'Org A (renamed)' WHERE id = %s", (orgs["A"],)
        )
    with as_user(db_url, users["c"]) as c:
        # A dispute on a resolution of an event one sees, as oneself.
        c.execute(
            "INSERT INTO prediction_resolution_disputes (resolution_id, event_id, disputed_by,"
            " reason) VALUES (%s, %s, %s, 'the source says otherwise')",
            (
                world.one("prediction_resolutions", "P"),
                world.one("prediction_events", "P"),
                users["c"],
            ),
        )
    counts = admin_conn.execute(
        "SELECT (SELECT count(*) FROM prediction_campaign_variants WHERE campaign_id = %s),"
        " (SELECT count(*) FROM prediction_resolution_disputes WHERE disputed_by = %s),"
        " (SELECT name FROM prediction_orgs WHERE id = %s)",
        (world.one("prediction_campaigns", "A"), users["c"], orgs["A"]),
    ).fetchone()
    assert counts == (2, 3, "Org A (renamed)")


def test_the_pipeline_cannot_put_a_users_rule_into_a_strangers_org(db_url, world):
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        _refused(
            pipeline,
            "UPDATE prediction_rules SET org_id = %s WHERE id = %s",
            (world.orgs["B"], world.one("prediction_rules", "C")),
        )
        _refused(
            pipeline,
            "INSERT INTO prediction_org_members (org_id, user_id, role) VALUES (%s, %s, 'owner')",
            (world.orgs["B"], world.users["c"]),
        )


def test_an_operator_transfers_ownership_and_the_role_moves(db_url, admin_conn, world):
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        pipeline.execute(
            "UPDATE prediction_orgs SET owner_id = %s WHERE id = %s",
            (world.users["a2"], world.orgs["A"]),
        )
        # The previous owner cannot keep, nor anyone else take, the role owner.
        _refused(
            pipeline,
            "UPDATE prediction_org_members SET role = 'owner' WHERE user_id = %s AND org_id = %s",
            (world.users["a1"], world.orgs["A"]),
        )
    roles = dict(
        admin_conn.execute(
            "SELECT user_id, role FROM prediction_org_members WHERE org_id = %s",
            (world.orgs["A"],),
        ).fetchall()
    )
    assert roles == {
        world.users["a1"]: "admin",
        world.users["a2"]: "owner",
        world.users["a3"]: "member",
    }


def test_partitions_read_by_name_show_nothing(db_url, admin_conn, world):
    parts = [
        r[0]
        for r in admin_conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent IN ('prediction_signals'::regclass,"
            " 'prediction_snapshots'::regclass)"
        )
    ]
    # Including a month created after the migration.
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        parts += [
            r[0]
            for r in pipeline.execute(
                "SELECT predict_ensure_signal_partitions('2031-05-01', '2031-05-01')"
                " UNION ALL SELECT predict_ensure_snapshot_partitions('2031-05-01', '2031-05-01')"
            )
        ]
    assert any(p.endswith("y2031m05") for p in parts) and len(parts) >= 4
    with as_user(db_url, world.users["a3"]) as conn:
        for part in parts:
            _refused(conn, f"SELECT * FROM {part}")  # noqa: S608
    with connect(db_url, role="predict_readonly") as readonly:
        for part in parts:
            assert readonly.execute(f"SELECT count(*) FROM {part}").fetchone()[0] == 0  # noqa: S608


def test_every_table_predict_app_can_touch_is_under_rls_or_public_read_only(admin_conn):
    """A guard for later migrations: a table predict_app may read or write without row-level
    security is either documented public reference data (read only) or a leak."""
    rows = admin_conn.execute(
        """SELECT n.nspname || '.' || c.relname, c.relrowsecurity,
                  has_table_privilege('predict_app', c.oid, 'SELECT'),
                  has_table_privilege('predict_app', c.oid, 'INSERT')
                  OR has_table_privilege('predict_app', c.oid, 'UPDATE')
                  OR has_table_privilege('predict_app', c.oid, 'DELETE')
                  OR has_any_column_privilege('predict_app', c.oid, 'UPDATE')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('public', 'auth', 'predict_meta')"""
    ).fetchall()
    assert len(rows) >= 28
    for table, rls, readable, writable in rows:
        if rls:
            continue
        assert not writable, f"{table}: predict_app may write it without RLS"
        if readable:
            assert table.removeprefix("public.") in PUBLIC_READ, f"{table}: readable without RLS"
    # Only what 0040 lists as public is readable without a policy.
    open_tables = {
        t.removeprefix("public.") for t, rls, readable, _ in rows if readable and not rls
    }
    assert open_tables == PUBLIC_READ


def test_without_a_user_nothing_private_is_visible(db_url, world):
    with connect(db_url, role=APP_ROLE) as anonymous:
        for table in (
            *EVENT_TABLES,
            "prediction_campaigns",
            "prediction_campaign_calibration",
            "prediction_rule_executions",
        ):
            seen = _visible(anonymous, table)
            assert seen & world.ids(table, "A", "B", "C") == set(), table
        assert _visible(anonymous, "prediction_orgs") == set()
        assert anonymous.execute("SELECT count(*) FROM auth.users").fetchone()[0] == 0
