"""Polymarket adapter against the recorded Gamma and CLOB payloads."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.model import FetchWindow, PageRequest, PayloadError
from predict_pipeline.sources import polymarket
from predict_pipeline.sources.base import read_page
from predict_pipeline.sources.polymarket import ADAPTER

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
FETCHED_AT = datetime(2026, 2, 1, 12, 30, tzinfo=UTC)
WINDOW = FetchWindow(
    datetime(2026, 3, 11, 0, 0, tzinfo=UTC), datetime(2026, 3, 12, 0, 0, tzinfo=UTC)
)
WINDOW_START_TS = 1773187200  # 2026-03-11T00:00:00Z
WINDOW_END_TS = 1773273600  # 2026-03-12T00:00:00Z

DESANTIS = "0x12a0cb60174abc437bf1178367c72d11f069e1a3add20b148fb0ab4279b772b2"
TRUMP = "0x41190eb9336ae73949c04f4900f9865092e69a57cf9c942a6157abf6ae8d16c6"
PARTY_2024 = "0x26ee82bee2493a302d21283cb578f7e2fff2dd15743854f53034d12420863b55"
MERGE_SEPT = "0x98c01e1f5053e57fcb59add64b9c0f74ac784609b80ab1a8754e934878468310"
STRAPI_TEST = "0x5374183ab5a2925fda4e7ac2db4848499458224ce2d73c16d3f248951c80746e"
LUNA_BET = "0x0ea37da314e0fd0b6abb8068db294c49ffa81774904e7758e9f2c933d1d29090"
BTC_UP_TOKEN = "104239898038807136052399800151408521467737075933964991162589336683346093173875"
BTC_DOWN_TOKEN = "71183960810705820955071415844881728181970340514894896943812046065452395013351"


def load(name: str):
    return json.loads((PAYLOADS / name).read_bytes())


def by_id(records, source_event_id, signal_type="MARKET_PRICE"):
    [record] = [
        r for r in records if r.source_event_id == source_event_id and r.signal_type == signal_type
    ]
    return record


def parse(payload, request=None, window=None):
    return read_page(ADAPTER, payload, fetched_at=FETCHED_AT, request=request, window=window)


# ---------------------------------------------------------------- module contract


def test_config_schema_documents_every_property_and_accepts_the_defaults():
    Draft202012Validator.check_schema(polymarket.CONFIG_SCHEMA)
    assert polymarket.CONFIG_SCHEMA["additionalProperties"] is False
    for name, spec in polymarket.CONFIG_SCHEMA["properties"].items():
        assert spec.get("description"), name
    assert (
        list(Draft202012Validator(polymarket.CONFIG_SCHEMA).iter_errors(polymarket.DEFAULT_CONFIG))
        == []
    )
    assert polymarket.RATE_LIMIT_RPM == 1800  # Gamma /markets: 300 requests per 10 s
    assert polymarket.SUPPORTS_BACKFILL is True
    assert ADAPTER.source == "polymarket"


def test_plan_rejects_an_unknown_config_key():
    with pytest.raises(ValueError, match="polymarket: invalid config"):
        ADAPTER.plan({"market_id": "1"}, "poll", WINDOW, None)


# ---------------------------------------------------------------- Gamma /markets list


def test_gamma_markets_list_yields_a_price_and_a_volume_per_market():
    page = parse(load("polymarket_gamma_markets.json"))

    assert page.endpoint == polymarket.GAMMA_MARKETS
    assert len(page.records) == 40
    assert sum(r.signal_type == "MARKET_PRICE" for r in page.records) == 20
    assert sum(r.signal_type == "VOLUME" for r in page.records) == 20
    assert page.next_requests == []  # no request, so no page size to compare with
    assert page.cursor is None

    price = by_id(page.records, "517310")
    assert price.value == 0.029
    assert price.fetched_at == FETCHED_AT
    assert (
        price.source_url == "https://polymarket.com/event/how-many-people-will-trump-deport-in-2025"
    )
    assert price.narrative == "How many people will Trump deport in 2025?"
    facts = price.market
    assert facts.title == "Will Trump deport less than 250,000?"
    assert facts.slug == "will-trump-deport-less-than-250000"
    assert facts.outcome == "Yes"
    assert facts.status == "open"
    assert facts.resolution is None
    assert facts.close_time == datetime(2025, 12, 31, 12, 0, tzinfo=UTC)
    assert facts.parent_id == "16282"
    # "\u003c250k" in the raw body: the HTML-safe escape decodes to "<".
    assert facts.category_hints == ("Deportation Count", "<250k")
    assert price.raw_data["condition_id"] == (
        "0xaf9d0e448129a9f657f851d49495ba4742055d80e0ef1166ba0ee81d4d594214"
    )
    assert price.raw_data["token_id"] == (
        "101676997363687199724245607342877036148401850938023978421879460310389391082353"
    )
    assert price.raw_data["outcome_prices"] == ["0.029", "0.971"]

    volume = by_id(page.records, "517310", "VOLUME")
    assert volume.value == 1018500.561838
    assert volume.market == facts

    gta = by_id(page.records, "527079")
    assert gta.value == 0.0095
    assert gta.market.close_time == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    assert gta.narrative is None  # the event title repeats the question
    assert by_id(page.records, "527079", "VOLUME").value == 2245026.947777


def test_gamma_offset_paging_requests_the_next_offset_until_a_short_page():
    [first] = ADAPTER.plan({"page_size": 20}, "poll", WINDOW, None)
    assert first.url == "https://gamma-api.polymarket.com/markets"
    assert first.params == {"limit": "20", "offset": "0", "active": "true", "closed": "false"}

    page = parse(load("polymarket_gamma_markets.json"), request=first)
    [following] = page.next_requests
    assert following.url == first.url
    assert following.params == {"limit": "20", "offset": "20", "active": "true", "closed": "false"}

    [default_size] = ADAPTER.plan({}, "poll", WINDOW, None)
    assert default_size.params["limit"] == "100"
    assert parse(load("polymarket_gamma_markets.json"), request=default_size).next_requests == []


# ---------------------------------------------------------------- Gamma /events


def test_gamma_events_make_every_nested_market_a_question_of_the_event():
    [request] = ADAPTER.plan(
        {"event_slugs": ["elon-musk-of-tweets-april-4-11"]}, "poll", WINDOW, None
    )
    assert request.url == "https://gamma-api.polymarket.com/events"
    assert request.params == {"slug": "elon-musk-of-tweets-april-4-11"}

    payload = load("polymarket_gamma_events_by_slug.json")
    assert parse(payload).endpoint == polymarket.GAMMA_EVENTS
    page = parse(payload, request=request)

    assert page.endpoint == polymarket.GAMMA_EVENTS
    assert len(page.records) == 32
    assert page.next_requests == []
    prices = [r for r in page.records if r.signal_type == "MARKET_PRICE"]
    assert {r.source_event_id for r in prices} == {str(i) for i in range(534135, 534151)}
    assert {r.market.parent_id for r in page.records} == {"22240"}
    assert {r.narrative for r in page.records} == {"Elon Musk # of tweets April 4-11?"}

    under_250 = by_id(page.records, "534135")
    assert under_250.value == 0.2085
    assert under_250.market.title == "Will Elon tweet less than 250 times April 4 - 11?"
    assert under_250.market.category_hints == (
        "Tweet Markets",
        "Politics",
        "Culture",
        "Elon Musk",
        "Elon Tweets",
        "<250",
    )
    assert under_250.market.close_time == datetime(2025, 4, 11, 12, 0, tzinfo=UTC)
    assert under_250.source_url == "https://polymarket.com/event/elon-musk-of-tweets-april-4-11"
    assert by_id(page.records, "534135", "VOLUME").value == 55156.745286


# ---------------------------------------------------------------- Gamma single markets


def test_gamma_single_market_prices_its_first_outcome_whatever_its_name():
    payload = load("polymarket_gamma_market_single.json")
    page = parse(payload)

    assert page.endpoint == polymarket.GAMMA_MARKET
    assert len(page.records) == 2
    price = by_id(page.records, "1557558")
    assert price.value == 0.505
    assert price.market.outcome == "Up"
    assert price.market.title == "Bitcoin Up or Down - March 12, 5:20AM-5:25AM ET"
    assert price.market.status == "open"
    assert price.market.close_time == datetime(2026, 3, 12, 9, 25, tzinfo=UTC)
    assert price.market.parent_id == "260654"
    assert price.market.category_hints == ("BTC Up or Down 5m",)
    assert price.source_url == "https://polymarket.com/event/btc-updown-5m-1773307200"
    assert price.raw_data["token_ids"] == [BTC_UP_TOKEN, BTC_DOWN_TOKEN]
    assert by_id(page.records, "1557558", "VOLUME").value == 9.999997


def test_plan_reads_configured_market_ids_and_slugs_one_request_each():
    requests = ADAPTER.plan(
        {"market_ids": ["1557558", "43"], "market_slugs": ["btc-updown-5m-1773307200"]},
        "poll",
        WINDOW,
        None,
    )
    assert [(r.endpoint, r.url) for r in requests] == [
        (polymarket.GAMMA_MARKET, "https://gamma-api.polymarket.com/markets/1557558"),
        (polymarket.GAMMA_MARKET, "https://gamma-api.polymarket.com/markets/43"),
        (
            polymarket.GAMMA_MARKET,
            "https://gamma-api.polymarket.com/markets/slug/btc-updown-5m-1773307200",
        ),
    ]


def test_legacy_scalar_market_keeps_its_34_digit_prices_and_bounds():
    page = parse(load("polymarket_gamma_market_legacy_scalar_closed.json"))

    assert page.endpoint == polymarket.GAMMA_MARKET
    assert len(page.records) == 2
    price = by_id(page.records, "43")
    assert price.value == float(Decimal("0.5843311669077693146635445446077281"))
    assert price.market.outcome == "Long"
    assert price.market.status == "closed"
    assert price.market.resolution is None  # settled proportionally, not YES/NO
    assert price.market.close_time == datetime(2021, 1, 2, 21, 45, 52, tzinfo=UTC)
    assert price.market.category_hints == ("Crypto",)
    assert price.raw_data["outcome_prices"] == [
        "0.5843311669077693146635445446077281",
        "0.4156688330922306853364554553922719",
    ]
    assert price.raw_data["market_type"] == "scalar"
    assert price.raw_data["lower_bound"] == "8000000000"
    assert price.raw_data["upper_bound"] == "20000000000"
    assert price.raw_data["end_date"] == "2021-01-02T00:00:00Z"
    # The `volume` string, not `volumeNum` (46944.58), which the API rounds.
    assert by_id(page.records, "43", "VOLUME").value == 46944.579746


def _settled(prices: str, uma: str) -> dict:
    """The recorded 250-274 tweets market, closed and settled by hand (no recorded
    Gamma payload holds a resolved binary market)."""
    market = copy.deepcopy(load("polymarket_gamma_events_by_slug.json")[0]["markets"][0])
    market.update(
        closed=True,
        outcomePrices=prices,
        umaResolutionStatuses=uma,
        closedTime="2025-04-11 16:03:12+00",
    )
    return market


@pytest.mark.parametrize(
    ("prices", "uma", "status", "resolution"),
    [
        ('["1", "0"]', '["proposed", "resolved"]', "resolved", "YES"),
        ('["0", "1"]', '["proposed", "resolved"]', "resolved", "NO"),
        ('["0.5", "0.5"]', '["proposed", "resolved"]', "resolved", "AMBIGUOUS"),
        ('["1", "0"]', '["proposed"]', "closed", None),
        ('["0.97", "0.03"]', '["proposed", "resolved"]', "closed", None),
    ],
)
def test_closed_gamma_market_resolves_only_from_final_prices(prices, uma, status, resolution):
    [price, _volume] = parse(_settled(prices, uma)).records

    assert price.market.status == status
    assert price.market.resolution == resolution
    expected_time = datetime(2025, 4, 11, 16, 3, 12, tzinfo=UTC) if resolution else None
    assert price.market.resolution_time == expected_time
    assert price.market.close_time == datetime(2025, 4, 11, 16, 3, 12, tzinfo=UTC)


def test_closed_event_lends_its_iso_closed_time_to_a_market_without_one():
    # The recorded event, closed by hand: event closedTime uses the ISO form.
    payload = copy.deepcopy(load("polymarket_gamma_events_by_slug.json"))
    payload[0].update(closed=True, closedTime="2025-04-11T16:05:00Z")
    market = payload[0]["markets"][0]
    market.update(closed=True, outcomePrices='["0", "1"]', umaResolutionStatuses='["resolved"]')

    price = by_id(parse(payload).records, "534136")
    assert price.market.resolution == "NO"
    assert price.market.close_time == datetime(2025, 4, 11, 16, 5, tzinfo=UTC)
    assert price.market.resolution_time == datetime(2025, 4, 11, 16, 5, tzinfo=UTC)


def test_market_with_more_than_two_outcomes_is_one_question_per_outcome():
    # The recorded BTC market given a third outcome by hand: Gamma rarely serves these.
    market = load("polymarket_gamma_market_single.json")
    market.update(
        outcomes='["Up", "Down", "Flat"]',
        outcomePrices='["0.5", "0.3", "0.2"]',
        clobTokenIds='["11", "12", "13"]',
    )
    page = parse(market)

    prices = {r.source_event_id: r for r in page.records if r.signal_type == "MARKET_PRICE"}
    assert sorted(prices) == ["1557558:Down", "1557558:Flat", "1557558:Up"]
    assert prices["1557558:Flat"].value == 0.2
    assert prices["1557558:Flat"].market.outcome == "Flat"
    assert prices["1557558:Flat"].raw_data["token_id"] == "13"
    volume = by_id(page.records, "1557558", "VOLUME")
    assert volume.value == 9.999997
    assert volume.market.outcome is None


# ---------------------------------------------------------------- Gamma keyset


def test_keyset_pages_follow_next_cursor_until_it_is_absent():
    [request] = ADAPTER.plan({"listing": "markets_keyset", "page_size": 500}, "poll", WINDOW, None)
    assert request.url == "https://gamma-api.polymarket.com/markets/keyset"
    assert request.params == {"limit": "100", "active": "true", "closed": "false"}

    # Synthetic envelope (no real keyset body was recorded) around three recorded markets.
    markets = load("polymarket_gamma_markets.json")[:3]
    body = {"markets": markets, "next_cursor": "eyJpZCI6NTE3MzEzfQ=="}
    assert parse(body).endpoint == polymarket.GAMMA_MARKETS_KEYSET

    page = parse(body, request=request)
    assert len(page.records) == 6
    assert by_id(page.records, "517311").value == 0.8615
    [following] = page.next_requests
    assert following.params == {
        "limit": "100",
        "active": "true",
        "closed": "false",
        "after_cursor": "eyJpZCI6NTE3MzEzfQ==",
    }

    assert parse({"markets": markets}, request=following).next_requests == []
    with pytest.raises(PayloadError, match="polymarket gamma_markets_keyset: next_cursor"):
        parse(body, request=following)


# ---------------------------------------------------------------- CLOB /markets


def test_clob_markets_page_reads_token_prices_and_winners():
    page = parse(load("polymarket_clob_markets_page.json"))

    assert page.endpoint == polymarket.CLOB_MARKETS
    assert len(page.records) == 20
    assert {r.signal_type for r in page.records} == {"MARKET_PRICE"}

    desantis = by_id(page.records, DESANTIS)
    assert desantis.value == 0.0
    assert desantis.market.outcome == "Yes"
    assert desantis.market.status == "resolved"
    assert desantis.market.resolution == "NO"
    assert desantis.market.close_time == datetime(2024, 9, 10, tzinfo=UTC)
    assert (
        desantis.market.slug
        == "will-ron-desantis-win-the-us-2024-republican-presidential-nomination"
    )
    assert desantis.market.category_hints[:3] == ("Politics", "tim scott", "republican party")
    assert "All" not in desantis.market.category_hints
    assert desantis.raw_data["condition_id"] == DESANTIS
    assert desantis.raw_data["token_ids"] == [
        "10715043962341292242163832255523703116280692082153281340642602592290195499485",
        "80085489243215790077454313513728486445319747473476157602131800551595373270758",
    ]

    assert by_id(page.records, TRUMP).market.resolution == "YES"

    party = by_id(page.records, PARTY_2024)
    assert party.value == 0.545
    assert party.market.outcome == "Democratic"
    assert party.market.status == "open"
    assert party.market.resolution is None

    luna = by_id(page.records, LUNA_BET)
    assert (luna.market.outcome, luna.value, luna.market.resolution) == ("Do Kwon", 0.0, "NO")

    merge = by_id(page.records, MERGE_SEPT)  # closed, but no token is flagged the winner
    assert (merge.market.status, merge.market.resolution) == ("closed", None)

    strapi = by_id(page.records, STRAPI_TEST)  # archived test market with placeholder tokens
    assert (strapi.value, strapi.market.outcome, strapi.market.status) == (None, None, "unknown")


def test_clob_cursor_paging_stops_at_the_end_sentinel():
    payload = load("polymarket_clob_markets_page.json")
    [following] = parse(payload).next_requests
    assert following.url == "https://clob.polymarket.com/markets"
    assert following.params == {"next_cursor": "MTAw"}

    [first] = ADAPTER.plan({"listing": "clob_markets"}, "poll", WINDOW, None)
    assert first.params == {"next_cursor": "MA=="}
    [from_plan] = parse(payload, request=first).next_requests
    assert from_plan.params == {"next_cursor": "MTAw"}

    last = {"data": payload["data"][:1], "next_cursor": "LTE=", "limit": 100, "count": 1}
    assert parse(last, request=from_plan).next_requests == []


# ---------------------------------------------------------------- backfill


def test_backfill_turns_every_outcome_token_into_a_history_request_for_the_window():
    [universe] = ADAPTER.plan({"market_ids": ["1557558"]}, "backfill", WINDOW, None)
    assert universe.url == "https://gamma-api.polymarket.com/markets/1557558"

    page = parse(load("polymarket_gamma_market_single.json"), request=universe)
    assert page.records == []
    up, down = page.next_requests
    assert up.endpoint == down.endpoint == polymarket.CLOB_PRICES_HISTORY
    assert up.url == "https://clob.polymarket.com/prices-history"
    assert up.params == {
        "market": BTC_UP_TOKEN,
        "startTs": str(WINDOW_START_TS),
        "endTs": str(WINDOW_END_TS),
        "fidelity": "60",
    }
    assert down.params["market"] == BTC_DOWN_TOKEN
    assert up.context["source_event_id"] == "1557558"
    assert down.context["source_event_id"] == "1557558:Down"
    assert up.context["market"]["outcome"] == "Up"
    assert up.context["market"]["title"] == "Bitcoin Up or Down - March 12, 5:20AM-5:25AM ET"
    json.dumps(up.context)  # the context is stored with the page in the landing zone


def test_backfill_listing_covers_markets_live_in_the_window():
    [universe] = ADAPTER.plan({"history_fidelity_minutes": 720}, "backfill", WINDOW, None)
    assert universe.params == {
        "limit": "100",
        "offset": "0",
        "end_date_min": "2026-03-11T00:00:00Z",
        "start_date_max": "2026-03-12T00:00:00Z",
    }

    payload = load("polymarket_gamma_markets.json")
    page = parse(payload, request=universe)
    history = [r for r in page.next_requests if r.endpoint == polymarket.CLOB_PRICES_HISTORY]
    tokens = {t for market in payload for t in json.loads(market["clobTokenIds"])}
    assert len(history) == 40
    assert {r.params["market"] for r in history} == tokens
    assert {(r.params["startTs"], r.params["endTs"], r.params["fidelity"]) for r in history} == {
        (str(WINDOW_START_TS), str(WINDOW_END_TS), "720")
    }


def test_backfill_of_a_clob_page_requests_history_per_token():
    [universe] = ADAPTER.plan({"listing": "clob_markets"}, "backfill", WINDOW, None)
    page = parse(load("polymarket_clob_markets_page.json"), request=universe)

    history = [r for r in page.next_requests if r.endpoint == polymarket.CLOB_PRICES_HISTORY]
    assert len(history) == 38  # 19 markets x 2 tokens; the strapi test market has no tokens
    [next_page] = [r for r in page.next_requests if r.endpoint == polymarket.CLOB_MARKETS]
    assert next_page.params == {"next_cursor": "MTAw"}
    assert next_page.context["mode"] == "backfill"


def test_prices_history_points_become_prices_at_their_own_time():
    [universe] = ADAPTER.plan({"market_ids": ["1557558"]}, "backfill", WINDOW, None)
    up, _down = parse(load("polymarket_gamma_market_single.json"), request=universe).next_requests
    # Synthetic body: no recorded prices-history payload exists. Shape {"history": [{t, p}]}.
    body = {
        "history": [
            {"t": WINDOW_START_TS - 60, "p": 0.4},
            {"t": WINDOW_START_TS, "p": 0.51},
            {"t": WINDOW_START_TS + 3600, "p": 0.525},
            {"t": WINDOW_END_TS, "p": 0.6},
        ]
    }

    page = parse(body, request=up)
    assert page.endpoint == polymarket.CLOB_PRICES_HISTORY
    assert [(r.fetched_at, r.value) for r in page.records] == [
        (WINDOW.start, 0.51),
        (WINDOW.start + timedelta(hours=1), 0.525),
    ]
    record = page.records[0]
    assert record.source_event_id == "1557558"
    assert record.signal_type == "MARKET_PRICE"
    assert record.market.outcome == "Up"
    assert record.market.title == "Bitcoin Up or Down - March 12, 5:20AM-5:25AM ET"
    assert record.market.close_time == datetime(2026, 3, 12, 9, 25, tzinfo=UTC)
    assert record.market.parent_id == "260654"
    assert record.source_url == "https://polymarket.com/event/btc-updown-5m-1773307200"
    assert record.raw_data == {
        "market_id": "1557558",
        "condition_id": "0x78443f961b9a65869dcb39359de9960165c7e5cbad0904eac7f29cd77872a63b",
        "token_id": BTC_UP_TOKEN,
    }

    # Recognised from content, but only the request knows which token the body is about.
    with pytest.raises(PayloadError, match="polymarket clob_prices_history: .*does not name"):
        parse(body)


# ---------------------------------------------------------------- errors


def test_body_of_the_wrong_shape_names_source_and_endpoint():
    markets_request = PageRequest(
        polymarket.GAMMA_MARKETS, "https://gamma-api.polymarket.com/markets"
    )
    with pytest.raises(
        PayloadError, match="polymarket gamma_markets: expected a JSON array"
    ) as err:
        parse({"error": "rate limited"}, request=markets_request)
    assert (err.value.source, err.value.endpoint) == ("polymarket", "gamma_markets")

    with pytest.raises(PayloadError, match="polymarket unrecognised endpoint"):
        parse({"error": "rate limited"})
    with pytest.raises(PayloadError, match="polymarket unrecognised endpoint"):
        parse(load("predictit_marketdata_all.json"))


def test_a_listing_whose_first_item_is_junk_is_still_recognised_and_the_item_rejected():
    markets = load("polymarket_gamma_markets.json")
    page = parse([{"k": [[]]}, *markets[1:]])
    assert page.endpoint == polymarket.GAMMA_MARKETS
    assert [reject.item_index for reject in page.rejects] == [0]
    assert page.records == parse(markets[1:]).records


def test_outcomes_and_prices_of_different_length_are_rejected():
    market = load("polymarket_gamma_market_single.json")
    market["outcomePrices"] = '["0.505"]'
    with pytest.raises(
        PayloadError,
        match="polymarket gamma_market: market 1557558 has 2 outcomes but 1 outcomePrices",
    ):
        parse(market)


def test_non_numeric_price_rejects_its_market_alone():
    markets = load("polymarket_gamma_markets.json")
    whole = parse(load("polymarket_gamma_markets.json"))
    markets[3]["outcomePrices"] = '["n/a", "0.991"]'
    page = parse(markets)
    [reject] = page.rejects
    assert (reject.reason, reject.item_index, reject.source_event_id) == (
        "unreadable_item",
        3,
        "517314",
    )
    assert reject.detail == (
        "polymarket gamma_markets: market 517314 outcome price 0 'n/a' is not a number"
    )
    assert reject.item is markets[3]
    assert page.records == [r for r in whole.records if not r.source_event_id.startswith("517314")]


def test_market_without_id_is_named_by_its_index():
    markets = load("polymarket_gamma_markets.json")
    del markets[1]["id"]
    page = parse(markets)
    [reject] = page.rejects
    assert (reject.item_index, reject.source_event_id) == (1, None)
    assert reject.detail == "polymarket gamma_markets: item 1 has no id"
    assert len(page.records) > 0
