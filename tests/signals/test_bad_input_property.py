"""Property: records with extreme values, mixed with good ones, across several feeds in one
hour (an upload, a webhook, two custom APIs on a real local server). Every good row lands,
every bad one is rejected with its reason, and no feed run is left RUNNING.

Extreme but acceptable values (nesting a few hundred deep, unusual characters, the edges of
the accepted range) are good rows: they must land too. The extremes a push refuses whole (a
NaN literal, bytes that are not UTF-8) are covered by the push tests; here each delivery
stays readable, so what is bad is a record, never its neighbours.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.pushed import land_upload, land_webhook
from predict_pipeline.ingestion.runner import fetch_window
from predict_pipeline.ingestion.store import load_feed
from predict_pipeline.signals.linking import display_market_id
from predict_pipeline.signals.stage import validate_window
from predict_pipeline.sources.push.signature import sign_delivery
from tests.signals.test_isolation import NOW, WINDOW
from tests.support.feeds import KEY, make_feed
from tests.support.http_server import Reply

SECRET = "whsec-property"

# Each bad kind, the feeds it can reach, and the reason it must be rejected with.
BAD_KINDS: dict[str, tuple[set[str], str]] = {
    "year_1": ({"upload", "webhook", "custom_api"}, "timestamp_out_of_range"),
    "year_9999": ({"upload", "webhook", "custom_api"}, "timestamp_out_of_range"),
    "before_1900": ({"upload", "webhook", "custom_api"}, "timestamp_out_of_range"),
    "id_3kb": ({"upload", "webhook", "custom_api"}, "source_event_id_too_long"),
    "nan": ({"custom_api"}, "unreadable_item"),
    "infinity": ({"custom_api"}, "unreadable_item"),
    "lone_surrogate": ({"upload", "webhook", "custom_api"}, "text_valid_utf8"),
    "narrative_10k": ({"upload", "webhook", "custom_api"}, "narrative_size"),
    "probability_1_5": ({"upload", "webhook", "custom_api"}, "probability_in_unit_interval"),
    "in_the_future": ({"upload", "webhook", "custom_api"}, "fetched_at_not_in_future"),
}


GOOD_VARIANTS = ("plain", "deep", "unicode", "edges")


def variants(source: str) -> list[tuple[str, str]]:
    """Every good variant and every bad kind that can reach `source`."""
    bad = [("bad", k) for k, (sources, _) in BAD_KINDS.items() if source in sources]
    return [("good", kind) for kind in GOOD_VARIANTS] + bad


@st.composite
def records(draw, source: str) -> list[dict[str, Any]]:
    """2 to 7 distinct variants in a random order, so each example mixes good and bad kinds
    (a list of draws would mostly repeat the first variant)."""
    order = draw(st.permutations(variants(source)))
    count = draw(st.integers(min_value=2, max_value=7))
    depth = draw(st.integers(min_value=1, max_value=400))
    return [{"quality": q, "kind": k, "depth": depth} for q, k in order[:count]]


def every_variant(source: str) -> list[dict[str, Any]]:
    return [{"quality": q, "kind": k, "depth": 400} for q, k in variants(source)]


def _item(spec: dict[str, Any], sid: str, minute: int) -> dict[str, Any]:
    """The record as a user's data would carry it (push field names; custom APIs map them)."""
    at = (WINDOW.start + timedelta(minutes=minute)).isoformat()
    item: dict[str, Any] = {"source_event_id": sid, "value": 0.25, "fetched_at": at}
    kind = spec["kind"]
    if kind == "deep":
        nested: Any = "bottom"
        for _ in range(spec["depth"]):
            nested = {"level": nested}
        item["extra"] = nested
    elif kind == "unicode":
        item["title"] = "Zürich 東京 \U0001f600 \u200b"
    elif kind == "edges":
        item["fetched_at"] = "1900-01-01T00:00:00Z"  # the first accepted moment
        item["value"] = 1.0
    elif kind == "year_1":
        item["fetched_at"] = "0001-01-01T00:00:00Z"
    elif kind == "year_9999":
        item["fetched_at"] = "9999-12-31T23:59:59Z"
    elif kind == "before_1900":
        item["fetched_at"] = "1899-12-31T23:59:59Z"
    elif kind == "id_3kb":
        item["source_event_id"] = sid + "-" + hashlib.sha512(sid.encode()).hexdigest() * 24
    elif kind == "nan":
        item["value"] = float("nan")
    elif kind == "infinity":
        item["value"] = float("inf")
    elif kind == "lone_surrogate":
        item["title"] = "broken \ud800 text"
    elif kind == "narrative_10k":
        item["narrative"] = "n" * 10_001
    elif kind == "probability_1_5":
        item["value"] = 1.5
    elif kind == "in_the_future":
        item["fetched_at"] = (NOW + timedelta(hours=1)).isoformat()
    return item


