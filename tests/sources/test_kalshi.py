"""Kalshi adapter against recorded payloads (fixtures/payloads, see SOURCES.md)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, PageRequest, PayloadError
from predict_pipeline.sources import kalshi
from predict_pipeline.sources.base import read_page

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
FETCHED_AT = datetime(2025, 4, 5, 12, 0, tzinfo=UTC)
BASE = "https://api.elections.kalshi.com/trade-api/v2"


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def by_id(records, signal_type):
    return {r.source_event_id: r for r in records if r.signal_type == signal_type}


def to_current_schema(market: dict[str, Any]) -> dict[str, Any]:
    """Derived: a recorded cents-schema market rewritten in the fixed-point schema
    (`*_dollars` 4-decimal strings, `*_fp` 2-decimal strings, legacy fields removed)."""
    current = {k: v for k, v in market.items() if k != "response_price_units"}
    for name in (
        "yes_bid",
        "yes_ask",
        "no_bid",
        "no_ask",
        "last_price",
        "previous_yes_bid",
        "previous_yes_ask",
        "previous_price",
        "settlement_value",
        "notional_value",
    ):
        if name in current:
            current[f"{name}_dollars"] = f"{current.pop(name) / 100:.4f}"
    for name in ("volume", "volume_24h", "open_interest"):
        current[f"{name}_fp"] = f"{current.pop(name):.2f}"
    return current


def test_module_contract():
    Draft202012Validator.check_schema(kalshi.CONFIG_SCHEMA)
    Draft202012Validator(kalshi.CONFIG_SCHEMA).validate(kalshi.DEFAULT_CONFIG)
    assert kalshi.CONFIG_SCHEMA["additionalProperties"] is False
    assert all("description" in p for p in kalshi.CONFIG_SCHEMA["properties"].values())
    assert kalshi.RATE_LIMIT_RPM == 1200
    assert kalshi.SUPPORTS_BACKFILL is True
    assert kalshi.ADAPTER.source == "kalshi"


def test_active_cents_markets_recognised_and_priced():
    page = read_page(
        kalshi.ADAPTER, load("kalshi_markets_active_cents.json"), fetched_at=FETCHED_AT
    )
    assert page.endpoint == "markets"
    assert len(page.records) == 26
    assert page.next_requests == []  # cursor "" is the last page
    prices, volumes = by_id(page.records, "MARKET_PRICE"), by_id(page.records, "VOLUME")
    assert len(prices) == 13 and len(volumes) == 13

    traded = prices["KXELONTWEETS-25APR11-300"]
    assert traded.value == 0.5
    assert traded.raw_data["price_rule"] == "last_trade"
    assert traded.fetched_at == FETCHED_AT
    assert traded.market.close_time == datetime(2025, 4, 11, 16, 0, tzinfo=UTC)
    assert traded.market.status == "open"
    assert traded.market.resolution is None
    assert traded.market.parent_id == "KXELONTWEETS-25APR11"
    assert traded.market.outcome == "299 or below"
    assert volumes["KXELONTWEETS-25APR11-300"].value == 5615.0

    # A stale last trade (8c) still wins over the current 0/4c book: the documented rule.
    assert prices["KXELONTWEETS-25APR11-474.5"].value == 0.08
    # Never traded: midpoint of no bid (0) and a 1c ask.
    never = prices["KXELONTWEETS-25APR11-849"]
    assert never.value == 0.005
    assert never.raw_data["price_rule"] == "bid_ask_midpoint"
    assert volumes["KXELONTWEETS-25APR11-849"].value == 0.0


def test_finalized_market_resolution():
    page = read_page(
        kalshi.ADAPTER, load("kalshi_markets_finalized_cents.json"), fetched_at=FETCHED_AT
    )
    assert page.endpoint == "markets"
    assert len(page.records) == 26
    prices = by_id(page.records, "MARKET_PRICE")
    winner = prices["KXELONTWEETS-25MAR28-474.5"]
    assert winner.market.status == "resolved"
    assert winner.market.resolution == "YES"
    assert winner.value == 0.99
    assert by_id(page.records, "VOLUME")["KXELONTWEETS-25MAR28-474.5"].value == 22209.0
    assert prices["KXELONTWEETS-25MAR28-424.5"].market.resolution == "NO"
    assert [r.market.resolution for r in prices.values()].count("YES") == 1


def test_settlement_and_close_times_with_microseconds():
    # Derived: the current schema adds settlement_ts; Kalshi writes up to microseconds.
    body = load("kalshi_markets_finalized_cents.json")
    market = next(m for m in body["markets"] if m["result"] == "yes")
    market["settlement_ts"] = "2025-03-28T16:31:05.123456Z"
    market["close_time"] = "2025-03-28T16:00:00.5Z"
    page = read_page(kalshi.ADAPTER, {"markets": [market], "cursor": ""}, fetched_at=FETCHED_AT)
    facts = page.records[0].market
    assert facts.resolution_time == datetime(2025, 3, 28, 16, 31, 5, 123456, tzinfo=UTC)
    assert facts.close_time == datetime(2025, 3, 28, 16, 0, 0, 500000, tzinfo=UTC)


def test_current_fixed_point_schema_gives_the_same_values():
    recorded = load("kalshi_markets_active_cents.json")
    current = {**recorded, "markets": [to_current_schema(m) for m in recorded["markets"]]}
    assert "last_price" not in current["markets"][0]
    legacy_page = read_page(kalshi.ADAPTER, recorded, fetched_at=FETCHED_AT)
    current_page = read_page(kalshi.ADAPTER, current, fetched_at=FETCHED_AT)
    legacy = [(r.source_event_id, r.signal_type, r.value) for r in legacy_page.records]
    assert [(r.source_event_id, r.signal_type, r.value) for r in current_page.records] == legacy
    assert by_id(current_page.records, "MARKET_PRICE")["KXELONTWEETS-25APR11-324.5"].value == 0.25


def test_fixed_point_fields_are_preferred_over_cents():
    market = copy.deepcopy(load("kalshi_markets_active_cents.json")["markets"][-1])
    market["last_price_dollars"] = "0.5100"
    market["volume_fp"] = "5616.00"
    page = read_page(kalshi.ADAPTER, {"markets": [market], "cursor": ""}, fetched_at=FETCHED_AT)
    assert [(r.signal_type, r.value) for r in page.records] == [
        ("MARKET_PRICE", 0.51),
        ("VOLUME", 5616.0),
    ]


def test_events_lead_to_market_listings_with_category():
    request = kalshi.ADAPTER.plan(
        {"series_ticker": "KXELONTWEETS"}, "poll", FetchWindow(FETCHED_AT, FETCHED_AT), None
    )[0]
    assert request.endpoint == "events"
    assert request.params == {"series_ticker": "KXELONTWEETS", "limit": "200"}
    assert read_page(
        kalshi.ADAPTER, load("kalshi_events.json"), fetched_at=FETCHED_AT
    ).endpoint == ("events")
    page = read_page(
        kalshi.ADAPTER, load("kalshi_events.json"), fetched_at=FETCHED_AT, request=request
    )
    assert page.records == []
    assert len(page.next_requests) == 7
    first = page.next_requests[0]
    assert first.url == f"{BASE}/markets"
    assert first.params == {"event_ticker": "KXELONTWEETS-25APR04", "limit": "1000"}

    march = next(
        r for r in page.next_requests if r.params["event_ticker"] == "KXELONTWEETS-25MAR28"
    )
    markets = read_page(
        kalshi.ADAPTER,
        load("kalshi_markets_finalized_cents.json"),
        fetched_at=FETCHED_AT,
        request=march,
    )
    record = markets.records[0]
    assert record.market.category_hints == ("Politics",)
    assert record.market.title == "Will Elon Musk post on X above 850 or above times in ?"


def test_markets_paging_follows_the_cursor_and_stops_on_empty():
    request = PageRequest(
        "markets", f"{BASE}/markets", params={"event_ticker": "KXELONTWEETS-25APR11", "limit": "2"}
    )
    body = load("kalshi_markets_active_cents.json")
    body["cursor"] = "CgsIhYKnvwYQqOC"
    page = read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT, request=request)
    assert page.next_requests == [
        PageRequest(
            "markets",
            f"{BASE}/markets",
            params={
                "event_ticker": "KXELONTWEETS-25APR11",
                "limit": "2",
                "cursor": "CgsIhYKnvwYQqOC",
            },
        )
    ]
    body["cursor"] = None
    assert (
        read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT, request=request).next_requests == []
    )
    (second,) = page.next_requests
    body["cursor"] = "CgsIhYKnvwYQqOC"
    with pytest.raises(PayloadError, match="kalshi markets: cursor 'CgsIhYKnvwYQqOC' did not"):
        read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT, request=second)


def test_poll_plan_from_config():
    window = FetchWindow(FETCHED_AT, FETCHED_AT)
    config = {"tickers": ["A-1", "A-2"], "event_tickers": ["E-1"], "market_status": "open"}
    requests = kalshi.ADAPTER.plan(config, "poll", window, None)
    assert [(r.endpoint, r.params) for r in requests] == [
        ("markets", {"tickers": "A-1,A-2", "limit": "1000", "status": "open"}),
        ("markets", {"event_ticker": "E-1", "limit": "1000", "status": "open"}),
    ]
    with pytest.raises(ValueError, match="kalshi config"):
        kalshi.ADAPTER.plan({"limit": 5000}, "poll", window, None)


def test_backfill_plans_cutoff_then_listings_then_candles_per_tier():
    window = FetchWindow(datetime(2025, 3, 20, tzinfo=UTC), datetime(2025, 3, 29, tzinfo=UTC))
    config = {"event_tickers": ["KXELONTWEETS-25MAR28"], "period_interval": 1440}
    (cutoff_request,) = kalshi.ADAPTER.plan(config, "backfill", window, None)
    assert cutoff_request.endpoint == "historical_cutoff"
    assert cutoff_request.url == f"{BASE}/historical/cutoff"

    # Shaped after GetHistoricalCutoffResponse (docs.kalshi.com, historical cutoff page).
    cutoff_body = {
        "market_settled_ts": "2025-06-01T00:00:00Z",
        "trades_created_ts": "2025-06-01T00:00:00Z",
        "orders_updated_ts": "2025-06-01T00:00:00Z",
    }
    assert (
        read_page(kalshi.ADAPTER, cutoff_body, fetched_at=FETCHED_AT).endpoint
        == "historical_cutoff"
    )
    cutoff_page = read_page(
        kalshi.ADAPTER, cutoff_body, fetched_at=FETCHED_AT, request=cutoff_request
    )
    assert [(r.endpoint, r.params) for r in cutoff_page.next_requests] == [
        ("markets", {"event_ticker": "KXELONTWEETS-25MAR28", "limit": "1000"}),
        ("historical_markets", {"event_ticker": "KXELONTWEETS-25MAR28", "limit": "1000"}),
    ]
    live_listing, historical_listing = cutoff_page.next_requests
    assert historical_listing.url == f"{BASE}/historical/markets"

    finalized = load("kalshi_markets_finalized_cents.json")
    historical = read_page(
        kalshi.ADAPTER, finalized, fetched_at=FETCHED_AT, request=historical_listing
    )
    assert historical.records == []
    assert len(historical.next_requests) == 13
    candles = historical.next_requests[0]
    assert candles.endpoint == "historical_market_candlesticks"
    assert candles.url == f"{BASE}/historical/markets/KXELONTWEETS-25MAR28-849/candlesticks"
    assert candles.params == {
        "start_ts": "1742428800",
        "end_ts": "1743206400",
        "period_interval": "1440",
    }
    assert candles.context["market"]["resolution"] == "NO"

    live = read_page(kalshi.ADAPTER, finalized, fetched_at=FETCHED_AT, request=live_listing)
    assert live.next_requests[0].endpoint == "market_candlesticks"
    assert live.next_requests[0].url == (
        f"{BASE}/series/KXELONTWEETS/markets/KXELONTWEETS-25MAR28-849/candlesticks"
    )

    later = FetchWindow(datetime(2025, 4, 1, tzinfo=UTC), datetime(2025, 4, 2, tzinfo=UTC))
    closed_before = read_page(kalshi.ADAPTER, finalized, fetched_at=FETCHED_AT, window=later)
    assert closed_before.next_requests == []
    assert closed_before.skipped[0].reason == "market closed before the backfill window"


def synthetic_candles(style: str) -> dict[str, Any]:
    """Synthetic body shaped after GetMarketCandlesticksResponse / ...HistoricalResponse
    (docs.kalshi.com python-sdk MarketCandlestick, historical candlesticks page): three
    candles - a period with trades, one without (previous close), one never traded."""

    def ohlc(close_cents: int | None, previous_cents: int | None = None) -> dict[str, Any]:
        values = {"close": close_cents, "previous": previous_cents}
        if style == "cents":
            return values
        as_dollars = {k: None if v is None else f"{v / 100:.4f}" for k, v in values.items()}
        if style == "historical":
            return as_dollars
        return {f"{k}_dollars": v for k, v in as_dollars.items()}

    def candle(end: int, price, previous, bid: int, ask: int, volume: int) -> dict[str, Any]:
        body = {
            "end_period_ts": end,
            "price": ohlc(price, previous),
            "yes_bid": ohlc(bid),
            "yes_ask": ohlc(ask),
        }
        if style == "current":
            body["volume_fp"] = f"{volume:.2f}"
        elif style == "historical":
            body["volume"] = f"{volume:.2f}"
        else:
            body["volume"] = volume
        return body

    return {
        "ticker": "KXELONTWEETS-25MAR28-474.5",
        "candlesticks": [
            candle(1742860800, 41, 38, 40, 42, 1200),
            candle(1742947200, None, 41, 39, 43, 0),
            candle(1743033600, None, None, 0, 100, 0),
            candle(1743206400, 99, 97, 99, 100, 10),
        ],
    }


@pytest.mark.parametrize("style", ["current", "cents", "historical"])
def test_candlesticks_in_every_documented_format(style):
    window = FetchWindow(datetime(2025, 3, 24, tzinfo=UTC), datetime(2025, 3, 29, tzinfo=UTC))
    page = read_page(kalshi.ADAPTER, synthetic_candles(style), fetched_at=FETCHED_AT, window=window)
    expected_endpoint = (
        "historical_market_candlesticks" if style == "historical" else ("market_candlesticks")
    )
    assert page.endpoint == expected_endpoint
    assert [(r.signal_type, r.value, r.fetched_at) for r in page.records] == [
        ("MARKET_PRICE", 0.41, datetime(2025, 3, 25, tzinfo=UTC)),
        ("VOLUME", 1200.0, datetime(2025, 3, 25, tzinfo=UTC)),
        ("MARKET_PRICE", 0.41, datetime(2025, 3, 26, tzinfo=UTC)),
        ("VOLUME", 0.0, datetime(2025, 3, 26, tzinfo=UTC)),
        ("VOLUME", 0.0, datetime(2025, 3, 27, tzinfo=UTC)),
    ]  # the candle ending exactly at the window end belongs to the next window
    assert page.records[2].raw_data["price_rule"] == "last_trade_before_period"
    assert page.skipped[0].reason == "no MARKET_PRICE: no trade and an empty order book"
    assert {r.source_event_id for r in page.records} == {"KXELONTWEETS-25MAR28-474.5"}


def test_errors_name_source_endpoint_and_item():
    whole = read_page(
        kalshi.ADAPTER, load("kalshi_markets_active_cents.json"), fetched_at=FETCHED_AT
    )
    body = load("kalshi_markets_active_cents.json")
    del body["markets"][3]["ticker"]
    page = read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT)
    [missing] = page.rejects
    assert (missing.reason, missing.item_index, missing.source_event_id) == (
        "unreadable_item",
        3,
        None,
    )
    assert missing.detail.startswith("kalshi markets: ") and "markets[3]" in missing.detail
    assert len(page.records) == len(whole.records) - 2  # its price and volume alone

    body = load("kalshi_markets_active_cents.json")
    body["markets"][0]["last_price_dollars"] = "n/a"
    [reject] = read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT).rejects
    assert reject.source_event_id == "KXELONTWEETS-25APR11-849"
    assert "last_price_dollars" in reject.detail

    body = load("kalshi_markets_active_cents.json")
    body["markets"][0]["yes_ask"] = 250
    [reject] = read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT).rejects
    assert "outside 0..100" in reject.detail

    with pytest.raises(PayloadError) as unknown:
        read_page(kalshi.ADAPTER, {"series": []}, fetched_at=FETCHED_AT)
    assert unknown.value.source == "kalshi"

    request = PageRequest("markets", f"{BASE}/markets")
    with pytest.raises(PayloadError, match="kalshi markets: body has no 'markets' list"):
        read_page(kalshi.ADAPTER, {"events": []}, fetched_at=FETCHED_AT, request=request)
    with pytest.raises(PayloadError, match="kalshi markets: 'markets': expected a list, got dict"):
        read_page(kalshi.ADAPTER, {"markets": {}}, fetched_at=FETCHED_AT, request=request)


def test_null_lists_read_as_empty():
    # Kalshi's generated clients map a null candlesticks list to empty; so does the adapter.
    page = read_page(
        kalshi.ADAPTER,
        {"ticker": "KXELONTWEETS-25MAR28-474.5", "candlesticks": None},
        fetched_at=FETCHED_AT,
    )
    assert (page.endpoint, page.records, page.skipped) == ("market_candlesticks", [], ())


@pytest.mark.parametrize(
    ("fields", "resolution", "probability"),
    [
        ({"result": "yes"}, "YES", None),
        ({"result": "no"}, "NO", None),
        ({"result": "void"}, "CANCELLED", None),
        ({"result": "scalar", "settlement_value_dollars": "0.3700"}, "AMBIGUOUS", 0.37),
        ({"result": "scalar", "settlement_value": 37}, "AMBIGUOUS", 0.37),
        ({"result": "", "settlement_value_dollars": "1.0000"}, "YES", None),
        ({"result": "", "settlement_value": 0}, "NO", None),
        ({"result": ""}, None, None),
    ],
)
def test_a_settled_market_resolves_as_kalshi_documents(fields, resolution, probability):
    """The recorded finalized listing (legacy cents), its first market's result and settlement
    fields set to each value Kalshi documents (Market.result, settlement_value[_dollars])."""
    body = load("kalshi_markets_finalized_cents.json")
    market = {
        k: v
        for k, v in body["markets"][0].items()
        if k not in ("result", "settlement_value", "settlement_value_dollars")
    }
    body["markets"] = [{**market, **fields}]
    page = read_page(kalshi.ADAPTER, body, fetched_at=FETCHED_AT)
    facts = {(r.market.resolution, r.market.resolution_probability) for r in page.records}
    assert facts == {(resolution, probability)}
