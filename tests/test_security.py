"""Dedup index, RLS as a user, the append-only audit log, and the pipeline/maintenance roles."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from predict_pipeline.db.connection import APP_ROLE, MAINTENANCE_ROLE, PIPELINE_ROLE, connect
from tests.support.calendar import FAR

BUCKET_START = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def _event(conn: psycopg.Connection, **columns) -> uuid.UUID:
    columns.setdefault("title", "Will it rain?")
    columns.setdefault("slug", f"ev-{uuid.uuid4().hex[:8]}")
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    return conn.execute(
        f"INSERT INTO prediction_events ({names}) VALUES ({marks}) RETURNING id",  # noqa: S608
        list(columns.values()),
    ).fetchone()[0]


def _signal(conn: psycopg.Connection, event_id, fetched_at: datetime) -> None:
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (fetched_at, fetched_at))
    conn.execute(
        "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type, value,"
        " fetched_at) VALUES (%s, 'kalshi', 'KX-1', 'MARKET_PRICE', 0.5, %s)",
        (event_id, fetched_at),
    )


@pytest.mark.parametrize("session_zone", ["UTC", "America/St_Johns", "Asia/Kathmandu"])
def test_dedup_refuses_same_bucket_and_accepts_next_bucket(admin_conn, session_zone):
    admin_conn.execute("SELECT set_config('TimeZone', %s, false)", (session_zone,))
    event_id = _event(admin_conn)
    _signal(admin_conn, event_id, BUCKET_START + timedelta(minutes=1))
    with pytest.raises(errors.UniqueViolation, match="idx_signals_dedup"):
        _signal(admin_conn, event_id, BUCKET_START + timedelta(minutes=4))
    _signal(admin_conn, event_id, BUCKET_START + timedelta(minutes=5, seconds=30))
    count = admin_conn.execute("SELECT count(*) FROM prediction_signals").fetchone()[0]
    assert count == 2


def test_dedup_ignores_signals_without_source_event_id(admin_conn):
    event_id = _event(admin_conn)
    admin_conn.execute(
        "SELECT predict_ensure_signal_partitions(%s, %s)", (BUCKET_START, BUCKET_START)
    )
    for _ in range(2):
        admin_conn.execute(
            "INSERT INTO prediction_signals (event_id, source, signal_type, value, fetched_at)"
            " VALUES (%s, 'manual', 'MANUAL', 0.4, %s)",
            (event_id, BUCKET_START),
        )
    assert admin_conn.execute("SELECT count(*) FROM prediction_signals").fetchone()[0] == 2


@pytest.fixture
def tenants(admin_conn):
    """Users A and B, each with a feed, rule, API key and connection; an org of A's."""
    a, b = uuid.uuid4(), uuid.uuid4()
    for user, email in ((a, "a@example.com"), (b, "b@example.com")):
        admin_conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user, email))
    source = admin_conn.execute(
        "INSERT INTO prediction_data_sources (source_id, name, category, adapter_type)"
        " VALUES ('rls_test', 'RLS test', 'custom', 'custom_api') RETURNING id"
    ).fetchone()[0]
    for user in (a, b):
        admin_conn.execute(
            "INSERT INTO prediction_data_feeds (source_id, user_id, name) VALUES (%s, %s, %s)",
            (source, user, f"feed of {user}"),
        )
        admin_conn.execute(
            "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type)"
            " VALUES (%s, %s, 'all', 'TRUST_BELOW')",
            (user, f"rule of {user}"),
        )
        admin_conn.execute(
            "INSERT INTO prediction_api_keys (user_id, name, key_prefix, key_hash)"
            " VALUES (%s, 'key', 'pk_live_abc1', %s)",
            (user, uuid.uuid4().hex),
        )
        admin_conn.execute(
            "INSERT INTO prediction_action_connections (user_id, platform, credentials)"
            " VALUES (%s, 'slack', '{}')",
            (user,),
        )
    org = admin_conn.execute(
        "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('Org', 'org', %s) RETURNING id",
        (a,),
    ).fetchone()[0]
    admin_conn.execute(
        "INSERT INTO prediction_org_members (org_id, user_id, role) VALUES (%s, %s, 'owner')",
        (org, a),
    )
    private_event = _event(admin_conn, is_public=False, org_id=org, title="Org secret")
    public_event = _event(admin_conn, title="Public question")
    return {"a": a, "b": b, "private_event": private_event, "public_event": public_event}


def _as_user(db_url: str, user: uuid.UUID) -> psycopg.Connection:
    conn = connect(db_url, role=APP_ROLE)
    conn.execute("SELECT set_config('app.user_id', %s, true)", (str(user),))
    return conn


def _owners(conn: psycopg.Connection, table: str) -> set[uuid.UUID]:
    return {r[0] for r in conn.execute(f"SELECT user_id FROM {table}")}  # noqa: S608


def test_rls_user_sees_only_own_feeds_rules_keys_connections(db_url, tenants):
    with _as_user(db_url, tenants["a"]) as conn:
        for table in (
            "prediction_data_feeds",
            "prediction_rules",
            "prediction_api_keys",
            "prediction_action_connections",
        ):
            assert _owners(conn, table) == {tenants["a"]}, table


