"""The one Definitions object the Dagster UI and `predict-pipeline run` load: each stage's
own Definitions (defs/<stage>.py), merged, with the executor and resources they share."""

from types import ModuleType

import dagster as dg

from predict_pipeline.defs import (
    alerts,
    calibration,
    campaigns,
    health,
    history,
    hourly,
    ingestion,
    resources,
    retention,
    rules,
    signals,
    snapshots,
    trust,
)
from predict_pipeline.defs.executors import predict_executor

# In pipeline order: ingestion (fetch, health, history), the stages, then what acts on them.
STAGES: tuple[ModuleType, ...] = (ingestion, health, history, signals, snapshots, trust)
STAGES += (calibration, hourly, rules, campaigns, retention, alerts)

defs = dg.Definitions.merge(
    *(stage.defs for stage in STAGES),
    # Multiprocess, or Celery workers, as PREDICT_EXECUTOR says when a run starts.
    dg.Definitions(executor=predict_executor, resources=resources.RESOURCES),
)
