"""The README stays true: its lists of groups, checks, automations and jobs are the
Definitions', its "Adding a feed" example works on the demo database, and its links stay
inside the repository."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.db.connection import connect
from predict_pipeline.definitions import defs
from predict_pipeline.demo import DEMO_USER_EMAIL, DEMO_USER_ID, seed_demo
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.secrets import decode_key, decrypt_json, generate_key

README = PROJECT_ROOT / "README.md"
IDENTIFIER = re.compile(r"`([a-z_][a-z0-9_]*)`")


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def _bullet(label: str) -> str:
    """The text of the README bullet `- **label**: ...`, continuation lines included."""
    match = re.search(
        rf"^- \*\*{re.escape(label)}\*\*:(.*(?:\n  .*)*)", _readme(), flags=re.MULTILINE
    )
    assert match, f"README has no bullet **{label}**"
    return match.group(1)


def _listed(label: str) -> list[str]:
    names = IDENTIFIER.findall(_bullet(label))
    assert len(names) == len(set(names)), f"**{label}** names one twice: {names}"
    return names


def test_listed_groups_are_the_definitions_asset_groups():
    groups = {spec.group_name for spec in defs.resolve_all_asset_specs()}
    assert set(_listed("Groups")) == groups


def test_listed_asset_checks_are_the_definitions_checks():
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert set(_listed("Asset checks")) == checks


def test_listed_automations_are_the_definitions_sensors_and_schedules():
    repository = defs.get_repository_def()
    automations = {s.name for s in repository.sensor_defs} | {
        s.name for s in repository.schedule_defs
    }
    assert set(_listed("Automation")) == automations


def test_listed_jobs_are_the_definitions_jobs():
    # Dagster's implicit jobs (`__ASSET_JOB`) are dunder-named and not shown as jobs.
    jobs = {job.name for job in defs.resolve_all_job_defs() if not job.name.startswith("__")}
    assert set(_listed("Jobs")) == jobs


def _shell_block(section: str) -> list[list[str]]:
    """The commands of the first ```sh block under `## section`, split as the shell would."""
    text = _readme().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", text, flags=re.DOTALL)
    assert block, f"no sh block under ## {section}"
    lines = block.group(1).replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True) for line in lines if line.strip()]


def test_every_user_email_in_the_readme_is_the_demo_users():
    emails = re.findall(r"--user-email\s+([^\s`]+@[^\s`]+)", _readme())
    assert emails and set(emails) == {DEMO_USER_EMAIL}


