"""The one database layer: connections, the embedded default server, migrations, bulk writes."""

from predict_pipeline.db.connection import (
    PIPELINE_ROLE,
    DatabaseUnavailable,
    connect,
    resolve_database,
)

__all__ = ["PIPELINE_ROLE", "DatabaseUnavailable", "connect", "resolve_database"]
