"""The tick's SQL conditions against the reference semantics of `triggers.evaluate`.

Random events (with snapshot histories, flags, resolutions and campaign links) and random rules
of every trigger type and scope: the firings the tick logs must be exactly the (rule, event)
pairs on which the reference evaluation fires, computed here from the same rows in Python.
Ownership and visibility are random too (users, orgs, memberships; public, org-private and
creator-private events; personal, org and system rules; campaigns of users and orgs), and the
reference applies the tenancy rules of `predict_pipeline.tenancy`.
"""

from __future__ import annotations

import random
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from psycopg.types.json import Jsonb

from predict_pipeline.rules.engine import evaluate_tick
from predict_pipeline.rules.throttle import decide, utc_day_start, validate_throttle
from predict_pipeline.rules.trigger_schemas import (
    DIVERGENCE_LEVELS,
    FLAG_TYPES,
    RELATIONSHIPS,
    SEVERITIES,
    TRIGGER_TYPES,
    validate_rule,
)
from predict_pipeline.rules.triggers import (
    CampaignLink,
    EventState,
    MarketEdge,
    NewFlag,
    evaluate,
)
from predict_pipeline.tenancy import rule_viewer, sees_campaign, sees_event
from tests.support.feeds import USER_ID

T0 = datetime(2026, 11, 22, 12, tzinfo=UTC)
SINCE, UNTIL = T0 - timedelta(minutes=5), T0
STATUSES = ["ACTIVE"] * 6 + ["RESOLVED_YES", "RESOLVED_NO", "RESOLVED_AMBIGUOUS", "CANCELLED"]
OUTCOME = {"RESOLVED_YES": "YES", "RESOLVED_NO": "NO", "RESOLVED_AMBIGUOUS": "AMBIGUOUS"}
OUTCOME["CANCELLED"] = "CANCELLED"
TAGS = ["politics", "crypto", "sports", "ai"]
EDGE_MARKETS = [("polymarket", "pm-1"), ("kalshi", "k-1"), ("polymarket", "pm-2")]


class _Coarse(random.Random):
    """Draws values on a quarter grid, params included: the extremes of the rules' params (which
    the tick's SQL bounds events by before the join) then fall exactly on event values."""

    coarse = True


def _p(rng: random.Random) -> Decimal | None:
    if getattr(rng, "coarse", False):
        return None if rng.random() < 0.05 else Decimal(rng.randint(0, 4)) / 4
    return None if rng.random() < 0.05 else Decimal(rng.randint(0, 10_000)) / 10_000


def _sentiment(rng: random.Random) -> Decimal:
    if getattr(rng, "coarse", False):
        return Decimal(rng.randint(-4, 4)) / 4
    return Decimal(rng.randint(-100, 100)) / 100


