import json
from dataclasses import replace
from datetime import UTC, datetime

import jsonschema
import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, MarketFacts, PageRequest, PayloadError
from predict_pipeline.sources.base import ReadPage, read_page
from predict_pipeline.sources.custom_api import (
    ADAPTER,
    CONFIG_SCHEMA,
    EXAMPLE_CONFIG,
    RATE_LIMIT_RPM,
    SUPPORTS_BACKFILL,
    ItemError,
    checked_config,
)

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
FETCHED_AT = datetime(2026, 1, 31, 18, 10, 26, tzinfo=UTC)
WINDOW = FetchWindow(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
API = "https://api.example.org/v1/markets"


def payload(name: str):
    return json.loads((PAYLOADS / name).read_text(encoding="utf-8"))


def first_request(config: dict, mode: str = "poll") -> PageRequest:
    [request] = ADAPTER.plan(config, mode, WINDOW, None)
    return request


def read(config: dict, body, request: PageRequest | None = None) -> ReadPage:
    return read_page(ADAPTER, body, fetched_at=FETCHED_AT, request=request or first_request(config))


def simple(**extra) -> dict:
    return {
        "url": API,
        "records_path": "$.data",
        "fields": {"source_event_id": "id", "value": "p"},
        **extra,
    }


# --- the contract ---------------------------------------------------------------------------


def walk_schemas(schema: dict):
    yield schema
    for child in schema.get("properties", {}).values():
        yield from walk_schemas(child)
    for child in schema.get("oneOf", []):
        yield from walk_schemas(child)


def test_schema_is_strict_documented_and_the_default_config_is_valid():
    jsonschema.Draft202012Validator.check_schema(CONFIG_SCHEMA)
    jsonschema.Draft202012Validator(CONFIG_SCHEMA).validate(EXAMPLE_CONFIG)
    for schema in walk_schemas(CONFIG_SCHEMA):
        for name, prop in schema.get("properties", {}).items():
            assert prop.get("description"), name
        if "properties" in schema:
            assert schema["additionalProperties"] is False
    assert (ADAPTER.source, RATE_LIMIT_RPM, SUPPORTS_BACKFILL) == ("custom_api", 60, True)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (simple(url="ftp://x.org"), "$.url: fails the 'pattern' rule"),
        (simple(records_path="$."), "$.records_path: malformed field path '$.' at position 3"),
        (
            simple(fields={"source_event_id": "id", "value": "a[x]"}),
            "$.fields.value: malformed field path 'a[x]' at position 3",
        ),
        (simple(fields={"value": "p"}), "$.fields: 'source_event_id' is a required property"),
        (simple(colour="red"), "Additional properties are not allowed ('colour' was unexpected)"),
        (simple(pagination={"mode": "offset", "limit_param": "l"}), "'offset_param' is a required"),
        (simple(pagination={"mode": "pages"}), "$.pagination.mode: expected one of 'none', 'off"),
        (simple(body={"q": 1}), "$.body: a body is only sent with method POST"),
        (simple(timezone="Mars/Olympus"), "$.timezone: unknown time zone 'Mars/Olympus'"),
        (simple(window_start_param="from"), "'window_end_param' is a dependency"),
    ],
)
def test_a_bad_config_is_refused_naming_the_setting(config, message):
    with pytest.raises(ValueError) as caught:
        checked_config(config)
    assert str(caught.value).startswith("custom_api config: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            simple(headers={"Authorization": ["Bearer s3cr3t-token"]}),
            "custom_api config: $.headers.Authorization: fails the 'type' rule",
        ),
        (
            simple(params={"api_key": ["s3cr3t-token"]}),
            "custom_api config: $.params.api_key: fails the 'type' rule",
        ),
        (
            simple(url="htp://api.example.org/?api_key=s3cr3t-token"),
            "custom_api config: $.url: fails the 'pattern' rule",
        ),
    ],
)
def test_a_value_that_may_be_a_credential_is_never_echoed_in_a_config_error(config, message):
    with pytest.raises(ValueError) as caught:
        checked_config(config)
    assert str(caught.value) == message


# --- recorded payloads through the mapping --------------------------------------------------


