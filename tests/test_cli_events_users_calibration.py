"""`events add|list`, `users add` and `calibration show` on a real database: good input lands
(audited), bad input is one line with nothing recorded, each user sees what RLS lets them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from predict_pipeline.calibration.metrics import calibration_rows
from predict_pipeline.calibration.resolutions import resolved_events
from predict_pipeline.calibration.store import active_categories, save_calibration
from predict_pipeline.db.connection import connect
from tests.support.cli import add_user, cli_environment, count, refused, run, run_json

ALICE, BOB = "alice@example.com", "bob@example.com"
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(db_url, tmp_path, capsys):
    with cli_environment(db_url, str(tmp_path / "state")):
        alice, bob = add_user(capsys, ALICE), add_user(capsys, BOB)
        with connect(db_url, role=None, autocommit=True) as admin:
            yield {"alice": alice, "bob": bob, "admin": admin, "db_url": db_url}


def test_users_add_writes_the_auth_stub_and_refuses_a_second_time(world, capsys):
    admin = world["admin"]
    assert admin.execute(
        "SELECT email, is_active FROM auth.users WHERE id = %s", (world["alice"],)
    ).fetchone() == (ALICE, True)
    chosen = uuid.UUID("6f1c0f9e-2d4b-4c61-9d3e-1a2b3c4d5e6f")
    code, out, _ = run(
        capsys, "users", "add", "carol@example.com", "--name", "Carol", "--id", str(chosen)
    )
    assert (code, out) == (0, f"user {chosen} added (carol@example.com)\n")
    assert admin.execute(
        "SELECT actor_type, details->>'email' FROM prediction_audit_log"
        " WHERE action = 'user.created' AND resource_id = %s",
        (chosen,),
    ).fetchone() == ("service", "carol@example.com")
    before = count(admin, "SELECT count(*) FROM auth.users")
    line = refused(capsys, "users", "add", "ALICE@example.com")
    assert line == (
        f"predict-pipeline: error: a user with that e-mail or id exists already ({world['alice']})"
    )
    line = refused(capsys, "users", "add", "not-an-address")
    assert line.endswith("argument email: not an e-mail address: not-an-address "
                         "(see predict-pipeline users add --help)")  # fmt: skip
    assert count(admin, "SELECT count(*) FROM auth.users") == before


def test_events_add_creates_public_private_and_org_events_as_the_user(world, capsys):
    public = run_json(
        capsys, "events", "add", "Will the ECB cut rates in June?", "--as", ALICE,
        "--category", "finance", "--tag", "ecb", "--resolution-date", "2026-06-30T23:59Z",
    )  # fmt: skip
    private = run_json(capsys, "events", "add", "Alice's own question", "--as", ALICE, "--private")
    admin = world["admin"]
    row = admin.execute(
        "SELECT e.title, c.slug, e.tags, e.is_public, e.created_by, e.resolution_date"
        " FROM prediction_events e JOIN prediction_categories c ON c.id = e.category_id"
        " WHERE e.id = %s",
        (public["event_id"],),
    ).fetchone()
    assert row == (
        "Will the ECB cut rates in June?",
        "finance",
        ["ecb"],
        True,
        world["alice"],
        datetime(2026, 6, 30, 23, 59, tzinfo=UTC),
    )
    assert public["slug"].startswith("will-the-ecb-cut-rates-in-june-")
    assert admin.execute(
        "SELECT actor_id FROM prediction_audit_log WHERE action = 'event.created'"
        " AND resource_id = %s",
        (private["event_id"],),
    ).fetchone() == (world["alice"],)
    # Bob sees the public one only; Alice both; the operator every tenant's.
    seen = {
        who: {e["id"] for e in run_json(capsys, "events", "list", *argv)["events"]}
        for who, argv in (("bob", ["--as", BOB]), ("alice", ["--as", ALICE]), ("all", []))
    }
    assert seen["bob"] == {public["event_id"]}
    assert seen["alice"] == seen["all"] == {public["event_id"], private["event_id"]}
    finance = run_json(capsys, "events", "list", "--as", BOB, "--category", "finance")
    assert [e["category"] for e in finance["events"]] == ["finance"]


def test_events_add_into_an_org_only_for_its_members(world, capsys):
    admin = world["admin"]
    org = admin.execute(
        "INSERT INTO prediction_orgs (name, slug, owner_id) VALUES ('Desk', 'desk', %s)"
        " RETURNING id",
        (world["alice"],),
    ).fetchone()[0]
    made = run_json(capsys, "events", "add", "Desk question", "--as", ALICE, "--org", "desk")
    assert (made["org_id"], made["is_public"]) == (str(org), False)
    before = count(admin, "SELECT count(*) FROM prediction_events")
    # Under RLS a non-member does not even find the org, by slug or by id.
    for name in ("desk", str(org)):
        line = refused(capsys, "events", "add", "Not my desk", "--as", BOB, "--org", name)
        assert line == f"predict-pipeline: error: no org {name!r} (give an id or a slug)"
    assert count(admin, "SELECT count(*) FROM prediction_events") == before
    assert run_json(capsys, "events", "list", "--as", BOB)["events"] == []


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--category", "astrology"], "no category 'astrology' (give its slug)"),
        (["--org", "nowhere"], "no org 'nowhere' (give an id or a slug)"),
        (["--as", "nobody@example.com"], "no user 'nobody@example.com' (give an id or an e-mail "
         "address)"),
    ],
)  # fmt: skip
def test_events_add_refuses_bad_input_in_one_line(world, capsys, argv, line):
    who = [] if "--as" in argv else ["--as", ALICE]
    assert refused(capsys, "events", "add", "Q", *who, *argv) == f"predict-pipeline: error: {line}"
    assert count(world["admin"], "SELECT count(*) FROM prediction_events") == 0


def test_events_add_is_held_to_the_plans_max_events(world, capsys):
    world["admin"].execute("UPDATE predict_meta.default_plan SET tier = 'free', max_events = 1")
    run_json(capsys, "events", "add", "First", "--as", ALICE)
    line = refused(capsys, "events", "add", "Second", "--as", ALICE)
    assert line.startswith("predict-pipeline: error: event not created: ")
    assert count(world["admin"], "SELECT count(*) FROM prediction_events") == 1


def _calibrate(conn, outcomes: dict[str, float]) -> None:
    """Resolved finance events, scored by the calibration stage's own functions."""
    for i, (outcome, probability) in enumerate(outcomes.items()):
        event = conn.execute(
            "INSERT INTO prediction_events (title, slug, category_id, status) VALUES"
            " (%s, %s, (SELECT id FROM prediction_categories WHERE slug = 'finance'), %s)"
            " RETURNING id",
            (f"Q{i}", f"q{i}", f"RESOLVED_{outcome.split('-')[0]}"),
        ).fetchone()[0]
        conn.execute(
            "INSERT INTO prediction_resolutions (event_id, outcome, final_probability,"
            " resolved_at) VALUES (%s, %s, %s, %s)",
            (event, outcome.split("-")[0], probability, datetime(2026, 3, 1, tzinfo=UTC)),
        )
    rows = calibration_rows(resolved_events(conn), now=NOW, categories=active_categories(conn))
    save_calibration(conn, rows, NOW)


