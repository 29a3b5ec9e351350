"""Every command, given a bad argument or a misconfigured environment, says one line of what to
do, exits 2 and records nothing: no traceback, no Dagster run, no row.

The tables below must name every subcommand of the parser (the first test fails when a command
is added without its cases). Commands run in process (`main(argv)`), with the output captured
at the file descriptors, so a traceback printed by any library would be seen; the two cases the
issue reported from a shell also run as real processes.
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from predict_pipeline.cli import build_parser, main
from predict_pipeline.db.connection import connect
from predict_pipeline.secrets import decode_key, encrypt_json, generate_key

ZERO = "00000000-0000-0000-0000-000000000000"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"
KEY_TEXT = generate_key()
OTHER_KEY_TEXT = generate_key()

ADD = ["campaigns", "results", "add", ZERO, "--start", "2025-03-01", "--end", "2025-03-07"]
RULE = ["rules", "add", "x", "--as", "a@b.c", "--scope", "all", "--trigger", "EVENT_RESOLVED"]
TEST_RULE = ["rules", "test", ZERO, "--event", ZERO, "--as", "a@b.c"]
PUSH = ["campaigns", "results", "push", "--format", "json", "--file", "{file}"]

# Arguments a command refuses whatever the database holds; {file}, {notjson}, {missing} and
# {credentials} (a well-formed webhook secret) are files the test makes.
BAD_ARGUMENTS: dict[tuple[str, ...], list[list[str]]] = {
    ("db", "upgrade"): [["db", "upgrade", "--all"]],
    ("db", "status"): [["db", "status", "extra"]],
    ("db", "stop-embedded"): [["db", "stop-embedded", "now"]],
    ("run",): [["run", "--hours", "3"]],
    ("feeds", "parse"): [
        ["feeds", "parse", "nosuch", "{file}"],
        ["feeds", "parse", "polymarket", "{missing}"],
        ["feeds", "parse", "polymarket", "{notjson}"],
        ["feeds", "parse", "polymarket", "{file}", "--fetched-at", "yesterday"],
        ["feeds", "parse", "polymarket", "{file}", "--fetched-at", "2026-01-01T00:00"],
    ],
    ("feeds", "upload"): [
        ["feeds", "upload", "feed-1", "{file}"],
        ["feeds", "upload", ZERO, "{file}"],
        ["feeds", "upload", ZERO, "{missing}"],
    ],
    ("feeds", "add"): [
        ["feeds", "add", "polymarket", "x", "--user-email", "nobody@example.com"],
        ["feeds", "add", "polymarket", "x", "--user-email", "a@b.c", "--config", "{oops"],
        ["feeds", "add", "nosuch", "x", "--user-email", "a@b.c"],
        ["feeds", "add", "polymarket", "x", "--user-email", "a@b.c", "--poll-minutes", "often"],
        ["feeds", "add", "polymarket", "x", "--user-email", "a@b.c", "--config", "[1]"],
    ],
    ("feeds", "list"): [["feeds", "list", "--all"]],
    **{
        ("feeds", change): [
            ["feeds", change, "feed-1"],
            ["feeds", change, ZERO],
            ["feeds", change, ZERO, "--as", "nobody@example.com"],
        ]
        for change in ("enable", "disable", "pause", "resume")
    },
    ("webhooks", "serve"): [["webhooks", "serve", "--port", "http"]],
    ("signals", "review"): [["signals", "review", "--limit", "many"]],
    ("signals", "resolve"): [
        ["signals", "resolve", ZERO, "--discard"],
        ["signals", "resolve", "item-1", "--discard"],
        ["signals", "resolve", ZERO],
    ],
    ("events", "resolve"): [
        ["events", "resolve", ZERO, "--outcome", "YES"],
        ["events", "resolve", ZERO, "--outcome", "MAYBE"],
        ["events", "resolve", "event-1", "--outcome", "YES"],
    ],
    ("disputes", "open"): [["disputes", "open", ZERO, "--by", ZERO, "--reason", "wrong"]],
    ("disputes", "review"): [["disputes", "review", ZERO, "--by", ZERO]],
    ("disputes", "close"): [
        ["disputes", "close", ZERO, "--decision", "upheld", "--by", ZERO, "--notes", "ok"],
        ["disputes", "close", ZERO, "--decision", "maybe", "--by", ZERO, "--notes", "ok"],
    ],
    ("flags", "review"): [["flags", "review", "--limit", "many"]],
    ("flags", "resolve"): [["flags", "resolve", ZERO, "--notes", "checked"]],
    ("retention", "run"): [["retention", "run", "--force"]],
    ("backfill",): [
        ["backfill", "feed-1", "--start", "2025-01-01", "--end", "2025-01-02"],
        ["backfill", ZERO, "--start", "2025-01-01", "--end", "2025-01-02"],
        ["backfill", ZERO, "--start", "the first", "--end", "2025-01-02"],
        ["backfill", ZERO, "--start", "2025-01-05", "--end", "2025-01-02"],
        ["backfill", ZERO, "--start", "2025-01-01"],
    ],
    ("dev",): [["dev", "--port", "http"]],
    ("campaigns", "results", "add"): [
        [*ADD, "--user-email", "nobody@example.com"],
        [*ADD, "--user-email", "a@b.c"],  # no campaign ZERO of a@b.c's: nothing recorded
        [
            "campaigns",
            "results",
            "add",
            "Spring",
            "--start",
            "2025-03-01",
            "--end",
            "2025-03-07",
            "--user-email",
            "a@b.c",
        ],
        [*ADD[:4], "--start", "yesterday", *ADD[6:], "--user-email", "a@b.c"],
        [*ADD, "--impressions", "-5", "--user-email", "a@b.c"],
        [*ADD, "--impressions", "10", "--clicks", "20", "--user-email", "a@b.c"],
        [*ADD, "--spend", "lots", "--user-email", "a@b.c"],
        [*ADD[:4], "--start", "2025-03-01T00:00", *ADD[6:], "--user-email", "a@b.c"],
    ],
    ("campaigns", "results", "upload"): [
        ["campaigns", "results", "upload", "{file}", "--user-email", "nobody@example.com"],
        ["campaigns", "results", "upload", "{missing}", "--user-email", "a@b.c"],
        ["campaigns", "results", "upload", "{notjson}", "--user-email", "a@b.c"],
        [
            "campaigns",
            "results",
            "upload",
            "{file}",
            "--mapping",
            "{notjson}",
            "--user-email",
            "a@b.c",
        ],
    ],
    ("campaigns", "results", "push"): [
        ["campaigns", "results", "push", "--format", "xml", "--user-email", "a@b.c"],
        [*PUSH, "--user-email", "nobody@example.com"],
        [*PUSH[:-1], "{notjson}", "--user-email", "a@b.c"],
        [*PUSH, "--mapping", "{file}", "--user-email", "a@b.c"],
    ],
    ("campaigns", "show"): [
        ["campaigns", "show", "campaign-1", "--user-email", "a@b.c"],
        ["campaigns", "show", ZERO, "--user-email", "a@b.c"],
        ["campaigns", "show", ZERO],
    ],
    ("rules", "add"): [
        [*RULE[:-1], "PROBABILITY_CROSSES_ABOVE", "--params", '{"threshold": 2}'],
        [*RULE[:-1], "NO_SUCH_TRIGGER"],
        [*RULE, "--params", "{oops"],
        [*RULE, "--actions", '[{"type": "fax"}]'],
        [*RULE, "--active-hours", '{"timezone": "Mars/Olympus", "start": "08:00", "end": "9"}'],
        [*RULE[:6], "everything", *RULE[7:]],
        [*RULE[:6], f"event:{ZERO}", *RULE[7:]],
        [*RULE[:6], "category:astrology", *RULE[7:]],
        [*RULE[:3], "--as", "nobody@example.com", *RULE[5:]],
        [*RULE, "--org", "nowhere"],
        [*RULE, "--expires-at", "soon"],
        RULE[:3] + RULE[5:],
    ],
    ("rules", "list"): [["rules", "list", "--as", "nobody@example.com"]],
    ("rules", "show"): [
        ["rules", "show", ZERO, "--as", "a@b.c"],
        ["rules", "show", "rule-1", "--as", "a@b.c"],
        ["rules", "show", ZERO],
    ],
    ("rules", "enable"): [["rules", "enable", ZERO, "--as", "a@b.c"]],
    ("rules", "disable"): [["rules", "disable", ZERO, "--as", "nobody@example.com"]],
    ("rules", "test"): [
        TEST_RULE,
        [*TEST_RULE, "--at", "yesterday"],
        [*TEST_RULE, "--at", "2026-03-01T12:00"],
        TEST_RULE[:3] + TEST_RULE[5:],
    ],
    ("connections", "add"): [
        ["connections", "add", "slack", "--credentials-file", "{credentials}", "--as", "a@b.c"],
        ["connections", "add", "webhook", "--credentials-file", "{file}", "--as", "a@b.c"],
        ["connections", "add", "webhook", "--credentials-file", "{notjson}", "--as", "a@b.c"],
        ["connections", "add", "webhook", "--credentials-file", "{missing}", "--as", "a@b.c"],
        ["connections", "add", "fax", "--credentials-file", "{credentials}", "--as", "a@b.c"],
        [
            *("connections", "add", "webhook", "--credentials-file", "{credentials}"),
            *("--as", "nobody@example.com"),
        ],
    ],
    ("connections", "list"): [
        ["connections", "list", "--as", "nobody@example.com"],
        ["connections", "list"],
    ],
    ("connections", "revoke"): [
        ["connections", "revoke", "fax", "--as", "a@b.c"],
        ["connections", "revoke", ZERO, "--as", "a@b.c"],
        ["connections", "revoke", "email", "--as", "a@b.c"],
    ],
    ("events", "add"): [
        ["events", "add", "Q", "--as", "a@b.c", "--category", "astrology"],
        ["events", "add", " ", "--as", "a@b.c"],
        ["events", "add", "Q", "--as", "nobody@example.com"],
        ["events", "add", "Q", "--as", "a@b.c", "--resolution-date", "June"],
        ["events", "add", "Q", "--as", "a@b.c", "--private", "--org", "x"],
        ["events", "add", "Q"],
    ],
    ("events", "list"): [["events", "list", "--limit", "0"], ["events", "list", "--as", "x"]],
    ("calibration", "show"): [
        ["calibration", "show", "--window", "1D"],
        ["calibration", "show", "--category", "astrology"],
    ],
    ("users", "add"): [
        ["users", "add", "a@b.c"],
        ["users", "add", "A@B.C"],
        ["users", "add", "not-an-address"],
        ["users", "add", "new@example.com", "--id", "user-1"],
    ],
}

# A well-formed call of each command that needs the database (or the key): the environment
# cases below make each of them fail before it does anything.
DATABASE_CALLS: dict[tuple[str, ...], list[str]] = {
    ("db", "upgrade"): ["db", "upgrade"],
    ("db", "status"): ["db", "status"],
    ("run",): ["run"],
    ("feeds", "upload"): ["feeds", "upload", ZERO, "{file}"],
    ("feeds", "add"): ["feeds", "add", "polymarket", "x", "--user-email", "a@b.c"],
    ("feeds", "list"): ["feeds", "list"],
    **{
        ("feeds", change): ["feeds", change, ZERO]
        for change in ("enable", "disable", "pause", "resume")
    },
    ("webhooks", "serve"): ["webhooks", "serve", "--port", "0"],
    ("signals", "review"): ["signals", "review"],
    ("signals", "resolve"): ["signals", "resolve", ZERO, "--discard"],
    ("events", "resolve"): ["events", "resolve", ZERO, "--outcome", "YES"],
    ("disputes", "open"): ["disputes", "open", ZERO, "--by", ZERO, "--reason", "wrong"],
    ("disputes", "review"): ["disputes", "review", ZERO, "--by", ZERO],
    ("disputes", "close"): [
        *("disputes", "close", ZERO, "--decision", "upheld", "--by", ZERO, "--notes", "ok")
    ],
    ("flags", "review"): ["flags", "review"],
    ("flags", "resolve"): ["flags", "resolve", ZERO, "--notes", "checked"],
    ("retention", "run"): ["retention", "run", "--dry-run"],
    ("backfill",): ["backfill", ZERO, "--start", "2025-01-01", "--end", "2025-01-02"],
    ("dev",): ["dev", "--port", "0"],
    ("campaigns", "results", "add"): [*ADD, "--impressions", "100", "--user-email", "a@b.c"],
    ("campaigns", "results", "upload"): [
        *("campaigns", "results", "upload", "{file}", "--user-email", "a@b.c")
    ],
    ("campaigns", "results", "push"): [*PUSH, "--user-email", "a@b.c"],
    ("campaigns", "show"): ["campaigns", "show", ZERO, "--user-email", "a@b.c"],
    ("rules", "add"): RULE,
    ("rules", "list"): ["rules", "list"],
    ("rules", "show"): ["rules", "show", ZERO, "--as", "a@b.c"],
    ("rules", "enable"): ["rules", "enable", ZERO, "--as", "a@b.c"],
    ("rules", "disable"): ["rules", "disable", ZERO, "--as", "a@b.c"],
    ("rules", "test"): TEST_RULE,
    ("connections", "add"): [
        *("connections", "add", "webhook", "--credentials-file", "{credentials}"),
        *("--as", "a@b.c"),
    ],
    ("connections", "list"): ["connections", "list", "--as", "a@b.c"],
    ("connections", "revoke"): ["connections", "revoke", "slack", "--as", "a@b.c"],
    ("events", "add"): ["events", "add", "Q", "--as", "a@b.c"],
    ("events", "list"): ["events", "list"],
    ("calibration", "show"): ["calibration", "show"],
    ("users", "add"): ["users", "add", "new@example.com"],
}
# Commands that work without any database: a file parser, and stopping a server not running.
NO_DATABASE = {("feeds", "parse"), ("db", "stop-embedded")}
# Commands that decrypt or encrypt secrets, so the key is checked before they start.
KEY_CALLS = {
    ("run",),
    ("dev",),
    ("backfill",),
    ("webhooks", "serve"),
    ("connections", "add"),
}

BAD_ENVIRONMENTS = {
    "unreachable database": {"PREDICT_DATABASE_URL": UNREACHABLE},
    "malformed database url": {"PREDICT_DATABASE_URL": "mysql://root@localhost/predict"},
    "bad disable-after setting": {"PREDICT_FEED_DISABLE_AFTER_FAILURES": "five"},
    "bad http mode": {"PREDICT_HTTP_MODE": "offline"},
    "bad executor": {"PREDICT_EXECUTOR": "threads"},
    "bad partitions start": {"PREDICT_PARTITIONS_START": "2016-13-01"},
}
KEY_ENVIRONMENTS = {
    "missing key": {"PREDICT_ENCRYPTION_KEY": None},
    "malformed key": {"PREDICT_ENCRYPTION_KEY": "not-a-key"},
    "short key": {"PREDICT_ENCRYPTION_KEY": base64.b64encode(b"k" * 16).decode()},
    "wrong key": {"PREDICT_ENCRYPTION_KEY": OTHER_KEY_TEXT},
}


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple]:
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        return [path]
    return [
        leaf
        for name, child in subparsers[0].choices.items()
        for leaf in leaf_commands(child, (*path, name))
    ]


def test_every_command_has_its_bad_input_cases():
    commands = set(leaf_commands(build_parser()))
    assert commands == set(BAD_ARGUMENTS)
    assert commands == set(DATABASE_CALLS) | NO_DATABASE


@pytest.fixture(scope="module")
def db_url(module_db_url) -> str:
    """One configured database for the module, holding one secret encrypted with the right
    key; each test proves its call changed nothing in it."""
    with connect(module_db_url, role=None, autocommit=True) as conn:
        user = conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, 'a@b.c') RETURNING id",
            (uuid.uuid4(),),
        ).fetchone()[0]
        connection_id = uuid.uuid4()
        envelope = encrypt_json(
            {"webhook_url": "https://hooks.example/x"},
            key=decode_key(KEY_TEXT),
            aad=f"prediction_action_connections:{connection_id}",
        )
        conn.execute(
            "INSERT INTO prediction_action_connections (id, user_id, platform, credentials)"
            " VALUES (%s, %s, 'slack', %s)",
            (connection_id, user, Jsonb(envelope)),
        )
    return module_db_url


@pytest.fixture
def environment(db_url, tmp_path) -> Iterator[dict[str, str]]:
    """The process environment names the database and the right key; it is put back
    afterwards (commands export what their children need)."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("PREDICT_")]:
        del os.environ[name]
    os.environ.update(
        PREDICT_DATABASE_URL=db_url,
        PREDICT_ENCRYPTION_KEY=KEY_TEXT,
        PREDICT_STATE_DIR=str(tmp_path / "state"),
        PREDICT_LANDING_ZONE=str(tmp_path / "landing"),
    )
    (tmp_path / "file.json").write_text('{"markets": []}')
    (tmp_path / "notjson.json").write_text("{not json")
    (tmp_path / "credentials.json").write_text('{"secret": "a-webhook-signing-secret"}')
    try:
        yield {
            "{file}": str(tmp_path / "file.json"),
            "{credentials}": str(tmp_path / "credentials.json"),
            "{notjson}": str(tmp_path / "notjson.json"),
            "{missing}": str(tmp_path / "missing.json"),
        }
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _fingerprint(db_url: str) -> dict[str, int]:
    """Rows per table of every schema the commands write (Dagster's runs and events too)."""
    with connect(db_url, role=None, autocommit=True) as conn:
        tables = conn.execute(
            """SELECT n.nspname, c.relname FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"""
        ).fetchall()
        counts = conn.execute(
            sql.SQL(" UNION ALL ").join(
                sql.SQL("SELECT {}, count(*) FROM {}").format(
                    sql.Literal(f"{schema}.{table}"), sql.Identifier(schema, table)
                )
                for schema, table in tables
            )
        ).fetchall()
    return dict(counts)


