"""Tenancy through the pipeline's own stages, which run as the BYPASSRLS pipeline role.

Two orgs with members (A1 owns A, A2 is a member; B1 owns B, B2 is a member) and C outside both.
Public and private events with near-identical titles tempt the matcher; feeds, manual mappings,
saved links, review decisions, rules of every scope and campaign actions run through the real
stages: validated signals from landed uploads, the review queue, rule_trigger_sensor and
rule_actions_job with a real local webhook receiver. Nothing crosses, and every legitimate path
(a feed matching a public event, a member's feed landing in its org's event, a rule firing on
its own org's private event, an owner pausing their own campaign) still works.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg
import psycopg
import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.defs.resources import PostgresResource, SecretsResource
from predict_pipeline.defs.rules import rule_actions_job, rule_trigger_sensor
from predict_pipeline.ingestion.pushed import hour_window, land_upload
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.model import MarketFacts, NormalisedRecord
from predict_pipeline.rules.execute import connection_aad
from predict_pipeline.secrets import decode_key, encrypt_json, generate_key
from predict_pipeline.signals.frames import RecordBatch
from predict_pipeline.signals.ingest import FeedValidationReport, ingest_batches
from predict_pipeline.signals.linking import display_market_id, visible_open_events
from predict_pipeline.signals.review import (
    ReviewError,
    ReviewFilter,
    resolve,
    resolve_item,
    review_items,
)
from predict_pipeline.signals.routing import MatchingSettings
from predict_pipeline.signals.stage import validate_window
from predict_pipeline.trust.store import unreviewed_flags
from tests.support.http_server import Reply

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
WINDOW = hour_window(NOW)
ECB = "Will the ECB cut its deposit rate in December 2027?"
LAYOFFS = "Will Northwind Bank announce layoffs before October 2027?"
BAKERY = "Will the Harbour Street bakery reopen before October 2027?"
SECRET = "whsec-tenancy-0123456789"


@dataclass
class World:
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    orgs: dict[str, uuid.UUID] = field(default_factory=dict)
    events: dict[str, uuid.UUID] = field(default_factory=dict)
    campaigns: dict[str, uuid.UUID] = field(default_factory=dict)

    def name(self, event_id) -> str:
        return next(k for k, v in self.events.items() if v == event_id)


def _world(conn: psycopg.Connection) -> World:
    world = World()
    for name in ("A1", "A2", "B1", "B2", "C"):
        world.users[name] = conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), %s) RETURNING id",
            (f"{name.lower()}@x.org",),
        ).fetchone()[0]
    for org, owner, member in (("A", "A1", "A2"), ("B", "B1", "B2")):
        world.orgs[org] = conn.execute(
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES (%s, %s, %s) RETURNING id",
            (f"Org {org}", f"org-{org.lower()}", world.users[owner]),
        ).fetchone()[0]
        for user, role in ((owner, "owner"), (member, "member")):
            conn.execute(
                "INSERT INTO prediction_org_members (org_id, user_id, role) VALUES (%s, %s, %s)",
                (world.orgs[org], world.users[user], role),
            )
    category = conn.execute(
        "INSERT INTO prediction_categories (name, slug) VALUES ('Economy', 'economy') RETURNING id"
    ).fetchone()[0]
    # (name, title, public, org, creator, tags): the two orgs track the same question privately.
    for name, title, public, org, creator, tags in (
        ("public", ECB, True, None, None, ["rates"]),
        ("layoffs_a", LAYOFFS, False, "A", "A1", ["banks"]),
        ("layoffs_b", LAYOFFS, False, "B", "B1", ["banks"]),
        ("bakery_c", BAKERY, False, None, "C", ["local"]),
    ):
        world.events[name] = conn.execute(
            "INSERT INTO prediction_events (title, slug, is_public, org_id, created_by, tags,"
            " category_id, current_probability, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 0.5, %s) RETURNING id",
            (
                title,
                name.replace("_", "-"),
                public,
                world.orgs.get(org),
                world.users.get(creator),
                tags,
                category,
                NOW - timedelta(days=1),
            ),
        ).fetchone()[0]
    return world


def _feed(conn, world: World, owner: str, source: str = "upload", **columns) -> uuid.UUID:
    extra = "".join(f", {c}" for c in columns)
    marks = "".join(", %s" for _ in columns)
    return conn.execute(
        f"INSERT INTO prediction_data_feeds (source_id, user_id, name{extra})"  # noqa: S608
        f" SELECT id, %s, %s{marks} FROM prediction_data_sources WHERE source_id = %s"
        " RETURNING id",
        (world.users[owner], f"{owner} {source}", *columns.values(), source),
    ).fetchone()[0]


def _row(sid: str, value: float, title: str, minute: int = 10) -> dict:
    at = WINDOW.start + timedelta(minutes=minute)
    return {"source_event_id": sid, "value": value, "fetched_at": at.isoformat(), "title": title}


def _upload(conn, landing, feed: uuid.UUID, rows: list[dict], name: str = "rows.jsonl") -> None:
    body = "\n".join(json.dumps(r) for r in rows).encode()
    land_upload(conn, landing, load_feed(conn, feed), body, name, now=lambda: NOW)


def _landed(conn, feed: uuid.UUID) -> dict[str, uuid.UUID]:
    """Market id as sent -> event, of the feed's stored signals."""
    rows = conn.execute(
        "SELECT DISTINCT source_event_id, event_id FROM prediction_signals WHERE feed_id = %s",
        (feed,),
    ).fetchall()
    return {display_market_id(sid): event for sid, event in rows}