def test_rls_org_private_event_visible_to_members_only(db_url, tenants):
    with _as_user(db_url, tenants["a"]) as member:
        seen = {r[0] for r in member.execute("SELECT id FROM prediction_events")}
        assert seen == {tenants["private_event"], tenants["public_event"]}
    with _as_user(db_url, tenants["b"]) as outsider:
        seen = {r[0] for r in outsider.execute("SELECT id FROM prediction_events")}
        assert seen == {tenants["public_event"]}
        through_view = {r[0] for r in outsider.execute("SELECT id FROM v_active_events")}
        assert through_view == {tenants["public_event"]}


def test_rls_without_a_user_sees_no_private_rows(db_url, tenants):
    with connect(db_url, role=APP_ROLE) as anonymous:
        assert anonymous.execute("SELECT count(*) FROM prediction_data_feeds").fetchone()[0] == 0
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            anonymous.execute("INSERT INTO prediction_events (title, slug) VALUES ('x', 'y')")


def test_pipeline_role_reads_across_users(db_url, tenants):
    with connect(db_url, role=PIPELINE_ROLE) as pipeline:
        assert _owners(pipeline, "prediction_data_feeds") == {tenants["a"], tenants["b"]}
        events = pipeline.execute("SELECT count(*) FROM prediction_events").fetchone()[0]
        assert events == 2


def _audit_row(conn: psycopg.Connection, actor: uuid.UUID | None = None) -> uuid.UUID:
    # No RETURNING: a user may append entries without being allowed to read them back.
    audit_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO prediction_audit_log (id, actor_id, actor_type, action, resource_type)"
        " VALUES (%s, %s, %s, 'test.append', 'test')",
        (audit_id, actor, "user" if actor else "service"),
    )
    return audit_id


@pytest.mark.parametrize("role", [APP_ROLE, PIPELINE_ROLE])
def test_audit_log_is_append_only_for_app_and_pipeline(db_url, tenants, role):
    with connect(db_url, role=role, autocommit=True) as conn:
        actor = None
        if role == APP_ROLE:
            conn.execute("SELECT set_config('app.user_id', %s, false)", (str(tenants["a"]),))
            actor = tenants["a"]
        audit_id = _audit_row(conn, actor)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(
                "UPDATE prediction_audit_log SET action = 'tampered' WHERE id = %s", (audit_id,)
            )
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM prediction_audit_log WHERE id = %s", (audit_id,))
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("TRUNCATE prediction_audit_log")
    with connect(db_url, role=None) as owner:
        action = owner.execute(
            "SELECT action FROM prediction_audit_log WHERE id = %s", (audit_id,)
        ).fetchone()
    assert action == ("test.append",)


def test_maintenance_role_deletes_only_archived_audit_rows_and_never_updates(db_url):
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as pipeline:
        audit_id = _audit_row(pipeline)
    with connect(db_url, role=MAINTENANCE_ROLE, autocommit=True) as maintenance:
        with pytest.raises(errors.InsufficientPrivilege, match="no verified archive"):
            maintenance.execute("DELETE FROM prediction_audit_log WHERE id = %s", (audit_id,))
        with pytest.raises(errors.InsufficientPrivilege):
            maintenance.execute(
                "UPDATE prediction_audit_log SET action = 'tampered' WHERE id = %s", (audit_id,)
            )
        # Once a verified archive slice holds the row's time, retention may delete it.
        maintenance.execute(
            "INSERT INTO predict_meta.audit_archive (range_start, range_end, path, row_count,"
            " rows_sha256, file_sha256, file_bytes)"
            " SELECT created_at, created_at + interval '1 second', '/archive/slice.parquet', 1,"
            " 'rows', 'file', 10 FROM prediction_audit_log WHERE id = %s",
            (audit_id,),
        )
        deleted = maintenance.execute(
            "DELETE FROM prediction_audit_log WHERE id = %s", (audit_id,)
        ).rowcount
    assert deleted == 1


def test_snapshot_partitions_exist_ahead_and_are_created_on_demand(db_url):
    with connect(db_url, role=None, autocommit=True) as owner:
        [migrated_at] = owner.execute(
            "SELECT applied_at FROM predict_meta.schema_migrations WHERE version = 3"
        ).fetchone()
    with connect(db_url, role=PIPELINE_ROLE, autocommit=True) as conn:
        event_id = _event(conn)
        # The months of the day the schema was migrated (not today: the suite may have
        # crossed into the next month since) and the month after exist without asking.
        conn.execute(
            "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
            " VALUES (%s, 0.5, %s), (%s, 0.6, %s::timestamptz + interval '1 month')",
            (event_id, migrated_at, event_id, migrated_at),
        )
        far = datetime(FAR, 2, 10, tzinfo=UTC)
        with pytest.raises(errors.CheckViolation, match="no partition"):
            conn.execute(
                "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
                " VALUES (%s, 0.5, %s)",
                (event_id, far),
            )
        created = [
            r[0]
            for r in conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (far, far))
        ]
        assert created == [f"prediction_snapshots_y{FAR}m02"]
        conn.execute(
            "INSERT INTO prediction_snapshots (event_id, probability, snapshot_at)"
            " VALUES (%s, 0.5, %s)",
            (event_id, far),
        )
        again = conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (far, far))
        assert again.fetchall() == []
        assert conn.execute("SELECT count(*) FROM prediction_snapshots").fetchone()[0] == 3
