"""The seeded source registry equals the adapters' own schemas, defaults and limits."""

from __future__ import annotations

import jsonschema
from psycopg.rows import dict_row

from predict_pipeline.sources.registry import SOURCES


def test_seeded_sources_match_the_registry(admin_conn):
    with admin_conn.cursor(row_factory=dict_row) as cur:
        rows = {
            r["source_id"]: r
            for r in cur.execute(
                "SELECT source_id, name, category, description, adapter_type, config_schema,"
                " default_config, supports_pull, supports_push, supports_backfill,"
                " rate_limit_rpm, rate_limit_rpd, is_system FROM prediction_data_sources"
            )
        }
    assert set(rows) == {
        "polymarket",
        "kalshi",
        "manifold",
        "metaculus",
        "predictit",
        "custom_api",
        "webhook",
        "upload",
        "simulator",
    }
    for source_id, definition in SOURCES.items():
        assert rows[source_id] == definition.seed_row(), source_id
    assert rows["kalshi"]["category"] == "prediction_market"
    assert rows["predictit"]["supports_backfill"] is False
    assert rows["webhook"]["supports_push"] is True and rows["webhook"]["supports_pull"] is False
    assert rows["simulator"]["supports_backfill"] is True and rows["simulator"]["is_system"]


def test_every_default_config_is_valid_against_its_schema():
    """Defaults alone where a source needs nothing more; with its example where it does."""
    for source_id, definition in SOURCES.items():
        row = definition.seed_row()
        jsonschema.Draft202012Validator.check_schema(row["config_schema"])
        example = getattr(definition.module, "EXAMPLE_CONFIG", {})
        errors = list(
            jsonschema.Draft202012Validator(row["config_schema"]).iter_errors(
                {**row["default_config"], **example}
            )
        )
        assert errors == [], (source_id, errors)
    assert SOURCES["custom_api"].seed_row()["default_config"]["pagination"] == {"mode": "none"}
    assert "timezone" not in SOURCES["custom_api"].seed_row()["default_config"]
