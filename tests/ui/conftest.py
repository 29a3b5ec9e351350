"""The whole pipeline materialised for real on the test database, as `make run` does it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg
import pytest

from predict_pipeline.db.connection import connect
from predict_pipeline.definitions import defs
from predict_pipeline.defs.ingestion import FeedFetchConfig
from predict_pipeline.defs.partitions import HOURLY
from predict_pipeline.defs.resources import (
    HttpClientResource,
    LandingZoneResource,
    PostgresResource,
    SecretsResource,
)
from predict_pipeline.demo import REPLAY_DIR, seed_demo
from predict_pipeline.demo.recordings import load_recordings
from predict_pipeline.demo.run import campaign_loop_demo
from predict_pipeline.demo.seed import DEMO_USER_ID
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.secrets import decode_key, generate_key


@dataclass(frozen=True)
class Materialised:
    db_url: str
    instance: dg.DagsterInstance
    partition: str
    resources: dict
    polled_feeds: list[str]  # the feeds raw_feed_fetches polled (the recordings are uploads)


@pytest.fixture
def pipeline(db_url, dagster_instance, tmp_path, monkeypatch) -> Materialised:
    """Demo feeds (recorded payloads, replay mode) and the recorded resolved markets (uploads,
    as `make run` lands them) through every asset of the Definitions."""
    key = generate_key()
    monkeypatch.setenv("PREDICT_ENCRYPTION_KEY", key)
    with connect(db_url) as conn, conn.transaction():
        feed_ids = seed_demo(conn, encryption_key=decode_key(key))
    landing = str(tmp_path / "landing")
    # The polled hour resolves a simulated event only some hours of the day: the recordings'
    # resolved markets, with their histories before close, give calibration rows at any hour.
    with connect(db_url, autocommit=True) as conn:
        load_recordings(conn, LandingZone(landing), owner=DEMO_USER_ID, now=datetime.now(UTC))
    resources = {
        "database": PostgresResource(url=db_url),
        "http": HttpClientResource(mode="replay", replay_dir=str(REPLAY_DIR)),
        "landing": LandingZoneResource(root=landing),
        "secrets": SecretsResource(),
    }
    partition = HOURLY.get_partition_key_for_timestamp(datetime.now(UTC).timestamp())
    assets = list(defs.assets or [])
    # The hourly stages; event_history (days before the hourly axis) runs on its own axis.
    windowed = [a for a in assets if a.partitions_def == HOURLY]
    # Retention has its own job and schedule; the campaign loop runs week by week, as in
    # `make run`; the pipeline is everything else.
    whole = [
        a
        for a in assets
        if a.partitions_def is None
        and not {"retention", "campaigns"} & set(a.group_names_by_key.values())
    ]
    polled = [str(f) for f in feed_ids]
    fetch = FeedFetchConfig(feed_ids=polled, mode="poll")
    assert dg.materialize(
        windowed,
        instance=dagster_instance,
        resources=resources,
        partition_key=partition,
        run_config=dg.RunConfig(ops={"raw_feed_fetches": fetch}),
    ).success
    assert dg.materialize(whole, instance=dagster_instance, resources=resources).success
    run_ids: list[str] = []
    loop = campaign_loop_demo(
        db_url, instance=dagster_instance, resources=resources, assets=assets, run_ids=run_ids
    )
    assert all(success for _, success in loop) and len(run_ids) == 3, loop
    return Materialised(db_url, dagster_instance, partition, resources, polled)
