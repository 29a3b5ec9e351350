"""Catalog metadata on real materialisations, checked against the live tables in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from psycopg import sql

from predict_pipeline.db.connection import connect
from predict_pipeline.definitions import defs
from predict_pipeline.defs.catalog import (
    PartitionedTable,
    column_schema,
    partition_row_counts,
    partitioned_result,
    read_column_schema,
)
from predict_pipeline.defs.ingestion import FeedFetchConfig
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from tests.scaleout.history_server import HistoryServer, seed_history_feed

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

TABLES = {
    "raw_feed_fetches": "prediction_feed_runs",
    "source_health_daily": "prediction_source_health_daily",
    "validated_signals": "prediction_signals",
    "event_snapshots": "prediction_snapshots",
    "event_history": "prediction_snapshots",
    "trust_scores": "prediction_trust_scores",
    "event_resolutions": "prediction_resolutions",
    "calibration_scores": "prediction_calibration_scores",
    "source_calibration": "prediction_source_calibration",
    "campaign_results": "prediction_campaign_results",
    "campaign_predictions": "prediction_campaigns",
    "campaign_calibration": "prediction_campaign_calibration",
}


def _live_columns(conn, table: str) -> list[tuple[str, str, bool]]:
    """(name, type, nullable) from pg_attribute: a different route than the code under test."""
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
           FROM pg_attribute a
           WHERE a.attrelid = format('public.%%I', %s::text)::regclass
             AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (table,),
    ).fetchall()
    return [(name, kind.replace("character varying", "varchar"), null) for name, kind, null in rows]


def _materialisation(instance: dg.DagsterInstance, asset: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None
    return dict(event.asset_materialization.metadata)


def _polled_runs(conn, feeds: list[str]) -> tuple[int, int]:
    """(runs, successful runs) of the polled feeds; the recordings' upload runs are not polls."""
    return conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE status = 'SUCCESS') FROM prediction_feed_runs"
        " WHERE feed_id = ANY(%s::uuid[])",
        (feeds,),
    ).fetchone()


def test_every_asset_declares_the_table_it_writes_before_it_runs():
    # Retention steps delete from tables they do not own: only the stages declare tables.
    declared = {
        key.to_user_string(): spec.metadata.get("dagster/table_name")
        for assets_def in defs.assets or []
        for key, spec in assets_def.specs_by_key.items()
        if spec.group_name != "retention"
    }
    assert declared == {asset: f"public.{table}" for asset, table in TABLES.items()}


# How a partition's rows are found in its table, by a route of this test's own.
PARTITION_ROWS = {
    "validated_signals": "fetched_at >= %(start)s AND fetched_at < %(end)s",
    "event_snapshots": "snapshot_at > %(start)s AND snapshot_at <= %(end)s",
    "trust_scores": "computed_at > %(start)s AND computed_at <= %(end)s",
}


def _rows_in(conn, asset: str, hour: dict) -> int:
    query = sql.SQL("SELECT count(*) FROM public.{} WHERE ").format(sql.Identifier(TABLES[asset]))
    return conn.execute(query + sql.SQL(PARTITION_ROWS[asset]), hour).fetchone()[0]