CUSTOM_FIELDS = {
    "source_event_id": "id",
    "value": "v",
    "fetched_at": "t",
    "title": "title",
    "narrative": "narrative",
}


def _as_custom_item(item: dict[str, Any]) -> dict[str, Any]:
    """The record under the custom API's own key names (CUSTOM_FIELDS maps them back)."""
    names = {"source_event_id": "id", "value": "v", "fetched_at": "t"}
    return {names.get(key, key): value for key, value in item.items()}


def _feed(
    conn: psycopg.Connection,
    source: str,
    items: list[dict[str, Any]],
    event: uuid.UUID,
    config: dict[str, Any] | None = None,
    **columns: Any,
) -> uuid.UUID:
    mapping = Jsonb({item["source_event_id"]: str(event) for item in items})
    return make_feed(conn, source, config or {}, manual_event_mappings=mapping, **columns)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    upload=records("upload"),
    webhook=records("webhook"),
    api_a=records("custom_api"),
    api_b=records("custom_api"),
)
@example(  # every kind in every feed, whatever the random draws reach
    upload=every_variant("upload"),
    webhook=every_variant("webhook"),
    api_a=every_variant("custom_api"),
    api_b=every_variant("custom_api"),
)
def test_extreme_records_across_feeds_in_one_hour(
    conn, client, server, tmp_path, upload, webhook, api_a, api_b
):
    run = uuid.uuid4().hex[:8]
    landing = LandingZone(str(tmp_path / run))
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Extremes', %s) RETURNING id",
        (f"extremes-{run}",),
    ).fetchone()[0]
    plans = {"upload": upload, "webhook": webhook, "api_a": api_a, "api_b": api_b}
    items = {
        name: [_item(spec, f"{run}-{name}-{i}", minute=i) for i, spec in enumerate(specs)]
        for name, specs in plans.items()
    }
    feeds = {
        "upload": _feed(conn, "upload", items["upload"], event),
        "webhook": _feed(
            conn, "webhook", items["webhook"], event, credentials={"webhook_secret": SECRET}
        ),
    }
    body = "\n".join(json.dumps(i) for i in items["upload"]).encode()
    land_upload(conn, landing, load_feed(conn, feeds["upload"]), body, "x.jsonl", now=lambda: NOW)
    body = json.dumps(items["webhook"]).encode()
    land_webhook(
        conn,
        landing,
        load_feed(conn, feeds["webhook"]),
        body,
        sign_delivery(SECRET, body, sent_at=NOW, delivery_id=f"{run}-webhook"),
        encryption_key=lambda: KEY,
        now=lambda: NOW,
    )
    for name in ("api_a", "api_b"):
        path = f"/{run}/{name}"
        payload = {"items": [_as_custom_item(i) for i in items[name]]}
        server.add(path, Reply(200, json.dumps(payload).encode()))  # NaN/Infinity literals
        config = {
            "url": server.url(path),
            "records_path": "$.items[*]",
            "fields": CUSTOM_FIELDS,
            "pagination": {"mode": "none"},
        }
        feeds[name] = _feed(conn, "custom_api", items[name], event, config=config)
    fetch_window(
        conn,
        client,
        landing,
        WINDOW,
        mode="poll",
        feed_ids=[feeds["api_a"], feeds["api_b"]],
        encryption_key=lambda: KEY,
        now=lambda: NOW,
    )

    reports = validate_window(conn, landing, WINDOW, now=NOW)

    assert all(r.error is None for r in reports), [r.error for r in reports]
    for name, feed in feeds.items():
        good = sorted(
            item["source_event_id"]
            for spec, item in zip(plans[name], items[name], strict=True)
            if spec["quality"] == "good"
        )
        expected = Counter(BAD_KINDS[s["kind"]][1] for s in plans[name] if s["quality"] == "bad")
        written = sorted(
            display_market_id(sid)  # stored in the feed's own namespace
            for (sid,) in conn.execute(
                "SELECT source_event_id FROM prediction_signals WHERE feed_id = %s", (feed,)
            )
        )
        assert written == good, name
        runs = conn.execute(
            "SELECT r.status, l.records_rejected, l.rejected_reasons FROM prediction_feed_runs r"
            " JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id WHERE r.feed_id = %s",
            (feed,),
        ).fetchall()
        assert [status for status, _, _ in runs] == ["SUCCESS"], name
        [(_, rejected, reasons)] = runs
        assert rejected == sum(expected.values()), name
        assert Counter(reasons) == expected, name
    assert _running(conn) == 0


def _running(conn: psycopg.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM prediction_feed_runs WHERE status = 'RUNNING'"
    ).fetchone()[0]
