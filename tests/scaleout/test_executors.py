"""The executor is chosen by configuration: PREDICT_EXECUTOR, overridden by the run config."""

from __future__ import annotations

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.executor.multiprocess import MultiprocessExecutor
from dagster_celery.cli import get_validated_config
from dagster_celery.executor import CeleryExecutor

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.definitions import defs
from predict_pipeline.defs.executors import PRELOAD_MODULES, celery_worker_config, predict_executor

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

BROKER = "redis://127.0.0.1:6379/7"


def _executor(config: dict) -> dg.Executor:
    job = ReconstructableRepository.for_module(
        "predict_pipeline.definitions", "defs", working_directory=str(PROJECT_ROOT)
    ).get_reconstructable_job("__ASSET_JOB")
    processed = process_config(predict_executor.config_schema.config_type, config)
    assert processed.success, processed.errors
    with dg.DagsterInstance.ephemeral() as instance:
        return predict_executor.executor_creation_fn(  # type: ignore[misc]
            dg.InitExecutorContext(
                job=job,
                executor_def=predict_executor,
                executor_config=processed.value,
                instance=instance,
            )
        )


def test_every_job_of_the_definitions_uses_the_configurable_executor():
    jobs = [defs.resolve_job_def("fetch_feeds_job"), defs.resolve_implicit_global_asset_job_def()]
    assert {job.executor_def.name for job in jobs} == {"predict_executor"}
    # Fetch steps of concurrent backfill runs share one pool, so its limit bounds the quota
    # spent on a source; the later stages are not limited by it.
    pools = {node.name: node.definition.pool for node in jobs[1].graph.nodes}
    assert pools["raw_feed_fetches"] == "feed_fetches"
    assert pools["validated_signals"] is None and pools["event_snapshots"] is None


def test_multiprocess_is_the_default(monkeypatch):
    monkeypatch.delenv("PREDICT_EXECUTOR", raising=False)
    executor = _executor({"multiprocess": {"max_concurrent": 3}})
    assert isinstance(executor, MultiprocessExecutor)
    assert executor._max_concurrent == 3  # no public accessor


def test_environment_selects_celery_with_its_broker_backend_and_queue(monkeypatch):
    monkeypatch.setenv("PREDICT_EXECUTOR", "celery")
    monkeypatch.setenv("PREDICT_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("PREDICT_CELERY_BACKEND_URL", BROKER)
    monkeypatch.setenv("PREDICT_CELERY_QUEUE", "backfills")
    executor = _executor({})
    assert isinstance(executor, CeleryExecutor)
    args = executor.app_args()
    assert (args["broker"], args["backend"]) == (BROKER, BROKER)
    assert args["config_source"].task_default_queue == "backfills"
    # The run config wins over the environment, key by key.
    executor = _executor({"celery": {"broker": "pyamqp://guest:guest@127.0.0.1:5672//"}})
    assert executor.app_args()["broker"].startswith("pyamqp://")
    assert executor.app_args()["backend"] == BROKER
    assert isinstance(_executor({"engine": "multiprocess"}), MultiprocessExecutor)


def test_workers_get_the_same_settings_as_the_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("PREDICT_CELERY_BROKER_URL", BROKER)
    monkeypatch.setenv("PREDICT_CELERY_QUEUE", "backfills")
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(celery_worker_config()))
    worker = get_validated_config(str(path))  # what `dagster-celery worker start -y` reads
    assert worker["broker"] == BROKER
    assert worker["config_source"] == {"task_default_queue": "backfills"}


def test_an_unknown_engine_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PREDICT_EXECUTOR", "threads")
    with pytest.raises(dg.DagsterInvalidConfigError, match="PREDICT_EXECUTOR"):
        _executor({})
    monkeypatch.setenv("PREDICT_EXECUTOR", "celery")
    with pytest.raises(dg.DagsterInvalidConfigError, match="Celery executor config"):
        _executor({"celery": {"broker": 5}})


def test_steps_fork_from_a_server_that_preloaded_the_definitions(monkeypatch):
    monkeypatch.delenv("PREDICT_EXECUTOR", raising=False)
    default = _executor({})
    assert isinstance(default, MultiprocessExecutor)
    assert default._start_method == "forkserver"  # no public accessors
    assert default._explicit_forkserver_preload == PRELOAD_MODULES
    forkserver = _executor({"multiprocess": {"start_method": {"forkserver": {}}}})
    assert forkserver._explicit_forkserver_preload == PRELOAD_MODULES
    # A start method or a preload of the run config's own is kept.
    spawn = _executor({"multiprocess": {"start_method": {"spawn": {}}}})
    assert spawn._start_method == "spawn"
    own = _executor(
        {"multiprocess": {"start_method": {"forkserver": {"preload_modules": ["dagster"]}}}}
    )
    assert own._explicit_forkserver_preload == ["dagster"]
