"""Built-in sources through the real adapters in replay mode, and idempotent backfills."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from predict_pipeline.demo import DEMO_FEEDS, REPLAY_DIR
from predict_pipeline.http import build_http_client
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.model import FetchWindow
from predict_pipeline.sources import metaculus
from predict_pipeline.sources.registry import source_definition
from tests.support.feeds import KEY, feed_run, make_feed

WINDOW = FetchWindow(datetime(2026, 11, 22, 15, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC))


def test_every_demo_feed_fetches_its_recorded_payload(conn, landing):
    feeds = {
        make_feed(conn, source, config, name=name, credentials=creds): name
        for name, source, config, creds in DEMO_FEEDS
    }
    with build_http_client("replay", replay_dir=REPLAY_DIR) as client:
        reports = fetch_window(
            conn,
            client,
            landing,
            WINDOW,
            mode="poll",
            encryption_key=lambda: KEY,
            now=lambda: WINDOW.start + timedelta(minutes=5),
        )
    by_name = {r.feed_name: r for r in reports}
    assert {r.status for r in reports} == {"SUCCESS"}, {r.feed_name: r.error for r in reports}
    # A fetch counts the items its pages offer (markets, a post); it reads no record.
    assert by_name["PredictIt all markets"].records == 20
    assert by_name["Kalshi Elon tweets (Mar 28, settled)"].records == 13
    assert by_name["Polymarket active markets"].records == 20
    assert by_name["Metaculus post 578"].records == 1
    # Record counts of the real adapters on the landed pages (prices + volumes), read as the
    # signals stage reads them.
    read = {
        name: sum(
            len(
                source_definition(source)
                .adapter.read_records(
                    page.payload,
                    fetched_at=datetime.fromisoformat(page.fetched_at),
                    request=page.page_request(),
                )
                .records
            )
            for page in landing.read_window(source, str(feed_id), WINDOW)
        )
        for feed_id, name in feeds.items()
        for source in [next(s for n, s, _, _ in DEMO_FEEDS if n == name)]
    }
    assert read["PredictIt all markets"] == 123
    assert read["Kalshi Elon tweets (Mar 28, settled)"] == 26
    assert read["Polymarket active markets"] == 40
    assert read["Metaculus post 578"] == 1
    for feed_id in feeds:
        run = feed_run(conn, feed_id)
        assert run["status"] == "SUCCESS" and run["request_count"] == 1
        assert run["bytes_received"] > 0
    kalshi = next(f for f, n in feeds.items() if n == "Kalshi Elon tweets (Mar 28, settled)")
    [page] = landing.read_window("kalshi", str(kalshi), WINDOW)
    recorded = REPLAY_DIR / "../../fixtures/payloads/kalshi_markets_finalized_cents.json"
    assert page.payload == json.loads(recorded.read_bytes())
    assert page.request["params"]["event_ticker"] == "KXELONTWEETS-25MAR28"
    assert "headers" not in page.request


def test_backfill_of_two_days_twice_gives_identical_landing_content(conn, tmp_path):
    detail = json.loads(
        (REPLAY_DIR / "../../fixtures/payloads/metaculus_post_detail_with_cp.json").read_bytes()
    )
    history = detail["question"]["aggregations"]["recency_weighted"]["history"]
    first_point = datetime.fromtimestamp(history[0]["start_time"], tz=UTC)
    start = first_point.replace(minute=0, second=0, microsecond=0)
    replay_dir = REPLAY_DIR  # serves the recorded post 578 detail with its CP history
    feed = make_feed(
        conn, "metaculus", {"post_ids": [578]}, credentials={"token": "t"}, name="cp history"
    )
    windows = [
        FetchWindow(start + timedelta(hours=h), start + timedelta(hours=h + 1)) for h in range(48)
    ]

    def backfill(root) -> dict[str, bytes]:
        zone = LandingZone(str(root))
        with build_http_client("replay", replay_dir=replay_dir) as client:
            for window in windows:
                reports = fetch_window(
                    conn,
                    client,
                    zone,
                    window,
                    mode="backfill",
                    feed_ids=[feed],
                    encryption_key=lambda: KEY,
                )
                assert [r.status for r in reports] == ["SUCCESS"]
        files = sorted(p for p in root.rglob("*.jsonl.gz"))
        return {str(p.relative_to(root)): p.read_bytes() for p in files}

    first = backfill(tmp_path / "landing")
    again = backfill(tmp_path / "landing")  # the same zone, re-run: replaced, not added to
    elsewhere = backfill(tmp_path / "landing2")
    assert len(first) == 48
    assert first == again == elsewhere
    records = sum(
        r
        for (r,) in conn.execute(
            "SELECT signals_fetched FROM prediction_feed_runs WHERE feed_id = %s", (feed,)
        )
    )
    in_window = [
        h
        for h in history
        if windows[0].start.timestamp() <= h["start_time"] < windows[-1].end.timestamp()
    ]
    assert len(in_window) > 0
    # Each fetch counts the one post detail a window's page offers (three backfills of the same
    # 48 windows); the records are read from the landed pages, each kept to its window.
    assert records == 3 * len(windows)
    zone = LandingZone(str(tmp_path / "landing"))
    points = [
        record
        for window in windows
        for page in zone.read_window("metaculus", str(feed), window)
        for record in metaculus.ADAPTER.read_records(
            page.payload, fetched_at=window.end, request=page.page_request(), window=window
        ).records
    ]
    assert len(points) == len(in_window)
