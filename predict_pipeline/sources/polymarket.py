"""Polymarket: current prices from the Gamma API, price history from the CLOB API.

Poll mode lists markets (Gamma `/markets`, `/markets/keyset`, `/events`, or CLOB `/markets`)
or reads the configured markets/events. Backfill mode lists the same market universe and
turns every outcome token of every market into one CLOB `/prices-history` request for the
window, carrying the market's facts in the request context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator

from predict_pipeline.model import (
    FetchMode,
    FetchWindow,
    MarketFacts,
    NormalisedRecord,
    PageNavigation,
    PageRecords,
    PageRequest,
    PayloadError,
    RecordReject,
)
from predict_pipeline.sources.items import ITEM_FAULTS, item_reject, read_each
from predict_pipeline.sources.parsing import json_list, utc_from_epoch_s, utc_from_iso

SOURCE = "polymarket"
GAMMA_URL = "https://gamma-api.polymarket.com"
CLOB_URL = "https://clob.polymarket.com"
EVENT_PAGE_URL = "https://polymarket.com/event/"

GAMMA_MARKETS = "gamma_markets"
GAMMA_MARKET = "gamma_market"
GAMMA_EVENTS = "gamma_events"
GAMMA_MARKETS_KEYSET = "gamma_markets_keyset"
CLOB_MARKETS = "clob_markets"
CLOB_PRICES_HISTORY = "clob_prices_history"

CLOB_FIRST_CURSOR = "MA=="  # base64 "0"
CLOB_END_CURSOR = "LTE="  # base64 "-1": no further page
KEYSET_MAX_PAGE_SIZE = 100  # /markets/keyset rejects larger pages

# Gamma `/markets` allows 300 requests per 10 s (SOURCES.md), the tightest limit this feed meets.
RATE_LIMIT_RPM = 1800
SUPPORTS_BACKFILL = True

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Polymarket feed",
    "description": "Which Polymarket markets to read. Explicit ids/slugs replace the listing.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "listing": {
            "description": (
                "Endpoint that lists the market universe when no ids or slugs are configured: "
                "Gamma /markets (offset pages), Gamma /markets/keyset (cursor pages), Gamma "
                "/events (events with nested markets) or CLOB /markets (cursor pages)."
            ),
            "enum": ["markets", "markets_keyset", "events", "clob_markets"],
        },
        "active": {
            "description": "Gamma listing filter `active` in poll mode.",
            "type": "boolean",
        },
        "closed": {
            "description": "Gamma listing filter `closed` in poll mode.",
            "type": "boolean",
        },
        "tag_id": {
            "description": "Gamma tag id to restrict the listing to (null: every tag).",
            "type": ["integer", "null"],
            "minimum": 1,
        },
        "page_size": {
            "description": "Gamma `limit` per page; keyset listings are capped at 100.",
            "type": "integer",
            "minimum": 1,
            "maximum": 500,
        },
        "market_ids": {
            "description": "Gamma market ids (numeric strings), each read via /markets/{id}.",
            "type": "array",
            "items": {"type": "string", "pattern": "^[0-9]+$"},
            "uniqueItems": True,
        },
        "market_slugs": {
            "description": "Gamma market slugs, each read via /markets/slug/{slug}.",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "event_slugs": {
            "description": "Gamma event slugs, each read via /events?slug=...; every nested "
            "market is its own question.",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "history_fidelity_minutes": {
            "description": "Backfill: minutes between CLOB price-history points (`fidelity`).",
            "type": "integer",
            "minimum": 1,
            "maximum": 10080,
        },
    },
}

DEFAULT_CONFIG: dict[str, Any] = {
    "listing": "markets",
    "active": True,
    "closed": False,
    "tag_id": None,
    "page_size": 100,
    "market_ids": [],
    "market_slugs": [],
    "event_slugs": [],
    "history_fidelity_minutes": 60,
}

_CONFIG_VALIDATOR = Draft202012Validator(CONFIG_SCHEMA)


@dataclass(frozen=True, slots=True)
class _Quote:
    """One outcome token of a market: the series it prices and its latest price."""

    source_event_id: str
    token_id: str | None
    price: Decimal | None
    price_text: Any
    facts: MarketFacts
    is_question: bool  # False for the complementary token of a binary market


@dataclass(frozen=True, slots=True)
class _Market:
    market_id: str
    quotes: list[_Quote]
    facts: MarketFacts  # market-level facts (no outcome) for the volume record
    volume: float | None
    source_url: str | None
    narrative: str | None
    raw_data: dict[str, Any]


class PolymarketAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """First requests of a fetch. `cursor` is unused: every poll re-lists the current
        state, and a backfill is bounded by its window alone."""
        settings = _settings(config)
        if mode == "poll":
            context: dict[str, Any] = {}
        elif mode == "backfill":
            start, end = _window_bounds(window)
            context = {
                "mode": "backfill",
                "window": [start.isoformat(), end.isoformat()],
                "fidelity": settings["history_fidelity_minutes"],
            }
        else:
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")

        requests = [
            PageRequest(GAMMA_MARKET, f"{GAMMA_URL}/markets/{market_id}", context=context)
            for market_id in settings["market_ids"]
        ]
        requests += [
            PageRequest(
                GAMMA_MARKET, f"{GAMMA_URL}/markets/slug/{quote(slug, safe='')}", context=context
            )
            for slug in settings["market_slugs"]
        ]
        requests += [
            PageRequest(GAMMA_EVENTS, f"{GAMMA_URL}/events", {"slug": slug}, context=context)
            for slug in settings["event_slugs"]
        ]
        return requests or [_listing_request(settings, window, context)]

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """The next listing page, and in a backfill each listed token's price history. A poll
        reads no market of a listing (a single market still is, as its page's whole content)."""
        endpoint = request.endpoint if request is not None else _recognise(payload)
        if endpoint == CLOB_PRICES_HISTORY:
            history, _, _ = _history_page(payload, request, window)
            return PageNavigation(endpoint, items=len(history))
        items = _listed(payload, endpoint)
        next_requests = _next_listing_page(payload, endpoint, len(items), request)
        context = request.context if request is not None else {}
        if endpoint == GAMMA_MARKET or context.get("mode") == "backfill":
            markets, _ = _read_markets(items, endpoint)
            if context.get("mode") == "backfill":
                history = [
                    _history_request(q, m, context, window) for m in markets for q in m.quotes
                ]
                next_requests += [r for r in history if r is not None]
        return PageNavigation(endpoint, next_requests, items=len(items))

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageRecords:
        """Read one body; with no request the endpoint is recognised from the content."""
        if fetched_at.tzinfo is None:
            raise ValueError(f"{SOURCE}: fetched_at must be timezone-aware")
        observed = fetched_at.astimezone(UTC)
        endpoint = request.endpoint if request is not None else _recognise(payload)
        if endpoint == CLOB_PRICES_HISTORY:
            return _history_records(payload, request, window)
        markets, rejects = _read_markets(_listed(payload, endpoint), endpoint)
        context = request.context if request is not None else {}
        if context.get("mode") == "backfill":
            return PageRecords(endpoint, [], rejects=rejects)  # the records are the histories
        records = [rec for market in markets for rec in _market_records(market, observed)]
        return PageRecords(endpoint, records, rejects=rejects)


ADAPTER = PolymarketAdapter()


# ---------------------------------------------------------------- planning


def _settings(config: dict[str, Any]) -> dict[str, Any]:
    merged = {**DEFAULT_CONFIG, **config}
    errors = sorted(_CONFIG_VALIDATOR.iter_errors(merged), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].path) or "config"
        raise ValueError(f"{SOURCE}: invalid config at {where}: {errors[0].message}")
    return merged