def test_materialisations_carry_the_live_schema_and_row_count(pipeline):
    window = HOURLY.time_window_for_partition_key(pipeline.partition)
    hour = {"start": window.start, "end": window.end}
    with connect(pipeline.db_url, role=None, autocommit=True) as conn:
        for asset, table in TABLES.items():
            if asset == "event_history":
                continue  # days before the hourly axis: tests/calibration/test_real_recordings.py
            metadata = _materialisation(pipeline.instance, asset)
            assert metadata["dagster/table_name"].value == f"public.{table}"
            schema = metadata["dagster/column_schema"].schema
            shown = [(c.name, c.type, c.constraints.nullable) for c in schema.columns]
            assert shown == _live_columns(conn, table), asset
            count = sql.SQL("SELECT count(*) FROM public.{}").format(sql.Identifier(table))
            rows = conn.execute(count).fetchone()[0]
            assert rows > 0, f"the demo wrote nothing into {table}"
            if asset == "raw_feed_fetches":
                # Feed runs belong to fetch windows: the partition's rows are its polls' runs.
                polls = _polled_runs(conn, pipeline.polled_feeds)[0]
                row_count = metadata["dagster/row_count"].value
                assert row_count == metadata["partition_feed_runs"].value == polls > 0
                assert metadata["table_rows"].value == rows
            elif asset in PARTITION_ROWS:
                # Partitioned: the partition's rows; the table's size is `table_rows`.
                in_hour = _rows_in(conn, asset, hour)
                assert metadata["dagster/row_count"].value == in_hour > 0, asset
                assert metadata["table_rows"].value == rows, asset
            else:
                assert metadata["dagster/row_count"].value == rows, asset
        signals = _materialisation(pipeline.instance, "validated_signals")
        assert signals["partition_written"].value == signals["dagster/row_count"].value
        columns = {c.name: c for c in signals["dagster/column_schema"].schema.columns}
        # Partitioned by month, the key is (id, fetched_at): neither column is unique alone.
        assert columns["id"].constraints.other == ["primary key"]
        assert columns["fetched_at"].constraints.other == ["primary key"]
        assert not columns["id"].constraints.unique
        assert columns["event_id"].constraints.other == ["references prediction_events(id)"]
        assert columns["value"].type == "numeric(10,4)"
        assert columns["weight"].description == "default 1.0"


def test_previews_match_the_rows_written(pipeline):
    with connect(pipeline.db_url, role=None, autocommit=True) as conn:
        window = HOURLY.time_window_for_partition_key(pipeline.partition)
        written = conn.execute(
            "SELECT e.title, s.source, s.signal_type, s.value::float8 FROM prediction_signals s"
            " JOIN prediction_events e ON e.id = s.event_id"
            " WHERE s.fetched_at >= %s AND s.fetched_at < %s"
            " ORDER BY s.fetched_at DESC, s.id LIMIT 20",
            (window.start, window.end),
        ).fetchall()
        assert len(written) == 20  # the simulator fills the window: the preview is a top 20
        scores = conn.execute(
            "SELECT time_window, resolved_predictions FROM prediction_calibration_scores"
            " WHERE category_id IS NULL"
        ).fetchall()
        runs = _polled_runs(conn, pipeline.polled_feeds)
    signals = _materialisation(pipeline.instance, "validated_signals")
    preview = [
        (r.data["event"], r.data["source"], r.data["signal_type"], r.data["value"])
        for r in signals["latest_signals"].records
    ]
    assert preview == written
    reasons = {r.data["reason"]: r.data["records"] for r in signals["rejected_by_reason"].records}
    assert reasons == signals["rejected_reasons"].value
    feeds = _materialisation(pipeline.instance, "raw_feed_fetches")["feed_runs"].records
    assert (len(feeds), sum(r.data["status"] == "SUCCESS" for r in feeds)) == runs
    calibration = _materialisation(pipeline.instance, "calibration_scores")
    table = {(r.data["window"], r.data["resolved"]) for r in calibration["global_scores"].records}
    assert table == set(scores)
    assert calibration["reliability_diagram"].value.startswith(
        "![Reliability diagram](data:image/png;base64,"
    )


def test_column_schema_is_read_once_per_process_and_database(db_url):
    with connect(db_url, autocommit=True) as conn:
        first = column_schema(conn, "prediction_events")
        assert column_schema(conn, "prediction_events") is first
        assert read_column_schema(conn, "prediction_events") is not first
        assert read_column_schema(conn, "prediction_events") == first


SIGNAL_ROWS = PartitionedTable("prediction_signals", "fetched_at")


@dg.asset(partitions_def=HOURLY, backfill_policy=dg.BackfillPolicy.single_run())
def hours_written(context, database: PostgresResource) -> dg.MaterializeResult:
    keys = context.partition_keys
    result = dg.MaterializeResult(metadata={"written": 10 * len(keys)})
    counts = {key: {"partition_written": 10} for key in keys}
    return partitioned_result(context, result, database, SIGNAL_ROWS, counts)


