"""Kalshi (trade API v2): market prices and volumes, and candlestick history.

Price rule: the last traded YES price (as of the observation); a market or candle with no
trade yet is priced at its YES bid/ask midpoint, and one with an empty book gets no price.

Response shapes (docs.kalshi.com, openapi 3.8): `GET /markets` and `/historical/markets` give
`{"markets": [Market], "cursor": ""}`; `GET /historical/cutoff` gives ISO `market_settled_ts`
(api-reference/historical/get-historical-cutoff-timestamps); candlestick endpoints give
`{"ticker", "candlesticks": [{"end_period_ts", "yes_bid", "yes_ask", "price", ...}]}` where the
live tier writes `close_dollars`/`volume_fp` (legacy: integer cents `close`, integer `volume`)
and the historical tier writes dollar strings under the bare names (`close`, `volume`)
(python-sdk/models/MarketCandlestick, api-reference/historical/get-historical-market-candlesticks).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from predict_pipeline.model import (
    FetchMode,
    FetchWindow,
    MarketFacts,
    NormalisedRecord,
    PageNavigation,
    PageRequest,
    PayloadError,
    RecordReject,
)
from predict_pipeline.sources._history import (
    BodyReader,
    RecordsWithSkips,
    SkippedItem,
    WholePage,
    epoch_seconds,
    facts_context,
    facts_from_context,
    in_window,
    is_backfill,
    resolve_config,
    window_context,
    window_of,
)
from predict_pipeline.sources.items import ITEM_FAULTS, item_reject, read_each

SOURCE = "kalshi"
BASE_URL = "https://api.elections.kalshi.com/trade-api/v2"
# Basic tier read limit, 20 requests/s (docs.kalshi.com/getting_started/rate_limits).
RATE_LIMIT_RPM = 1200
SUPPORTS_BACKFILL = True

MARKETS = "markets"
HISTORICAL_MARKETS = "historical_markets"
EVENTS = "events"
HISTORICAL_CUTOFF = "historical_cutoff"
MARKET_CANDLESTICKS = "market_candlesticks"
HISTORICAL_MARKET_CANDLESTICKS = "historical_market_candlesticks"

_PATHS = {
    MARKETS: "/markets",
    HISTORICAL_MARKETS: "/historical/markets",
    EVENTS: "/events",
    HISTORICAL_CUTOFF: "/historical/cutoff",
}
_EVENTS_PAGE_LIMIT = "200"  # /events allows at most 200 per page
_EVENT_STATUS_FILTERS = ("open", "closed", "settled")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Kalshi feed",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tickers": {
            "description": "Market tickers to follow (GET /markets?tickers=...).",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "event_tickers": {
            "description": "Event tickers whose markets to follow, one GET /markets per event.",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "series_ticker": {
            "description": "Series whose events (GET /events) and their markets to follow.",
            "type": "string",
            "minLength": 1,
        },
        "market_status": {
            "description": "Status filter for polled listings; none selects every status.",
            "enum": ["unopened", "open", "paused", "closed", "settled"],
        },
        "limit": {
            "description": "Markets per page of GET /markets (Kalshi allows 1 to 1000).",
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
        },
        "period_interval": {
            "description": "Candlestick length in minutes for backfill: 1, 60 or 1440.",
            "enum": [1, 60, 1440],
        },
    },
}
DEFAULT_CONFIG: dict[str, Any] = {"limit": 1000, "period_interval": 60}

# Lifecycle statuses (docs.kalshi.com/getting_started/market_lifecycle) and legacy names.
_STATUSES = {
    "initialized": "unknown",
    "unopened": "unknown",
    "active": "open",
    "open": "open",
    "inactive": "open",
    "paused": "open",
    "closed": "closed",
    "determined": "closed",
    "disputed": "closed",
    "amended": "closed",
    "finalized": "resolved",
    "settled": "resolved",
}
# `result` as documented (docs.kalshi.com, Market and Settlement models): a scalar market settles
# at a fraction of the payout (`settlement_value_dollars`), like a market resolved to a
# probability; a voided market returns every position at cost.
_RESULTS = {"": None, "yes": "YES", "no": "NO", "scalar": "AMBIGUOUS", "void": "CANCELLED"}
_VOLUME_FIELDS = (
    "volume",
    "volume_fp",
    "volume_24h",
    "volume_24h_fp",
    "open_interest",
    "open_interest_fp",
)


class KalshiAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """Poll: the configured market listings. Backfill: the historical cutoff first.

        Kalshi has no incremental cursor for market state, so `cursor` is not used.
        """
        settings = resolve_config(SOURCE, CONFIG_SCHEMA, DEFAULT_CONFIG, config)
        selection = {key: settings[key] for key in CONFIG_SCHEMA["properties"] if key in settings}
        if mode == "poll":
            return _listing_requests(selection, {"mode": "poll", "selection": selection})
        if mode == "backfill":
            context = {"mode": "backfill", "selection": selection, **window_context(window)}
            url = BASE_URL + _PATHS[HISTORICAL_CUTOFF]
            return [PageRequest(endpoint=HISTORICAL_CUTOFF, url=url, context=context)]
        raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """Next pages by cursor; a backfill listing also plans each market's candlesticks (so
        its markets are read), a poll listing and a candlesticks page are only counted."""
        endpoint, reader, body = _body(payload, request)
        if endpoint in (MARKET_CANDLESTICKS, HISTORICAL_MARKET_CANDLESTICKS):
            _, candles, _, _ = _candles(reader, body, request, window)
            return PageNavigation(endpoint, items=len(candles))
        if endpoint in (MARKETS, HISTORICAL_MARKETS) and not is_backfill(request, window):
            markets = _items(reader, body, "markets")
            return PageNavigation(endpoint, _next_page(reader, body, request), items=len(markets))
        return _read(reader, body, _UNOBSERVED, request, window).navigation()

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> RecordsWithSkips:
        endpoint, reader, body = _body(payload, request)
        return _read(reader, body, fetched_at, request, window).content()


# What a page read only for its navigation is observed at: its records are not kept.
_UNOBSERVED = datetime(1970, 1, 1, tzinfo=UTC)


def _body(payload: Any, request: PageRequest | None) -> tuple[str, BodyReader, dict[str, Any]]:
    endpoint = request.endpoint if request is not None else _recognise(payload)
    reader = BodyReader(SOURCE, endpoint)
    return endpoint, reader, reader.mapping(payload, "response body")


def _read(
    reader: BodyReader,
    body: dict[str, Any],
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    endpoint = reader.endpoint
    if endpoint in (MARKETS, HISTORICAL_MARKETS):
        return _markets_page(reader, body, fetched_at, request, window)
    if endpoint == EVENTS:
        return _events_page(reader, body, fetched_at, request, window)
    if endpoint == HISTORICAL_CUTOFF:
        return _cutoff_page(reader, body, request)
    if endpoint in (MARKET_CANDLESTICKS, HISTORICAL_MARKET_CANDLESTICKS):
        return _candlesticks_page(reader, body, request, window)
    raise reader.fail(f"unknown endpoint {endpoint!r}")


def _recognise(payload: Any) -> str:
    if isinstance(payload, dict):
        if isinstance(payload.get("markets"), list):
            return MARKETS
        if isinstance(payload.get("events"), list):
            return EVENTS
        if "market_settled_ts" in payload:
            return HISTORICAL_CUTOFF
        if "candlesticks" in payload and "ticker" in payload:
            candles = payload["candlesticks"]
            historical = (
                isinstance(candles, list)
                and bool(candles)
                and isinstance(candles[0], dict)
                and (isinstance(candles[0].get("volume"), str))
            )
            return HISTORICAL_MARKET_CANDLESTICKS if historical else MARKET_CANDLESTICKS
    raise PayloadError(
        SOURCE,
        "unrecognised",
        "body has none of 'markets', 'events', 'candlesticks' or 'market_settled_ts'",
    )


def _items(reader: BodyReader, body: dict[str, Any], key: str) -> list[Any]:
    """A body's item list; Kalshi's Go server may write an empty list as null."""
    if key not in body:
        raise reader.fail(f"body has no {key!r} list")
    value = body[key]
    return [] if value is None else reader.listing(value, repr(key))


# ---- planning --------------------------------------------------------------------------


def _listing_requests(selection: dict[str, Any], context: dict[str, Any]) -> list[PageRequest]:
    """The market listings a selection names; backfill asks both the live and historical tier."""
    backfill = context.get("mode") == "backfill"
    requests = [
        _markets_request(filters, historical, selection, context)
        for filters in _market_filters(selection)
        for historical in ((False, True) if backfill else (False,))
    ]
    series = selection.get("series_ticker")
    if series:
        params = {"series_ticker": series, "limit": _EVENTS_PAGE_LIMIT}
        status = selection.get("market_status")
        if not backfill and status in _EVENT_STATUS_FILTERS:
            params["status"] = status
        events_context = {**context, "series_ticker": series}
        requests.append(
            PageRequest(EVENTS, BASE_URL + _PATHS[EVENTS], params=params, context=events_context)
        )
    elif not requests:
        # No selector: the whole exchange, page by page.
        tiers = (False, True) if backfill else (False,)
        requests = [_markets_request({}, tier, selection, context) for tier in tiers]
    return requests


def _market_filters(selection: dict[str, Any]) -> list[dict[str, str]]:
    filters = [{"event_ticker": event} for event in selection.get("event_tickers", ())]
    if selection.get("tickers"):
        filters.insert(0, {"tickers": ",".join(selection["tickers"])})
    return filters


def _markets_request(
    filters: dict[str, str], historical: bool, selection: dict[str, Any], context: dict[str, Any]
) -> PageRequest:
    endpoint = HISTORICAL_MARKETS if historical else MARKETS
    params = {**filters, "limit": str(selection.get("limit", DEFAULT_CONFIG["limit"]))}
    status = selection.get("market_status")
    if status and context.get("mode") != "backfill":
        params["status"] = status
    return PageRequest(endpoint, BASE_URL + _PATHS[endpoint], params=params, context=context)


def _next_page(
    reader: BodyReader, body: dict[str, Any], request: PageRequest | None
) -> list[PageRequest]:
    """The same request with the body's cursor; an empty or null cursor marks the last page."""
    cursor = body.get("cursor")
    if cursor is None or cursor == "":
        return []
    if not isinstance(cursor, str):
        raise reader.fail(f"'cursor' must be text, got {cursor!r}")
    if request is None:
        url = BASE_URL + _PATHS[reader.endpoint]
        return [PageRequest(reader.endpoint, url, params={"cursor": cursor})]
    if cursor == request.params.get("cursor"):
        raise reader.fail(f"cursor {cursor!r} did not advance: paging would repeat this page")
    params = {**request.params, "cursor": cursor}
    return [
        PageRequest(
            request.endpoint,
            request.url,
            params=params,
            headers=request.headers,
            context=request.context,
        )
    ]