def _window_bounds(window: FetchWindow) -> tuple[datetime, datetime]:
    if window.start.tzinfo is None or window.end.tzinfo is None:
        raise ValueError(f"{SOURCE}: fetch window must be timezone-aware")
    start, end = window.start.astimezone(UTC), window.end.astimezone(UTC)
    if start >= end:
        raise ValueError(f"{SOURCE}: empty fetch window {start.isoformat()}..{end.isoformat()}")
    return start, end


def _gamma_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _listing_request(
    settings: dict[str, Any], window: FetchWindow, context: dict[str, Any]
) -> PageRequest:
    listing = settings["listing"]
    if listing == "clob_markets":
        return PageRequest(
            CLOB_MARKETS, f"{CLOB_URL}/markets", {"next_cursor": CLOB_FIRST_CURSOR}, context=context
        )
    if context.get("mode") == "backfill":
        # Markets live at some point in the window: ended after its start, began before its end.
        start, end = _window_bounds(window)
        filters = {"end_date_min": _gamma_time(start), "start_date_max": _gamma_time(end)}
    else:
        filters = {
            "active": str(settings["active"]).lower(),
            "closed": str(settings["closed"]).lower(),
        }
    if settings["tag_id"] is not None:
        filters["tag_id"] = str(settings["tag_id"])
    size = settings["page_size"]
    if listing == "markets_keyset":
        params = {"limit": str(min(size, KEYSET_MAX_PAGE_SIZE)), **filters}
        return PageRequest(
            GAMMA_MARKETS_KEYSET, f"{GAMMA_URL}/markets/keyset", params, context=context
        )
    params = {"limit": str(size), "offset": "0", **filters}
    if listing == "events":
        return PageRequest(GAMMA_EVENTS, f"{GAMMA_URL}/events", params, context=context)
    return PageRequest(GAMMA_MARKETS, f"{GAMMA_URL}/markets", params, context=context)


