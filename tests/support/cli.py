"""Running `predict-pipeline` in process against a test database, as the configuration
commands' tests do: the environment names the database and a key, and is put back after."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from predict_pipeline.cli import main
from predict_pipeline.secrets import generate_key


@contextmanager
def cli_environment(db_url: str, state_dir: str, key: str | None = None) -> Iterator[str]:
    """PREDICT_* set for `db_url` with an encryption key (yielded); restored afterwards."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.startswith("PREDICT_")]:
        del os.environ[name]
    key = key or generate_key()
    os.environ.update(
        PREDICT_DATABASE_URL=db_url, PREDICT_STATE_DIR=state_dir, PREDICT_ENCRYPTION_KEY=key
    )
    try:
        yield key
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of one command."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> Any:
    """The JSON a successful command printed with --json."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    assert err == ""
    return json.loads(out)


def refused(capsys, *argv: str) -> str:
    """The one line a refused command printed (exit 2, nothing on stdout)."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err
    [line] = err.strip().splitlines()
    return line


def count(conn: psycopg.Connection, query: str, *params: Any) -> int:
    return conn.execute(query, params).fetchone()[0]


def add_user(capsys, email: str) -> uuid.UUID:
    return uuid.UUID(run_json(capsys, "users", "add", email)["user_id"])