def _params(rng: random.Random, trigger_type: str) -> dict:
    # Round thresholds often land exactly on event values, so boundaries get exercised.
    threshold = float(rng.choice([Decimal("0.5"), Decimal(rng.randint(1, 99)) / 100]))
    if getattr(rng, "coarse", False):
        return {
            "PROBABILITY_CROSSES_ABOVE": {"threshold": rng.choice([0.25, 0.5])},
            "PROBABILITY_CROSSES_BELOW": {"threshold": rng.choice([0.5, 0.75])},
            "PROBABILITY_SHIFT": {
                "min_change": rng.choice([0.25, 0.5]),
                "window_minutes": rng.choice([30, 60, 240]),
                "direction": rng.choice(["up", "down", "any"]),
            },
            "SENTIMENT_SHIFT": {"min_change": rng.choice([0.25, 0.5])},
            "TRUST_BELOW": {"threshold": rng.choice([0.25, 0.5, 0.75])},
            "VOLUME_SPIKE": {"min_ratio": rng.choice([2, 4]), "window_hours": rng.choice([3, 6])},
            "EDGE_AT_LEAST": {
                "min_edge": rng.choice([0.25, 0.5]),
                "direction": rng.choice(["up", "down", "any"]),
            },
        }.get(trigger_type) or _params(random.Random(rng.random()), trigger_type)
    return {
        "PROBABILITY_CROSSES_ABOVE": {"threshold": threshold},
        "PROBABILITY_CROSSES_BELOW": {"threshold": threshold},
        "PROBABILITY_SHIFT": {
            "min_change": rng.choice([0.05, 0.1, 0.25]),
            "window_minutes": rng.choice([30, 60, 240]),
            "direction": rng.choice(["up", "down", "any"]),
        },
        "SENTIMENT_SHIFT": {
            "min_change": rng.choice([0.1, 0.3]),
            **({"direction": rng.choice(["up", "down"])} if rng.random() < 0.5 else {}),
        },
        "TRUST_BELOW": {"threshold": threshold},
        "DIVERGENCE_AT_LEAST": {"level": rng.choice(DIVERGENCE_LEVELS[1:])},
        "FLAG_RAISED": {
            "flag_types": rng.sample(FLAG_TYPES, rng.randint(1, 3)),
            "min_severity": rng.choice(SEVERITIES),
        },
        "VOLUME_SPIKE": {"min_ratio": rng.choice([1.5, 2, 3]), "window_hours": rng.choice([3, 6])},
        "EVENT_RESOLVED": (
            {"outcomes": rng.sample(["YES", "NO", "AMBIGUOUS", "CANCELLED"], 2)}
            if rng.random() < 0.5
            else {}
        ),
        "CAMPAIGN_THRESHOLD": (
            {"direction": rng.choice(["up", "down", "any"])} if rng.random() < 0.3 else {}
        ),
        "EDGE_AT_LEAST": {
            "min_edge": rng.choice([0.05, 0.1, 0.25]),
            **({"direction": rng.choice(["up", "down", "any"])} if rng.random() < 0.7 else {}),
            **({"source": rng.choice(EDGE_MARKETS)[0]} if rng.random() < 0.3 else {}),
        },
    }[trigger_type]


def _edges(conn, rng: random.Random, event_id) -> tuple[MarketEdge, ...]:
    """Market edges of a few intervals (one after UNTIL, which the tick must not read); the
    reference's input: those of the newest interval at or before UNTIL. Prices and pools on a
    twentieth (a quarter, coarse) grid, so edges land exactly on the rules' min_edge."""
    steps = 4 if getattr(rng, "coarse", False) else 20
    latest: tuple[MarketEdge, ...] = ()
    for hours in sorted(rng.sample([-3, -2, -1, 0, 1], rng.randint(0, 3))):
        at = T0 + timedelta(hours=hours)
        pooled = Decimal(rng.randint(0, steps)) / steps
        edges = []
        for source, market in rng.sample(EDGE_MARKETS, rng.randint(1, 3)):
            price = Decimal(rng.randint(0, steps)) / steps
            edges.append(MarketEdge(source, market, price, pooled, price - pooled, at))
            conn.execute(
                "INSERT INTO prediction_market_edges (event_id, source, source_event_id, price,"
                " observed_at, pooled_probability, edge, snapshot_at)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (event_id, source, market, price, at, pooled, price - pooled, at),
            )
        if at <= UNTIL:
            latest = tuple(edges)
    return latest


def _tenants(conn, rng: random.Random) -> tuple[list, list, dict]:
    """Users (the fixture's first), orgs and random memberships: (users, orgs, orgs by user)."""
    users = [USER_ID] + [uuid.uuid4() for _ in range(3)]
    for user in users[1:]:
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, %s)", (user, f"{user}@example.com")
        )
    orgs = [
        conn.execute(
            "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES (%s, %s, %s) RETURNING id",
            (f"org {i}", f"org-{i}", users[i]),
        ).fetchone()[0]
        for i in range(2)
    ]
    memberships: dict = {user: set() for user in users}
    for user in users:
        for org in orgs:
            if rng.random() < 0.4:
                conn.execute(
                    "INSERT INTO prediction_org_members (org_id, user_id) VALUES (%s, %s)",
                    (org, user),
                )
    # Read back: an org's owner is its member from the start (sql/0040), not only by the draw.
    for user, org in conn.execute(
        "SELECT user_id, org_id FROM prediction_org_members WHERE org_id = ANY(%s)", (orgs,)
    ):
        memberships[user].add(org)
    return users, orgs, memberships


def _audience(rng: random.Random, users: list, orgs: list, memberships: dict) -> dict:
    """An event's visibility: public, org-private or private to its creator (an org's event is
    created by one of its members, or by nobody: the database refuses anyone else)."""
    kind = rng.choice(["public", "public", "org", "creator"])
    org = rng.choice(orgs) if kind == "org" else None
    creators = [u for u in users if org in memberships[u]] if org else users
    made_by = rng.choice(creators) if kind != "public" or rng.random() < 0.3 else None
    return {"is_public": kind == "public", "org_id": org, "created_by": made_by}