# ---------------------------------------------------------------- recognition and paging


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:8]}"
    return f"a {type(value).__name__}"


def _recognise(payload: Any) -> str:
    if isinstance(payload, list):
        if not payload or payload[0] is None:
            return GAMMA_MARKETS  # an empty list is the last page of either Gamma listing
        # The first item that says what it is: one unreadable item never hides its page's kind.
        for item in payload:
            if isinstance(item, dict) and "outcomes" in item:
                return GAMMA_MARKETS
            if isinstance(item, dict) and ("markets" in item or "ticker" in item):
                return GAMMA_EVENTS
    elif isinstance(payload, dict):
        if isinstance(payload.get("history"), list):
            return CLOB_PRICES_HISTORY
        if isinstance(payload.get("data"), list) and "next_cursor" in payload:
            return CLOB_MARKETS
        markets = payload.get("markets")
        if isinstance(markets, list) and not any(
            isinstance(m, dict) and "contracts" in m for m in markets
        ):
            return GAMMA_MARKETS_KEYSET
        if "id" in payload and "outcomes" in payload:
            return GAMMA_MARKET
    raise PayloadError(
        SOURCE, "unrecognised endpoint", f"{_kind(payload)} is no Gamma or CLOB response"
    )


def _require_list(payload: Any, endpoint: str) -> list[Any]:
    if not isinstance(payload, list):
        raise PayloadError(SOURCE, endpoint, f"expected a JSON array, got {_kind(payload)}")
    return payload


def _list_field(payload: Any, key: str, endpoint: str) -> list[Any]:
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise PayloadError(
            SOURCE, endpoint, f"expected an object with a `{key}` array, got {_kind(payload)}"
        )
    return payload[key]


def _offset_next(count: int, request: PageRequest | None) -> list[PageRequest]:
    """Gamma offset paging: a full page means there may be more."""
    if request is None or "limit" not in request.params:
        return []
    limit = int(request.params["limit"])
    if count < limit:
        return []
    offset = int(request.params.get("offset", "0")) + limit
    return [dataclasses.replace(request, params={**request.params, "offset": str(offset)})]


def _keyset_next(payload: dict[str, Any], request: PageRequest | None) -> list[PageRequest]:
    cursor = payload.get("next_cursor")
    if not cursor or request is None:
        return []
    if cursor == request.params.get("after_cursor"):
        # A cursor that does not advance would page forever (seen in Polymarket/agents#227).
        raise PayloadError(SOURCE, GAMMA_MARKETS_KEYSET, f"next_cursor {cursor!r} did not advance")
    return [dataclasses.replace(request, params={**request.params, "after_cursor": str(cursor)})]