START = datetime(2025, 3, 31, 22, tzinfo=UTC)  # the signals below span two months
DAY = timedelta(days=1)


def _signals_every_ten_minutes(conn) -> None:
    """Twelve signals from START + 10 min to START + 2 h: 5 in 22:00, 6 in 23:00, 1 at 00:00."""
    conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Counted by hour', 'counted-by-hour')"
    )
    conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (START, START + DAY))
    conn.execute(
        "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
        " value, fetched_at) SELECT (SELECT id FROM prediction_events LIMIT 1), 'kalshi',"
        " 'm-' || i, 'MARKET_PRICE', 0.5, %s::timestamptz + i * interval '10 minutes'"
        " FROM generate_series(1, 12) i",
        (START,),
    )


def _partition_metadata(
    instance: dg.DagsterInstance, partition: str, asset: str = "hours_written"
) -> dict:
    """The metadata values of the asset's latest materialisation of the partition."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]),
        limit=1,
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_a_ranged_run_gives_each_partition_its_counts_and_the_heavy_metadata_once(
    db_url, dagster_instance
):
    with connect(db_url, role=None, autocommit=True) as conn:
        _signals_every_ten_minutes(conn)
    job = dg.Definitions(
        assets=[hours_written], resources={"database": PostgresResource(url=db_url)}
    ).resolve_implicit_global_asset_job_def()
    first, last = "2025-03-31-22:00", "2025-04-01-01:00"
    ranged = job.execute_in_process(
        instance=dagster_instance,
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
    )
    single = job.execute_in_process(instance=dagster_instance, partition_key="2025-03-31-23:00")
    assert ranged.success and single.success
    note = f"{first} to {last} (4 partitions, one run); the run's metadata is on {last}"
    own = {"run_partitions": note, "partition_written": 10}
    assert _partition_metadata(dagster_instance, first) == {**own, "dagster/row_count": 5}
    assert _partition_metadata(dagster_instance, "2025-04-01-00:00") == {
        **own,
        "dagster/row_count": 1,
    }
    heavy = _partition_metadata(dagster_instance, last)
    assert {k: heavy.pop(k) for k in ("dagster/column_schema",)}  # the schema, once
    assert heavy == {
        **own,
        "written": 40,
        "dagster/row_count": 0,
        "table_rows": 12,
        "dagster/table_name": "public.prediction_signals",
    }
    # A one-partition run (the latest materialisation of 23:00) carries all of it.
    alone = _partition_metadata(dagster_instance, "2025-03-31-23:00")
    assert "run_partitions" not in alone and "dagster/column_schema" in alone
    assert (alone["dagster/row_count"], alone["written"], alone["table_rows"]) == (6, 10, 12)


def test_rows_stamped_at_their_intervals_end_belong_to_the_hour_they_close(db_url):
    with connect(db_url, role=None, autocommit=True) as conn:
        _signals_every_ten_minutes(conn)
        windows = [
            HOURLY.time_window_for_partition_key(key)
            for key in ("2025-03-31-22:00", "2025-03-31-23:00", "2025-04-01-00:00")
        ]
        stamped_at_end = PartitionedTable("prediction_signals", "fetched_at", stamped_at_end=True)
        assert partition_row_counts(conn, SIGNAL_ROWS, windows) == [5, 6, 1]
        assert partition_row_counts(conn, stamped_at_end, windows) == [6, 6, 0]


def test_row_counts_are_exact_up_to_the_limit_and_estimated_past_it(db_url, monkeypatch):
    import predict_pipeline.defs.catalog as catalog

    with connect(db_url, role=None, autocommit=True) as conn:
        # A plain table (events) and a partitioned one (signals: its months' estimates summed).
        conn.execute(
            "INSERT INTO prediction_events (title, slug)"
            " SELECT 'Counted ' || i, 'counted-' || i FROM generate_series(1, 30) i"
        )
        conn.execute("SELECT predict_ensure_signal_partitions(%s, %s)", (START, START + DAY))
        conn.execute(
            "INSERT INTO prediction_signals (event_id, source, source_event_id, signal_type,"
            " value, fetched_at) SELECT (SELECT id FROM prediction_events LIMIT 1), 'kalshi',"
            " 'm-' || i, 'MARKET_PRICE', 0.5, %s::timestamptz + i * interval '10 minutes'"
            " FROM generate_series(1, 12) i",
            (START,),
        )
        conn.execute("ANALYZE prediction_events")
        conn.execute("ANALYZE prediction_signals")
        events = conn.execute("SELECT count(*) FROM prediction_events").fetchone()[0]
        assert catalog.row_count(conn, "prediction_events") == (events, False)
        assert catalog.row_count(conn, "prediction_signals") == (12, False)
        monkeypatch.setattr(catalog, "EXACT_COUNT_UP_TO", 11)
        # Past the limit the planner's figure is reported (after ANALYZE of a small table, exact).
        assert catalog.row_count(conn, "prediction_events") == (events, True)
        assert catalog.row_count(conn, "prediction_signals") == (12, True)
        conn.execute("DELETE FROM prediction_signals")
        assert catalog.row_count(conn, "prediction_signals") == (12, True)  # not counted again


def test_a_backfill_run_counts_each_hour_of_the_real_stages(db_url, dagster_instance, tmp_path):
    """A 3-hour ranged run of the stages: each hour its own records, written and rows, equal
    to what the database holds for that hour; the run's totals once, on the last hour."""
    origin = datetime(2025, 6, 1, tzinfo=UTC)
    server = HistoryServer(6, origin, 3)
    try:
        with connect(db_url, role=None, autocommit=True) as conn:
            feed = seed_history_feed(conn, server.url, 6)
        stages = {"raw_feed_fetches", "validated_signals", "event_snapshots", "trust_scores"}
        resources = {
            "database": PostgresResource(url=db_url),
            "http": HttpClientResource(mode="live", allow_private_hosts=["127.0.0.1"]),
            "landing": LandingZoneResource(root=str(tmp_path / "landing")),
            "secrets": SecretsResource(),
        }
        job = dg.Definitions(
            assets=[a for a in defs.assets or [] if {k.path[-1] for k in a.keys} & stages],
            resources=resources,
        ).resolve_implicit_global_asset_job_def()
        hours = ["2025-06-01-00:00", "2025-06-01-01:00", "2025-06-01-02:00"]
        result = job.execute_in_process(
            instance=dagster_instance,
            run_config=dg.RunConfig(
                ops={"raw_feed_fetches": FeedFetchConfig(feed_ids=[str(feed)], mode="backfill")}
            ),
            tags={
                ASSET_PARTITION_RANGE_START_TAG: hours[0],
                ASSET_PARTITION_RANGE_END_TAG: hours[-1],
            },
        )
        assert result.success
    finally:
        server.close()

    def metadata(asset: str, hour: str) -> dict:
        return _partition_metadata(dagster_instance, hour, asset)

    with connect(db_url, role=None, autocommit=True) as conn:
        for hour in hours:
            window = HOURLY.time_window_for_partition_key(hour)
            span = {"start": window.start, "end": window.end}
            signals = metadata("validated_signals", hour)
            in_hour = _rows_in(conn, "validated_signals", span)
            # The server's 6 markets price every hour: 6 records an hour, all written.
            assert in_hour == 6
            assert (
                signals["partition_records"],
                signals["partition_rejected"],
                signals["partition_written"],
                signals["dagster/row_count"],
            ) == (6, 0, in_hour, in_hour)
            for asset in ("event_snapshots", "trust_scores"):
                rows = _rows_in(conn, asset, span)
                assert metadata(asset, hour)["dagster/row_count"] == rows > 0, asset
            fetches = metadata("raw_feed_fetches", hour)
            # The history came as one window (a day's part): each hour names it and its run.
            assert fetches["partition_fetch_windows"] == "2025-06-01T00:00/2025-06-01T03:00"
            assert fetches["dagster/row_count"] == fetches["partition_feed_runs"] == 1
            assert ("written" in signals) == (hour == hours[-1])  # the run's totals, once
        assert metadata("validated_signals", hours[-1])["written"] == 18
