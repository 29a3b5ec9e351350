"""Deletes in bounded batches: each batch its own short transaction, so a large backlog never
holds long locks and a failure keeps every row of the batches not yet committed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import psycopg
from psycopg import sql

from predict_pipeline.db.rows import one_row


def delete_in_batches(
    conn: psycopg.Connection,
    table: str,
    condition: sql.Composable,
    params: Mapping[str, Any],
    *,
    order_by: str,
    batch_size: int,
    dry_run: bool,
    before_each_batch: Callable[[psycopg.Connection, list], None] | None = None,
) -> int:
    """Delete the rows of `table` (keyed by `id`) matching `condition`; return how many.

    A dry run counts the same rows instead. `before_each_batch(conn, ids)` runs inside each
    batch's transaction before its delete (e.g. to detach referencing rows).
    """
    target = sql.Identifier(table)
    if dry_run:
        query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(target, condition)
        return one_row(conn.execute(query, params))[0]
    pick = sql.SQL(
        # SKIP LOCKED: a row a writer holds is left for the next run instead of stalling this one.
        "SELECT id FROM {} WHERE {} ORDER BY {} LIMIT %(batch_size)s FOR UPDATE SKIP LOCKED"
    ).format(target, condition, sql.Identifier(order_by))
    delete = sql.SQL("DELETE FROM {} WHERE id = ANY(%(ids)s)").format(target)
    total = 0
    while True:
        with conn.transaction():
            ids = [row[0] for row in conn.execute(pick, {**params, "batch_size": batch_size})]
            if ids:
                if before_each_batch is not None:
                    before_each_batch(conn, ids)
                total += conn.execute(delete, {"ids": ids}).rowcount
        if len(ids) < batch_size:
            return total
