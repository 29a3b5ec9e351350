"""Two orgs with members and a user outside both, with a row in every table for each tenant:
the world the tenancy tests attack as predict_app and predict_maintenance."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from psycopg.types.json import Jsonb

from predict_pipeline.db.connection import APP_ROLE, connect

AT = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)

# Who is who: org A (owner a1, admin a2, member a3), org B (owner b1, member b2), outsider c.
USERS = ("a1", "a2", "a3", "b1", "b2", "c")


@dataclass
class World:
    users: dict[str, uuid.UUID]
    orgs: dict[str, uuid.UUID]
    # (table, label) -> ids; labels: P (public), A / B (the orgs'), C (the outsider's), and
    # for user-private rows the owner's name.
    rows: dict[tuple[str, str], list[uuid.UUID]] = field(default_factory=dict)

    def add(self, table: str, label: str, row_id: uuid.UUID) -> uuid.UUID:
        self.rows.setdefault((table, label), []).append(row_id)
        return row_id

    def ids(self, table: str, *labels: str) -> set[uuid.UUID]:
        return {i for label in labels for i in self.rows.get((table, label), [])}

    def one(self, table: str, label: str) -> uuid.UUID:
        return self.rows[(table, label)][0]


def as_user(db_url: str, user: uuid.UUID, *, autocommit: bool = True) -> psycopg.Connection:
    """predict_app acting as `user` for the whole session."""
    conn = connect(db_url, role=APP_ROLE, autocommit=autocommit)
    conn.execute("SELECT set_config('app.user_id', %s, false)", (str(user),))
    return conn


def _insert(conn: psycopg.Connection, table: str, **columns) -> uuid.UUID:
    names = ", ".join(columns)
    marks = ", ".join(["%s"] * len(columns))
    values = [Jsonb(v) if isinstance(v, dict) else v for v in columns.values()]
    return conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id",  # noqa: S608
        values,
    ).fetchone()[0]


def build_world(admin: psycopg.Connection) -> World:
    """Every row written as the database owner (as the pipeline and billing would)."""
    users = {name: uuid.uuid4() for name in USERS}
    for name, user in users.items():
        admin.execute(
            "INSERT INTO auth.users (id, email, name) VALUES (%s, %s, %s)",
            (user, f"{name}-{user.hex[:6]}@example.com", name),
        )
    orgs = {}
    for label, owner in (("A", "a1"), ("B", "b1")):
        # The owner's membership comes with the org (0040's trigger).
        orgs[label] = _insert(
            admin,
            "prediction_orgs",
            name=f"Org {label}",
            slug=f"org-{label.lower()}-{uuid.uuid4().hex[:6]}",
            owner_id=users[owner],
        )
    for org, user, role in (("A", "a2", "admin"), ("A", "a3", "member"), ("B", "b2", "member")):
        admin.execute(
            "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by, accepted_at)"
            " VALUES (%s, %s, %s, %s, now())",
            (orgs[org], users[user], role, users[f"{org.lower()}1"]),
        )
    world = World(users, orgs)

    # Events: public (by c), org A's and org B's private, and c's own private one; the two org
    # events are worded alike, as a matcher would be tempted.
    events = {
        "P": dict(is_public=True, org_id=None, created_by=users["c"], title="Will it rain?"),
        "A": dict(
            is_public=False,
            org_id=orgs["A"],
            created_by=users["a1"],
            title="Will Acme ship the widget in Q4?",
        ),
        "B": dict(
            is_public=False,
            org_id=orgs["B"],
            created_by=users["b1"],
            title="Will Acme ship the widget in Q4 2026?",
        ),
        "C": dict(is_public=False, org_id=None, created_by=users["c"], title="Will C move?"),
    }
    admin.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (AT, AT)).fetchall()
    admin.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (AT, AT)).fetchall()
    for label, columns in events.items():
        event = world.add(
            "prediction_events",
            label,
            _insert(
                admin, "prediction_events", slug=f"ev-{label}-{uuid.uuid4().hex[:6]}", **columns
            ),
        )
        world.add(
            "prediction_signals",
            label,
            _insert(
                admin,
                "prediction_signals",
                event_id=event,
                source="kalshi",
                source_event_id=f"K-{label}",
                signal_type="MARKET_PRICE",
                value=0.4,
                raw_data={"secret": label},
                fetched_at=AT,
            ),
        )
        world.add(
            "prediction_snapshots",
            label,
            _insert(admin, "prediction_snapshots", event_id=event, probability=0.4, snapshot_at=AT),
        )
        world.add(
            "prediction_explanations",
            label,
            _insert(
                admin,
                "prediction_explanations",
                event_id=event,
                trigger_type="PROBABILITY_SHIFT",
                headline=f"{label} moved",
                summary="because",
            ),
        )
        score = world.add(
            "prediction_trust_scores",
            label,
            _insert(admin, "prediction_trust_scores", event_id=event, overall_score=0.8),
        )
        world.add(
            "prediction_trust_flags",
            label,
            _insert(
                admin,
                "prediction_trust_flags",
                event_id=event,
                trust_score_id=score,
                flag_type="VOLUME_SPIKE",
                severity="WARNING",
                description="spike",
            ),
        )
        resolution = world.add(
            "prediction_resolutions",
            label,
            _insert(admin, "prediction_resolutions", event_id=event, outcome="YES"),
        )
        world.add(
            "prediction_resolution_disputes",
            label,
            _insert(
                admin,
                "prediction_resolution_disputes",
                resolution_id=resolution,
                event_id=event,
                disputed_by=columns["created_by"],
                reason="wrong",
            ),
        )

    source = admin.execute(
        "SELECT id FROM prediction_data_sources WHERE source_id = 'kalshi'"
    ).fetchone()[0]
    for owner in ("a3", "b2", "c"):
        feed = world.add(
            "prediction_data_feeds",
            owner,
            _insert(
                admin,
                "prediction_data_feeds",
                source_id=source,
                user_id=users[owner],
                name=f"feed of {owner}",
            ),
        )
        run = world.add(
            "prediction_feed_runs",
            owner,
            _insert(
                admin,
                "prediction_feed_runs",
                feed_id=feed,
                status="FAILED",
                error_message=f"{owner}'s token expired",
            ),
        )
        world.add(
            "prediction_unmatched_signals",
            owner,
            _insert(
                admin,
                "prediction_unmatched_signals",
                feed_id=feed,
                feed_run_id=run,
                source_event_id=f"M-{owner}",
                signal_type="MARKET_PRICE",
                value=0.5,
            ),
        )

    # Rules: each org's (owned by its owner), c's own, and a system rule that fired on the
    # public event and on org A's private one.
    rules = {
        "A": dict(user_id=users["a1"], org_id=orgs["A"]),
        "B": dict(user_id=users["b1"], org_id=orgs["B"]),
        "C": dict(user_id=users["c"], org_id=None),
    }
    for label, columns in rules.items():
        rule = world.add(
            "prediction_rules",
            label,
            _insert(
                admin,
                "prediction_rules",
                name=f"rule {label}",
                scope_type="all",
                trigger_type="TRUST_BELOW",
                **columns,
            ),
        )
        world.add(
            "prediction_rule_executions",
            label,
            _insert(
                admin,
                "prediction_rule_executions",
                rule_id=rule,
                event_id=world.one("prediction_events", label),
                trigger_snapshot={"p": label},
            ),
        )
    system = _insert(
        admin,
        "prediction_rules",
        user_id=users["c"],
        name="system",
        scope_type="all",
        trigger_type="TRUST_BELOW",
        is_system=True,
    )
    for label in ("P", "A"):
        world.add(
            "prediction_rule_executions",
            f"system-{label}",
            _insert(
                admin,
                "prediction_rule_executions",
                rule_id=system,
                event_id=world.one("prediction_events", label),
                trigger_snapshot={"p": label},
            ),
        )

    campaigns = {
        "A": dict(user_id=users["a1"], org_id=orgs["A"], event="A"),
        "B": dict(user_id=users["b1"], org_id=orgs["B"], event="B"),
        "C": dict(user_id=users["c"], org_id=None, event="P"),
    }
    for label, spec in campaigns.items():
        campaign = world.add(
            "prediction_campaigns",
            label,
            _insert(
                admin,
                "prediction_campaigns",
                user_id=spec["user_id"],
                org_id=spec["org_id"],
                name=f"campaign {label}",
            ),
        )
        variant = world.add(
            "prediction_campaign_variants",
            label,
            _insert(admin, "prediction_campaign_variants", campaign_id=campaign, label="v1"),
        )
        world.add(
            "prediction_campaign_results",
            label,
            _insert(
                admin,
                "prediction_campaign_results",
                campaign_id=campaign,
                variant_id=variant,
                revenue_cents=123_456,
                recorded_by=spec["user_id"],
            ),
        )
        world.add(
            "prediction_campaign_events",
            label,
            _insert(
                admin,
                "prediction_campaign_events",
                campaign_id=campaign,
                event_id=world.one("prediction_events", spec["event"]),
            ),
        )
        # The campaign loop's calibration of the tenant's campaigns (the org's, or c's own).
        world.add(
            "prediction_campaign_calibration",
            label,
            _insert(
                admin,
                "prediction_campaign_calibration",
                user_id=None if spec["org_id"] else spec["user_id"],
                org_id=spec["org_id"],
                platform="all",
                campaign_type="all",
                time_window="ALL_TIME",
                scored_results=3,
                successes=1,
                engagement_scored=3,
                conversion_scored=3,
                direction_scored=0,
            ),
        )

    # Audit entries the pipeline wrote about each org's event.
    for label in ("A", "B"):
        world.add(
            "prediction_audit_log",
            label,
            _insert(
                admin,
                "prediction_audit_log",
                actor_type="service",
                action="event.resolved",
                resource_type="prediction_events",
                resource_id=world.one("prediction_events", label),
            ),
        )
    return world
