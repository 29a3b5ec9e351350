"""Settings read from the environment when they are needed (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]

DATABASE_URL_VAR = "PREDICT_DATABASE_URL"
DAGSTER_DATABASE_URL_VAR = "PREDICT_DAGSTER_DATABASE_URL"
STATE_DIR_VAR = "PREDICT_STATE_DIR"


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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        state = env.get(STATE_DIR_VAR)
        return cls(
            database_url=env.get(DATABASE_URL_VAR) or None,
            dagster_database_url=env.get(DAGSTER_DATABASE_URL_VAR) or None,
            state_dir=Path(state) if state else default_state_dir(),
        )
