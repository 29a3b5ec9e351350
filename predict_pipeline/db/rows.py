"""The row a query always returns, typed as present."""

from __future__ import annotations

from typing import TypeVar

import psycopg

Row = TypeVar("Row")


def one_row(cursor: psycopg.Cursor[Row]) -> Row:
    """The single row of a query that always yields one (an aggregate, EXISTS, a probe).

    psycopg types ``fetchone()`` as optional; here no row means the query itself is wrong.
    """
    row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"expected one row, the query returned none ({cursor.statusmessage})")
    return row
