"""Dates for tests that hold on whatever day the suite runs.

Migrations make the current month's partitions and the next; retention makes two months
ahead. A test that needs a month nobody has made yet takes it from `FAR`, never from a
literal year, which the calendar would reach one day. A test that writes rows of a fixed
date straight into a month-partitioned table makes their months first, as the writers do.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg

FAR = datetime.now(UTC).year + 5


def ensure_months(conn: psycopg.Connection, *moments: datetime) -> None:
    """The signal and snapshot partitions of these moments' months, made as the writers do."""
    first, last = min(moments), max(moments)
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (first, last)).fetchall()
    conn.execute("SELECT predict_ensure_snapshot_partitions(%s, %s)", (first, last)).fetchall()
