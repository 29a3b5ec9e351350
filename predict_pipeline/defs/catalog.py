"""What Dagster's catalog needs to know about the table an asset writes, read from the live table.

`dagster/table_name` lets the catalog find an asset by its table; `dagster/column_schema`
(columns, types, nullability, keys and references, as PostgreSQL has them now, not as a copy
in code that could drift from the migrations) shows the schema; `dagster/row_count` the size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
import psycopg
from psycopg import sql

from predict_pipeline.db.rows import one_row
from predict_pipeline.defs.resources import PostgresResource

SCHEMA = "public"

# count(*) reads the whole table: past this many rows (by the planner's estimate) the
# estimate is reported instead, so metadata stays a small part of every materialisation (a
# year's backfill counted up to 5 M signal rows in each of its runs before).
EXACT_COUNT_UP_TO = 1_000_000


def table_name(table: str) -> str:
    """The name the catalog shows and searches, schema-qualified: `public.prediction_signals`."""
    return f"{SCHEMA}.{table}"


def table_definition_metadata(table: str) -> dict[str, str]:
    """Definition metadata: the catalog knows the table before anything is materialised."""
    return {"dagster/table_name": table_name(table)}


# One read per process and database: migrations run before runs, never during one.
_SCHEMAS: dict[tuple[str, int, str, str], dg.TableSchema] = {}


def column_schema(conn: psycopg.Connection, table: str) -> dg.TableSchema:
    """The live table's columns, read once per process and database."""
    key = (conn.info.host, conn.info.port, conn.info.dbname, table)
    if key not in _SCHEMAS:
        _SCHEMAS[key] = read_column_schema(conn, table)
    return _SCHEMAS[key]


def read_column_schema(conn: psycopg.Connection, table: str) -> dg.TableSchema:
    """Columns from information_schema; keys and references from pg_constraint.

    pg_constraint rather than information_schema for constraints: information_schema hides
    references to tables the current role does not own, and the pipeline owns none.
    """
    columns = conn.execute(
        """SELECT column_name, data_type, udt_name, character_maximum_length,
                  numeric_precision, numeric_scale, is_nullable = 'YES', column_default
           FROM information_schema.columns
           WHERE table_schema = %s AND table_name = %s
           ORDER BY ordinal_position""",
        (SCHEMA, table),
    ).fetchall()
    if not columns:
        raise LookupError(f"table {table_name(table)} has no columns visible to this role")
    constraints = conn.execute(
        """SELECT a.attname, c.contype, cardinality(c.conkey),
                  CASE WHEN c.contype = 'f' THEN
                    format('%%s(%%s)', c.confrelid::regclass,
                           (SELECT string_agg(fa.attname, ', ') FROM pg_attribute fa
                            WHERE fa.attrelid = c.confrelid AND fa.attnum = ANY(c.confkey)))
                  END
           FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
           WHERE c.conrelid = format('%%I.%%I', %s::text, %s::text)::regclass
             AND c.contype IN ('p', 'u', 'f')
           ORDER BY c.conname, a.attnum""",
        (SCHEMA, table),
    ).fetchall()
    unique: set[str] = set()
    other: dict[str, list[str]] = {}
    for column, kind, width, reference in constraints:
        if kind in ("p", "u") and width == 1:
            unique.add(column)
        if kind == "p":
            other.setdefault(column, []).append("primary key")
        elif kind == "f":
            other.setdefault(column, []).append(f"references {reference}")
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=name,
                type=_type_name(data_type, udt, length, precision, scale),
                description=f"default {default}" if default is not None else None,
                constraints=dg.TableColumnConstraints(
                    nullable=nullable, unique=name in unique, other=other.get(name, [])
                ),
            )
            for name, data_type, udt, length, precision, scale, nullable, default in columns
        ]
    )


def _type_name(
    data_type: str, udt: str, length: int | None, precision: int | None, scale: int | None
) -> str:
    if data_type == "USER-DEFINED":
        return udt  # the enum's own name says more than "USER-DEFINED"
    if data_type == "ARRAY":
        return f"{udt.lstrip('_')}[]"
    if data_type == "character varying" and length is not None:
        return f"varchar({length})"
    if data_type == "numeric" and precision is not None:
        return f"numeric({precision},{scale or 0})"
    return data_type


def row_count(conn: psycopg.Connection, table: str) -> tuple[int, bool]:
    """(rows, estimated): exact up to EXACT_COUNT_UP_TO, the planner's estimate beyond."""
    relation = table_name(table)
    # The table's own estimate, or its partitions' summed (a partitioned parent holds no rows;
    # pg_partition_tree lists nothing for a plain table).
    estimate = one_row(
        conn.execute(
            """SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_class c
           WHERE c.relkind = 'r' AND (c.oid = %(relation)s::regclass
                 OR c.oid IN (SELECT relid FROM pg_partition_tree(%(relation)s::regclass)))""",
            {"relation": relation},
        )
    )[0]
    if estimate > EXACT_COUNT_UP_TO:
        return int(estimate), True
    query = sql.SQL("SELECT count(*) FROM {}.{}").format(
        sql.Identifier(SCHEMA), sql.Identifier(table)
    )
    return one_row(conn.execute(query))[0], False