def _queued(conn, feed: uuid.UUID) -> dict[str, dict]:
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        rows = cur.execute(
            "SELECT source_event_id, suggested_event_id, raw_data->>'review_reason' AS reason,"
            " id FROM prediction_unmatched_signals WHERE feed_id = %s AND status = 'PENDING'",
            (feed,),
        ).fetchall()
    return {display_market_id(r["source_event_id"]): r for r in rows}


# ---------------------------------------------------------------------------------------
# Stage 2: matching, manual mappings, saved links


def test_a_feed_lands_only_in_events_its_owner_can_see(conn, landing):
    world = _world(conn)
    markets = [
        _row("m-ecb", 0.3, ECB),
        _row("m-layoffs", 0.6, LAYOFFS),
        _row("m-bakery", 0.2, BAKERY),
    ]
    feeds = {owner: _feed(conn, world, owner) for owner in ("A2", "B2", "C")}
    for feed in feeds.values():
        _upload(conn, landing, feed, markets)
    reports = validate_window(conn, landing, WINDOW, now=NOW)
    assert all(r.ok for r in reports)
    ev = world.events
    # Legitimate paths: the public event for everyone, each org's private event for its member,
    # the creator's own private event for its creator.
    assert _landed(conn, feeds["A2"]) == {"m-ecb": ev["public"], "m-layoffs": ev["layoffs_a"]}
    assert _landed(conn, feeds["B2"]) == {"m-ecb": ev["public"], "m-layoffs": ev["layoffs_b"]}
    assert _landed(conn, feeds["C"]) == {"m-ecb": ev["public"], "m-bakery": ev["bakery_c"]}
    # What the owner may not see waits for review, with why, suggesting nothing unseen.
    c_queue = _queued(conn, feeds["C"])
    assert set(c_queue) == {"m-layoffs"} and c_queue["m-layoffs"]["reason"]
    assert c_queue["m-layoffs"]["suggested_event_id"] in (None, ev["public"], ev["bakery_c"])
    for owner, visible in (("A2", "layoffs_a"), ("B2", "layoffs_b")):
        item = _queued(conn, feeds[owner])["m-bakery"]
        assert item["suggested_event_id"] in (None, ev["public"], ev[visible])


def test_manual_mappings_and_review_decisions_only_reach_visible_events(conn, landing):
    world = _world(conn)
    ev = world.events
    mapping = Jsonb({"m-map": str(ev["layoffs_b"])})
    outsider = _feed(conn, world, "C", manual_event_mappings=mapping)
    member = _feed(conn, world, "B2", manual_event_mappings=mapping)
    for feed in (outsider, member):
        _upload(conn, landing, feed, [_row("m-map", 0.4, "Mapped market")])
    validate_window(conn, landing, WINDOW, now=NOW)
    assert _landed(conn, member) == {"m-map": ev["layoffs_b"]}
    assert _landed(conn, outsider) == {}
    item = _queued(conn, outsider)["m-map"]
    assert item["reason"] == (
        f"manual_event_mappings names event {ev['layoffs_b']}, which the feed's owner cannot see"
    )
    # `signals resolve --event` naming an event the feed's owner cannot see is refused, audited,
    # and changes nothing.
    with pytest.raises(ReviewError, match="is not visible to the feed's owner"):
        resolve_item(conn, item["id"], event_id=ev["layoffs_b"], now=NOW)
    assert _queued(conn, outsider)["m-map"]["id"] == item["id"]
    assert _landed(conn, outsider) == {}
    warning = conn.execute(
        "SELECT severity, details->>'reason' FROM prediction_audit_log"
        " WHERE action = 'unmatched_signal.refused' AND resource_id = %s",
        (item["id"],),
    ).fetchone()
    assert warning[0] == "WARNING" and "not visible" in warning[1]
    # The same decision on the owner's own visible event works.
    done = resolve_item(conn, item["id"], event_id=ev["bakery_c"], now=NOW)
    assert done.status == "MATCHED" and _landed(conn, outsider) == {"m-map": ev["bakery_c"]}