def _clob_next(payload: dict[str, Any], request: PageRequest | None) -> list[PageRequest]:
    cursor = payload.get("next_cursor")
    if not cursor or cursor == CLOB_END_CURSOR:
        return []
    if request is None:
        return [PageRequest(CLOB_MARKETS, f"{CLOB_URL}/markets", {"next_cursor": str(cursor)})]
    if cursor == request.params.get("next_cursor"):
        raise PayloadError(SOURCE, CLOB_MARKETS, f"next_cursor {cursor!r} did not advance")
    return [dataclasses.replace(request, params={**request.params, "next_cursor": str(cursor)})]


def _listed(payload: Any, endpoint: str) -> list[Any]:
    """The items of a listing body (markets, or events with nested markets); a single market
    is a listing of one."""
    if endpoint == CLOB_MARKETS:
        return _list_field(payload, "data", endpoint)
    if endpoint == GAMMA_MARKETS_KEYSET:
        return _list_field(payload, "markets", endpoint)
    if endpoint in (GAMMA_MARKETS, GAMMA_EVENTS):
        return _require_list(payload, endpoint)
    if endpoint == GAMMA_MARKET:
        if not isinstance(payload, dict):
            raise PayloadError(
                SOURCE, endpoint, f"expected one market object, got {_kind(payload)}"
            )
        return [payload]
    raise PayloadError(SOURCE, endpoint, "not an endpoint of this adapter")


def _next_listing_page(
    payload: Any, endpoint: str, count: int, request: PageRequest | None
) -> list[PageRequest]:
    if endpoint == CLOB_MARKETS:
        return _clob_next(payload, request)
    if endpoint == GAMMA_MARKETS_KEYSET:
        return _keyset_next(payload, request)
    if endpoint in (GAMMA_MARKETS, GAMMA_EVENTS):
        return _offset_next(count, request)
    return []


def _read_markets(items: list[Any], endpoint: str) -> tuple[list[_Market], list[RecordReject]]:
    """The markets of a listing's items; an unreadable one is rejected alone (the one market
    of a single-market body is the page, and fails it)."""
    if endpoint == CLOB_MARKETS:
        return read_each(
            items, lambda i, item: _clob_market(item, f"data[{i}]"), id_keys=("condition_id",)
        )
    if endpoint == GAMMA_MARKETS_KEYSET:
        return read_each(items, lambda i, item: _gamma_market(item, f"markets[{i}]", endpoint))
    if endpoint == GAMMA_MARKETS:
        return read_each(items, lambda i, item: _gamma_market(item, f"item {i}", endpoint))
    if endpoint == GAMMA_EVENTS:
        return _event_markets(items)
    return [_gamma_market(items[0], "market", endpoint)], []


# ---------------------------------------------------------------- field readers