def test_calibration_show_prints_the_tables(world, capsys):
    with connect(world["db_url"], autocommit=True) as conn:
        _calibrate(conn, {"YES-a": 0.9, "YES-b": 0.7, "NO-a": 0.2, "NO-b": 0.6})
    shown = run_json(capsys, "calibration", "show", "--category", "finance", "--window", "7D")
    [finance] = shown["calibration_scores"]
    expected = round(((0.9 - 1) ** 2 + (0.7 - 1) ** 2 + 0.2**2 + 0.6**2) / 4, 4)
    assert (finance["category"], finance["time_window"], finance["resolved_predictions"]) == (
        "finance",
        "7D",
        4,
    )
    assert finance["brier_score"] == expected
    everything = run_json(capsys, "calibration", "show")["calibration_scores"]
    assert len(everything) == 4 * 7  # global and six categories, four windows
    assert everything[0]["category"] == "all"
    code, out, _ = run(capsys, "calibration", "show", "--category", "all")
    assert code == 0
    assert out.splitlines()[0] == "event calibration (prediction_calibration_scores)"
    assert f"all       ALL_TIME  4  {expected}" in out
    line = refused(capsys, "calibration", "show", "--category", "astrology")
    assert line == (
        "predict-pipeline: error: no calibration for category 'astrology' (a category slug, or all)"
    )


def test_campaign_calibration_is_shown_to_its_tenant_only(world, capsys):
    admin = world["admin"]
    for user in (world["alice"], world["bob"]):
        # As the campaign_calibration asset writes a tenant's row.
        admin.execute(
            "INSERT INTO prediction_campaign_calibration (user_id, platform, campaign_type,"
            " time_window, scored_results, successes, engagement_scored, conversion_scored,"
            " direction_scored, computed_at) VALUES (%s, 'all', 'all', 'ALL_TIME', 3, 2, 0, 0,"
            " 0, %s)",
            (user, NOW),
        )
    mine = run_json(capsys, "calibration", "show", "--as", BOB)["campaign_calibration"]
    assert [row["user_id"] for row in mine] == [str(world["bob"])]
    every = run_json(capsys, "calibration", "show")["campaign_calibration"]
    assert {row["user_id"] for row in every} == {str(world["alice"]), str(world["bob"])}


def test_help_of_events_users_and_calibration_ends_with_an_example(capsys):
    for argv in (("events", "add"), ("events", "list"), ("users", "add"), ("calibration", "show")):
        code, out, _ = run(capsys, *argv, "--help")
        assert code == 0
        assert (
            out.split("example:\n", 1)[1].strip().startswith("predict-pipeline " + " ".join(argv))
        )