def _call(argv: list[str], files: dict[str, str], capfd) -> tuple[int, str, str]:
    argv = [files.get(a, a) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors end this way
        code = int(exc.code or 0)
    out, err = capfd.readouterr()
    return code, out, err


def _assert_one_line_refusal(code: int, out: str, err: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("predict-pipeline") and ": error: " in lines[0]
    assert out.strip() in ("",), out


@pytest.mark.parametrize(
    "argv",
    [argv for cases in BAD_ARGUMENTS.values() for argv in cases],
    ids=lambda argv: " ".join(argv),
)
def test_bad_argument_is_one_line_and_records_nothing(argv, environment, db_url, capfd):
    before = _fingerprint(db_url)
    _assert_one_line_refusal(*_call(argv, environment, capfd))
    assert _fingerprint(db_url) == before


@pytest.mark.parametrize("case", sorted(BAD_ENVIRONMENTS))
@pytest.mark.parametrize("command", sorted(DATABASE_CALLS), ids=lambda command: " ".join(command))
def test_bad_environment_is_one_line_and_records_nothing(command, case, environment, db_url, capfd):
    before = _fingerprint(db_url)
    for name, value in BAD_ENVIRONMENTS[case].items():
        os.environ[name] = value
    _assert_one_line_refusal(*_call(DATABASE_CALLS[command], environment, capfd))
    assert _fingerprint(db_url) == before


@pytest.mark.parametrize("case", sorted(KEY_ENVIRONMENTS))
@pytest.mark.parametrize("command", sorted(KEY_CALLS), ids=lambda command: " ".join(command))
def test_missing_or_wrong_key_is_one_line_and_records_nothing(
    command, case, environment, db_url, capfd
):
    before = _fingerprint(db_url)
    for name, value in KEY_ENVIRONMENTS[case].items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    code, out, err = _call(DATABASE_CALLS[command], environment, capfd)
    _assert_one_line_refusal(code, out, err)
    assert "PREDICT_ENCRYPTION_KEY" in err
    assert _fingerprint(db_url) == before


def test_the_right_key_passes_the_check(environment, db_url):
    from predict_pipeline.db.bootstrap import bootstrap

    assert bootstrap(require_key=True).app_url == db_url


def _shell(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "predict_pipeline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )


def test_run_without_a_key_and_backfill_of_an_unknown_feed_from_a_shell(db_url, tmp_path):
    """The two reports: `make run` with a database and no key, `backfill` of no feed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREDICT_")}
    env.update(PREDICT_DATABASE_URL=db_url, PREDICT_STATE_DIR=str(tmp_path))
    before = _fingerprint(db_url)
    run = _shell(["run"], env)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.splitlines() == [
        "predict-pipeline: error: PREDICT_ENCRYPTION_KEY is not set; set it to the output of "
        "predict_pipeline.secrets.generate_key()"
    ]
    env["PREDICT_ENCRYPTION_KEY"] = KEY_TEXT
    backfill = _shell(
        ["backfill", str(uuid.uuid4()), "--start", "2025-01-01", "--end", "2025-01-02"], env
    )
    assert backfill.returncode == 2 and backfill.stdout == ""
    [line] = backfill.stderr.splitlines()
    assert line.startswith("predict-pipeline: error: backfill refused: no feed ")
    assert _fingerprint(db_url) == before  # no Dagster run, no row