def test_a_bulk_decision_applies_to_the_owners_who_may_see_the_event(conn, landing):
    world = _world(conn)
    ev = world.events
    feeds = {owner: _feed(conn, world, owner) for owner in ("B1", "C", "A1")}
    for feed in feeds.values():
        _upload(conn, landing, feed, [_row("q-1", 0.4, "Quarterly figures beat guidance?")])
    validate_window(conn, landing, WINDOW, now=NOW)
    done = resolve(conn, ReviewFilter(text="quarterly"), "event", event_id=ev["layoffs_b"], now=NOW)
    assert (done.items, done.markets) == (1, 1)
    assert done.refused == {f"event {ev['layoffs_b']} is not visible to the feed's owner": 2}
    assert _landed(conn, feeds["B1"]) == {"q-1": ev["layoffs_b"]}
    assert _landed(conn, feeds["C"]) == {} and _landed(conn, feeds["A1"]) == {}


def test_user_defined_market_ids_are_each_feeds_own(conn, landing):
    world = _world(conn)
    ev = world.events
    a, b, c = (_feed(conn, world, owner) for owner in ("A1", "B1", "C"))
    # A and B send the same id in the same 5-minute bucket: both values are kept.
    _upload(conn, landing, a, [_row("q1", 0.11, "Our internal launch slips?")])
    _upload(conn, landing, b, [_row("q1", 0.88, "Their warehouse opens?")])
    validate_window(conn, landing, WINDOW, now=NOW)
    values = conn.execute(
        "SELECT feed_id, value::float8 FROM prediction_unmatched_signals ORDER BY value"
    ).fetchall()
    assert values == [(a, 0.11), (b, 0.88)]
    # A discards q1, and B's later q1 is still queued, not discarded.
    resolve_item(conn, _queued(conn, a)["q1"]["id"], discard=True, now=NOW)
    later = WINDOW.start + timedelta(hours=1)
    for feed, value in ((a, 0.12), (b, 0.89)):
        body = json.dumps(
            {"source_event_id": "q1", "value": value, "fetched_at": later.isoformat()}
        ).encode()
        land_upload(conn, landing, load_feed(conn, feed), body, "later.json", now=lambda: later)
    [ra, rb] = sorted(
        validate_window(conn, landing, hour_window(later), now=later), key=lambda r: r.feed_name
    )
    assert (ra.discarded, ra.unmatched) == (1, 0) and (rb.discarded, rb.unmatched) == (0, 1)
    # B routes its q1 to its org's event: A's and C's q1 never follow B's decision.
    resolve_item(conn, _queued(conn, b)["q1"]["id"], event_id=ev["layoffs_b"], now=later)
    _upload(conn, landing, c, [_row("q1", 0.5, "Their warehouse opens?")], "c.jsonl")
    validate_window(conn, landing, WINDOW, now=NOW)
    assert _landed(conn, b) == {"q1": ev["layoffs_b"]}
    assert _landed(conn, a) == {} and _landed(conn, c) == {}
    assert "q1" in _queued(conn, c)
    links = conn.execute(
        "SELECT user_id, source_event_id, event_id FROM predict_meta.market_links ORDER BY 1"
    ).fetchall()
    assert sorted((u, display_market_id(s), e) for u, s, e in links) == sorted(
        [(world.users["A1"], "q1", None), (world.users["B1"], "q1", ev["layoffs_b"])]
    )


def _platform(market: str, title: str, value: float, at: datetime) -> NormalisedRecord:
    return NormalisedRecord(
        source="polymarket",
        source_event_id=market,
        signal_type="MARKET_PRICE",
        value=value,
        fetched_at=at,
        market=MarketFacts(title=title, status="open"),
    )