def _world(conn, rng: random.Random) -> dict:
    conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (T0 - timedelta(days=2), T0))
    conn.execute(
        "SELECT predict_ensure_market_edge_partitions(%s, %s)",
        (T0 - timedelta(days=2), T0 + timedelta(days=1)),
    )
    users, orgs, memberships = _tenants(conn, rng)
    categories = [
        conn.execute(
            "INSERT INTO prediction_categories (name, slug) VALUES (%s, %s) RETURNING id",
            (f"c{i}", f"c{i}"),
        ).fetchone()[0]
        for i in range(3)
    ]
    campaigns = {}
    for i in range(2):
        owner = rng.choice(users)  # a campaign of an org belongs to one of its members
        org = rng.choice([None, *sorted(memberships[owner], key=str)])
        campaign = conn.execute(
            "INSERT INTO prediction_campaigns (user_id, org_id, name) VALUES (%s, %s, %s)"
            " RETURNING id",
            (owner, org, f"campaign {i}"),
        ).fetchone()[0]
        campaigns[campaign] = (owner, org)
    events, links, snapshots, flags, edges = {}, {}, {}, {}, {}
    for i in range(40):
        status = rng.choice(STATUSES)
        row = {
            "category_id": rng.choice(categories),
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
            "current_probability": _p(rng),
            "previous_probability": _p(rng),
            "sentiment_score": _sentiment(rng),
            "previous_sentiment": _sentiment(rng),
            "trust_score": _p(rng),
            "previous_trust_score": _p(rng),
            "divergence": rng.choice(DIVERGENCE_LEVELS),
            "previous_divergence": rng.choice([*DIVERGENCE_LEVELS, None]),
            "status": status,
            "updated_at": T0 - timedelta(minutes=rng.randint(0, 4)),
            **_audience(rng, users, orgs, memberships),
        }
        cols = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        event_id = conn.execute(
            f"INSERT INTO prediction_events (title, slug, {cols}) VALUES (%s, %s, {marks})"  # noqa: S608
            " RETURNING id",
            (f"event {i}", f"event-{i}", *row.values()),
        ).fetchone()[0]
        events[event_id] = row
        history = []
        for step in range(rng.randint(0, 12)):
            at = T0 - timedelta(minutes=30 * step + rng.randint(0, 20))
            history.append((at, _p(rng), rng.choice([0, 10, 20, 40, 100, 400])))
        for at, probability, volume in history:
            conn.execute(
                "INSERT INTO prediction_snapshots (event_id, snapshot_at, probability, volume)"
                " VALUES (%s, %s, %s, %s)",
                (event_id, at, probability, volume),
            )
        snapshots[event_id] = sorted(history)
        edges[event_id] = _edges(conn, rng, event_id)
        flags[event_id] = []
        for _ in range(rng.choice([0, 0, 1, 2])):
            created = T0 - timedelta(minutes=rng.choice([1, 3, 9]))  # 9: before the cursor
            flag = (rng.choice(FLAG_TYPES[:-1]), rng.choice(SEVERITIES))
            flag_id = conn.execute(
                "INSERT INTO prediction_trust_flags (event_id, flag_type, severity, description,"
                " created_at) VALUES (%s, %s, %s, 'test', %s) RETURNING id",
                (event_id, *flag, created),
            ).fetchone()[0]
            if created > SINCE:
                flags[event_id].append(NewFlag(str(flag_id), *flag))
        for campaign in campaigns:
            if rng.random() < 0.4:
                link = (rng.choice(RELATIONSHIPS), _p(rng))
                conn.execute(
                    "INSERT INTO prediction_campaign_events (campaign_id, event_id, relationship,"
                    " probability_threshold) VALUES (%s, %s, %s, %s)",
                    (campaign, event_id, *link),
                )
                links[(campaign, event_id)] = link
    rules, viewers = {}, {}
    for i in range(160):
        trigger_type = TRIGGER_TYPES[i % len(TRIGGER_TYPES)]
        scope_type = rng.choice(["event", "category", "tag", "campaign", "all"])
        scope_id = {
            "event": rng.choice(list(events)),
            "category": rng.choice(categories),
            "campaign": rng.choice(list(campaigns)),
        }.get(scope_type)
        scope_tag = rng.choice(TAGS) if scope_type == "tag" else None
        params = _params(rng, trigger_type)
        owner = rng.choice(users)
        # An org rule belongs to one of its owner's orgs: the database refuses any other.
        owner_orgs = sorted(memberships[owner], key=str)
        rule_org = rng.choice(owner_orgs) if owner_orgs and rng.random() < 0.3 else None
        is_system = rng.random() < 0.1
        rule_id = conn.execute(
            "INSERT INTO prediction_rules (user_id, org_id, is_system, name, scope_type,"
            " scope_id, scope_tag, trigger_type, trigger_params, cooldown_minutes,"
            " max_fires_per_day, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, NULL, NULL, %s) RETURNING id",
            (
                owner,
                rule_org,
                is_system,
                f"rule {i}",
                scope_type,
                scope_id,
                scope_tag,
                trigger_type,
                Jsonb(params),
                T0 - timedelta(days=1),
            ),
        ).fetchone()[0]
        rules[rule_id] = (scope_type, scope_id, scope_tag, trigger_type, params)
        viewers[rule_id] = rule_viewer(owner, rule_org, is_system, memberships)
    return {
        "events": events,
        "links": links,
        "snapshots": snapshots,
        "flags": flags,
        "edges": edges,
        "rules": rules,
        "viewers": viewers,
        "campaigns": campaigns,
    }