def table_metadata(conn: psycopg.Connection, table: str) -> dict[str, Any]:
    """`dagster/table_name`, `dagster/column_schema` and `dagster/row_count` of the live table."""
    rows, estimated = row_count(conn, table)
    metadata: dict[str, Any] = {
        "dagster/table_name": table_name(table),
        "dagster/column_schema": column_schema(conn, table),
        "dagster/row_count": rows,
    }
    if estimated:
        metadata["row_count_is_estimate"] = True
    return metadata


def with_table_metadata(
    result: dg.MaterializeResult, database: PostgresResource, table: str
) -> dg.MaterializeResult:
    """The result with the table's catalog metadata added, read after the asset's writes."""
    with database.connection(autocommit=True) as conn:
        catalog = table_metadata(conn, table)
    return _with_metadata(result, {**(result.metadata or {}), **catalog})


def _with_metadata(
    result: dg.MaterializeResult, metadata: Mapping[str, Any]
) -> dg.MaterializeResult:
    """The same result (checks, data version, tags) carrying this metadata."""
    return dg.MaterializeResult(
        asset_key=result.asset_key,
        metadata=metadata,
        check_results=result.check_results,
        data_version=result.data_version,
        tags=result.tags,
    )


@dataclass(frozen=True, slots=True)
class PartitionedTable:
    """Where a partitioned asset's rows sit in its table: the column that places a row in a
    partition, and whether rows are stamped at their interval's end (snapshots and trust
    scores are: an hour's row is at the hour's end, so a partition holds (start, end]).
    Without a time column (feed runs belong to fetch windows, not to a moment) the caller's
    counts give each partition's `dagster/row_count`."""

    table: str
    time_column: str | None
    stamped_at_end: bool = False


def partition_row_counts(
    conn: psycopg.Connection, spec: PartitionedTable, windows: Sequence[dg.TimeWindow]
) -> list[int]:
    """Rows of the table in each partition window, in one statement for the whole run."""
    assert spec.time_column is not None, f"{spec.table} has no time column to count by"
    column = sql.Identifier(spec.time_column)
    lower, upper = (">", "<=") if spec.stamped_at_end else (">=", "<")
    query = sql.SQL(
        """SELECT count(t.{column}) FROM unnest(%(starts)s::timestamptz[], %(ends)s::timestamptz[])
             WITH ORDINALITY AS w(starts, ends, n)
           LEFT JOIN {schema}.{table} t
             ON t.{column} {lower} w.starts AND t.{column} {upper} w.ends
           GROUP BY w.n ORDER BY w.n"""
    ).format(
        column=column,
        schema=sql.Identifier(SCHEMA),
        table=sql.Identifier(spec.table),
        lower=sql.SQL(lower),
        upper=sql.SQL(upper),
    )
    rows = conn.execute(
        query, {"starts": [w.start for w in windows], "ends": [w.end for w in windows]}
    ).fetchall()
    return [count for (count,) in rows]


def partitioned_result(
    context: dg.AssetExecutionContext,
    result: dg.MaterializeResult,
    database: PostgresResource,
    spec: PartitionedTable,
    counts: Mapping[str, Mapping[str, Any]] | None = None,
) -> dg.MaterializeResult:
    """A partitioned asset's result: each partition its own small counts and
    `dagster/row_count` (the rows of the table in that partition), the run's heavy metadata
    (table schema, previews, the run's totals, `table_rows`) once, on its last partition.

    Dagster copies a result's metadata into every partition's materialization: for a two-week
    backfill run, 336 copies of the column schema and of totals each claiming to be that hour's.
    """
    keys = context.partition_keys
    partitions = context.assets_def.partitions_def
    assert partitions is not None, "partitioned_result is for partitioned assets"
    windows = [partitions.time_window_for_partition_key(key) for key in keys]
    with database.connection(autocommit=True) as conn:
        catalog = table_metadata(conn, spec.table)
        placed = spec.time_column is not None
        rows = partition_row_counts(conn, spec, windows) if placed else [None] * len(keys)
    catalog["table_rows"] = catalog.pop("dagster/row_count")
    own = {
        key: {
            **(counts or {}).get(key, {}),
            **({"dagster/row_count": count} if count is not None else {}),
        }
        for key, count in zip(keys, rows, strict=True)
    }
    heavy = {**(result.metadata or {}), **catalog}
    if len(keys) == 1:
        metadata: Mapping[str, Any] = {**heavy, **own[keys[0]]}
    else:
        for key in keys[:-1]:
            context.add_asset_metadata(own[key], partition_key=key)
        context.add_asset_metadata({**heavy, **own[keys[-1]]}, partition_key=keys[-1])
        metadata = {
            "run_partitions": dg.MetadataValue.text(
                f"{keys[0]} to {keys[-1]} ({len(keys)} partitions, one run);"
                f" the run's metadata is on {keys[-1]}"
            )
        }
    return _with_metadata(result, metadata)


def preview_table(
    columns: Mapping[str, str], rows: Sequence[Mapping[str, Any]], *, limit: int = 20
) -> dg.TableMetadataValue:
    """A table the UI renders (columns: name -> Dagster type: string, int, float, bool)."""
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({name: _cell(row.get(name), kind) for name, kind in columns.items()})
            for row in rows[:limit]
        ],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(name, kind) for name, kind in columns.items()]
        ),
    )


def _cell(value: Any, kind: str) -> Any:
    # TableRecord accepts only str, int, float, bool or None; decimals and UUIDs are converted.
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)[:200]