def test_platform_links_are_each_users_and_dedup_stays_global(conn):
    world = _world(conn)
    ev = world.events
    feeds = {owner: _feed(conn, world, owner, "polymarket") for owner in ("A1", "C", "A2")}

    def ingest(owner: str, value: float, at: datetime) -> FeedValidationReport:
        feed = load_feed(conn, feeds[owner])
        report = FeedValidationReport(str(feed.id), feed.name, "polymarket")
        with conn.transaction():
            ingest_batches(
                conn,
                feed,
                [RecordBatch([_platform("0xabc", LAYOFFS, value, at)])],
                report,
                now=NOW,
                matching=MatchingSettings(),
                events=lambda: visible_open_events(conn, feed.user_id),
                timings={},
            )
        return report

    first = WINDOW.start + timedelta(minutes=1)
    assert ingest("A1", 0.6, first).written == 1  # A1's feed links 0xabc to its org's event
    # C's feed of the same market, later: never follows A1's link into org A's event.
    ingest("C", 0.61, first + timedelta(minutes=10))
    # The same observation (same bucket) from A2's feed is the same platform fact: kept once.
    assert ingest("A2", 0.6, first + timedelta(minutes=2)).deduplicated == 1
    assert _landed(conn, feeds["A1"]) == {"0xabc": ev["layoffs_a"]}
    assert _landed(conn, feeds["C"]) == {}
    assert list(_queued(conn, feeds["C"])) == ["0xabc"]


# ---------------------------------------------------------------------------------------
# Rules, actions and campaigns, through the sensor and the actions job


def _connection(conn, user: uuid.UUID, key: bytes) -> None:
    connection_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO prediction_action_connections (id, user_id, platform, credentials)"
        " VALUES (%s, %s, 'webhook', %s)",
        (
            connection_id,
            user,
            Jsonb(encrypt_json({"secret": SECRET}, key=key, aad=connection_aad(connection_id))),
        ),
    )


def _rule(conn, world: World, name: str, owner: str, server, **columns) -> uuid.UUID:
    values = {
        "name": name,
        "scope_type": "all",
        "trigger_type": "PROBABILITY_CROSSES_ABOVE",
        "trigger_params": Jsonb({"threshold": 0.6}),
        "actions": Jsonb([{"type": "webhook", "url": server.url(f"/{name}")}]),
        "cooldown_minutes": 0,
        **columns,
    }
    server.add(f"/{name}", *[Reply(200, b"ok") for _ in range(10)])
    names = ", ".join(values)
    marks = ", ".join(["%s"] * len(values))
    return conn.execute(
        f"INSERT INTO prediction_rules (user_id, {names}) VALUES (%s, {marks}) RETURNING id",  # noqa: S608
        (world.users[owner], *values.values()),
    ).fetchone()[0]


@pytest.fixture
def secrets_env(monkeypatch) -> bytes:
    text = generate_key()
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", text)
    monkeypatch.setenv("PREDICT_ALLOW_PRIVATE_HOSTS", "127.0.0.1")
    return decode_key(text)


def _run_sensor_and_jobs(conn, db_url, dagster_instance, since: datetime) -> list:
    resources = {"database": PostgresResource(url=db_url)}
    result = rule_trigger_sensor(
        dg.build_sensor_context(
            instance=dagster_instance, cursor=since.isoformat(), resources=resources
        )
    )
    for request in result.run_requests:
        run = rule_actions_job.execute_in_process(
            run_config=request.run_config,
            instance=dagster_instance,
            resources={**resources, "secrets": SecretsResource()},
        )
        assert run.success
    return result.run_requests


