"""Settings read from the environment when they are needed (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from predict_pipeline.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DATABASE_URL_VAR = "PREDICT_DATABASE_URL"
DAGSTER_DATABASE_URL_VAR = "PREDICT_DAGSTER_DATABASE_URL"
STATE_DIR_VAR = "PREDICT_STATE_DIR"
LANDING_ZONE_VAR = "PREDICT_LANDING_ZONE"
HTTP_MODE_VAR = "PREDICT_HTTP_MODE"
REPLAY_DIR_VAR = "PREDICT_REPLAY_DIR"
ALLOW_PRIVATE_HOSTS_VAR = "PREDICT_ALLOW_PRIVATE_HOSTS"
DISABLE_AFTER_FAILURES_VAR = "PREDICT_FEED_DISABLE_AFTER_FAILURES"
ARCHIVE_URL_VAR = "PREDICT_ARCHIVE_URL"
EXECUTOR_VAR = "PREDICT_EXECUTOR"  # multiprocess | celery (predict_pipeline/defs/executors.py)
CELERY_BROKER_VAR = "PREDICT_CELERY_BROKER_URL"
CELERY_BACKEND_VAR = "PREDICT_CELERY_BACKEND_URL"
CELERY_QUEUE_VAR = "PREDICT_CELERY_QUEUE"
PARTITIONS_START_VAR = "PREDICT_PARTITIONS_START"
# PredictIt opened in 2014 (Polymarket in 2020, Kalshi 2021): history from then fits the axis.
DEFAULT_PARTITIONS_START = date(2014, 1, 1)


def default_state_dir() -> Path:
    """Local state (embedded database, landing zone) lives under the project, git-ignored."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return PROJECT_ROOT / "var"
    return Path.cwd() / "var"


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None
    dagster_database_url: str | None
    state_dir: Path
    landing_zone: str  # local directory or fsspec URL
    http_mode: str = "live"  # live | replay
    replay_dir: str | None = None
    allow_private_hosts: tuple[str, ...] = ()
    disable_after_failures: int = 5
    archive_url: str = ""  # cold storage of the audit log: local directory or fsspec URL
    executor: str = "multiprocess"
    celery_broker_url: str | None = None  # None: dagster-celery's default (local RabbitMQ)
    celery_backend_url: str | None = None  # None: dagster-celery's default (rpc://)
    celery_queue: str | None = None  # None: dagster-celery's queue, "dagster"
    partitions_start: date = DEFAULT_PARTITIONS_START  # the first day of the time axis

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state = env.get(STATE_DIR_VAR)
        state_dir = Path(state) if state else default_state_dir()
        hosts = env.get(ALLOW_PRIVATE_HOSTS_VAR, "")
        return cls(
            database_url=env.get(DATABASE_URL_VAR) or None,
            dagster_database_url=env.get(DAGSTER_DATABASE_URL_VAR) or None,
            state_dir=state_dir,
            landing_zone=env.get(LANDING_ZONE_VAR) or str(state_dir / "landing"),
            http_mode=_choice(env, HTTP_MODE_VAR, ("live", "replay"), "live"),
            replay_dir=env.get(REPLAY_DIR_VAR) or None,
            allow_private_hosts=tuple(h.strip() for h in hosts.split(",") if h.strip()),
            disable_after_failures=_positive_int(env, DISABLE_AFTER_FAILURES_VAR, 5),
            archive_url=env.get(ARCHIVE_URL_VAR) or str(state_dir / "archive"),
            executor=_choice(env, EXECUTOR_VAR, ("multiprocess", "celery"), "multiprocess"),
            celery_broker_url=env.get(CELERY_BROKER_VAR) or None,
            celery_backend_url=env.get(CELERY_BACKEND_VAR) or None,
            celery_queue=env.get(CELERY_QUEUE_VAR) or None,
            partitions_start=partitions_start(env),
        )


def partitions_start(env: Mapping[str, str] | None = None) -> date:
    """The first UTC day of the pipeline's time axis (PREDICT_PARTITIONS_START, ISO date)."""
    env = os.environ if env is None else env
    text = (env.get(PARTITIONS_START_VAR) or "").strip()
    if not text:
        return DEFAULT_PARTITIONS_START
    try:
        value = date.fromisoformat(text)
    except ValueError:
        value = None
    # Dagster's partitions and the validation's accepted range both begin after 1900.
    if value is None or not date(1970, 1, 1) <= value <= date(2200, 1, 1):
        raise ConfigError(
            f"{PARTITIONS_START_VAR}={text!r} is not an ISO date (YYYY-MM-DD) from 1970 on:"
            " fix, or unset for 2014-01-01"
        )
    return value


def _choice(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = env.get(name) or default
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}: set one, or unset")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={text!r} is not a whole number of at least 1: fix, or unset")
    return value
