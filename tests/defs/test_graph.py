"""The asset graph as a reviewed diff: keys, deps, partitions, groups, checks, jobs,
schedules and sensors of the Definitions, against `graph.json` beside this file.

A change to the graph fails here until `graph.json` is regenerated and reviewed:
PREDICT_UPDATE_GRAPH=1 .venv/bin/pytest tests/defs/test_graph.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dagster as dg

from predict_pipeline.definitions import defs

SNAPSHOT = Path(__file__).with_name("graph.json")


def _partitions(partitions_def: dg.PartitionsDefinition | None) -> str | None:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition):
        # The cadence, not the start: PREDICT_PARTITIONS_START is the user's to set.
        return f"{type(partitions_def).__name__} {partitions_def.cron_schedule}"
    return type(partitions_def).__name__


def graph() -> dict[str, Any]:
    repository = defs.get_repository_def()
    asset_graph = repository.asset_graph
    assets = {}
    for key in sorted(asset_graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = asset_graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": _partitions(node.partitions_def),
            "checks": sorted(check.name for check in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": {
            job.name: sorted(key.to_user_string() for key in job.asset_layer.selected_asset_keys)
            for job in sorted(repository.get_all_jobs(), key=lambda j: j.name)
            if not job.name.startswith("__")
        },
        "schedules": {
            s.name: {"job": s.job_name, "cron": s.cron_schedule, "default": s.default_status.value}
            for s in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": {
            s.name: {"default": s.default_status.value}
            for s in sorted(repository.sensor_defs, key=lambda s: s.name)
        },
    }


def test_the_asset_graph_is_the_reviewed_one():
    current = graph()
    if os.environ.get("PREDICT_UPDATE_GRAPH") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text()), (
        "the asset graph changed: review the diff, then PREDICT_UPDATE_GRAPH=1 to accept it"
    )


def test_every_stage_module_contributes_its_own_definitions():
    from predict_pipeline import definitions

    merged = {
        key.to_user_string()
        for stage in definitions.STAGES
        for assets_def in stage.defs.assets or []
        for key in assets_def.keys
    }
    assert merged == set(graph()["assets"])