def test_default_config_reads_the_predictit_snapshot():
    request = first_request(EXAMPLE_CONFIG)
    assert (request.url, request.method, request.params) == (
        "https://www.predictit.org/api/marketdata/all/",
        "GET",
        {},
    )
    page = read(EXAMPLE_CONFIG, payload("predictit_marketdata_all.json"), request)
    assert len(page.records) == 123
    assert page.rejected == [] and page.next_requests == []
    assert page.endpoint == "https://www.predictit.org/api/marketdata/all/"
    first, last = page.records[0], page.records[-1]
    assert (first.source, first.source_event_id, first.signal_type, first.value) == (
        "custom_api",
        "28361",
        "MARKET_PRICE",
        0.25,
    )
    assert first.fetched_at == FETCHED_AT  # no fetched_at path: the fetch time
    assert first.market == MarketFacts(title="192 or fewer", status="open")  # dateEnd "NA"
    assert first.raw_data["bestBuyYesCost"] == 0.26
    assert (last.source_event_id, last.value, last.market.title) == ("32031", 0.3, "Democratic")
    assert sum(record.value for record in page.records) == pytest.approx(20.03)


def test_predictit_nulls_are_rejected_items_and_the_rest_land():
    config = {**EXAMPLE_CONFIG, "fields": {"source_event_id": "id", "value": "bestSellYesCost"}}
    page = read(config, payload("predictit_marketdata_all.json"))
    empty_books = [37, 68, 77, 78, 79, 80, 82, 83, 87, 88, 90, 91, 92, 93, 94, 95]
    empty_books += [96, 97, 98, 99, 100, 101, 102, 104, 105, 106, 107, 117, 120]
    assert [error.index for error in page.rejected] == empty_books
    assert page.rejected[0] == ItemError(
        37, "value", "missing; a MARKET_PRICE signal needs a number"
    )
    assert len(page.records) == 123 - 29
    assert (page.records[0].source_event_id, page.records[0].value) == ("28361", 0.25)


def test_a_missing_value_token_is_a_fault_unless_configured():
    config = {**EXAMPLE_CONFIG, "missing_values": []}
    page = read(config, payload("predictit_marketdata_all.json"))
    assert page.records == []
    assert len(page.rejected) == 123
    assert page.rejected[0] == ItemError(
        0, "close_time", "expected an ISO-8601 timestamp, got 'NA'"
    )


MANIFOLD = {
    "url": "https://api.manifold.markets/v0/markets",
    "records_path": "$",
    "fields": {
        "source_event_id": "id",
        "value": "probability",
        "fetched_at": "lastUpdatedTime",
        "title": "question",
        "source_url": "url",
        "close_time": "closeTime",
        "resolution": "resolution",
    },
    "timestamp_format": "epoch_ms",
}


def test_manifold_epoch_ms_timestamps_and_non_binary_markets_rejected():
    page = read(MANIFOLD, payload("manifold_markets.json"))
    assert len(page.records) == 14
    no_probability = [1, 3, 8, 15, 18, 19]  # POLL, DATE, 2 MULTIPLE_CHOICE, 2 MULTI_NUMERIC
    assert page.rejected == [
        ItemError(i, "value", "missing; a MARKET_PRICE signal needs a number")
        for i in no_probability
    ]
    first = page.records[0]
    assert (first.source_event_id, first.value) == ("qy222g0Nhq", 0.5)
    assert first.fetched_at == datetime(2026, 1, 31, 18, 5, 55, 739000, tzinfo=UTC)
    assert (
        first.source_url
        == "https://manifold.markets/realDonaldTrump/polymarket-moltbook-ai-agent-sues-a"
    )
    assert first.market == MarketFacts(
        title="[Polymarket] Moltbook AI agent sues a human by Feb 28?",
        close_time=datetime(2026, 2, 27, 23, 59, tzinfo=UTC),
    )
    resolved = page.records[2]
    assert (resolved.source_event_id, resolved.value) == ("ygtnI8ZQ5n", 0.78)
    assert (resolved.market.status, resolved.market.resolution) == ("resolved", "YES")
    settled = [
        (r.source_event_id, r.market.resolution) for r in page.records if r.market.resolution
    ]
    assert settled == [("ygtnI8ZQ5n", "YES"), ("QlQRu9SQSh", "NO")]


