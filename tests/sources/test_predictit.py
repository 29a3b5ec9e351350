"""PredictIt adapter against the recorded all-markets snapshot."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, PageRequest, PayloadError
from predict_pipeline.sources import predictit
from predict_pipeline.sources.base import read_page
from predict_pipeline.sources.predictit import ADAPTER

SNAPSHOT = PROJECT_ROOT / "fixtures" / "payloads" / "predictit_marketdata_all.json"
FETCHED_AT = datetime(2026, 1, 31, 18, 11, tzinfo=UTC)
WINDOW = FetchWindow(
    datetime(2026, 1, 31, 18, 0, tzinfo=UTC), datetime(2026, 1, 31, 18, 15, tzinfo=UTC)
)


def load():
    return json.loads(SNAPSHOT.read_bytes())


def by_id(records, contract_id):
    [record] = [r for r in records if r.source_event_id == contract_id]
    return record


def parse(payload, request=None):
    return read_page(ADAPTER, payload, fetched_at=FETCHED_AT, request=request)


def test_config_schema_documents_every_property_and_accepts_the_defaults():
    Draft202012Validator.check_schema(predictit.CONFIG_SCHEMA)
    assert predictit.CONFIG_SCHEMA["additionalProperties"] is False
    for name, spec in predictit.CONFIG_SCHEMA["properties"].items():
        assert spec.get("description"), name
    assert (
        list(Draft202012Validator(predictit.CONFIG_SCHEMA).iter_errors(predictit.DEFAULT_CONFIG))
        == []
    )
    assert predictit.RATE_LIMIT_RPM == 6
    assert predictit.SUPPORTS_BACKFILL is False
    assert ADAPTER.source == "predictit"


def test_poll_plans_the_single_snapshot_request():
    [request] = ADAPTER.plan({}, "poll", WINDOW, None)
    assert request.endpoint == predictit.MARKETDATA_ALL
    assert request.url == "https://www.predictit.org/api/marketdata/all/"
    assert request.params == {}
    assert request.context == {}


def test_backfill_is_refused_because_predictit_has_no_history():
    with pytest.raises(ValueError, match="predictit: backfill is not supported"):
        ADAPTER.plan({}, "backfill", WINDOW, None)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="predictit: invalid config at market_ids/0"):
        ADAPTER.plan({"market_ids": ["7589"]}, "poll", WINDOW, None)


def test_recorded_file_is_crlf_json():
    raw = SNAPSHOT.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n") > 0
    assert len(json.loads(raw)["markets"]) == 20


def test_snapshot_yields_one_price_per_contract():
    page = parse(load())

    assert page.endpoint == predictit.MARKETDATA_ALL
    assert len(page.records) == 123
    assert {r.signal_type for r in page.records} == {"MARKET_PRICE"}
    assert len({r.market.parent_id for r in page.records}) == 20
    assert page.next_requests == []
    assert page.cursor is None

    lowest = by_id(page.records, "28361")
    assert lowest.value == 0.25
    assert lowest.fetched_at == FETCHED_AT
    assert lowest.source_url == (
        "https://www.predictit.org/markets/detail/7589/"
        "How-many-House-seats-will-Republicans-win-in-the-2026-midterm-election"
    )
    facts = lowest.market
    assert facts.title == (
        "How many House seats will Republicans win in the 2026 midterm election? — 192 or fewer"
    )
    assert facts.outcome == "192 or fewer"
    assert facts.parent_id == "7589"
    assert facts.status == "open"
    assert facts.close_time is None  # dateEnd "NA"
    assert facts.resolution is None
    assert lowest.raw_data == {
        "market_id": "7589",
        "contract_id": "28361",
        "short_name": "192 or fewer",
        # "2026-01-31T13:10:26.3247098" Eastern (EST, UTC-5), seventh digit dropped.
        "snapshot_time": "2026-01-31T18:10:26.324709+00:00",
        "best_buy_yes_cost": 0.26,
        "best_buy_no_cost": 0.75,
        "best_sell_yes_cost": 0.25,
        "best_sell_no_cost": 0.74,
        "last_close_price": 0.24,
    }


def test_empty_book_side_is_null_not_zero():
    slotkin = by_id(parse(load()).records, "32589")
    assert slotkin.value == 0.01
    assert slotkin.market.outcome == "Elissa Slotkin"
    assert slotkin.raw_data["best_buy_yes_cost"] == 0.01
    assert slotkin.raw_data["best_sell_yes_cost"] is None


def test_configured_market_ids_keep_only_those_markets():
    [request] = ADAPTER.plan({"market_ids": [8155]}, "poll", WINDOW, None)
    page = parse(load(), request=request)

    assert [(r.source_event_id, r.value, r.market.outcome) for r in page.records] == [
        ("31948", 0.65, "Republican"),
        ("31947", 0.37, "Democratic"),
    ]


def test_dated_contract_end_is_read_as_eastern_time():
    # The recorded snapshot only has "NA" end dates; this one is set by hand.
    payload = load()
    payload["markets"][0]["contracts"][0]["dateEnd"] = "2026-11-03T23:59:00"
    assert by_id(parse(payload).records, "28361").market.close_time == datetime(
        2026, 11, 4, 4, 59, tzinfo=UTC
    )


def test_body_of_the_wrong_shape_names_source_and_endpoint():
    with pytest.raises(PayloadError, match="predictit marketdata_all: expected an object") as err:
        parse([{"id": "517310"}])
    assert (err.value.source, err.value.endpoint) == ("predictit", "marketdata_all")
    with pytest.raises(
        PayloadError, match="predictit marketdata_all: the snapshot holds no markets"
    ):
        parse({"markets": []})
    other = PageRequest("gamma_markets", "https://gamma-api.polymarket.com/markets")
    with pytest.raises(PayloadError, match="predictit gamma_markets: not an endpoint"):
        parse(load(), request=other)


def test_non_numeric_price_rejects_its_market_alone():
    whole = parse(load())
    payload = load()
    payload["markets"][0]["contracts"][0]["lastTradePrice"] = "0.25c"
    page = parse(payload)
    [reject] = page.rejects
    assert (reject.item_index, reject.source_event_id) == (0, str(payload["markets"][0]["id"]))
    assert reject.detail == (
        "predictit marketdata_all: contract 28361 lastTradePrice '0.25c' is not a number"
    )
    first = {str(c["id"]) for c in payload["markets"][0]["contracts"]}
    assert page.records == [r for r in whole.records if r.source_event_id not in first]


def test_contract_without_id_names_its_market_and_index():
    payload = load()
    del payload["markets"][1]["contracts"][2]["id"]
    [reject] = parse(payload).rejects
    assert reject.item_index == 1
    assert reject.detail == "predictit marketdata_all: market 8152 contract 2 has no id"
