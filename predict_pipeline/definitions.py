"""The one Definitions object the Dagster UI and `predict-pipeline run` load."""

from __future__ import annotations

import dagster as dg

from predict_pipeline.defs.resources import PostgresResource

defs = dg.Definitions(
    resources={"database": PostgresResource()},
)