def test_kalshi_cents_scaled_and_settlements_read():
    config = {
        "url": "https://api.elections.kalshi.com/trade-api/v2/markets",
        "params": {"event_ticker": "KXELONTWEETS-25MAR28", "limit": "1000"},
        "records_path": "$.markets",
        "fields": {
            "source_event_id": "ticker",
            "value": "last_price",
            "close_time": "close_time",
            "status": "status",
            "resolution": "result",
        },
        "value_scale": 0.01,
        "pagination": {"mode": "cursor", "cursor_path": "$.cursor", "cursor_param": "cursor"},
    }
    request = first_request(config)
    assert request.params == {"event_ticker": "KXELONTWEETS-25MAR28", "limit": "1000"}
    page = read(config, payload("kalshi_markets_finalized_cents.json"), request)
    assert len(page.records) == 13 and page.rejected == []
    assert page.next_requests == []  # cursor "" is the last page
    winner = page.records[8]
    assert winner.source_event_id == "KXELONTWEETS-25MAR28-474.5"
    assert winner.value == pytest.approx(0.99)
    assert (winner.market.status, winner.market.resolution) == ("resolved", "YES")
    assert winner.market.close_time == datetime(2025, 3, 28, 16, 0, tzinfo=UTC)
    assert [r.market.resolution for r in page.records].count("NO") == 12


def test_polymarket_clob_cursor_page_leads_to_the_next_cursor():
    config = {
        "url": "https://clob.polymarket.com/markets",
        "records_path": "$.data[*]",
        "fields": {
            "source_event_id": "condition_id",
            "value": "tokens[0].price",
            "title": "question",
            "close_time": "end_date_iso",
        },
        "pagination": {"mode": "cursor", "cursor_path": "next_cursor", "cursor_param": "cursor"},
    }
    page = read(config, payload("polymarket_clob_markets_page.json"))
    assert len(page.records) == 20 and page.rejected == []
    assert [r.value for r in page.records][:8] == [0, 1, 0, 0, 1, 0, 0, 0.545]
    assert page.records[0].market.title == (
        "[Single Market] Will Ron DeSantis win the U.S. 2024 Republican presidential nomination?"
    )
    [following] = page.next_requests
    assert (following.url, following.params) == (
        "https://clob.polymarket.com/markets",
        {"cursor": "MTAw"},
    )
    assert following.context["page_number"] == 2


def test_metaculus_next_link_is_followed_over_https_and_a_hidden_cp_is_not_zero():
    config = {
        "url": "https://www.metaculus.com/api/posts/",
        "params": {"limit": "100", "statuses": "open"},
        "headers": {"Authorization": "Token abc"},
        "records_path": "$.results",
        "fields": {
            "source_event_id": "id",
            "value": "question.aggregations.recency_weighted.latest.centers[0]",
            "title": "title",
            "close_time": "scheduled_close_time",
            "status": "status",
        },
        "pagination": {"mode": "next_url", "next_url_path": "$.next"},
    }
    request = first_request(config)
    assert "headers" not in request.context["mapping"]  # credentials stay out of the landing zone
    page = read(config, payload("metaculus_posts_list.json"), request)
    assert page.records == []
    assert [e.index for e in page.rejected] == list(range(10))
    assert {e.field for e in page.rejected} == {"value"}
    [following] = page.next_requests
    assert following.url == (
        "https://www.metaculus.com/api/posts/?forecast_type=binary%2Cmultiple_choice%2Cnumeric"
        "%2Cdiscrete&include_description=true&limit=100&offset=100&order_by=-hotness&statuses=open"
    )
    assert following.params == {}
    assert following.headers == {"Authorization": "Token abc"}


# --- pagination -----------------------------------------------------------------------------


def items(count: int, start: int = 0) -> list[dict]:
    return [{"id": f"m{i}", "p": round(0.1 * (i % 9 + 1), 1)} for i in range(start, start + count)]


def test_offset_pagination_advances_by_page_size_and_stops_at_a_short_page():
    config = simple(
        pagination={
            "mode": "offset",
            "limit_param": "limit",
            "offset_param": "offset",
            "page_size": 2,
        }
    )
    request = first_request(config)
    assert request.params == {"limit": "2", "offset": "0"}
    page = read(config, {"data": items(2)}, request)
    [second] = page.next_requests
    assert second.params == {"limit": "2", "offset": "2"}
    assert second.context["page_number"] == 2
    page = read(config, {"data": items(2, 2)}, second)
    [third] = page.next_requests
    assert third.params == {"limit": "2", "offset": "4"}
    last = read(config, {"data": items(1, 4)}, third)
    assert [r.source_event_id for r in last.records] == ["m4"]
    assert last.next_requests == [] and not last.page_limit_reached


