"""Retention and maintenance: the spec's data-retention policies, applied in bounded batches.

Each step takes an autocommit connection acting as the maintenance role, runs its own short
transactions, and returns a StepReport of what it removed (or, in a dry run, would remove).
Nothing here knows about Dagster.
"""
