"""Where a run's steps execute: local processes (default) or Dagster's Celery executor.

The choice is configuration, never code: the run's `execution.config.engine`, else
PREDICT_EXECUTOR (`multiprocess` | `celery`), read when a run starts (not when definitions
load), so one code location serves a laptop and a Celery cluster alike.

Celery settings (each overridable under `execution.config.celery` in the run config):

- PREDICT_CELERY_BROKER_URL: the broker workers listen on, e.g. `redis://127.0.0.1:6379/0`
  or `pyamqp://guest:guest@127.0.0.1:5672//` (default: dagster-celery's, RabbitMQ on
  localhost).
- PREDICT_CELERY_BACKEND_URL: where workers put step results, e.g. `redis://127.0.0.1:6379/0`
  (default `rpc://`, which needs an AMQP broker).
- PREDICT_CELERY_QUEUE: the queue steps are sent to (default `dagster`).

Workers: `dagster-celery worker start -A dagster_celery.app -y worker.yaml -q QUEUE`, where
worker.yaml is `celery_worker_config()` as YAML (the same broker, backend and queue), with
this project installed and the run's PREDICT_* environment (database, landing zone,
encryption key). A step loads the run's Dagster instance from the reference the run sends,
so its events and outputs land in the same Postgres-backed instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._config import process_config
from dagster_celery import celery_executor

from predict_pipeline.config import EXECUTOR_VAR, Settings
from predict_pipeline.errors import ConfigError

ENGINES = ("multiprocess", "celery")


def celery_settings(settings: Settings | None = None) -> dict[str, Any]:
    """The Celery executor's config from the environment (unset keys keep dagster-celery's)."""
    settings = settings or Settings.from_env()
    config: dict[str, Any] = {}
    if settings.celery_broker_url:
        config["broker"] = settings.celery_broker_url
    if settings.celery_backend_url:
        config["backend"] = settings.celery_backend_url
    if settings.celery_queue:
        config["config_source"] = {"task_default_queue": settings.celery_queue}
    return config


def celery_worker_config(settings: Settings | None = None) -> dict[str, Any]:
    """The document `dagster-celery worker start -y` reads, so workers match the runs."""
    return {"execution": {"config": celery_settings(settings)}}


def _engine(config: Mapping[str, Any]) -> str:
    try:
        engine = config.get("engine") or Settings.from_env().executor
    except ConfigError as exc:  # the environment's engine is refused by Settings, named
        raise dg.DagsterInvalidConfigError(str(exc), [], config) from None
    if engine not in ENGINES:
        raise dg.DagsterInvalidConfigError(
            f"{EXECUTOR_VAR} (or execution.config.engine) must be one of {', '.join(ENGINES)},"
            f" not {engine!r}",
            [],
            config,
        )
    return engine


# Steps fork from a server that has imported these once, instead of each step spending ~5 s
# importing the definitions (pandas, pandera, dagster) and the Postgres storage again.
PRELOAD_MODULES = ["predict_pipeline.definitions", "dagster_postgres"]


def _multiprocess_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The multiprocess executor's config: forkserver with the preload above unless the run
    config chose a start method or its own preload."""
    chosen = dict(config["multiprocess"])
    start = dict(chosen.get("start_method") or {"forkserver": {}})
    if "forkserver" in start:
        start["forkserver"] = {"preload_modules": PRELOAD_MODULES, **(start["forkserver"] or {})}
    return {**chosen, "start_method": start}


def _celery_config(value: dict[str, Any]) -> Mapping[str, Any]:
    # Validated here, not in the schema: the schema's defaults would hide the environment's.
    result = process_config(celery_executor.config_schema.config_type, value)
    if not result.success:
        raise dg.DagsterInvalidConfigError(
            "invalid Celery executor config", list(result.errors or []), value
        )
    return result.value  # type: ignore[return-value]


@dg.executor(
    name="predict_executor",
    config_schema={
        "engine": dg.Field(
            dg.Noneable(dg.String),
            default_value=None,
            description=f"multiprocess or celery; unset: ${EXECUTOR_VAR}, else multiprocess.",
        ),
        "multiprocess": dg.multiprocess_executor.config_schema.as_field(),
        "celery": dg.Field(
            dg.Permissive(),
            default_value={},
            description="dagster-celery's executor config (broker, backend, include, "
            "config_source, retries) over the PREDICT_CELERY_* environment.",
        ),
    },
    requirements=dg.multiple_process_executor_requirements(),
)
def predict_executor(init_context: dg.InitExecutorContext) -> dg.Executor:
    """Multiprocess or Celery, as the run config or PREDICT_EXECUTOR says, decided per run."""
    config = init_context.executor_config
    chosen_config: Mapping[str, Any]
    if _engine(config) == "multiprocess":
        chosen, chosen_config = dg.multiprocess_executor, _multiprocess_config(config)
    else:
        celery = {**celery_settings(), **dict(config["celery"])}  # type: ignore[call-overload]
        chosen, chosen_config = celery_executor, _celery_config(celery)
    return chosen.executor_creation_fn(  # type: ignore[misc]
        dg.InitExecutorContext(
            job=init_context.job,
            executor_def=chosen,
            executor_config=chosen_config,
            instance=init_context.instance,
        )
    )