def _in_view(world: dict, rule_id, event_id) -> bool:
    """The reference's tenancy: the rule's viewer sees the event (and its campaign)."""
    viewer = world["viewers"][rule_id]
    scope_type, scope_id = world["rules"][rule_id][:2]
    if scope_type == "campaign":
        owner, org = world["campaigns"][scope_id]
        if not sees_campaign(viewer, owner=owner, org_id=org):
            return False
    row = world["events"][event_id]
    return sees_event(
        viewer, is_public=row["is_public"], org_id=row["org_id"], created_by=row["created_by"]
    )


def _median_before(history, hours: int):
    """The reference inputs of VOLUME_SPIKE: the latest interval within the window and an hour
    before UNTIL, and the median of the intervals in the trailing window before it."""
    recent = [(at, v) for at, _, v in history if UNTIL - timedelta(hours=hours + 1) < at <= UNTIL]
    if not recent:
        return None, None
    latest_at, latest = recent[-1]
    before = [v for at, _, v in history if latest_at - timedelta(hours=hours) < at < latest_at]
    return latest, (statistics.median(before) if before else None)


def _expected(world: dict) -> set[tuple[uuid.UUID, uuid.UUID]]:
    fired = set()
    for rule_id, (scope_type, scope_id, scope_tag, trigger_type, params) in world["rules"].items():
        trigger = validate_rule(trigger_type, params)
        assert not hasattr(trigger, "reason"), trigger
        for event_id, row in world["events"].items():
            link = world["links"].get((scope_id, event_id))
            in_scope = {
                "all": True,
                "event": scope_id == event_id,
                "category": scope_id == row["category_id"],
                "tag": scope_tag in row["tags"],
                "campaign": link is not None,
            }[scope_type]
            if not in_scope or not _in_view(world, rule_id, event_id):
                continue
            history = world["snapshots"][event_id]
            ago = {}
            if "window_minutes" in params:
                cut = UNTIL - timedelta(minutes=params["window_minutes"])
                earlier = [p for at, p, _ in history if at <= cut]
                if earlier:
                    ago[params["window_minutes"]] = earlier[-1]
            volume, median = None, {}
            if "window_hours" in params:
                volume, m = _median_before(history, params["window_hours"])
                median = {params["window_hours"]: m} if m is not None else {}
            state = EventState(
                event_id=str(event_id),
                as_of=row["updated_at"],
                current_probability=row["current_probability"],
                previous_probability=row["previous_probability"],
                probabilities_ago=ago,
                sentiment_score=row["sentiment_score"],
                previous_sentiment=row["previous_sentiment"],
                trust_score=row["trust_score"],
                previous_trust_score=row["previous_trust_score"],
                divergence=row["divergence"],
                previous_divergence=row["previous_divergence"],
                volume=volume,
                median_volumes=median,
                new_flags=tuple(world["flags"][event_id]),
                resolution=OUTCOME.get(row["status"]),
                campaign_link=CampaignLink(str(scope_id), *link) if link else None,
                market_edges=world["edges"][event_id],
            )
            if evaluate(trigger, state) is not None:
                fired.add((rule_id, event_id))
    return fired