def test_rules_see_only_their_viewers_events_and_actions_touch_only_own_campaigns(
    conn, db_url, dagster_instance, server, secrets_env
):
    world = _world(conn)
    ev, users = world.events, world.users
    for user in users.values():
        _connection(conn, user, secrets_env)
    for name, owner in (("own_a1", "A1"), ("own_b1", "B1")):
        world.campaigns[name] = conn.execute(
            "INSERT INTO prediction_campaigns (user_id, org_id, name, status, predicted_at)"
            " VALUES (%s, %s, %s, 'PREDICTED', %s) RETURNING id",
            (users[owner], world.orgs[owner[0]], name, NOW),
        ).fetchone()[0]
    for campaign, event in (("own_a1", "layoffs_a"), ("own_b1", "layoffs_b")):
        conn.execute(
            "INSERT INTO prediction_campaign_events (campaign_id, event_id, relationship,"
            " probability_threshold) VALUES (%s, %s, 'contraindicates', 0.6)",
            (world.campaigns[campaign], ev[event]),
        )
    pause_b = [{"type": "campaign_pause", "campaign_id": str(world.campaigns["own_b1"])}]
    campaign_threshold = {"trigger_type": "CAMPAIGN_THRESHOLD", "trigger_params": Jsonb({})}
    # (name, owner, columns): every scope, personal, org and system rules.
    for name, owner, columns in (
        ("a1_all", "A1", {}),
        ("a_org_all", "A2", {"org_id": world.orgs["A"]}),
        ("b2_in_org_a", "B2", {"org_id": world.orgs["A"]}),
        ("b1_tag", "B1", {"scope_type": "tag", "scope_tag": "banks"}),
        ("c_event_b", "C", {"scope_type": "event", "scope_id": ev["layoffs_b"]}),
        ("c_all", "C", {}),
        ("system", "A1", {"is_system": True}),
        (
            "c_campaign_b",
            "C",
            {"scope_type": "campaign", "scope_id": world.campaigns["own_b1"], **campaign_threshold},
        ),
        (
            "a1_pause_own",
            "A1",
            {
                "scope_type": "campaign",
                "scope_id": world.campaigns["own_a1"],
                "actions": Jsonb([{"type": "campaign_pause"}, {"type": "campaign_repredict"}]),
                **campaign_threshold,
            },
        ),
        (
            "a1_pause_b",
            "A1",
            {"scope_type": "event", "scope_id": ev["layoffs_a"], "actions": Jsonb(pause_b)},
        ),
    ):
        left = name == "b2_in_org_a"  # made while B2 was a member of org A, who left since
        if left:
            membership = conn.execute(
                "INSERT INTO prediction_org_members (org_id, user_id) VALUES (%s, %s) RETURNING id",
                (world.orgs["A"], users["B2"]),
            ).fetchone()[0]
        _rule(conn, world, name, owner, server, **columns)
        if left:
            conn.execute("DELETE FROM prediction_org_members WHERE id = %s", (membership,))
    now = datetime.now(UTC)
    conn.execute(
        "UPDATE prediction_events SET previous_probability = 0.5, current_probability = 0.7,"
        " updated_at = %s",
        (now - timedelta(seconds=5),),
    )
    requests = _run_sensor_and_jobs(conn, db_url, dagster_instance, now - timedelta(minutes=1))
    fired = conn.execute(
        "SELECT r.name, x.event_id, x.status, x.error_message FROM prediction_rule_executions x"
        " JOIN prediction_rules r ON r.id = x.rule_id"
    ).fetchall()
    [request] = requests  # one actions run carries every firing of the tick
    carried = request.run_config["ops"]["run_rule_actions"]["config"]["execution_ids"]
    assert len(carried) == len(fired)
    by_rule: dict[str, set[str]] = {}
    for name, event, _, _ in fired:
        by_rule.setdefault(name, set()).add(world.name(event))
    assert by_rule == {
        "a1_all": {"public", "layoffs_a"},  # its owner's org's private event: legitimate
        "a_org_all": {"public", "layoffs_a"},  # an org rule fires on its own org's event
        "b2_in_org_a": {"public"},  # an org rule whose owner left (or never joined) the org
        "b1_tag": {"layoffs_b"},
        "c_all": {"public", "bakery_c"},
        "system": {"public"},
        "a1_pause_own": {"layoffs_a"},
        "a1_pause_b": {"layoffs_a"},
    }
    # Deliveries: each webhook carries only events its rule may see.
    delivered: dict[str, set[str]] = {}
    for request in server.received:
        payload = json.loads(request.body)
        delivered.setdefault(request.path.strip("/"), set()).add(
            world.name(uuid.UUID(payload["event"]["id"]))
        )
    assert delivered == {k: v for k, v in by_rule.items() if not k.startswith("a1_pause")}
    # Campaign actions: the owner's own campaign is paused and re-predicted; another user's
    # campaign is refused with the reason, and unchanged.
    statuses = {name: (status, error) for name, _, status, error in fired}
    assert statuses["a1_pause_own"] == ("COMPLETED", None)
    own = conn.execute(
        "SELECT status, predicted_at, factors ? 'paused_by_rule',"
        " factors ? 'repredict_requested' FROM prediction_campaigns WHERE id = %s",
        (world.campaigns["own_a1"],),
    ).fetchone()
    assert own == ("PAUSED", NOW, True, True)  # re-prediction is requested, not cleared
    assert conn.execute(
        "SELECT count(*) FROM predict_meta.campaign_repredict_requests WHERE campaign_id = %s",
        (world.campaigns["own_a1"],),
    ).fetchone() == (1,)
    status, error = statuses["a1_pause_b"]
    assert status == "FAILED"
    assert f"campaign {world.campaigns['own_b1']} is not one the rule's owner may update" in error
    other = conn.execute(
        "SELECT status, predicted_at, factors FROM prediction_campaigns WHERE id = %s",
        (world.campaigns["own_b1"],),
    ).fetchone()
    assert other == ("PREDICTED", NOW, None)


