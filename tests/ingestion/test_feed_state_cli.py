"""`predict-pipeline feeds enable|disable|pause|resume`: good and bad input, --json, --help,
and a user acting with --as only on their own feeds."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from predict_pipeline import cli
from predict_pipeline.ingestion.store import load_feeds
from predict_pipeline.secrets import generate_key
from tests.support.feeds import USER_ID, feed_row, make_feed

OTHER = uuid.UUID("00000000-0000-4000-8000-0000000000b2")


@pytest.fixture
def env(db_url, tmp_path, monkeypatch, conn):
    monkeypatch.setenv("PREDICT_DATABASE_URL", db_url)
    monkeypatch.setenv("PREDICT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", generate_key())
    conn.execute("INSERT INTO auth.users (id, email) VALUES (%s, 'other@example.com')", (OTHER,))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["feeds", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _audits(conn, feed) -> list[tuple[str, str, uuid.UUID | None]]:
    return conn.execute(
        "SELECT action, actor_type, actor_id FROM prediction_audit_log WHERE resource_id = %s"
        " ORDER BY created_at, id",
        (feed,),
    ).fetchall()


def test_enable_closes_an_open_breaker_and_makes_the_feed_due(conn, env, capsys):
    opened = datetime(2026, 11, 22, 15, tzinfo=UTC)
    feed = make_feed(
        conn,
        "predictit",
        {},
        name="broken",
        enabled=False,
        consecutive_failures=5,
        auto_disabled_at=opened,
        breaker_probe_at=opened + timedelta(hours=1),
        breaker_failed_probes=2,
        next_run_at=opened,
    )
    [listed] = [line for line in run(capsys, "list")[1].splitlines() if str(feed) in line]
    assert " probe 16:00 " in listed  # auto-disabled: when its breaker is next tried
    before = datetime.now(UTC)
    code, out, err = run(capsys, "enable", str(feed), "--as", "feeds@example.com", "--json")
    assert (code, err) == (0, "")
    result = json.loads(out)
    assert result["changed"] is True and result["enabled"] is True and result["paused"] is False
    row = feed_row(conn, feed)
    assert (row["enabled"], row["consecutive_failures"], row["auto_disabled_at"]) == (True, 0, None)
    assert (row["breaker_probe_at"], row["breaker_failed_probes"]) == (None, 0)
    assert row["next_run_at"] >= before  # due at once
    assert [f.id for f in load_feeds(conn, due_before=datetime.now(UTC))] == [feed]
    assert _audits(conn, feed) == [("feed.enabled", "user", USER_ID)]
    # Again: already so, nothing written.
    code, out, _ = run(capsys, "enable", str(feed))
    assert code == 0 and out.startswith(f"feed {feed} (broken): already enabled, next poll ")
    assert len(_audits(conn, feed)) == 1


def test_disable_by_hand_is_never_probed_and_says_so(conn, env, capsys):
    feed = make_feed(conn, "predictit", {}, name="manual")
    code, out, _ = run(capsys, "disable", str(feed))
    assert (code, out) == (0, f"feed {feed} (manual): disabled\n")
    row = feed_row(conn, feed)
    assert row["enabled"] is False and row["breaker_probe_at"] is None
    far = datetime.now(UTC) + timedelta(days=30)
    assert load_feeds(conn, due_before=far, probes=True) == []
    assert _audits(conn, feed) == [("feed.disabled", "service", None)]


def test_pause_then_resume(conn, env, capsys):
    later = datetime.now(UTC) + timedelta(hours=3)
    feed = make_feed(conn, "predictit", {}, name="seasonal", next_run_at=later)
    code, out, _ = run(capsys, "pause", str(feed), "--json")
    assert code == 0 and json.loads(out)["paused"] is True
    assert feed_row(conn, feed)["paused_at"] is not None
    [listed] = [line for line in run(capsys, "list")[1].splitlines() if str(feed) in line]
    assert " paused " in listed
    assert load_feeds(conn, due_before=later + timedelta(days=1)) == []  # never due while paused
    code, out, _ = run(capsys, "pause", str(feed))
    assert out == f"feed {feed} (seasonal): already paused\n"
    code, out, _ = run(capsys, "resume", str(feed), "--json")
    resumed = json.loads(out)
    assert code == 0 and resumed["paused"] is False and resumed["changed"] is True
    row = feed_row(conn, feed)
    assert row["paused_at"] is None and row["next_run_at"] < later  # due at once
    assert [a for a, _, _ in _audits(conn, feed)] == ["feed.paused", "feed.resumed"]


def test_resuming_a_disabled_feed_says_it_stays_off(conn, env, capsys):
    feed = make_feed(conn, "predictit", {}, name="off", enabled=False)
    run(capsys, "pause", str(feed))
    code, out, _ = run(capsys, "resume", str(feed))
    assert code == 0
    assert out == f"feed {feed} (off): resumed (still disabled: feeds enable to poll it)\n"


def test_a_user_acts_only_on_their_own_feeds(conn, env, capsys):
    theirs = make_feed(conn, "predictit", {}, name="not yours")
    code, out, err = run(capsys, "disable", str(theirs), "--as", "other@example.com")
    assert (code, out) == (2, "")
    assert err == f"predict-pipeline: error: no feed {theirs} of this user\n"
    assert feed_row(conn, theirs)["enabled"] is True
    assert _audits(conn, theirs) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pause", "not-an-id"], "argument feed_id: not an id: not-an-id"),
        (["resume"], "the following arguments are required: feed_id"),
        (["enable", str(uuid.UUID(int=7)), "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_mistakes_are_one_line_exit_2(env, capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        cli.main(["feeds", *argv])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.count("\n") == 1 and message in err and "--help" in err


def test_unknown_feed_or_user_and_a_disabled_source_are_one_line_errors(
    conn, admin_conn, env, capsys
):
    missing = uuid.UUID(int=42)
    assert run(capsys, "enable", str(missing)) == (
        2,
        "",
        f"predict-pipeline: error: no feed {missing}\n",
    )
    feed = make_feed(conn, "predictit", {}, name="closed", enabled=False)
    code, _, err = run(capsys, "enable", str(feed), "--as", "nobody@example.com")
    assert code == 2
    assert err == (
        "predict-pipeline: error: no user 'nobody@example.com' (give an id or an e-mail address)\n"
    )
    admin_conn.execute(
        "UPDATE prediction_data_sources SET status = 'DISABLED' WHERE source_id = 'predictit'"
    )
    code, _, err = run(capsys, "enable", str(feed))
    assert code == 2
    assert err == "predict-pipeline: error: source predictit is DISABLED: its feeds stay disabled\n"
    assert feed_row(conn, feed)["enabled"] is False


def test_a_deprecated_source_takes_no_new_feeds(admin_conn, env, capsys):
    admin_conn.execute(
        "UPDATE prediction_data_sources SET status = 'DEPRECATED' WHERE source_id = 'predictit'"
    )
    code = cli.main(["feeds", "add", "predictit", "late", "--user-email", "feeds@example.com"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "predict-pipeline: error: feed not created: source predictit is DEPRECATED: it takes no"
        " new feeds\n"
    )


@pytest.mark.parametrize("command", ["enable", "disable", "pause", "resume"])
def test_help_shows_an_example(capsys, command):
    with pytest.raises(SystemExit) as exited:
        cli.main(["feeds", command, "--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert f"example:\n  predict-pipeline feeds {command} " in out and "--as USER" in out


def test_a_paused_feed_or_a_disabled_source_refuses_pushes_and_nothing_lands(
    conn, admin_conn, env, capsys, tmp_path
):
    from predict_pipeline.ingestion.landing import LandingZone
    from predict_pipeline.ingestion.pushed import PushRefused, land_upload
    from predict_pipeline.ingestion.store import load_feed

    landing = LandingZone(str(tmp_path / "landing"))
    body = b"source_event_id,value\nm1,0.4\n"
    feed_id = make_feed(conn, "upload", {}, name="uploads")
    run(capsys, "pause", str(feed_id))
    with pytest.raises(PushRefused) as refused:
        land_upload(conn, landing, load_feed(conn, feed_id), body, "polls.csv")
    assert refused.value.status == 409 and str(refused.value).endswith("is paused (feeds resume)")
    run(capsys, "resume", str(feed_id))
    admin_conn.execute(
        "UPDATE prediction_data_sources SET status = 'DISABLED' WHERE source_id = 'upload'"
    )
    with pytest.raises(PushRefused, match="source upload is DISABLED"):
        land_upload(conn, landing, load_feed(conn, feed_id), body, "polls.csv")
    assert conn.execute("SELECT count(*) FROM prediction_feed_runs").fetchone() == (0,)
    assert not (tmp_path / "landing").exists() or not any((tmp_path / "landing").rglob("*.gz"))