@pytest.mark.parametrize(
    "rng",
    [
        random.Random(1),
        random.Random(2),
        random.Random(3),
        random.Random(4),
        _Coarse(5),
        _Coarse(6),
    ],
)
def test_tick_fires_exactly_where_the_reference_semantics_fire(conn, rng):
    world = _world(conn, rng)
    expected = _expected(world)
    with conn.transaction():
        report = evaluate_tick(conn, since=SINCE, until=UNTIL)
    logged = set(
        conn.execute(
            "SELECT rule_id, event_id FROM prediction_rule_executions WHERE status = 'PENDING'"
        ).fetchall()
    )
    assert logged == expected
    assert len(report.fired) == len(expected) and report.invalid_rules == {}
    assert report.refused_unseen == 0  # the SQL proposed no pair its rule may not see
    # Every trigger type fires somewhere across the seeds' worlds (checked per seed loosely).
    assert len({world["rules"][r][3] for r, _ in expected}) >= 5
    # Market edges fire, and some edge rule meets edges without firing (below its size, the
    # other way, another source, or only after UNTIL).
    edge_rules = {r for r, rule in world["rules"].items() if rule[3] == "EDGE_AT_LEAST"}
    assert {r for r, _ in expected} & edge_rules
    assert any(
        (r, e) not in expected and world["edges"][e] for r in edge_rules for e in world["events"]
    )
    # The pairs evaluated: every changed event against every rule whose scope covers it and
    # that may see it.
    assert report.evaluated == sum(
        1
        for rule_id, (scope_type, scope_id, scope_tag, *_) in world["rules"].items()
        for event_id, row in world["events"].items()
        if {
            "all": True,
            "event": scope_id == event_id,
            "category": scope_id == row["category_id"],
            "tag": scope_tag in row["tags"],
            "campaign": (scope_id, event_id) in world["links"],
        }[scope_type]
        and _in_view(world, rule_id, event_id)
    )
    # Tenancy kept firings out, and let others through, in every world.
    in_scope_unseen = {
        (rule_id, event_id)
        for rule_id in world["rules"]
        for event_id in world["events"]
        if not _in_view(world, rule_id, event_id)
    }
    assert in_scope_unseen and expected and not expected & in_scope_unseen


def _throttle_reference(conn, rules: list, events: list, now: datetime) -> dict:
    """The statuses `throttle.decide` gives the firings of `rules` on `events` (every pair
    fires: each rule crosses above 0.5, each event crossed it), one by one in the tick's order
    (rule id, then event id, as text), from the rules' state in the database before the tick;
    a pair already logged is a duplicate (absent from the result)."""
    expected = {}
    logged = set(
        conn.execute(
            "SELECT rule_id, event_id FROM prediction_rule_executions WHERE event_id IS NOT NULL"
        ).fetchall()
    )
    for rule_id in sorted(rules, key=str):
        cooldown, cap, hours, last_fired_at = conn.execute(
            "SELECT cooldown_minutes, max_fires_per_day, active_hours, last_fired_at"
            " FROM prediction_rules WHERE id = %s",
            (rule_id,),
        ).fetchone()
        fires_today = conn.execute(
            "SELECT count(*) FROM prediction_rule_executions WHERE rule_id = %s"
            " AND started_at >= %s AND status NOT LIKE 'SKIPPED%%'",
            (rule_id, utc_day_start(now)),
        ).fetchone()[0]
        throttle = validate_throttle(
            cooldown_minutes=cooldown, max_fires_per_day=cap, active_hours=hours
        )
        for event_id in sorted(events, key=str):
            if (rule_id, event_id) in logged:
                continue
            decision = decide(
                throttle, now=now, last_fired_at=last_fired_at, fires_today=fires_today
            )
            if decision == "FIRE":
                last_fired_at, fires_today = now, fires_today + 1
            expected[(rule_id, event_id)] = "PENDING" if decision == "FIRE" else decision
    return expected


