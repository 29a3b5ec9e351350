"""Tenancy as a property: random users, orgs and memberships; public, org-private and
creator-private events drawn from a few near-identical titles; upload feeds that reuse the same
market ids and map some by hand; bulk review decisions; rules of every scope (personal, org,
system) with webhook and campaign actions. The real stages run (validated signals, the review
queue, the rule tick, the actions against a real local receiver), and then no signal, review
decision, execution, delivery or campaign change may cross to what its owner cannot see or
change. Each check is computed here, from the world, with the Python statement of the rules.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.rules.channels import http_client_factory, smtp_factory
from predict_pipeline.rules.engine import evaluate_tick
from predict_pipeline.rules.execute import connection_aad, run_execution
from predict_pipeline.secrets import encrypt_json
from predict_pipeline.signals.review import ReviewFilter, resolve
from predict_pipeline.signals.stage import validate_window
from predict_pipeline.tenancy import Viewer, rule_viewer, sees_campaign, sees_event
from tests.support.feeds import KEY
from tests.support.http_server import Reply

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)
TITLES = [
    "Will Northwind Bank announce layoffs before October 2027?",
    "Will Northwind Bank announce layoffs before November 2027?",
    "Will Contoso Bank announce layoffs before October 2027?",
    "Will the ECB cut its deposit rate in December 2027?",
    "Will the ECB cut its deposit rate in March 2028?",
]


def _world(conn, rng: random.Random, server) -> dict:
    users = [
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), %s) RETURNING id",
            (f"u{i}@x.org",),
        ).fetchone()[0]
        for i in range(5)
    ]
    orgs = [
        conn.execute(
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES (%s, %s, %s) RETURNING id",
            (f"org {i}", f"org-{i}", users[i]),
        ).fetchone()[0]
        for i in range(2)
    ]
    # An org's owner is its first member (the database writes that membership).
    memberships: dict = {u: set() for u in users}
    for owner, org in zip(users, orgs, strict=False):
        memberships[owner].add(org)
    for user in users:
        for org in orgs:
            if org not in memberships[user] and rng.random() < 0.45:
                conn.execute(
                    "INSERT INTO prediction_org_members (org_id, user_id) VALUES (%s, %s)",
                    (org, user),
                )
                memberships[user].add(org)

    def owner_in(org):  # an org-scoped row's owner belongs to its org (the database checks)
        return rng.choice([u for u in users if org is None or org in memberships[u]])

    category = conn.execute(
        "INSERT INTO prediction_categories (name, slug) VALUES ('Economy', 'economy') RETURNING id"
    ).fetchone()[0]
    events = {}
    for i in range(10):
        kind = "public" if i == 0 else rng.choice(["public", "org", "org", "creator"])
        org = rng.choice(orgs) if kind == "org" else None
        audience = {"is_public": kind == "public", "org_id": org, "created_by": owner_in(org)}
        event = conn.execute(
            "INSERT INTO prediction_events (title, slug, category_id, tags, is_public, org_id,"
            " created_by, current_probability) VALUES (%s, %s, %s, %s, %s, %s, %s, 0.5)"
            " RETURNING id",
            (
                rng.choice(TITLES),
                f"event-{i}",
                category,
                rng.sample(["banks", "rates"], rng.randint(0, 2)),
                *audience.values(),
            ),
        ).fetchone()[0]
        events[event] = audience
    campaigns = {}
    for i in range(3):
        org = rng.choice([None, *orgs])
        owner = owner_in(org)
        campaign = conn.execute(
            "INSERT INTO prediction_campaigns (user_id, org_id, name) VALUES (%s, %s, %s)"
            " RETURNING id",
            (owner, org, f"campaign {i}"),
        ).fetchone()[0]
        campaigns[campaign] = (owner, org)
        for event in rng.sample(list(events), 2):
            conn.execute(
                "INSERT INTO prediction_campaign_events (campaign_id, event_id, relationship,"
                " probability_threshold) VALUES (%s, %s, 'contraindicates', 0.6)",
                (campaign, event),
            )
    feeds = {}
    for user in users:
        mapping = {"m3": str(rng.choice(list(events)))} if rng.random() < 0.4 else None
        feed = conn.execute(
            "INSERT INTO prediction_data_feeds (source_id, user_id, name, manual_event_mappings)"
            " SELECT id, %s, 'uploads', %s FROM prediction_data_sources"
            " WHERE source_id = 'upload' RETURNING id",
            (user, Jsonb(mapping) if mapping else None),
        ).fetchone()[0]
        feeds[feed] = user
        connection = uuid.uuid4()
        conn.execute(
            "INSERT INTO prediction_action_connections (id, user_id, platform, credentials)"
            " VALUES (%s, %s, 'webhook', %s)",
            (
                connection,
                user,
                Jsonb(
                    encrypt_json(
                        {"secret": "s3cret-value-long-enough"},
                        key=KEY,
                        aad=connection_aad(connection),
                    )
                ),
            ),
        )
    rules = {}
    for i in range(14):
        rule_org = rng.choice(orgs) if rng.random() < 0.3 else None
        owner = owner_in(rule_org)
        is_system = rng.random() < 0.1
        scope_type = rng.choice(["all", "category", "tag", "event", "campaign"])
        scope_id = {
            "category": category,
            "event": rng.choice(list(events)),
            "campaign": rng.choice(list(campaigns)),
        }.get(scope_type)
        actions: list[dict] = [{"type": "webhook", "url": server.url(f"/r{i}")}]
        if rng.random() < 0.5:
            target = rng.choice(list(campaigns))
            actions.append({"type": "campaign_pause", "campaign_id": str(target)})
        server.add(f"/r{i}", *[Reply(200, b"ok") for _ in range(12)])
        rule = conn.execute(
            "INSERT INTO prediction_rules (user_id, org_id, is_system, name, scope_type,"
            " scope_id, scope_tag, trigger_type, trigger_params, actions, cooldown_minutes)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0) RETURNING id",
            (
                owner,
                rule_org,
                is_system,
                f"r{i}",
                scope_type,
                scope_id,
                "banks" if scope_type == "tag" else None,
                "CAMPAIGN_THRESHOLD" if scope_type == "campaign" else "PROBABILITY_CROSSES_ABOVE",
                Jsonb({} if scope_type == "campaign" else {"threshold": 0.6}),
                Jsonb(actions),
            ),
        ).fetchone()[0]
        rules[rule] = {
            "name": f"r{i}",
            "owner": owner,
            "viewer": rule_viewer(owner, rule_org, is_system, memberships),
            "campaign": scope_id if scope_type == "campaign" else None,
        }
    return {
        "users": users,
        "memberships": memberships,
        "events": events,
        "campaigns": campaigns,
        "feeds": feeds,
        "rules": rules,
    }


def _sees(world: dict, viewer: Viewer, event_id) -> bool:
    return sees_event(viewer, **world["events"][event_id])


def _user(world: dict, user) -> Viewer:
    return Viewer(user, frozenset(world["memberships"][user]))


@pytest.mark.parametrize("seed", range(8))
def test_no_signal_decision_execution_delivery_or_campaign_change_crosses(
    conn, landing, server, seed
):
    rng = random.Random(seed)
    world = _world(conn, rng, server)
    # Every feed sends the same market ids (m0..m3), with near-identical titles.
    for feed in world["feeds"]:
        rows = [
            {
                "source_event_id": f"m{k}",
                "value": round(rng.random(), 2),
                "fetched_at": (WINDOW.start + timedelta(minutes=10)).isoformat(),
                "title": rng.choice(TITLES),
            }
            for k in range(4)
        ]
        body = "\n".join(json.dumps(r) for r in rows).encode()
        land_upload(conn, landing, load_feed(conn, feed), body, "m.jsonl", now=lambda: NOW)
    assert all(r.ok for r in validate_window(conn, landing, WINDOW, now=NOW))
    # Bulk review decisions: suggestions for the operator's whole queue, and a random event
    # for a random user's items.
    resolve(conn, ReviewFilter(max_score=1.0), "suggested", now=NOW)
    resolve(
        conn,
        ReviewFilter(owner=rng.choice(world["users"])),
        "event",
        event_id=rng.choice(list(world["events"])),
        now=NOW,
    )
    now = datetime.now(UTC)
    conn.execute(
        "UPDATE prediction_events SET previous_probability = 0.5, current_probability = 0.7,"
        " updated_at = %s",
        (now - timedelta(seconds=5),),
    )
    with conn.transaction():
        report = evaluate_tick(conn, since=now - timedelta(minutes=1), until=now)
    for execution in report.fired:
        with conn.transaction():
            run_execution(
                conn,
                execution,
                encryption_key=KEY,
                http_client_factory=http_client_factory(allow_private_hosts=("127.0.0.1",)),
                smtp_factory=smtp_factory(),
                now=now,
            )

    # Signals: only in events their feed's owner can see; user-defined ids in the feed's space.
    signals = conn.execute("SELECT feed_id, event_id, source_event_id FROM prediction_signals")
    signals = signals.fetchall()
    for feed, event, sid in signals:
        owner = world["feeds"][feed]
        assert _sees(world, _user(world, owner), event), (seed, feed, event)
        assert sid.startswith(f"feed:{feed}:")
    # The queue: decisions applied and suggestions kept only where the owner can see them.
    for feed, suggested, resolved in conn.execute(
        "SELECT feed_id, suggested_event_id, resolved_event_id FROM prediction_unmatched_signals"
    ):
        viewer = _user(world, world["feeds"][feed])
        assert suggested is None or _sees(world, viewer, suggested)
        assert resolved is None or _sees(world, viewer, resolved)
    # Executions: only on events their rule's viewer sees, within a campaign it sees.
    executions = conn.execute(
        "SELECT rule_id, event_id FROM prediction_rule_executions WHERE event_id IS NOT NULL"
    ).fetchall()
    for rule_id, event in executions:
        rule = world["rules"][rule_id]
        assert _sees(world, rule["viewer"], event), (seed, rule["name"], event)
        if rule["campaign"] is not None:
            owner, org = world["campaigns"][rule["campaign"]]
            assert sees_campaign(rule["viewer"], owner=owner, org_id=org)
    # Deliveries: each carries only an event its rule's viewer sees.
    by_name = {r["name"]: r for r in world["rules"].values()}
    for received in server.received:
        rule = by_name[received.path.strip("/")]
        event = uuid.UUID(json.loads(received.body)["event"]["id"])
        assert _sees(world, rule["viewer"], event), (seed, rule["name"], event)
    # Campaign changes: only by a rule of the campaign's owner.
    for campaign, factors in conn.execute("SELECT id, factors FROM prediction_campaigns"):
        if factors and "paused_by_rule" in factors:
            rule = world["rules"][uuid.UUID(factors["paused_by_rule"]["rule_id"])]
            assert rule["owner"] == world["campaigns"][campaign][0]
    # Legitimate paths worked in this world too: signals landed and rules fired and delivered.
    assert signals and executions and server.received