def test_adding_a_feed_example_creates_the_feed_in_the_demo_database(db_url, tmp_path):
    key = generate_key()
    with connect(db_url) as conn, conn.transaction():
        seed_demo(conn, encryption_key=decode_key(key))
    add, listing = _shell_block("Adding a feed")
    assert add[:3] == [".venv/bin/predict-pipeline", "feeds", "add"], add
    assert listing == [".venv/bin/predict-pipeline", "feeds", "list"], listing
    options = dict(zip(add[5::2], add[6::2], strict=True))
    # The reader's credentials file, as the README describes it.
    (tmp_path / options["--credentials-file"]).write_text('{"token": "readme-token"}')
    cli = str(Path(sys.executable).parent / "predict-pipeline")
    env = {**os.environ, "PREDICT_DATABASE_URL": db_url, "PREDICT_ENCRYPTION_KEY": key}

    def run(argv: list[str]) -> str:
        done = subprocess.run(
            [cli, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    created = re.fullmatch(r"feed (\S+) created \(metaculus, every 15 minutes\)\n", run(add))
    assert created, "feeds add did not print the new feed's id"
    feed_id = uuid.UUID(created.group(1))
    with connect(db_url) as conn:
        row = conn.execute(
            "SELECT s.source_id, f.user_id, f.name, f.config, f.poll_interval_minutes,"
            " f.credentials_encrypted"
            " FROM prediction_data_feeds f JOIN prediction_data_sources s ON s.id = f.source_id"
            " WHERE f.id = %s",
            (feed_id,),
        ).fetchone()
    assert row is not None
    source, owner, name, config, poll_minutes, credentials = row
    assert (source, owner, name, poll_minutes) == (
        add[3],
        DEMO_USER_ID,
        add[4],
        int(options["--poll-minutes"]),
    )
    assert config == json.loads(options["--config"])
    stored = decrypt_json(credentials, key=decode_key(key), aad=credentials_aad(feed_id))
    assert stored == {"token": "readme-token"}
    assert str(feed_id) in run(listing)


def _links(prose: str) -> list[str]:
    """Markdown link and image targets, and code spans naming a path that starts with ./ or
    ../ (a reference the reader follows like a link)."""
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose)
    targets += re.findall(r"`(\.\.?/[^`\s]*)`", prose)
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # not a URL


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(markdown: str, root: Path) -> list[str]:
    """Each relative link of `markdown` (outside code blocks) that leaves `root`, names no
    file there, or names no heading, with what is wrong."""
    prose = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    anchors = {_anchor(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.MULTILINE)}
    broken = []
    for link in _links(prose):
        path, _, fragment = link.partition("#")
        if not path:
            if fragment not in anchors:
                broken.append(f"{link}: no such heading")
            continue
        target = (root / path).resolve()
        if not target.is_relative_to(root):
            broken.append(f"{link}: outside the repository")
        elif not target.exists():
            broken.append(f"{link}: no such file")
    return broken


def test_every_relative_link_points_to_a_file_in_the_repository():
    assert _links(_readme()), "README has no relative link to check"
    assert broken_links(_readme(), PROJECT_ROOT) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("see `../shared/NOTES.md` on it", "../shared/NOTES.md: outside the repository"),
        ("[notes](../shared/NOTES.md)", "../shared/NOTES.md: outside the repository"),
        ("![graph](docs/missing.png)", "docs/missing.png: no such file"),
        ("[Partitions](#no-such-section)", "#no-such-section: no such heading"),
        ("[Start](#predict_pipeline) and ![graph](docs/asset-graph.png)", None),
    ],
)
def test_link_check_finds_links_that_leave_the_repository_or_miss(text, problem):
    """The check above, on READMEs with and without the faults it must catch."""
    found = broken_links(f"# predict_pipeline\n\n{text}\n", PROJECT_ROOT)
    assert found == ([problem] if problem else [])


def test_writing_a_rule_example_creates_the_connection_and_rule_in_the_demo_database(
    db_url, tmp_path
):
    """The README's rule example, command by command, on the demo database: the connection
    lands encrypted and the rule lands with the block's trigger, params and actions."""
    from predict_pipeline.rules.execute import connection_aad

    key = generate_key()
    with connect(db_url) as conn, conn.transaction():
        seed_demo(conn, encryption_key=decode_key(key))
    echo, connection, add, listing = _shell_block("Writing a rule")
    assert echo[0] == "echo" and echo[2] == ">", echo
    (tmp_path / echo[3]).write_text(echo[1])
    cli = str(Path(sys.executable).parent / "predict-pipeline")
    env = {**os.environ, "PREDICT_DATABASE_URL": db_url, "PREDICT_ENCRYPTION_KEY": key}

    def run(argv: list[str]) -> str:
        assert argv[0] == ".venv/bin/predict-pipeline", argv
        done = subprocess.run(
            [cli, *argv[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    connection_id = uuid.UUID(run(connection).split()[2])
    created = re.match(r"rule (\S+) created", run(add))
    assert created, "rules add did not print the new rule's id"
    rule_id = uuid.UUID(created.group(1))
    options = dict(zip(add[4::2], add[5::2], strict=True))
    with connect(db_url) as conn:
        envelope = conn.execute(
            "SELECT credentials FROM prediction_action_connections WHERE id = %s",
            (connection_id,),
        ).fetchone()[0]
        rule = conn.execute(
            "SELECT user_id, scope_type, scope_tag, trigger_type, trigger_params, actions,"
            " active_hours FROM prediction_rules WHERE id = %s",
            (rule_id,),
        ).fetchone()
    plain = decrypt_json(envelope, key=decode_key(key), aad=connection_aad(connection_id))
    assert plain == json.loads(echo[1])
    assert rule == (
        DEMO_USER_ID,
        "tag",
        options["--scope"].split(":", 1)[1],
        options["--trigger"],
        json.loads(options["--params"]),
        json.loads(options["--actions"]),
        json.loads(options["--active-hours"]),
    )
    assert str(rule_id) in run(listing)
