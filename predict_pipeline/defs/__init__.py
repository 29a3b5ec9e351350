"""The Dagster layer, by pipeline stage: thin wrappers over stage logic that knows no Dagster."""