def test_page_pagination_counts_pages_and_stops_at_an_empty_page():
    config = simple(
        params={"sort": "new"}, pagination={"mode": "page", "page_param": "p", "start": 0}
    )
    request = first_request(config)
    assert request.params == {"sort": "new", "p": "0"}
    [second] = read(config, {"data": items(3)}, request).next_requests
    assert second.params == {"sort": "new", "p": "1"}
    end = read(config, {"data": []}, second)
    assert end.records == [] and end.rejected == [] and end.next_requests == []


def test_page_pagination_with_a_page_size_stops_at_a_short_page():
    pagination = {"mode": "page", "page_param": "page", "limit_param": "per_page", "page_size": 3}
    config = simple(pagination=pagination)
    request = first_request(config)
    assert request.params == {"page": "1", "per_page": "3"}
    assert read(config, {"data": items(2)}, request).next_requests == []


def test_cursor_pagination_stops_when_the_cursor_is_missing_or_repeated():
    pagination = {"mode": "cursor", "cursor_path": "$.meta.next", "cursor_param": "after"}
    config = simple(pagination=pagination)
    request = first_request(config)
    assert request.params == {}
    [second] = read(config, {"data": items(2), "meta": {"next": 17}}, request).next_requests
    assert second.params == {"after": "17"} and second.context["cursor"] == "17"
    assert read(config, {"data": items(2), "meta": {"next": "17"}}, second).next_requests == []
    assert read(config, {"data": items(2), "meta": {}}, second).next_requests == []
    with pytest.raises(PayloadError, match=r"cursor at '\$.meta.next' is a dict, not text"):
        read(config, {"data": [], "meta": {"next": {"id": 1}}}, second)


def test_next_url_resolves_relative_links_and_refuses_another_host():
    config = simple(pagination={"mode": "next_url", "next_url_path": "links.next"})
    request = first_request(config)
    [second] = read(config, {"data": items(1), "links": {"next": "?page=2"}}, request).next_requests
    assert (second.url, second.params) == (f"{API}?page=2", {})
    assert read(config, {"data": items(1), "links": {"next": None}}, second).next_requests == []
    same = {"data": items(1), "links": {"next": f"{API}?page=2"}}
    assert read(config, same, second).next_requests == []  # a link to itself ends the walk
    elsewhere = {"data": items(1), "links": {"next": "https://collector.evil.test/steal"}}
    with pytest.raises(PayloadError) as caught:
        read(config, elsewhere, second)
    assert caught.value.endpoint == API
    assert "points at collector.evil.test, not the configured host api.example.org" in str(
        caught.value
    )


def test_max_pages_bounds_every_mode_and_says_so():
    config = simple(
        pagination={
            "mode": "offset",
            "limit_param": "limit",
            "offset_param": "offset",
            "page_size": 1,
            "max_pages": 2,
        }
    )
    [second] = read(config, {"data": items(1)}, first_request(config)).next_requests
    capped = read(config, {"data": items(1, 1)}, second)
    assert capped.next_requests == [] and capped.page_limit_reached
    assert [r.source_event_id for r in capped.records] == ["m1"]


def test_post_method_and_body_travel_with_every_page():
    config = simple(
        method="POST",
        body={"query": "elections"},
        pagination={"mode": "cursor", "cursor_path": "cursor", "cursor_param": "cursor"},
    )
    request = first_request(config)
    assert (request.method, request.body) == ("POST", {"query": "elections"})
    [second] = read(config, {"data": items(1), "cursor": "c2"}, request).next_requests
    assert (second.method, second.body, second.params) == (
        "POST",
        {"query": "elections"},
        {"cursor": "c2"},
    )


# --- items and pages that cannot be read ----------------------------------------------------