def test_an_execution_whose_event_was_hidden_since_the_tick_runs_no_action(
    conn, db_url, dagster_instance, server, secrets_env
):
    world = _world(conn)
    _connection(conn, world.users["A2"], secrets_env)
    _rule(
        conn, world, "a2_all", "A2", server, scope_type="event", scope_id=world.events["layoffs_a"]
    )
    now = datetime.now(UTC)
    conn.execute(
        "UPDATE prediction_events SET previous_probability = 0.5, current_probability = 0.7,"
        " updated_at = %s WHERE id = %s",
        (now - timedelta(seconds=5), world.events["layoffs_a"]),
    )
    resources = {"database": PostgresResource(url=db_url)}
    result = rule_trigger_sensor(
        dg.build_sensor_context(
            instance=dagster_instance,
            cursor=(now - timedelta(minutes=1)).isoformat(),
            resources=resources,
        )
    )
    [request] = result.run_requests
    conn.execute(  # A2 leaves org A before the actions run
        "DELETE FROM prediction_org_members WHERE user_id = %s", (world.users["A2"],)
    )
    rule_actions_job.execute_in_process(
        run_config=request.run_config,
        instance=dagster_instance,
        resources={**resources, "secrets": SecretsResource()},
    )
    status, error = conn.execute(
        "SELECT status, error_message FROM prediction_rule_executions"
    ).fetchone()
    assert status == "FAILED" and error.startswith("the rule no longer sees event")
    assert server.received == []


# ---------------------------------------------------------------------------------------
# The review queue and the flags, as a user or an org


def test_review_and_flags_as_a_user_show_only_what_that_user_may_see(conn, landing):
    world = _world(conn)
    ev, users = world.events, world.users
    feeds = {owner: _feed(conn, world, owner) for owner in ("A1", "C")}
    for owner, feed in feeds.items():
        _upload(conn, landing, feed, [_row(f"{owner}-market", 0.4, "Untitled question")])
    validate_window(conn, landing, WINDOW, now=NOW)
    # An old item suggesting org A's event to C (as the queue could hold before visibility).
    conn.execute(
        "UPDATE prediction_unmatched_signals SET suggested_event_id = %s,"
        " suggestion_confidence = 0.7 WHERE feed_id = %s",
        (ev["layoffs_a"], feeds["C"]),
    )
    mine = review_items(conn, ReviewFilter(owner=users["C"]))
    assert [i["market_id"] for i in mine] == ["C-market"]
    assert mine[0]["suggested_title"] is None  # withheld: C cannot see org A's event
    operator = review_items(conn, ReviewFilter())
    assert {i["market_id"] for i in operator} == {"A1-market", "C-market"}
    # --suggested refuses to apply a suggestion its owner cannot see.
    done = resolve(conn, ReviewFilter(owner=users["C"]), "suggested", now=NOW)
    assert done.items == 0 and list(done.refused.values()) == [1]
    for event in ("public", "layoffs_a", "layoffs_b", "bakery_c"):
        conn.execute(
            "INSERT INTO prediction_trust_flags (event_id, flag_type, severity, description)"
            " VALUES (%s, 'VOLUME_SPIKE', 'WARNING', %s)",
            (ev[event], event),
        )

    def flagged(**viewer) -> set[str]:
        return {row[5] for row in unreviewed_flags(conn, **viewer)}

    assert flagged(user=users["C"]) == {"public", "bakery_c"}
    assert flagged(user=users["A2"]) == {"public", "layoffs_a"}
    assert flagged(org=world.orgs["B"]) == {"public", "layoffs_b"}
    assert flagged() == {"public", "layoffs_a", "layoffs_b", "bakery_c"}  # the operator's view
