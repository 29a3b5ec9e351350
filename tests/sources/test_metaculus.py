"""Metaculus adapter against recorded payloads (fixtures/payloads, see SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, PageRequest, PayloadError
from predict_pipeline.sources import metaculus
from predict_pipeline.sources.base import read_page

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
# The capture's date_accessed (SOURCES.md).
FETCHED_AT = datetime(2025, 8, 25, 19, 22, 11, tzinfo=UTC)
BASE = "https://www.metaculus.com/api"
TOKEN = "0123456789abcdef-test-token"
CONFIG = {"credentials": {"token": TOKEN}}
WINDOW = FetchWindow(FETCHED_AT, FETCHED_AT)


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def test_module_contract():
    Draft202012Validator.check_schema(metaculus.CONFIG_SCHEMA)
    Draft202012Validator(metaculus.CONFIG_SCHEMA).validate(metaculus.DEFAULT_CONFIG)
    assert metaculus.CONFIG_SCHEMA["additionalProperties"] is False
    assert all("description" in p for p in metaculus.CONFIG_SCHEMA["properties"].values())
    assert metaculus.RATE_LIMIT_RPM == 16
    assert metaculus.SUPPORTS_BACKFILL is True
    assert metaculus.ADAPTER.source == "metaculus"


def test_post_detail_community_prediction_is_an_expert_signal():
    page = read_page(
        metaculus.ADAPTER, load("metaculus_post_detail_with_cp.json"), fetched_at=FETCHED_AT
    )
    assert page.endpoint == "post"
    (record,) = page.records
    assert record.signal_type == "EXPERT"
    assert record.value == 0.01
    assert record.source_event_id == "578"
    assert record.fetched_at == FETCHED_AT
    assert record.source_url == "https://www.metaculus.com/questions/578/"
    assert record.market.parent_id == "578"
    assert record.market.title == "Will humans go extinct before 2100?"
    assert record.market.close_time == datetime(2100, 1, 2, tzinfo=UTC)
    assert record.market.status == "open"
    assert record.market.resolution is None
    assert "Top Questions" in record.market.category_hints
    assert record.raw_data["entry"]["forecaster_count"] == 1633
    assert "histogram" not in record.raw_data["entry"]


def test_forecast_values_stand_in_when_centers_are_null():
    # Derived: the file's metaculus_prediction.latest (centers null) as the recency CP.
    post = load("metaculus_post_detail_with_cp.json")
    aggregations = post["question"]["aggregations"]
    aggregations["recency_weighted"]["latest"] = aggregations["metaculus_prediction"]["latest"]
    (record,) = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT).records
    assert record.value == 0.03183102394578096


def test_hidden_community_prediction_gives_no_record_never_zero():
    post = load("metaculus_post_detail_with_cp.json")
    post["question"]["aggregations"]["recency_weighted"]["latest"] = None
    page = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)
    assert page.records == []
    assert [(s.item, s.reason) for s in page.skipped] == [
        ("578", "community prediction not visible (latest null)")
    ]


def test_posts_list_with_hidden_cp_and_next_page():
    (first,) = metaculus.ADAPTER.plan(CONFIG, "poll", WINDOW, None)
    assert first.headers == {"Authorization": f"Token {TOKEN}"}
    assert first.params == {
        "limit": "100",
        "offset": "0",
        "statuses": "open",
        "forecast_type": "binary,multiple_choice",
        "order_by": "-hotness",
    }
    body = load("metaculus_posts_list.json")
    assert read_page(metaculus.ADAPTER, body, fetched_at=FETCHED_AT).endpoint == "posts"
    page = read_page(metaculus.ADAPTER, body, fetched_at=FETCHED_AT, request=first)
    assert page.records == []  # every latest CP in this capture is null
    reasons = [s.reason for s in page.skipped]
    assert len(reasons) == 10
    assert reasons.count("community prediction not visible (latest null)") == 7
    assert reasons.count("numeric question: a distribution, no probability") == 2
    assert reasons.count("discrete question: a distribution, no probability") == 1

    (following,) = page.next_requests
    assert following.url == f"{BASE}/posts/"
    assert following.params == {
        "forecast_type": "binary,multiple_choice,numeric,discrete",
        "include_description": "true",
        "limit": "100",
        "offset": "100",
        "order_by": "-hotness",
        "statuses": "open",
    }
    assert following.headers == first.headers
    assert following.context["page"] == 2

    body["next"] = None
    assert (
        read_page(metaculus.ADAPTER, body, fetched_at=FETCHED_AT, request=first).next_requests == []
    )
    last = PageRequest("posts", first.url, params=first.params, context={"page": 5, "max_pages": 5})
    page = read_page(
        metaculus.ADAPTER, load("metaculus_posts_list.json"), fetched_at=FETCHED_AT, request=last
    )
    assert page.next_requests == []
    assert page.skipped[-1].reason.startswith("max_pages (5) reached; 'next' was http://")


def test_multiple_choice_gives_one_question_per_option():
    post = next(p for p in load("metaculus_posts_list.json")["results"] if p["id"] == 39779)
    # Synthetic CP: the capture hides it; forecast_values follow the options' order.
    post["question"]["aggregations"]["recency_weighted"]["latest"] = {
        "start_time": 1757600000.0,
        "end_time": None,
        "forecaster_count": 40,
        "centers": None,
        "forecast_values": [0.37, 0.6, 0.03],
    }
    page = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)
    assert [(r.source_event_id, r.value, r.market.outcome) for r in page.records] == [
        (
            "39228:The Republican Party candidate (Jack Ciattarelli)",
            0.37,
            "The Republican Party candidate (Jack Ciattarelli)",
        ),
        (
            "39228:The Democratic Party candidate (Mikie Sherrill)",
            0.6,
            "The Democratic Party candidate (Mikie Sherrill)",
        ),
        ("39228:Other", 0.03, "Other"),
    ]
    post["question"]["resolution"] = "The Democratic Party candidate (Mikie Sherrill)"
    resolved = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT).records
    assert [r.market.resolution for r in resolved] == ["NO", "YES", "NO"]

    post["question"]["aggregations"]["recency_weighted"]["latest"]["forecast_values"] = [0.4, 0.6]
    with pytest.raises(PayloadError, match="2 values for 3 options"):
        read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)


def test_groups_and_conditionals_are_iterated_and_notebooks_skipped():
    detail = load("metaculus_post_detail_with_cp.json")
    question = detail.pop("question")
    # Derived: the recorded question moved under a group, then under a conditional branch.
    grouped = {**detail, "group_of_questions": {"id": 9, "questions": [question]}}
    (record,) = read_page(metaculus.ADAPTER, grouped, fetched_at=FETCHED_AT).records
    assert (record.source_event_id, record.value, record.market.parent_id) == ("578", 0.01, "578")

    conditional = {**detail, "conditional": {"id": 7, "question_yes": question}}
    (record,) = read_page(metaculus.ADAPTER, conditional, fetched_at=FETCHED_AT).records
    assert record.value == 0.01

    notebook = {**detail, "notebook": {"id": 3}}
    request = PageRequest("post", f"{BASE}/posts/578/")
    page = read_page(metaculus.ADAPTER, notebook, fetched_at=FETCHED_AT, request=request)
    assert page.records == []
    assert page.skipped[0].reason == "post holds no question, group or conditional"


def test_history_inside_the_window_becomes_expert_records_at_start_time():
    window = FetchWindow(datetime(2017, 12, 31, tzinfo=UTC), datetime(2018, 1, 20, tzinfo=UTC))
    config = {**CONFIG, "post_ids": [578]}
    (request,) = metaculus.ADAPTER.plan(config, "backfill", window, None)
    assert request.url == f"{BASE}/posts/578/"
    page = read_page(
        metaculus.ADAPTER,
        load("metaculus_post_detail_with_cp.json"),
        fetched_at=FETCHED_AT,
        request=request,
    )
    assert [(r.value, r.fetched_at.timestamp()) for r in page.records] == [
        (0.03, 1514712968.711176),
        (0.01, 1516293867.27546),
    ]
    assert {r.signal_type for r in page.records} == {"EXPERT"}

    empty = FetchWindow(datetime(2019, 1, 1, tzinfo=UTC), datetime(2019, 2, 1, tzinfo=UTC))
    page = read_page(
        metaculus.ADAPTER,
        load("metaculus_post_detail_with_cp.json"),
        fetched_at=FETCHED_AT,
        window=empty,
    )
    assert page.records == []
    assert page.skipped[0].reason == "no CP history entry inside the window"


def test_backfill_of_a_list_asks_each_post_for_its_history():
    (listing,) = metaculus.ADAPTER.plan(CONFIG, "backfill", WINDOW, None)
    page = read_page(
        metaculus.ADAPTER, load("metaculus_posts_list.json"), fetched_at=FETCHED_AT, request=listing
    )
    details = [r for r in page.next_requests if r.endpoint == "post"]
    assert [r.url for r in details][:2] == [f"{BASE}/posts/39700/", f"{BASE}/posts/39336/"]
    assert len(details) == 10
    assert details[0].headers == {"Authorization": f"Token {TOKEN}"}
    assert details[0].context["window_start"] == FETCHED_AT.isoformat()


def test_credentials_are_required_and_never_echoed():
    with pytest.raises(ValueError, match="no API token"):
        metaculus.ADAPTER.plan({}, "poll", WINDOW, None)
    with pytest.raises(ValueError) as invalid:
        metaculus.ADAPTER.plan({"credentials": {"token": 987654321}}, "poll", WINDOW, None)
    assert "987654321" not in str(invalid.value)
    assert "credentials" in str(invalid.value)


def test_errors_name_source_endpoint_and_item():
    post = load("metaculus_post_detail_with_cp.json")
    post["question"]["aggregations"]["recency_weighted"]["latest"]["centers"] = ["1%"]
    with pytest.raises(PayloadError) as bad:
        read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)
    assert (bad.value.source, bad.value.endpoint) == ("metaculus", "post")
    assert "question 578" in bad.value.reason and "'1%'" in bad.value.reason

    post = load("metaculus_post_detail_with_cp.json")
    del post["question"]["id"]
    with pytest.raises(PayloadError, match="post 578 question: missing or invalid 'id'"):
        read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)

    post = load("metaculus_post_detail_with_cp.json")
    post["question"]["resolution"] = "maybe"
    with pytest.raises(PayloadError, match="unknown value 'maybe'"):
        read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)

    with pytest.raises(PayloadError) as unknown:
        read_page(metaculus.ADAPTER, {"detail": "Not found."}, fetched_at=FETCHED_AT)
    assert unknown.value.source == "metaculus"


def test_resolutions_and_annulment():
    post = load("metaculus_post_detail_with_cp.json")
    post["question"]["resolution"] = "annulled"
    post["question"]["status"] = "resolved"
    post["question"]["actual_resolve_time"] = "2025-09-01T12:00:00Z"
    (record,) = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT).records
    assert record.market.resolution == "CANCELLED"
    assert record.market.status == "cancelled"
    assert record.market.resolution_time == datetime(2025, 9, 1, 12, tzinfo=UTC)
    post["question"]["resolution"] = "yes"
    (record,) = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT).records
    assert (record.market.resolution, record.market.status) == ("YES", "resolved")
