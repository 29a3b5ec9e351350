"""The database matches the documented schema: read from the spec itself, not from our SQL."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from psycopg import errors

SPEC = (Path(__file__).parent / "fixtures" / "spec" / "schema.md").read_text()
SPEC_SQL = "\n".join(re.findall(r"```sql\n(.*?)```", SPEC, re.S))

_TYPES = {
    "UUID": "uuid",
    "TEXT": "text",
    "TIMESTAMPTZ": "timestamp with time zone",
    "BOOLEAN": "boolean",
    "INTEGER": "integer",
    "BIGINT": "bigint",
    "JSONB": "jsonb",
    "INET": "inet",
}


def _pg_type(spec_type: str) -> str:
    array = spec_type.endswith("[]")
    base = spec_type.removesuffix("[]")
    decimal = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", base)
    name = f"numeric({decimal[1]},{decimal[2]})" if decimal else _TYPES[base]
    return name + ("[]" if array else "")


def spec_columns() -> dict[str, dict[str, tuple[str, bool]]]:
    """table -> column -> (PostgreSQL type name, NOT NULL) as the spec writes them."""
    tables: dict[str, dict[str, tuple[str, bool]]] = {}
    for name, body in re.findall(r"^CREATE TABLE ([\w.]+) \((.*?)^\);", SPEC_SQL, re.S | re.M):
        columns = {}
        for line in body.splitlines():
            match = re.match(r"^  ([a-z_]+) ([A-Z]+(?:\(\d+,\d+\))?(?:\[\])?)(.*)$", line)
            if match:
                column, spec_type, rest = match.groups()
                not_null = "NOT NULL" in rest or "PRIMARY KEY" in rest
                columns[column] = (_pg_type(spec_type), not_null)
        tables[name if "." in name else f"public.{name}"] = columns
    return tables


SPEC_TABLES = spec_columns()


def test_spec_parser_reads_all_28_tables():
    assert len(SPEC_TABLES) == 28
    assert SPEC_TABLES["public.prediction_signals"]["value"] == ("numeric(10,4)", False)
    assert SPEC_TABLES["public.prediction_api_keys"]["scopes"] == ("text[]", False)
    assert SPEC_TABLES["public.prediction_feed_runs"]["status"] == ("text", True)


def test_every_spec_table_and_column_exists_with_the_spec_type(admin_conn):
    rows = admin_conn.execute(
        """SELECT n.nspname || '.' || c.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
             AND n.nspname IN ('public', 'auth')"""
    ).fetchall()
    actual: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, type_name, not_null in rows:
        actual.setdefault(table, {})[column] = (type_name, not_null)
    for table, columns in SPEC_TABLES.items():
        assert table in actual, f"missing table {table}"
        for column, expected in columns.items():
            assert actual[table].get(column) == expected, f"{table}.{column}"


def test_every_spec_index_view_and_policy_exists(admin_conn):
    indexes = set(re.findall(r"CREATE (?:UNIQUE )?INDEX (\w+)", SPEC_SQL))
    views = set(re.findall(r"CREATE VIEW (\w+)", SPEC_SQL))
    policies = set(re.findall(r'CREATE POLICY "([^"]+)"', SPEC_SQL))
    rls_tables = set(re.findall(r"ALTER TABLE (\w+) ENABLE ROW LEVEL SECURITY", SPEC_SQL))
    assert (len(indexes), len(views), len(policies)) == (75, 3, 14)

    have_indexes = {r[0] for r in admin_conn.execute("SELECT indexname FROM pg_indexes")}
    # Partitioned prediction_signals keeps idx_signals_dedup as one copy per month (0010).
    if any(re.fullmatch(r"idx_signals_dedup_y\d{4}m\d{2}", name) for name in have_indexes):
        have_indexes.add("idx_signals_dedup")
    have_views = {r[0] for r in admin_conn.execute("SELECT viewname FROM pg_views")}
    have_policies = {r[0] for r in admin_conn.execute("SELECT policyname FROM pg_policies")}
    have_rls = {
        r[0] for r in admin_conn.execute("SELECT relname FROM pg_class WHERE relrowsecurity")
    }
    assert indexes - have_indexes == set()
    assert views - have_views == set()
    assert policies - have_policies == set()
    assert rls_tables - have_rls == set()


def test_check_constraints_and_defaults_of_the_spec_hold(admin_conn):
    admin_conn.execute("INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'a@x.io')")
    with pytest.raises(errors.CheckViolation, match="current_probability"):
        admin_conn.execute(
            "INSERT INTO prediction_events (title, slug, current_probability)"
            " VALUES ('t', 's', 1.5)"
        )
    row = admin_conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('t', 's') "
        "RETURNING status, is_public, created_at IS NOT NULL"
    ).fetchone()
    assert row == ("ACTIVE", True, True)


def test_seed_categories(admin_conn):
    rows = admin_conn.execute(
        "SELECT slug, sort_order FROM prediction_categories ORDER BY sort_order"
    ).fetchall()
    assert rows == [
        ("geopolitics", 1),
        ("technology", 2),
        ("marketing", 3),
        ("finance", 4),
        ("sports", 5),
        ("entertainment", 6),
    ]
