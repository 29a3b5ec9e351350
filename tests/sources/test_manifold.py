"""Manifold adapter against recorded payloads (fixtures/payloads, see SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, PageRequest, PayloadError
from predict_pipeline.sources import manifold
from predict_pipeline.sources.base import read_page

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
FETCHED_AT = datetime(2026, 2, 1, tzinfo=UTC)
BASE = "https://api.manifold.markets/v0"


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def by_id(records, signal_type):
    return {r.source_event_id: r for r in records if r.signal_type == signal_type}


def test_module_contract():
    Draft202012Validator.check_schema(manifold.CONFIG_SCHEMA)
    Draft202012Validator(manifold.CONFIG_SCHEMA).validate(manifold.DEFAULT_CONFIG)
    assert manifold.CONFIG_SCHEMA["additionalProperties"] is False
    assert all("description" in p for p in manifold.CONFIG_SCHEMA["properties"].values())
    assert manifold.RATE_LIMIT_RPM == 500
    assert manifold.SUPPORTS_BACKFILL is True
    assert manifold.ADAPTER.source == "manifold"


def test_market_list_recognised_with_every_type_accounted_for():
    page = read_page(manifold.ADAPTER, load("manifold_markets.json"), fetched_at=FETCHED_AT)
    assert page.endpoint == "markets"
    prices, volumes = by_id(page.records, "MARKET_PRICE"), by_id(page.records, "VOLUME")
    assert len(prices) == 14  # the 14 BINARY markets
    assert len(volumes) == 18  # plus POLL, DATE and 2 MULTI_NUMERIC: volume only
    assert len(page.records) == 32
    assert {(s.item, s.reason) for s in page.skipped} == {
        ("susUCQpEcq", "no MARKET_PRICE: POLL markets carry no probability"),
        ("I6UA98QESc", "no MARKET_PRICE: DATE markets carry no probability"),
        ("9EstERAcPA", "no MARKET_PRICE: MULTI_NUMERIC markets carry no probability"),
        ("ZInRsR8Lz5", "no MARKET_PRICE: MULTI_NUMERIC markets carry no probability"),
    }
    # The list carries no answers: the two MULTIPLE_CHOICE markets are read from /market/{id}.
    assert [r.url for r in page.next_requests] == [
        f"{BASE}/market/pQy680tq8U",
        f"{BASE}/market/EPQuhAuNts",
    ]
    assert {r.endpoint for r in page.next_requests} == {"market"}

    odd_even = prices["l6pOZSLngN"]
    assert odd_even.value == 0.5459302355415936
    assert odd_even.market.close_time == datetime(2026, 2, 2, 7, 59, tzinfo=UTC)
    assert odd_even.market.status == "open"
    assert odd_even.market.outcome == "Yes"
    assert odd_even.source_url == (
        "https://manifold.markets/StCredZero/fairly-odd-or-even-SUuNsdy6zQ"
    )
    assert volumes["l6pOZSLngN"].value == 50.47448713915891

    resolved_yes = prices["ygtnI8ZQ5n"]
    assert resolved_yes.value == 0.78
    assert resolved_yes.market.status == "resolved"
    assert resolved_yes.market.resolution == "YES"
    assert resolved_yes.market.resolution_time == datetime(
        2026, 1, 31, 17, 48, 2, 350000, tzinfo=UTC
    )
    assert prices["QlQRu9SQSh"].market.resolution == "NO"


def test_market_resolved_to_mkt_is_ambiguous_and_keeps_its_probability():
    # Derived: the recorded YES market re-resolved to MKT at its recorded resolutionProbability.
    market = next(m for m in load("manifold_markets.json") if m["id"] == "ygtnI8ZQ5n")
    market["resolution"] = "MKT"
    page = read_page(manifold.ADAPTER, market, fetched_at=FETCHED_AT)
    price = by_id(page.records, "MARKET_PRICE")["ygtnI8ZQ5n"]
    assert price.market.resolution == "AMBIGUOUS"
    assert price.raw_data["resolutionProbability"] == 0.78


def test_market_by_id_gives_one_question_per_answer():
    page = read_page(manifold.ADAPTER, load("manifold_market_by_id.json"), fetched_at=FETCHED_AT)
    assert page.endpoint == "market"
    prices = by_id(page.records, "MARKET_PRICE")
    assert sorted(prices) == [f"lEoqtnDgJzft6apSKzYK:{n}" for n in "1234"]
    utility = prices["lEoqtnDgJzft6apSKzYK:4"]
    assert utility.value == 0.09211463154147384
    assert utility.market.outcome == "Utility (Defined by your personal utility function.)"
    assert utility.market.parent_id == "lEoqtnDgJzft6apSKzYK"
    assert utility.market.resolution == "AMBIGUOUS"  # resolved MKT
    assert utility.market.resolution_time == datetime(2022, 6, 15, 3, 50, 1, 448000, tzinfo=UTC)
    assert utility.raw_data["answer"]["text"] == utility.market.outcome
    assert "answers" not in utility.raw_data
    volume = by_id(page.records, "VOLUME")["lEoqtnDgJzft6apSKzYK"]
    assert volume.value == 112.0
    assert volume.market.status == "resolved"


def test_market_list_paging_uses_before_and_stops():
    markets = load("manifold_markets.json")
    context = {"mode": "poll", "settings": {**manifold.DEFAULT_CONFIG, "max_pages": 3}}
    full = PageRequest("markets", f"{BASE}/markets", params={"limit": "20"}, context=context)
    page = read_page(manifold.ADAPTER, markets, fetched_at=FETCHED_AT, request=full)
    (next_page,) = [r for r in page.next_requests if r.endpoint == "markets"]
    assert next_page.params == {"limit": "20", "before": "ZInRsR8Lz5"}
    assert next_page.context["page"] == 2

    short = PageRequest("markets", f"{BASE}/markets", params={"limit": "500"}, context=context)
    page = read_page(manifold.ADAPTER, markets, fetched_at=FETCHED_AT, request=short)
    assert [r for r in page.next_requests if r.endpoint == "markets"] == []

    last = PageRequest(
        "markets",
        f"{BASE}/markets",
        params={"limit": "20"},
        context=next_page.context | {"page": 3},
    )
    page = read_page(manifold.ADAPTER, markets, fetched_at=FETCHED_AT, request=last)
    assert [r for r in page.next_requests if r.endpoint == "markets"] == []
    assert ("next page", "max_pages (3) reached; more markets exist") in {
        (s.item, s.reason) for s in page.skipped
    }


def test_plans():
    window = FetchWindow(datetime(2022, 8, 2, tzinfo=UTC), datetime(2022, 8, 3, tzinfo=UTC))
    (listing,) = manifold.ADAPTER.plan({}, "poll", window, None)
    assert (listing.url, listing.params) == (f"{BASE}/markets", {"limit": "500"})

    config = {"market_ids": ["Tz5dA01GkK5QKiQfZeDL"]}
    (market,) = manifold.ADAPTER.plan(config, "poll", window, None)
    assert market.url == f"{BASE}/market/Tz5dA01GkK5QKiQfZeDL"

    (bets,) = manifold.ADAPTER.plan(config, "backfill", window, None)
    assert (bets.endpoint, bets.url) == ("bets", f"{BASE}/bets")
    assert bets.params == {
        "contractId": "Tz5dA01GkK5QKiQfZeDL",
        "order": "asc",
        "limit": "1000",
        "afterTime": "1659398399999",
        "beforeTime": "1659484800000",
    }
    with pytest.raises(ValueError, match="manifold config"):
        manifold.ADAPTER.plan({"limit": 0}, "poll", window, None)


def test_bets_become_prices_and_volumes_inside_the_window():
    bets = load("manifold_bets.json")
    wide = FetchWindow(datetime(2022, 8, 2, tzinfo=UTC), datetime(2022, 8, 3, tzinfo=UTC))
    page = read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, window=wide)
    assert page.endpoint == "bets"
    assert [(r.signal_type, r.value, r.fetched_at) for r in page.records] == [
        ("MARKET_PRICE", 0.5730753474948571, datetime(2022, 8, 2, 23, 26, 15, 970000, tzinfo=UTC)),
        ("VOLUME", 15.596681605353808, datetime(2022, 8, 2, 23, 26, 15, 970000, tzinfo=UTC)),
        ("MARKET_PRICE", 0.5730753474948571, datetime(2022, 8, 2, 23, 25, 57, 271000, tzinfo=UTC)),
        ("VOLUME", 10.0, datetime(2022, 8, 2, 23, 25, 57, 271000, tzinfo=UTC)),
    ]
    limit_bet = page.records[0]
    assert limit_bet.source_event_id == "Tz5dA01GkK5QKiQfZeDL"
    assert limit_bet.raw_data["id"] == "yXB8lVbs86TKkhWA1FVi"
    assert limit_bet.raw_data["userId"] == "IPTOzEqrpkWmEzh6hwvAyY9PqFb2"
    assert limit_bet.raw_data["limitProb"] == 0.5
    assert limit_bet.raw_data["probBefore"] == 0.5730753474948571

    # [23:26:00, 23:27:00) holds only the limit bet placed at 23:26:15.970.
    narrow = FetchWindow(
        datetime(2022, 8, 2, 23, 26, tzinfo=UTC), datetime(2022, 8, 2, 23, 27, tzinfo=UTC)
    )
    page = read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, window=narrow)
    assert {r.raw_data["id"] for r in page.records} == {"yXB8lVbs86TKkhWA1FVi"}
    assert len(page.records) == 2


def test_bets_paging_continues_after_the_last_bet_until_the_window_end():
    bets = sorted(load("manifold_bets.json"), key=lambda bet: bet["createdTime"])  # order=asc
    window = FetchWindow(datetime(2022, 8, 2, tzinfo=UTC), datetime(2022, 8, 3, tzinfo=UTC))
    (first,) = manifold.ADAPTER.plan(
        {"market_ids": ["Tz5dA01GkK5QKiQfZeDL"]}, "backfill", window, None
    )
    full = PageRequest(
        first.endpoint, first.url, params=first.params | {"limit": "2"}, context=first.context
    )
    page = read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, request=full)
    (following,) = page.next_requests
    assert following.params == {
        "contractId": "Tz5dA01GkK5QKiQfZeDL",
        "order": "asc",
        "limit": "2",
        "beforeTime": "1659484800000",
        "after": "yXB8lVbs86TKkhWA1FVi",
    }
    assert len(page.records) == 4

    assert (
        read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, request=first).next_requests == []
    )
    ended = FetchWindow(window.start, datetime(2022, 8, 2, 23, 26, tzinfo=UTC))
    early = PageRequest(full.endpoint, full.url, params=full.params, context={"mode": "backfill"})
    page = read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, request=early, window=ended)
    assert page.next_requests == []
    assert len(page.records) == 2


def test_errors_name_source_endpoint_and_item():
    bets = load("manifold_bets.json")
    del bets[1]["probAfter"]
    request = PageRequest("bets", f"{BASE}/bets")
    page = read_page(manifold.ADAPTER, bets, fetched_at=FETCHED_AT, request=request)
    [missing] = page.rejects
    assert missing.item_index == 1 and missing.source_event_id == "1LPJHNz5oAX4K6YtJlP1"
    assert missing.detail.startswith("manifold bets: ") and "probAfter" in missing.detail
    assert {r.raw_data["id"] for r in page.records} == {bets[0]["id"]}

    markets = load("manifold_markets.json")
    markets[2]["probability"] = "high"
    page = read_page(manifold.ADAPTER, markets, fetched_at=FETCHED_AT)
    [reject] = page.rejects
    assert reject.item_index == 2
    assert reject.detail.startswith("manifold markets: market 'l6pOZSLngN' probability")

    markets = load("manifold_markets.json")
    del markets[5]["id"]
    [reject] = read_page(manifold.ADAPTER, markets, fetched_at=FETCHED_AT).rejects
    assert (reject.item_index, reject.source_event_id) == (5, None)
    assert "markets[5]: missing or invalid 'id'" in reject.detail

    market = load("manifold_market_by_id.json")
    market["resolution"] = "MAYBE"
    with pytest.raises(PayloadError, match="manifold market: .*unknown value 'MAYBE'"):
        read_page(manifold.ADAPTER, market, fetched_at=FETCHED_AT)

    with pytest.raises(PayloadError, match="empty list"):
        read_page(manifold.ADAPTER, [], fetched_at=FETCHED_AT)
    empty = read_page(manifold.ADAPTER, [], fetched_at=FETCHED_AT, request=request)
    assert (empty.records, empty.next_requests) == ([], [])
