"""`rules add|list|show|enable|disable|test` on a real database, as two users: good input
lands (audited), bad input is one line with nothing recorded, a user never sees or changes
another's rule, and `rules test` gives the tick's verdict without writing a row."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.rules.engine import evaluate_tick
from tests.support.cli import add_user, cli_environment, count, refused, run, run_json

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
ALICE, BOB = "alice@example.com", "bob@example.com"
CROSS_ABOVE = ["--trigger", "PROBABILITY_CROSSES_ABOVE", "--params", '{"threshold": 0.5}']


@pytest.fixture
def world(db_url, tmp_path, capsys):
    """Alice and Bob (added with `users add`), Alice's private event and a public one whose
    probability rose from 0.4 to 0.6 at T0 - 1 min (as event_snapshots leaves it)."""
    with cli_environment(db_url, str(tmp_path / "state")):
        alice, bob = add_user(capsys, ALICE), add_user(capsys, BOB)
        with connect(db_url, role=None, autocommit=True) as admin:
            public = admin.execute(
                "INSERT INTO prediction_events (title, slug, tags, current_probability,"
                " previous_probability, updated_at) VALUES ('Rates cut in June?', 'rates-june',"
                " '{ecb}', 0.6, 0.4, %s) RETURNING id",
                (T0 - timedelta(minutes=1),),
            ).fetchone()[0]
            private = admin.execute(
                "INSERT INTO prediction_events (title, slug, is_public, created_by)"
                " VALUES ('Alice only', 'alice-only', false, %s) RETURNING id",
                (alice,),
            ).fetchone()[0]
            yield {
                "alice": alice,
                "bob": bob,
                "public": public,
                "private": private,
                "admin": admin,
            }


def _add(capsys, who: str, *extra: str) -> uuid.UUID:
    created = run_json(
        capsys, "rules", "add", "Rates above half", "--as", who, "--scope", "tag:ecb", *CROSS_ABOVE,
        *extra,
    )  # fmt: skip
    return uuid.UUID(created["rule_id"])


def test_add_stores_the_validated_rule_and_audits_it(world, capsys):
    rule_id = _add(
        capsys,
        ALICE,
        "--actions",
        '[{"type": "slack", "text": "{event_title}: {summary}"}]',
        "--cooldown-minutes",
        "30",
    )
    row = (
        world["admin"]
        .execute(
            "SELECT user_id, scope_type, scope_tag, trigger_type, trigger_params, actions,"
            " cooldown_minutes, enabled FROM prediction_rules WHERE id = %s",
            (rule_id,),
        )
        .fetchone()
    )
    assert row == (
        world["alice"],
        "tag",
        "ecb",
        "PROBABILITY_CROSSES_ABOVE",
        {"threshold": 0.5},
        [{"type": "slack", "text": "{event_title}: {summary}"}],
        30,
        True,
    )
    audit = (
        world["admin"]
        .execute(
            "SELECT actor_type, actor_id, details->>'trigger_type' FROM prediction_audit_log"
            " WHERE action = 'rule.created' AND resource_id = %s",
            (rule_id,),
        )
        .fetchall()
    )
    assert audit == [("user", world["alice"], "PROBABILITY_CROSSES_ABOVE")]


def test_add_says_which_connection_the_actions_still_need(world, capsys):
    code, out, err = run(
        capsys, "rules", "add", "Ping", "--as", ALICE, "--scope", "all", *CROSS_ABOVE,
        "--actions", '[{"type": "slack"}, {"type": "explain"}]',
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines()[1] == (
        "note: no active slack connection yet: predict-pipeline connections add"
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["--trigger", "PROBABILITY_CROSSES_ABOVE", "--params", '{"threshold": 1.5}'],
            "invalid trigger: PROBABILITY_CROSSES_ABOVE trigger_params.threshold: "
            "must be at most 1",
        ),
        (
            [
                "--trigger",
                "PROBABILITY_SHIFT",
                "--params",
                '{"min_change": 0.1, "window_minutes": 5, "window": 5}',
            ],
            "invalid trigger: PROBABILITY_SHIFT trigger_params: unknown field 'window' "
            "(allowed: direction, min_change, window_minutes)",
        ),
        (
            [*CROSS_ABOVE, "--actions", '[{"type": "fax"}]'],
            "invalid actions: actions[0].type: must be one of webhook, slack, email, "
            "campaign_pause, campaign_repredict, explain",
        ),
        (
            [*CROSS_ABOVE, "--actions", '[{"type": "slack", "text": "{nope}"}]'],
            None,  # an unknown placeholder: the message lists the known ones
        ),
        (
            [*CROSS_ABOVE, "--cooldown-minutes", "-1"],
            None,
        ),
        (
            ["--trigger", "CAMPAIGN_THRESHOLD"],
            "CAMPAIGN_THRESHOLD watches a campaign's links: give --scope campaign:ID",
        ),
    ],
)
def test_add_refuses_an_invalid_rule_in_one_line_and_records_nothing(world, capsys, argv, line):
    before = count(world["admin"], "SELECT count(*) FROM prediction_audit_log")
    said = refused(capsys, "rules", "add", "Bad", "--as", ALICE, "--scope", "tag:ecb", *argv)
    assert said.startswith("predict-pipeline: error: ")
    if line:
        assert said == f"predict-pipeline: error: {line}"
    assert count(world["admin"], "SELECT count(*) FROM prediction_rules") == 0
    assert count(world["admin"], "SELECT count(*) FROM prediction_audit_log") == before


def test_a_rule_cannot_be_scoped_to_an_event_its_owner_cannot_see(world, capsys):
    line = refused(
        capsys, "rules", "add", "Peek", "--as", BOB, "--scope", f"event:{world['private']}",
        *CROSS_ABOVE,
    )  # fmt: skip
    assert line == (
        f"predict-pipeline: error: no event {world['private']} visible to the acting user"
    )
    assert count(world["admin"], "SELECT count(*) FROM prediction_rules") == 0
    # Alice, who created it, may.
    _add(capsys, ALICE, "--scope", f"event:{world['private']}")


def test_the_plans_max_rules_is_enforced_at_creation(world, capsys):
    world["admin"].execute("UPDATE predict_meta.default_plan SET tier = 'free', max_rules = 1")
    _add(capsys, ALICE)
    line = refused(capsys, "rules", "add", "Second", "--as", ALICE, "--scope", "all", *CROSS_ABOVE)
    assert line.startswith("predict-pipeline: error: rule not created: ")
    assert "max_rules" in line or "enabled rules" in line
    assert count(world["admin"], "SELECT count(*) FROM prediction_rules") == 1
    # A disabled rule counts for no limit, so it may still be kept.
    _add(capsys, ALICE, "--disabled")
    line = refused(capsys, "rules", "enable", str(_add(capsys, ALICE, "--disabled")), "--as", ALICE)
    assert line.startswith("predict-pipeline: error: rule not enabled: ")


def test_list_and_show_see_only_what_the_user_may_see(world, capsys):
    alices = _add(capsys, ALICE)
    bobs = _add(capsys, BOB)
    listed = run_json(capsys, "rules", "list", "--as", ALICE)["rules"]
    assert [r["id"] for r in listed] == [str(alices)]
    operator = run_json(capsys, "rules", "list")["rules"]
    assert {r["id"] for r in operator} == {str(alices), str(bobs)}
    shown = run_json(capsys, "rules", "show", str(alices), "--as", ALICE)
    assert shown["rule"]["trigger_params"] == {"threshold": 0.5}
    assert shown["executions"] == []
    code, out, _ = run(capsys, "rules", "list", "--as", ALICE)
    assert code == 0 and str(alices) in out and str(bobs) not in out


def test_another_user_cannot_show_enable_disable_or_test_a_rule(world, capsys):
    rule_id = _add(capsys, ALICE)
    for argv in (
        ["rules", "show", str(rule_id), "--as", BOB],
        ["rules", "disable", str(rule_id), "--as", BOB],
        ["rules", "enable", str(rule_id), "--as", BOB],
        ["rules", "test", str(rule_id), "--event", str(world["public"]), "--as", BOB],
    ):
        line = refused(capsys, *argv)
        assert line == f"predict-pipeline: error: no rule {rule_id} visible to {BOB}"
    assert world["admin"].execute(
        "SELECT enabled FROM prediction_rules WHERE id = %s", (rule_id,)
    ).fetchone() == (True,)


def test_an_org_member_sees_an_org_rule_but_only_its_owner_changes_it(world, capsys):
    admin = world["admin"]
    org = admin.execute(
        "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('Desk', 'desk', %s)"
        " RETURNING id",
        (world["alice"],),
    ).fetchone()[0]
    admin.execute(
        "INSERT INTO prediction_org_members (org_id, user_id, role, invited_by)"
        " VALUES (%s, %s, 'member', %s)",
        (org, world["bob"], world["alice"]),
    )
    rule_id = _add(capsys, ALICE, "--org", "desk")
    assert run_json(capsys, "rules", "show", str(rule_id), "--as", BOB)["rule"]["org_id"] == str(
        org
    )
    line = refused(capsys, "rules", "disable", str(rule_id), "--as", BOB)
    assert line == (
        f"predict-pipeline: error: rule {rule_id} is not {BOB}'s: only its owner changes it"
    )


def test_disable_and_enable_switch_the_rule_and_audit_each(world, capsys):
    rule_id = _add(capsys, ALICE)
    assert run_json(capsys, "rules", "disable", str(rule_id), "--as", ALICE)["changed"] is True
    assert run_json(capsys, "rules", "disable", str(rule_id), "--as", ALICE)["changed"] is False
    admin = world["admin"]
    assert admin.execute(
        "SELECT enabled FROM prediction_rules WHERE id = %s", (rule_id,)
    ).fetchone() == (False,)
    code, out, _ = run(capsys, "rules", "enable", str(rule_id), "--as", ALICE)
    assert (code, out) == (0, f"rule {rule_id} enabled\n")
    actions = admin.execute(
        "SELECT action FROM prediction_audit_log WHERE resource_id = %s ORDER BY created_at, id",
        (rule_id,),
    ).fetchall()
    assert sorted(a for (a,) in actions) == ["rule.created", "rule.disabled", "rule.enabled"]


def _tables(admin) -> dict[str, int]:
    return {
        table: count(admin, f"SELECT count(*) FROM {table}")  # noqa: S608 (names below)
        for table in ("prediction_rule_executions", "prediction_audit_log", "prediction_rules")
    }


def test_rules_test_gives_the_ticks_verdict_and_writes_nothing(world, capsys, db_url):
    rule_id = _add(capsys, ALICE)
    admin = world["admin"]
    before = _tables(admin)
    verdict = run_json(
        capsys, "rules", "test", str(rule_id), "--event", str(world["public"]), "--as", ALICE,
        "--at", T0.isoformat(),
    )  # fmt: skip
    assert verdict["would_fire"] is True and verdict["outcome"] == "PENDING"
    assert [c["check"] for c in verdict["checks"]] == [
        "enabled", "scope", "visibility", "plan", "trigger", "new state", "throttle",
    ]  # fmt: skip
    assert all(c["passed"] for c in verdict["checks"])
    assert verdict["firing"]["summary"] == "probability crossed above 0.5 (0.4 → 0.6)"
    # Nothing recorded: no execution, no audit entry, the rule's firing counters untouched.
    assert _tables(admin) == before
    assert admin.execute(
        "SELECT last_fired_at, fire_count FROM prediction_rules WHERE id = %s", (rule_id,)
    ).fetchone() == (None, 0)
    # The tick, given the same moment, fires the same state.
    with connect(db_url) as conn, conn.transaction():
        report = evaluate_tick(conn, since=T0 - timedelta(minutes=5), until=T0)
    assert len(report.fired) == 1
    [key] = report.run_keys.values()
    assert key == f"{rule_id}:{world['public']}:{verdict['firing']['state_key']}"
    # Now that state is logged, the test says the tick would not fire it again.
    again = run_json(
        capsys, "rules", "test", str(rule_id), "--event", str(world["public"]), "--as", ALICE,
        "--at", T0.isoformat(),
    )  # fmt: skip
    assert again["would_fire"] is False
    assert again["checks"][-1]["check"] == "new state" and not again["checks"][-1]["passed"]


def test_rules_test_says_why_a_rule_would_not_fire(world, capsys):
    high = _add(capsys, ALICE, "--params", '{"threshold": 0.7}')
    code, out, err = run(
        capsys, "rules", "test", str(high), "--event", str(world["public"]), "--as", ALICE,
        "--at", T0.isoformat(),
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].endswith(": would not fire (trigger)")
    assert lines[-2] == (
        '  no  trigger: PROBABILITY_CROSSES_ABOVE {"threshold": 0.7} does not fire on '
        "previous_probability 0.4000, current_probability 0.6000"
    )
    assert lines[-1] == "nothing was recorded (no execution, no delivery)"
    # Out of scope, and disabled, each named.
    other = _add(capsys, ALICE, "--scope", "tag:fed", "--disabled")
    verdict = run_json(
        capsys, "rules", "test", str(other), "--event", str(world["public"]), "--as", ALICE,
        "--at", T0.isoformat(),
    )  # fmt: skip
    failed = {c["check"]: c["detail"] for c in verdict["checks"] if not c["passed"]}
    assert failed == {"enabled": "disabled", "scope": "tag 'fed' is not on the event"}


def test_rules_test_refuses_an_event_the_user_cannot_see(world, capsys):
    rule_id = _add(capsys, BOB)
    line = refused(
        capsys, "rules", "test", str(rule_id), "--event", str(world["private"]), "--as", BOB
    )
    assert line == f"predict-pipeline: error: no event {world['private']} visible to {BOB}"


def test_help_of_every_rules_command_ends_with_an_example(capsys):
    for name in ("add", "list", "show", "enable", "disable", "test"):
        code, out, _ = run(capsys, "rules", name, "--help")
        assert code == 0
        example = out.split("example:\n", 1)[1].strip()
        assert example.startswith(f"predict-pipeline rules {name}")
        json.dumps(example)  # one printable line