# ---- markets and events ----------------------------------------------------------------


def _markets_page(
    reader: BodyReader,
    body: dict[str, Any],
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    markets = _items(reader, body, "markets")
    context = request.context if request is not None else {}
    records, follow_ups, skipped, rejects = _read_markets(
        reader, markets, fetched_at, context, request, window, "markets"
    )
    return WholePage(
        endpoint=reader.endpoint,
        records=records,
        next_requests=follow_ups + _next_page(reader, body, request),
        rejects=rejects,
        skipped=tuple(skipped),
        items=len(markets),
    )


def _read_markets(
    reader: BodyReader,
    markets: list[Any],
    fetched_at: datetime,
    context: dict[str, Any],
    request: PageRequest | None,
    window: FetchWindow | None,
    where: str,
) -> tuple[list[NormalisedRecord], list[PageRequest], list[SkippedItem], list[RecordReject]]:
    """Each market's records (or its candles' request); an unreadable market is rejected alone."""
    backfill = is_backfill(request, window)

    def read_market(
        index: int, item: Any
    ) -> tuple[list[NormalisedRecord], list[PageRequest], list[SkippedItem]]:
        market = reader.mapping(item, f"{where}[{index}]")
        ticker = reader.identifier(market, "ticker", f"{where}[{index}]")
        facts = _market_facts(reader, market, ticker, context)
        if backfill:
            candles = _candlesticks_request(reader, market, ticker, facts, request, window)
            if isinstance(candles, SkippedItem):
                return [], [], [candles]
            return [], [candles], []
        read, skips = _market_records(reader, market, ticker, facts, fetched_at)
        return read, [], skips

    results, rejects = read_each(markets, read_market, id_keys=("ticker",))
    records = [record for read, _, _ in results for record in read]
    follow_ups = [follow for _, follows, _ in results for follow in follows]
    skipped = [skip for _, _, skips in results for skip in skips]
    return records, follow_ups, skipped, rejects


def _market_records(
    reader: BodyReader,
    market: dict[str, Any],
    ticker: str,
    facts: MarketFacts,
    fetched_at: datetime,
) -> tuple[list[NormalisedRecord], list[SkippedItem]]:
    what = f"market {ticker!r}"
    source_url = f"{BASE_URL}/markets/{quote(ticker, safe='')}"
    volume = _count(reader, market, "volume", what)
    price, rule = _market_price(reader, market, volume, what)
    records: list[NormalisedRecord] = []
    skipped: list[SkippedItem] = []
    if price is None:
        skipped.append(SkippedItem(ticker, f"no MARKET_PRICE: {rule}"))
    else:
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=ticker,
                signal_type="MARKET_PRICE",
                value=price,
                fetched_at=fetched_at,
                source_url=source_url,
                raw_data={**market, "price_rule": rule},
                market=facts,
            )
        )
    if volume is None:
        skipped.append(SkippedItem(ticker, "no VOLUME: the market has no volume field"))
    else:
        volume_raw = {key: market[key] for key in _VOLUME_FIELDS if key in market}
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=ticker,
                signal_type="VOLUME",
                value=volume,
                fetched_at=fetched_at,
                source_url=source_url,
                raw_data={"ticker": ticker, "volume_scope": "lifetime_contracts", **volume_raw},
                market=facts,
            )
        )
    return records, skipped