def test_bad_items_are_rejected_with_index_field_and_reason_while_good_items_land():
    body = {
        "data": [
            {"id": "a", "p": 0.4},
            {"p": 0.3},
            {"id": "c", "p": "about half"},
            {"id": "d", "p": "0.65", "when": "2026-01-31T10:00:00"},
            {"id": True, "p": 0.1},
            {"id": 6, "p": 0.2, "tags": ["politics", "us"]},
            {"id": "g", "p": [0.1, 0.2]},
        ]
    }
    config = simple(
        fields={"source_event_id": "id", "value": "p", "fetched_at": "when", "category": "tags"}
    )
    page = read(config, body)
    assert [(r.source_event_id, r.value) for r in page.records] == [("a", 0.4), ("6", 0.2)]
    assert page.records[1].market.category_hints == ("politics", "us")
    assert page.rejected == [
        ItemError(1, "source_event_id", "missing"),
        ItemError(2, "value", "expected a number, got 'about half'"),
        ItemError(
            3,
            "fetched_at",
            "timestamp '2026-01-31T10:00:00' has no UTC offset; add one (e.g. 'Z') "
            "or set the feed's timezone",
        ),
        ItemError(4, "source_event_id", "expected text or an integer, got True"),
        ItemError(6, "value", "expected a number, got [0.1, 0.2]"),
    ]


def test_a_configured_timezone_reads_naive_timestamps():
    config = simple(
        fields={"source_event_id": "id", "value": "p", "fetched_at": "when"},
        timezone="America/New_York",
    )
    page = read(config, {"data": [{"id": "d", "p": 0.65, "when": "2026-01-31T10:00:00.1234567"}]})
    assert page.records[0].fetched_at == datetime(2026, 1, 31, 15, 0, 0, 123456, tzinfo=UTC)


def test_an_item_path_matching_several_values_is_a_rejected_item():
    config = simple(fields={"source_event_id": "id", "value": "p[*]"})
    page = read(config, {"data": [{"id": "x", "p": [0.1, 0.2]}, {"id": "y", "p": [0.3]}]})
    assert [(r.source_event_id, r.value) for r in page.records] == [("y", 0.3)]
    assert page.rejected == [ItemError(0, "value", "path 'p[*]' matched 2 values, not one")]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"error": "rate limited"},
            "records_path: nothing at $.data (an object with keys error there)",
        ),
        ({"data": {"id": 1}}, "records_path: $.data holds an object with keys id where a list"),
        ([], "records_path: nothing at $.data (a list there)"),
    ],
)
def test_a_body_without_items_is_a_payload_error(body, reason):
    with pytest.raises(PayloadError) as caught:
        read(simple(), body)
    assert (caught.value.source, caught.value.endpoint) == ("custom_api", API)
    assert caught.value.reason.startswith(reason)


def test_the_recorded_kalshi_body_under_a_wrong_records_path_is_a_payload_error():
    config = simple(
        url="https://api.elections.kalshi.com/trade-api/v2/markets", records_path="$.market"
    )
    with pytest.raises(PayloadError) as caught:
        read(config, payload("kalshi_markets_active_cents.json"))
    assert (
        caught.value.reason
        == "records_path: nothing at $.market (an object with keys cursor, markets there)"
    )


def test_a_landed_request_with_a_malformed_field_path_is_a_payload_error():
    # Configs are checked when planned; a landed page's request carries its own mapping.
    request = first_request(simple())
    mapping = {**request.context["mapping"], "fields": {"source_event_id": "id", "value": "p["}}
    request = replace(request, context={**request.context, "mapping": mapping})
    with pytest.raises(PayloadError) as caught:
        read(simple(), {"data": [{"id": "a", "p": 0.5}]}, request)
    assert caught.value.reason.startswith("fields: malformed field path 'p[' at position 3")


def test_a_page_without_its_request_cannot_be_read():
    with pytest.raises(PayloadError) as caught:
        read_page(ADAPTER, {"data": []}, fetched_at=FETCHED_AT)
    assert caught.value.endpoint == "(no request)"
    assert "mapping" in caught.value.reason


# --- backfill -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window_format", "start", "end"),
    [
        ("iso", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        ("epoch_s", "1767225600", "1767312000"),
        ("epoch_ms", "1767225600000", "1767312000000"),
    ],
)
def test_backfill_puts_the_window_in_the_query(window_format, start, end):
    config = simple(
        params={"q": "x"},
        window_start_param="from",
        window_end_param="to",
        window_format=window_format,
    )
    request = first_request(config, "backfill")
    assert request.params == {"q": "x", "from": start, "to": end}
    assert first_request(config, "poll").params == {"q": "x"}


def test_backfill_without_window_params_is_refused():
    with pytest.raises(ValueError, match="backfill needs window_start_param and window_end_param"):
        first_request(simple(), "backfill")