@pytest.mark.parametrize("seed", [1, 2])
def test_tick_throttles_exactly_as_decide_one_firing_at_a_time(conn, seed):
    """The tick's set-based throttle (window functions over a rule's firings) against
    `throttle.decide` applied firing by firing: cooldowns, daily caps counted from executions
    earlier today (skips not counted, yesterday's not counted), active hours in other zones,
    firings of an earlier tick, and duplicates of its firings seen again."""
    rng = random.Random(seed)
    early, late = UNTIL - timedelta(minutes=20), UNTIL - timedelta(minutes=1)
    events = {}
    for i in range(8):
        events[
            conn.execute(
                "INSERT INTO prediction_events (title, slug, is_public, previous_probability,"
                " current_probability, updated_at) VALUES (%s, %s, true, 0.4, 0.6, %s)"
                " RETURNING id",
                (f"crossing {i}", f"crossing-{seed}-{i}", early if i < 4 else late),
            ).fetchone()[0]
        ] = i
    hours = [
        None,
        {"timezone": "Europe/Lisbon", "start": "11:00", "end": "13:00"},  # 12:00 UTC: active
        {"timezone": "Asia/Tokyo", "start": "09:00", "end": "10:00"},  # 21:00 there: asleep
        {"timezone": "America/New_York", "days": ["sat"], "start": "22:00", "end": "08:00"},
    ]
    rules = []
    for i in range(60):
        rule_id = conn.execute(
            "INSERT INTO prediction_rules (user_id, name, scope_type, trigger_type,"
            " trigger_params, cooldown_minutes, max_fires_per_day, active_hours, last_fired_at,"
            " updated_at) VALUES (%s, %s, 'all', 'PROBABILITY_CROSSES_ABOVE', %s, %s, %s, %s,"
            " %s, %s) RETURNING id",
            (
                USER_ID,
                f"throttled {i}",
                Jsonb({"threshold": 0.5}),
                rng.choice([None, 0, 5, 15, 60]),
                rng.choice([None, 1, 2, 3, 6]),
                Jsonb(rng.choice(hours)) if rng.random() < 0.3 else None,
                rng.choice([None, UNTIL - timedelta(minutes=rng.choice([3, 12, 50, 900]))]),
                T0 - timedelta(days=1),
            ),
        ).fetchone()[0]
        rules.append(rule_id)
        for _ in range(rng.choice([0, 0, 1, 2, 3])):  # earlier executions, today or yesterday
            conn.execute(
                "INSERT INTO prediction_rule_executions (rule_id, trigger_snapshot, status,"
                " started_at) VALUES (%s, '{}', %s, %s)",
                (
                    rule_id,
                    rng.choice(["COMPLETED", "PENDING", "FAILED", "SKIPPED_COOLDOWN"]),
                    rng.choice([T0 - timedelta(hours=2), T0 - timedelta(hours=13)]),
                ),
            )
    for since, until, seen in (
        (UNTIL - timedelta(minutes=30), UNTIL - timedelta(minutes=10), list(events)[:4]),
        # The second tick sees the first one's events again (duplicates) and the new ones.
        (UNTIL - timedelta(minutes=30), UNTIL, list(events)),
    ):
        expected = _throttle_reference(conn, rules, seen, until)
        with conn.transaction():
            report = evaluate_tick(conn, since=since, until=until)
        logged = dict(
            ((rule_id, event_id), status)
            for rule_id, event_id, status in conn.execute(
                "SELECT rule_id, event_id, status FROM prediction_rule_executions"
                " WHERE started_at = %s AND rule_id = ANY(%s)",
                (until, rules),
            )
        )
        assert logged == expected
        statuses = list(expected.values())
        assert len(report.fired) == statuses.count("PENDING")
        assert report.skipped == {
            s: statuses.count(s) for s in set(statuses) if s.startswith("SKIPPED")
        }
        assert report.duplicates == len(rules) * len(seen) - len(expected)
        assert {"PENDING", "SKIPPED_COOLDOWN", "SKIPPED_LIMIT", "SKIPPED_HOURS"} <= set(statuses)
    assert report.duplicates > 0
    # The rules' firing bookkeeping: fire_count and last_fired_at of the rules that fired.
    fired_rules = {rule_id for (rule_id, _), status in logged.items() if status == "PENDING"}
    assert fired_rules and all(
        at == UNTIL
        for (at,) in conn.execute(
            "SELECT last_fired_at FROM prediction_rules WHERE id = ANY(%s)", (list(fired_rules),)
        )
    )