def _market_price(
    reader: BodyReader, market: dict[str, Any], volume: float | None, what: str
) -> tuple[float | None, str]:
    last = _price(reader, market, "last_price", what)
    if last is not None and volume:
        return last, "last_trade"
    bid = _price(reader, market, "yes_bid", what)
    ask = _price(reader, market, "yes_ask", what)
    return _midpoint(bid, ask)


def _midpoint(bid: float | None, ask: float | None) -> tuple[float | None, str]:
    """No bid reads as 0 and no ask as 1 on Kalshi; both absent is an empty book."""
    if bid is None or ask is None:
        return None, "no trade and no YES bid/ask in the body"
    if bid <= 0.0 and ask >= 1.0:
        return None, "no trade and an empty order book"
    return (bid + ask) / 2.0, "bid_ask_midpoint"


def _price(reader: BodyReader, obj: dict[str, Any], name: str, what: str) -> float | None:
    """A YES price in dollars from `<name>_dollars`, a bare dollar string, or legacy cents."""
    dollars = obj.get(f"{name}_dollars")
    if dollars is not None:
        return reader.probability(dollars, f"{what} {name}_dollars")
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        # The historical tier writes fixed-point dollars under the bare field name.
        return reader.probability(value, f"{what} {name}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise reader.fail(f"{what} {name}: expected integer cents, got {value!r}")
    cents = reader.number(value, f"{what} {name}")
    if cents is None or not 0.0 <= cents <= 100.0:
        raise reader.fail(f"{what} {name}: {value!r} cents is outside 0..100")
    return cents / 100.0


def _count(reader: BodyReader, obj: dict[str, Any], name: str, what: str) -> float | None:
    """A contract count from the fixed-point `<name>_fp` string, else the legacy field."""
    key = f"{name}_fp" if obj.get(f"{name}_fp") is not None else name
    count = reader.number(obj.get(key), f"{what} {key}")
    if count is not None and count < 0:
        raise reader.fail(f"{what} {key}: negative count {count!r}")
    return count


def _market_facts(
    reader: BodyReader, market: dict[str, Any], ticker: str, context: dict[str, Any]
) -> MarketFacts:
    what = f"market {ticker!r}"
    result = market.get("result") or ""
    if not isinstance(result, str) or result.lower() not in _RESULTS:
        raise reader.fail(f"{what} result: unknown value {result!r}")
    result = result.lower()
    status = market.get("status")
    lifecycle = _STATUSES.get(status, "unknown") if isinstance(status, str) else "unknown"
    resolution, settled_at = _RESULTS[result], None
    if result == "scalar" or (result == "" and lifecycle == "resolved"):
        # What a YES contract paid: a scalar's fraction, or a settled market's only word.
        settled_at = _price(reader, market, "settlement_value", what)
        if result == "":
            resolution = _settled_outcome(settled_at)
        if resolution != "AMBIGUOUS":
            settled_at = None
    event = context.get("event") or {}
    hints = [hint for hint in (event.get("category"), market.get("category")) if hint]
    return MarketFacts(
        title=reader.text(market, "title", what) or event.get("title"),
        category_hints=tuple(dict.fromkeys(hints)),
        close_time=reader.iso(market.get("close_time"), f"{what} close_time"),
        status=lifecycle,
        resolution=resolution,
        resolution_probability=settled_at,
        resolution_time=reader.iso(market.get("settlement_ts"), f"{what} settlement_ts"),
        parent_id=reader.identifier(market, "event_ticker", what),
        outcome=reader.text(market, "yes_sub_title", what) or "Yes",
    )


def _settled_outcome(paid: float | None) -> str | None:
    """The outcome of a settled market from what a YES contract paid, when `result` is empty."""
    if paid is None:
        return None
    if paid == 1.0:
        return "YES"
    if paid == 0.0:
        return "NO"
    return "AMBIGUOUS"


def _events_page(
    reader: BodyReader,
    body: dict[str, Any],
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    """Events lead to their markets' listings; markets nested in an event are read in place."""
    events = _items(reader, body, "events")
    context = request.context if request is not None else {}
    selection = context.get("selection") or DEFAULT_CONFIG
    records: list[NormalisedRecord] = []
    follow_ups: list[PageRequest] = []
    skipped: list[SkippedItem] = []
    rejects: list[RecordReject] = []
    for index, item in enumerate(events):
        try:
            event = reader.mapping(item, f"events[{index}]")
            event_ticker = reader.identifier(event, "event_ticker", f"events[{index}]")
            what = f"event {event_ticker!r}"
            market_context = {
                **context,
                "series_ticker": event.get("series_ticker") or context.get("series_ticker"),
                "event": {
                    "title": reader.text(event, "title", what),
                    "category": reader.text(event, "category", what),
                },
            }
            nested = event.get("markets")
            markets = None if nested is None else reader.listing(nested, f"{what} markets")
        except ITEM_FAULTS as exc:
            rejects.append(item_reject(index, item, exc, ("event_ticker",)))
            continue
        if markets is not None:
            read, requests, skips, bad = _read_markets(
                reader, markets, fetched_at, market_context, request, window, f"{what} markets"
            )
            records.extend(read)
            follow_ups.extend(requests)
            skipped.extend(skips)
            rejects.extend(replace(r, item_index=index) for r in bad)
            continue
        tiers = (False, True) if market_context.get("mode") == "backfill" else (False,)
        follow_ups.extend(
            _markets_request({"event_ticker": event_ticker}, tier, selection, market_context)
            for tier in tiers
        )
    return WholePage(
        endpoint=reader.endpoint,
        records=records,
        next_requests=follow_ups + _next_page(reader, body, request),
        rejects=rejects,
        skipped=tuple(skipped),
        items=len(events),
    )


# ---- backfill ----------------------------------------------------------------------------


def _cutoff_page(
    reader: BodyReader, body: dict[str, Any], request: PageRequest | None
) -> WholePage:
    value = body.get("market_settled_ts")
    if isinstance(value, int | float) and not isinstance(value, bool):
        cutoff = reader.epoch_s(value, "market_settled_ts")
    else:
        cutoff = reader.iso(value, "market_settled_ts")
    if cutoff is None:
        raise reader.fail("'market_settled_ts' is missing")
    context = request.context if request is not None else {}
    if "selection" not in context or "window_start" not in context:
        reason = "no backfill selection or window in the request context: nothing to plan"
        return WholePage(
            endpoint=reader.endpoint, records=[], skipped=(SkippedItem("cutoff", reason),)
        )
    listing_context = {**context, "cutoff": cutoff.isoformat()}
    return WholePage(
        endpoint=reader.endpoint,
        records=[],
        next_requests=_listing_requests(context["selection"], listing_context),
    )


def _candlesticks_request(
    reader: BodyReader,
    market: dict[str, Any],
    ticker: str,
    facts: MarketFacts,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> PageRequest | SkippedItem:
    """Candles for one market over the window, from the tier that holds its settlement."""
    what = f"market {ticker!r}"
    window = window_of(request, window)
    if window is None:
        return SkippedItem(ticker, "backfill page without a window: no candlesticks planned")
    opened = reader.iso(market.get("open_time"), f"{what} open_time")
    if facts.close_time is not None and facts.close_time < window.start:
        return SkippedItem(ticker, "market closed before the backfill window")
    if opened is not None and opened >= window.end:
        return SkippedItem(ticker, "market opened after the backfill window")
    context = request.context if request is not None else {}
    cutoff = reader.iso(context.get("cutoff"), "request context cutoff")
    settled = reader.iso(market.get("settlement_ts"), f"{what} settlement_ts")
    historical = reader.endpoint == HISTORICAL_MARKETS or (
        settled is not None and cutoff is not None and settled < cutoff
    )
    path_ticker = quote(ticker, safe="")
    if historical:
        endpoint = HISTORICAL_MARKET_CANDLESTICKS
        url = f"{BASE_URL}/historical/markets/{path_ticker}/candlesticks"
    else:
        endpoint = MARKET_CANDLESTICKS
        # Event tickers are "<SERIES>-<suffix>" when the series was not named by the caller.
        series = (
            market.get("series_ticker")
            or context.get("series_ticker")
            or str(facts.parent_id).split("-", 1)[0]
        )
        url = f"{BASE_URL}/series/{quote(series, safe='')}/markets/{path_ticker}/candlesticks"
    selection = context.get("selection") or DEFAULT_CONFIG
    params = {
        "start_ts": str(epoch_seconds(window.start)),
        "end_ts": str(epoch_seconds(window.end)),
        "period_interval": str(selection.get("period_interval", DEFAULT_CONFIG["period_interval"])),
    }
    candle_context = {
        "mode": "backfill",
        **window_context(window),
        "ticker": ticker,
        "market": facts_context(facts),
    }
    return PageRequest(endpoint, url, params=params, context=candle_context)


def _candles(
    reader: BodyReader,
    body: dict[str, Any],
    request: PageRequest | None,
    window: FetchWindow | None,
) -> tuple[str, list[Any], FetchWindow | None, MarketFacts]:
    """A candlesticks body's ticker, its candles, the window they are kept to and the facts of
    their market (from the request that asked for them)."""
    context = request.context if request is not None else {}
    ticker_source = body if body.get("ticker") is not None else context
    ticker = reader.identifier(ticker_source, "ticker", "candlesticks body")
    candles = _items(reader, body, "candlesticks")
    return ticker, candles, window_of(request, window), facts_from_context(context.get("market"))


def _candlesticks_page(
    reader: BodyReader,
    body: dict[str, Any],
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    ticker, candles, window, facts = _candles(reader, body, request, window)
    source_url = f"{BASE_URL}/markets/{quote(ticker, safe='')}"
    interval = request.params.get("period_interval") if request is not None else None

    def read_candle(index: int, item: Any) -> tuple[list[NormalisedRecord], list[SkippedItem]]:
        candle = reader.mapping(item, f"candlesticks[{index}]")
        what = f"market {ticker!r} candle {index}"
        period_end = reader.epoch_s(candle.get("end_period_ts"), f"{what} end_period_ts")
        if period_end is None:
            raise reader.fail(f"{what}: 'end_period_ts' is missing")
        if not in_window(period_end, window):
            return [], []
        label = f"{ticker}@{candle['end_period_ts']}"
        price, rule = _candle_price(reader, candle, what)
        raw = {"ticker": ticker, "period_interval": interval, **candle}
        records: list[NormalisedRecord] = []
        skipped: list[SkippedItem] = []
        if price is None:
            skipped.append(SkippedItem(label, f"no MARKET_PRICE: {rule}"))
        else:
            records.append(
                NormalisedRecord(
                    source=SOURCE,
                    source_event_id=ticker,
                    signal_type="MARKET_PRICE",
                    value=price,
                    fetched_at=period_end,
                    source_url=source_url,
                    raw_data={**raw, "price_rule": rule},
                    market=facts,
                )
            )
        volume = _count(reader, candle, "volume", what)
        if volume is None:
            skipped.append(SkippedItem(label, "no VOLUME: the candle has no volume field"))
        else:
            records.append(
                NormalisedRecord(
                    source=SOURCE,
                    source_event_id=ticker,
                    signal_type="VOLUME",
                    value=volume,
                    fetched_at=period_end,
                    source_url=source_url,
                    raw_data={**raw, "volume_scope": "period_contracts"},
                    market=facts,
                )
            )
        return records, skipped

    results, rejects = read_each(candles, read_candle, id_keys=())
    return WholePage(
        endpoint=reader.endpoint,
        records=[record for read, _ in results for record in read],
        rejects=rejects,
        skipped=tuple(skip for _, skips in results for skip in skips),
        items=len(candles),
    )


def _candle_price(
    reader: BodyReader, candle: dict[str, Any], what: str
) -> tuple[float | None, str]:
    """Last trade as of the period end (close, else the previous close), else the midpoint."""
    trades = reader.mapping(candle.get("price") or {}, f"{what} price")
    close = _price(reader, trades, "close", f"{what} price")
    if close is not None:
        return close, "period_close_trade"
    previous = _price(reader, trades, "previous", f"{what} price")
    if previous is not None:
        return previous, "last_trade_before_period"
    bids = reader.mapping(candle.get("yes_bid") or {}, f"{what} yes_bid")
    asks = reader.mapping(candle.get("yes_ask") or {}, f"{what} yes_ask")
    return _midpoint(
        _price(reader, bids, "close", f"{what} yes_bid"),
        _price(reader, asks, "close", f"{what} yes_ask"),
    )


ADAPTER = KalshiAdapter()