def _decimal(value: Any, endpoint: str, what: str) -> Decimal:
    """Exact reading of a price: legacy AMM prices carry 34 significant digits."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is not a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is not a number") from exc
    if not number.is_finite():
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is not a finite number")
    return number


def _price(value: Any, endpoint: str, what: str) -> Decimal:
    number = _decimal(value, endpoint, what)
    if not Decimal(0) <= number <= Decimal(1):
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is outside 0..1")
    return number


def _time(value: Any, endpoint: str, what: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is not a timestamp string")
    try:
        return utc_from_iso(value)
    except ValueError as exc:
        raise PayloadError(SOURCE, endpoint, f"{what} {value!r} is not a timestamp") from exc


def _texts(value: Any, endpoint: str, what: str) -> list[Any]:
    try:
        return json_list(value)
    except ValueError as exc:
        raise PayloadError(SOURCE, endpoint, f"{what} is not a list: {exc}") from exc


def _hints(*values: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value.strip():
            seen.setdefault(value.strip(), None)
    return tuple(seen)


def _status(closed: bool, active: bool) -> str:
    if closed:
        return "closed"
    return "open" if active else "unknown"


def _series_id(market_id: str, outcomes: list[str], index: int) -> str:
    """The question id of outcome `index`: the market itself for the first outcome of a
    binary market, `<market>:<outcome>` for every other priced outcome."""
    if len(outcomes) == 2 and index == 0:
        return market_id
    return f"{market_id}:{outcomes[index] or index}"


def _quotes(
    market_id: str,
    outcomes: list[str],
    prices: Sequence[Decimal | None],
    price_texts: Sequence[Any],
    tokens: Sequence[str | None],
    resolutions: list[str | None],
    base: MarketFacts,
    resolution_time: datetime | None,
    resolved_to: float | None = None,
) -> list[_Quote]:
    quotes = []
    for index, outcome in enumerate(outcomes):
        resolution = resolutions[index]
        facts = dataclasses.replace(
            base,
            outcome=outcome or None,
            resolution=resolution,
            # An outcome's own share of a split payout: the complement for the second of two.
            resolution_probability=None
            if resolved_to is None
            else (resolved_to if index == 0 or len(outcomes) != 2 else 1.0 - resolved_to),
            status="resolved" if resolution else base.status,
            resolution_time=resolution_time if resolution else None,
        )
        quotes.append(
            _Quote(
                source_event_id=_series_id(market_id, outcomes, index),
                token_id=tokens[index],
                price=prices[index],
                price_text=price_texts[index],
                facts=facts,
                is_question=len(outcomes) != 2 or index == 0,
            )
        )
    return quotes


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "", [])}


# ---------------------------------------------------------------- Gamma markets and events


# UMA states of a proposal still open to dispute (docs.polymarket.com, "Resolution").
_UMA_PENDING = frozenset({"proposed", "disputed", "challenged"})


def _uma_status(market: dict[str, Any], uma_history: list[Any]) -> str | None:
    """The market's current UMA status: Gamma's `umaResolutionStatus`, else the history's last
    entry. The history of an automatically resolved market (sports, crypto) keeps its single
    "proposed" forever, so it never outvotes the current status, nor stands for one when the
    market says it was resolved automatically."""
    current = market.get("umaResolutionStatus")
    if isinstance(current, str) and current.strip():
        return current.strip().lower()
    if market.get("automaticallyResolved") is True or not uma_history:
        return None
    return str(uma_history[-1]).strip().lower()


def _gamma_resolutions(
    closed: bool, scalar: bool, prices: list[Decimal], status: str | None
) -> tuple[list[str | None], float | None]:
    """Per-outcome resolution of a finished market from its final prices, and the probability
    it resolved to when that is neither 1 nor 0.

    A market is finished when Gamma says `closed` or its UMA status is "resolved", and no
    proposal is still open to dispute. Final prices of exactly 1 and 0 settle it (YES for the
    outcome at 1); equal final prices with a "resolved" status are a 50-50 split. A scalar
    market pays out between its bounds and Gamma gives no payout vector (a legacy AMM's final
    prices are its last trade), so it stays unresolved here.
    """
    unresolved: list[str | None] = [None] * len(prices)
    if scalar or not (closed or status == "resolved") or status in _UMA_PENDING or not prices:
        return unresolved, None
    if all(p in (0, 1) for p in prices) and sum(prices) == 1:
        return ["YES" if p == 1 else "NO" for p in prices], None
    if status == "resolved" and all(p * len(prices) == 1 for p in prices):
        return ["AMBIGUOUS"] * len(prices), float(prices[0])
    return unresolved, None


def _event_markets(events: list[Any]) -> tuple[list[_Market], list[RecordReject]]:
    """Every nested market of every event; an unreadable event, or market, is rejected alone
    (a nested market's reject carries its event's index)."""
    markets: list[_Market] = []
    rejects: list[RecordReject] = []
    for index, event in enumerate(events):
        try:
            if not isinstance(event, dict):
                raise PayloadError(SOURCE, GAMMA_EVENTS, f"event {index} is {_kind(event)}")
            nested = event.get("markets")
            if nested is None:
                # Old events can lack nested markets (gnosis/prediction-market-agent-tooling#950).
                continue
            label = f"event {event.get('id', index)}"
            if not isinstance(nested, list):
                raise PayloadError(SOURCE, GAMMA_EVENTS, f"{label}: markets is {_kind(nested)}")
        except ITEM_FAULTS as exc:
            rejects.append(item_reject(index, event, exc, ("id",)))
            continue

        def read_market(
            i: int, m: Any, event: dict[str, Any] = event, label: str = label
        ) -> _Market:
            return _gamma_market(m, f"{label} market {i}", GAMMA_EVENTS, event)

        read, bad = read_each(nested, read_market)
        markets += read
        rejects += [dataclasses.replace(r, item_index=index) for r in bad]
    return markets, rejects


def _gamma_market(
    market: Any, where: str, endpoint: str, event: dict[str, Any] | None = None
) -> _Market:
    if not isinstance(market, dict):
        raise PayloadError(SOURCE, endpoint, f"{where} is {_kind(market)}")
    if market.get("id") in (None, ""):
        raise PayloadError(SOURCE, endpoint, f"{where} has no id")
    market_id = str(market["id"])
    label = f"market {market_id}"
    if event is None:
        events = market.get("events")
        event = (
            events[0]
            if isinstance(events, list) and events and isinstance(events[0], dict)
            else None
        )
    event = event or {}

    outcomes = [str(o) for o in _texts(market.get("outcomes"), endpoint, f"{label} outcomes")]
    if not outcomes:
        raise PayloadError(SOURCE, endpoint, f"{label} has no outcomes")
    price_texts = _texts(market.get("outcomePrices"), endpoint, f"{label} outcomePrices")
    tokens = [str(t) for t in _texts(market.get("clobTokenIds"), endpoint, f"{label} clobTokenIds")]
    for name, values in (("outcomePrices", price_texts), ("clobTokenIds", tokens)):
        if values and len(values) != len(outcomes):
            raise PayloadError(
                SOURCE,
                endpoint,
                f"{label} has {len(outcomes)} outcomes but {len(values)} {name}",
            )
    prices = [
        _price(text, endpoint, f"{label} outcome price {i}") for i, text in enumerate(price_texts)
    ]
    uma = _texts(market.get("umaResolutionStatuses"), endpoint, f"{label} umaResolutionStatuses")
    scalar = market.get("marketType") == "scalar"
    closed = market.get("closed") is True
    closed_time = _time(market.get("closedTime"), endpoint, f"{label} closedTime") or _time(
        event.get("closedTime"), endpoint, f"{label} event closedTime"
    )
    end_date = _time(market.get("endDate"), endpoint, f"{label} endDate")
    question = market.get("question")
    event_title = event.get("title")
    base = MarketFacts(
        title=question,
        slug=market.get("slug"),
        category_hints=_hints(
            *(tag.get("label") for tag in event.get("tags") or [] if isinstance(tag, dict)),
            *(s.get("title") for s in event.get("series") or [] if isinstance(s, dict)),
            market.get("category"),
            market.get("groupItemTitle"),
        ),
        # endDate keeps the scheduled end after an early close; closedTime is the real one.
        close_time=closed_time if closed and closed_time else end_date,
        status=_status(closed, market.get("active") is True),
        parent_id=str(event["id"]) if event.get("id") not in (None, "") else None,
    )
    resolutions, resolved_to = _gamma_resolutions(closed, scalar, prices, _uma_status(market, uma))
    absent = [None] * len(outcomes)  # a market not yet priced or not on the CLOB
    quotes = _quotes(
        market_id,
        outcomes,
        prices or absent,
        price_texts or absent,
        tokens or absent,
        resolutions,
        base,
        closed_time,
        resolved_to,
    )
    slug = event.get("slug") or market.get("slug")
    raw = _compact(
        {
            "market_id": market_id,
            "condition_id": market.get("conditionId"),
            "question_id": market.get("questionID"),
            "token_ids": tokens,
            "outcomes": outcomes,
            "outcome_prices": price_texts,
            "event_id": base.parent_id,
            "event_slug": event.get("slug"),
            "neg_risk": market.get("negRisk"),
            "neg_risk_market_id": market.get("negRiskMarketID"),
            "end_date": market.get("endDate"),
            "closed_time": market.get("closedTime"),
            "uma_resolution_status": market.get("umaResolutionStatus"),
            "uma_resolution_statuses": uma,
            "automatically_resolved": market.get("automaticallyResolved"),
            "best_bid": market.get("bestBid"),
            "best_ask": market.get("bestAsk"),
            "last_trade_price": market.get("lastTradePrice"),
            "liquidity": market.get("liquidity"),
            "market_type": market.get("marketType"),
            "lower_bound": market.get("lowerBound"),
            "upper_bound": market.get("upperBound"),
        }
    )
    market_status = "resolved" if any(resolutions) else base.status
    return _Market(
        market_id=market_id,
        quotes=quotes,
        facts=quotes[0].facts
        if len(outcomes) == 2
        else dataclasses.replace(base, status=market_status),
        volume=_gamma_volume(market, endpoint, label),
        source_url=f"{EVENT_PAGE_URL}{slug}" if slug else None,
        narrative=event_title if event_title and event_title != question else None,
        raw_data=raw,
    )


def _gamma_volume(market: dict[str, Any], endpoint: str, label: str) -> float | None:
    # The `volume` string keeps every digit; legacy markets round `volumeNum` to cents.
    for key in ("volume", "volumeNum"):
        value = market.get(key)
        if value not in (None, ""):
            return float(_decimal(value, endpoint, f"{label} {key}"))
    return None


# ---------------------------------------------------------------- CLOB markets


def _clob_market(market: Any, where: str) -> _Market:
    if not isinstance(market, dict):
        raise PayloadError(SOURCE, CLOB_MARKETS, f"{where} is {_kind(market)}")
    condition_id = market.get("condition_id")
    if not condition_id:
        raise PayloadError(SOURCE, CLOB_MARKETS, f"{where} has no condition_id")
    label = f"market {condition_id}"
    tokens = market.get("tokens")
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, dict) for t in tokens):
        raise PayloadError(SOURCE, CLOB_MARKETS, f"{label} has no readable tokens")
    # Archived test markets list placeholder tokens: no id, no outcome, price 0.
    token_ids = [str(t["token_id"]) if t.get("token_id") else None for t in tokens]
    outcomes = [str(t.get("outcome") or "") for t in tokens]
    prices = [
        _price(t.get("price"), CLOB_MARKETS, f"{label} token {i} price") if token_ids[i] else None
        for i, t in enumerate(tokens)
    ]
    closed = market.get("closed") is True
    winners = [t.get("winner") is True for t in tokens]
    resolutions: list[str | None] = (
        ["YES" if won else "NO" for won in winners]
        if closed and any(winners)
        else [None] * len(tokens)
    )
    neg_risk_id = market.get("neg_risk_market_id") or None
    base = MarketFacts(
        title=market.get("question"),
        slug=market.get("market_slug"),
        # "All" is Polymarket's catch-all tag and says nothing about the market.
        category_hints=_hints(*(t for t in market.get("tags") or [] if t != "All")),
        close_time=_time(market.get("end_date_iso"), CLOB_MARKETS, f"{label} end_date_iso"),
        status=_status(closed, market.get("active") is True),
        parent_id=neg_risk_id,
    )
    quotes = _quotes(
        condition_id,
        outcomes,
        prices,
        [t.get("price") for t in tokens],
        token_ids,
        resolutions,
        base,
        None,
    )
    slug = market.get("market_slug")
    raw = _compact(
        {
            "condition_id": condition_id,
            "question_id": market.get("question_id"),
            "token_ids": token_ids if any(token_ids) else None,
            "outcomes": outcomes,
            "winners": winners if any(winners) else None,
            "neg_risk": market.get("neg_risk"),
            "neg_risk_market_id": neg_risk_id,
            "end_date": market.get("end_date_iso"),
            "archived": market.get("archived"),
        }
    )
    return _Market(
        market_id=condition_id,
        quotes=quotes,
        facts=quotes[0].facts if len(tokens) == 2 else base,
        volume=None,
        source_url=f"{EVENT_PAGE_URL}{slug}" if slug else None,
        narrative=None,
        raw_data=raw,
    )


# ---------------------------------------------------------------- records and history


def _market_records(market: _Market, observed: datetime) -> list[NormalisedRecord]:
    records = [
        NormalisedRecord(
            source=SOURCE,
            source_event_id=q.source_event_id,
            signal_type="MARKET_PRICE",
            value=float(q.price) if q.price is not None else None,
            fetched_at=observed,
            source_url=market.source_url,
            narrative=market.narrative,
            raw_data=_compact({**market.raw_data, "token_id": q.token_id, "price": q.price_text}),
            market=q.facts,
        )
        for q in market.quotes
        if q.is_question
    ]
    if market.volume is not None:
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=market.market_id,
                signal_type="VOLUME",
                value=market.volume,
                fetched_at=observed,
                source_url=market.source_url,
                narrative=market.narrative,
                raw_data={**market.raw_data, "unit": "USDC"},
                market=market.facts,
            )
        )
    return records


def _facts_to_context(facts: MarketFacts) -> dict[str, Any]:
    out = dataclasses.asdict(facts)
    out["category_hints"] = list(facts.category_hints)
    for key in ("close_time", "resolution_time"):
        out[key] = out[key].isoformat() if out[key] else None
    return out


def _facts_from_context(data: dict[str, Any]) -> MarketFacts:
    values = dict(data)
    values["category_hints"] = tuple(values.get("category_hints") or ())
    for key in ("close_time", "resolution_time"):
        values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
    return MarketFacts(**values)


def _backfill_window(
    context: dict[str, Any], window: FetchWindow | None
) -> tuple[datetime, datetime]:
    if window is not None:
        return _window_bounds(window)
    bounds = context.get("window")
    if not bounds:
        raise ValueError(f"{SOURCE}: a backfill page needs its window")
    return datetime.fromisoformat(bounds[0]), datetime.fromisoformat(bounds[1])


def _history_request(
    q: _Quote, market: _Market, context: dict[str, Any], window: FetchWindow | None
) -> PageRequest | None:
    if q.token_id is None:
        return None  # AMM-only markets have no CLOB token and so no CLOB history
    start, end = _backfill_window(context, window)
    params = {
        "market": q.token_id,
        "startTs": str(int(start.timestamp())),
        "endTs": str(int(end.timestamp())),
        "fidelity": str(context.get("fidelity", DEFAULT_CONFIG["history_fidelity_minutes"])),
    }
    return PageRequest(
        CLOB_PRICES_HISTORY,
        f"{CLOB_URL}/prices-history",
        params,
        context={
            "mode": "backfill",
            "window": [start.isoformat(), end.isoformat()],
            "source_event_id": q.source_event_id,
            "source_url": market.source_url,
            "narrative": market.narrative,
            "raw_data": _compact(
                {
                    "market_id": market.raw_data.get("market_id"),
                    "condition_id": market.raw_data.get("condition_id"),
                    "token_id": q.token_id,
                }
            ),
            "market": _facts_to_context(q.facts),
        },
    )


def _history_page(
    payload: Any, request: PageRequest | None, window: FetchWindow | None
) -> tuple[list[Any], dict[str, Any], tuple[datetime, datetime]]:
    """The points of a price-history body, the request context naming their token, and the
    window they are kept to."""
    history = _list_field(payload, "history", CLOB_PRICES_HISTORY)
    if request is None or "source_event_id" not in request.context:
        raise PayloadError(
            SOURCE,
            CLOB_PRICES_HISTORY,
            "the body does not name its token; parse it with the request that fetched it",
        )
    return history, request.context, _backfill_window(request.context, window)


def _history_records(
    payload: Any, request: PageRequest | None, window: FetchWindow | None
) -> PageRecords:
    history, context, (start, end) = _history_page(payload, request, window)
    facts = _facts_from_context(context["market"])

    def point_record(index: int, point: Any) -> NormalisedRecord | None:
        if not isinstance(point, dict):
            raise PayloadError(SOURCE, CLOB_PRICES_HISTORY, f"point {index} is {_kind(point)}")
        seconds = _decimal(point.get("t"), CLOB_PRICES_HISTORY, f"point {index} time t")
        at = utc_from_epoch_s(int(seconds))
        if not start <= at < end:
            return None  # the window is half-open: a point at endTs belongs to the next window
        price = _price(point.get("p"), CLOB_PRICES_HISTORY, f"point {index} price p")
        return NormalisedRecord(
            source=SOURCE,
            source_event_id=context["source_event_id"],
            signal_type="MARKET_PRICE",
            value=float(price),
            fetched_at=at,
            source_url=context.get("source_url"),
            narrative=context.get("narrative"),
            raw_data=dict(context.get("raw_data") or {}),
            market=facts,
        )

    points, rejects = read_each(history, point_record, id_keys=())
    records = [record for record in points if record is not None]
    return PageRecords(CLOB_PRICES_HISTORY, records, rejects=rejects)
