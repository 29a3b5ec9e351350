"""Manifold (API v0): market probabilities and volumes, and history rebuilt from bets.

Only BINARY markets carry a market-level `probability`; MULTIPLE_CHOICE and FREE_RESPONSE
markets are priced per answer (`<marketId>:<answerId>`). Other types (POLL, MULTI_NUMERIC,
DATE, PSEUDO_NUMERIC, BOUNTIED_QUESTION, a market without a probability) give only their
VOLUME record, and the page lists them as skipped with the reason. Volumes are in mana.
All times are epoch milliseconds (docs/docs/api.md in manifoldmarkets/manifold).
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
)
from predict_pipeline.sources._history import (
    BodyReader,
    RecordsWithSkips,
    SkippedItem,
    WholePage,
    epoch_millis,
    in_window,
    is_backfill,
    resolve_config,
    window_context,
    window_of,
)
from predict_pipeline.sources.items import ITEM_FAULTS, read_each

SOURCE = "manifold"
BASE_URL = "https://api.manifold.markets/v0"
# "500 requests per minute per IP" (docs/docs/api.md, Usage Guidelines).
RATE_LIMIT_RPM = 500
SUPPORTS_BACKFILL = True

MARKETS = "markets"
MARKET = "market"
BETS = "bets"

_API_DEFAULT_MARKETS_LIMIT = 500
_BETS_LIMIT = 1000  # the maximum /bets page
_ANSWERED_TYPES = ("MULTIPLE_CHOICE", "FREE_RESPONSE")
_RESOLUTIONS = {"YES": "YES", "NO": "NO", "MKT": "AMBIGUOUS", "CANCEL": "CANCELLED"}
# Long texts that every record of a market would otherwise repeat.
_BULKY_FIELDS = ("answers", "description", "textDescription", "coverImageUrl")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Manifold feed",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "market_ids": {
            "description": "Market ids to follow (GET /market/{id}); none lists GET /markets.",
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "uniqueItems": True,
        },
        "limit": {
            "description": "Markets per page of GET /markets (Manifold allows 1 to 1000).",
            "type": "integer",
            "minimum": 1,
            "maximum": 1000,
        },
        "max_pages": {
            "description": "Pages of GET /markets read per fetch (paged with before=<id>).",
            "type": "integer",
            "minimum": 1,
        },
        "sort": {
            "description": "Order of GET /markets (newest first by this time).",
            "enum": ["created-time", "updated-time", "last-bet-time", "last-comment-time"],
        },
        "fetch_answers": {
            "description": "Follow a listed multiple-choice market to /market/{id} for answers.",
            "type": "boolean",
        },
    },
}
DEFAULT_CONFIG: dict[str, Any] = {
    "limit": _API_DEFAULT_MARKETS_LIMIT,
    "max_pages": 1,
    "fetch_answers": True,
}


class ManifoldAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """Poll: the configured markets, or the market list. Backfill: their bets in the window.

        Polls re-read current state and backfills are bounded by the window, so `cursor` is
        not used.
        """
        settings = resolve_config(SOURCE, CONFIG_SCHEMA, DEFAULT_CONFIG, config)
        context: dict[str, Any] = {"mode": mode, "settings": settings}
        if mode == "backfill":
            context.update(window_context(window))
        elif mode != "poll":
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")
        market_ids = settings.get("market_ids") or []
        if market_ids and mode == "backfill":
            return [_bets_request(market_id, window, context) for market_id in market_ids]
        if market_ids:
            return [_market_request(market_id, context) for market_id in market_ids]
        params = {"limit": str(settings["limit"])}
        if settings.get("sort"):
            params["sort"] = settings["sort"]
        return [PageRequest(MARKETS, f"{BASE_URL}/markets", params=params, context=context)]

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """Bets page on after the last readable bet (the bets themselves are not read); a
        market list is read, as its entries decide which markets' own pages or bets to ask."""
        endpoint = request.endpoint if request is not None else _recognise(payload)
        reader = BodyReader(SOURCE, endpoint)
        if endpoint == BETS:
            bets = reader.listing(payload, "response body")
            last_id, last_time = _last_readable_bet(reader, bets)
            next_page = _next_bets_page(
                bets, last_id, last_time, request, window_of(request, window)
            )
            return PageNavigation(endpoint, next_page, items=len(bets))
        return _read(reader, payload, _UNOBSERVED, request, window).navigation()

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> RecordsWithSkips:
        endpoint = request.endpoint if request is not None else _recognise(payload)
        reader = BodyReader(SOURCE, endpoint)
        return _read(reader, payload, fetched_at, request, window).content()


# What a page read only for its navigation is observed at: its records are not kept.
_UNOBSERVED = datetime(1970, 1, 1, tzinfo=UTC)


def _read(
    reader: BodyReader,
    payload: Any,
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    endpoint = reader.endpoint
    if endpoint == MARKETS:
        return _markets_page(reader, payload, fetched_at, request, window)
    if endpoint == MARKET:
        market = reader.mapping(payload, "response body")
        records, skipped = _market_records(reader, market, fetched_at, "market")
        return WholePage(endpoint=endpoint, records=records, skipped=tuple(skipped), items=1)
    if endpoint == BETS:
        return _bets_page(reader, payload, request, window)
    raise reader.fail(f"unknown endpoint {endpoint!r}")


def _recognise(payload: Any) -> str:
    if isinstance(payload, dict) and "id" in payload and "outcomeType" in payload:
        return MARKET
    if isinstance(payload, list) and payload and isinstance(payload[0], dict):
        first = payload[0]
        if "outcomeType" in first:
            return MARKETS
        if "contractId" in first and "probAfter" in first:
            return BETS
    if isinstance(payload, list) and not payload:
        reason = "an empty list could be markets or bets: the request is needed to tell"
    else:
        reason = "body is neither a market, a list of markets nor a list of bets"
    raise PayloadError(SOURCE, "unrecognised", reason)


def _market_request(market_id: str, context: dict[str, Any]) -> PageRequest:
    return PageRequest(MARKET, f"{BASE_URL}/market/{quote(market_id, safe='')}", context=context)


def _bets_request(market_id: str, window: FetchWindow, context: dict[str, Any]) -> PageRequest:
    params = {
        "contractId": market_id,
        "order": "asc",
        "limit": str(_BETS_LIMIT),
        # afterTime/beforeTime are exclusive; the window is [start, end).
        "afterTime": str(epoch_millis(window.start) - 1),
        "beforeTime": str(epoch_millis(window.end)),
    }
    return PageRequest(BETS, f"{BASE_URL}/bets", params=params, context=context)


# ---- markets ---------------------------------------------------------------------------


def _markets_page(
    reader: BodyReader,
    payload: Any,
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    markets = reader.listing(payload, "response body")
    context = request.context if request is not None else {}
    settings = context.get("settings") or DEFAULT_CONFIG
    backfill = is_backfill(request, window)
    window = window_of(request, window)
    records: list[NormalisedRecord] = []
    follow_ups: list[PageRequest] = []
    skipped: list[SkippedItem] = []

    def read_market(index: int, item: Any) -> None:
        market = reader.mapping(item, f"markets[{index}]")
        market_id = reader.identifier(market, "id", f"markets[{index}]")
        if backfill:
            follow = _bets_if_active(reader, market, market_id, window, context)
            if isinstance(follow, SkippedItem):
                skipped.append(follow)
            else:
                follow_ups.append(follow)
        elif (
            settings.get("fetch_answers", True)
            and market.get("outcomeType") in _ANSWERED_TYPES
            and market.get("answers") is None
        ):
            # The list gives no answers: the market's own page is read instead of this entry.
            follow_ups.append(_market_request(market_id, context))
        else:
            read, skips = _market_records(reader, market, fetched_at, f"markets[{index}]")
            records.extend(read)
            skipped.extend(skips)

    _, rejects = read_each(markets, read_market)
    next_page, limit_reached = _next_markets_page(markets, request, settings)
    return WholePage(
        endpoint=reader.endpoint,
        records=records,
        next_requests=follow_ups + next_page,
        rejects=rejects,
        skipped=tuple(skipped + limit_reached),
        items=len(markets),
    )


def _next_markets_page(
    markets: list[Any], request: PageRequest | None, settings: dict[str, Any]
) -> tuple[list[PageRequest], list[SkippedItem]]:
    """A full page leads to the next one (before=<last id>), up to `max_pages` pages."""
    limit = int(request.params.get("limit", settings["limit"])) if request else settings["limit"]
    page = int(request.context.get("page", 1)) if request else 1
    if not markets or len(markets) < limit:
        return [], []
    if page >= settings.get("max_pages", 1):
        return [], [SkippedItem("next page", f"max_pages ({page}) reached; more markets exist")]
    # The last market that names its id: an unreadable last item must not end the paging.
    last_id = next(
        (
            m["id"]
            for m in reversed(markets)
            if isinstance(m, dict) and isinstance(m.get("id"), str)
        ),
        None,
    )
    if last_id is None:
        return [], [SkippedItem("next page", "no market of the page names its id")]
    params = {**(request.params if request else {"limit": str(limit)}), "before": last_id}
    context = {**(request.context if request else {}), "page": page + 1}
    url = request.url if request else f"{BASE_URL}/markets"
    headers = request.headers if request else {}
    return [PageRequest(MARKETS, url, params=params, headers=headers, context=context)], []


def _bets_if_active(
    reader: BodyReader,
    market: dict[str, Any],
    market_id: str,
    window: FetchWindow | None,
    context: dict[str, Any],
) -> PageRequest | SkippedItem:
    if window is None:
        return SkippedItem(market_id, "backfill page without a window: no bets planned")
    what = f"market {market_id!r}"
    created = reader.epoch_ms(market.get("createdTime"), f"{what} createdTime")
    last_bet = reader.epoch_ms(market.get("lastBetTime"), f"{what} lastBetTime")
    if created is not None and created >= window.end:
        return SkippedItem(market_id, "market created after the backfill window")
    if last_bet is None or last_bet < window.start:
        return SkippedItem(market_id, "no bet on or after the backfill window start")
    return _bets_request(market_id, window, context)


def _market_records(
    reader: BodyReader, market: dict[str, Any], fetched_at: datetime, where: str
) -> tuple[list[NormalisedRecord], list[SkippedItem]]:
    market_id = reader.identifier(market, "id", where)
    what = f"market {market_id!r}"
    outcome_type = reader.text(market, "outcomeType", what)
    if outcome_type is None:
        raise reader.fail(f"{what}: 'outcomeType' is missing")
    facts = _market_facts(reader, market, market_id, fetched_at)
    source_url = reader.text(market, "url", what)
    raw = {key: value for key, value in market.items() if key not in _BULKY_FIELDS}
    records: list[NormalisedRecord] = []
    skipped: list[SkippedItem] = []

    def price(question_id: str, value: float, question: MarketFacts, extra: dict) -> None:
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=question_id,
                signal_type="MARKET_PRICE",
                value=value,
                fetched_at=fetched_at,
                source_url=source_url,
                raw_data={**raw, **extra},
                market=question,
            )
        )

    if outcome_type == "BINARY":
        probability = reader.probability(market.get("probability"), f"{what} probability")
        if probability is None:
            skipped.append(SkippedItem(market_id, "no MARKET_PRICE: no 'probability'"))
        else:
            price(market_id, probability, replace(facts, outcome="Yes"), {})
    elif outcome_type in _ANSWERED_TYPES and market.get("answers") is not None:
        answers = reader.listing(market["answers"], f"{what} answers")
        for index, item in enumerate(answers):
            answer = reader.mapping(item, f"{what} answers[{index}]")
            answer_id = reader.identifier(answer, "id", f"{what} answers[{index}]")
            question_id = f"{market_id}:{answer_id}"
            value = reader.probability(
                answer.get("probability"), f"{what} answer {answer_id!r} probability"
            )
            if value is None:
                skipped.append(SkippedItem(question_id, "no MARKET_PRICE: answer has no prob"))
                continue
            question = _answer_facts(reader, facts, market, answer, answer_id)
            price(question_id, value, question, {"answer": answer})
    elif outcome_type in _ANSWERED_TYPES:
        skipped.append(SkippedItem(market_id, f"no MARKET_PRICE: {outcome_type} without answers"))
    else:
        reason = f"no MARKET_PRICE: {outcome_type} markets carry no probability"
        skipped.append(SkippedItem(market_id, reason))

    volume = reader.number(market.get("volume"), f"{what} volume")
    if volume is None:
        skipped.append(SkippedItem(market_id, "no VOLUME: the market has no 'volume'"))
    else:
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=market_id,
                signal_type="VOLUME",
                value=abs(volume),
                fetched_at=fetched_at,
                source_url=source_url,
                raw_data={"volume_scope": "lifetime_mana", **raw},
                market=facts,
            )
        )
    return records, skipped


def _market_facts(
    reader: BodyReader, market: dict[str, Any], market_id: str, fetched_at: datetime
) -> MarketFacts:
    what = f"market {market_id!r}"
    binary = market.get("outcomeType") == "BINARY"
    value = market.get("resolution")
    # Any other market resolves to an answer id, answer by answer (below); its MKT (each answer
    # to its probability) and CANCEL cover the whole market.
    if binary:
        resolution = _resolution(reader, value, f"{what} resolution")
    else:
        resolution = (
            {"MKT": "AMBIGUOUS", "CANCEL": "CANCELLED"}.get(value)
            if isinstance(value, str)
            else None
        )
    close_time = reader.epoch_ms(market.get("closeTime"), f"{what} closeTime")
    if value == "CANCEL":
        status = "cancelled"
    elif market.get("isResolved"):
        status = "resolved"
    elif close_time is not None and close_time <= fetched_at:
        status = "closed"
    else:
        status = "open"
    groups = market.get("groupSlugs") or []
    return MarketFacts(
        title=reader.text(market, "question", what),
        slug=reader.text(market, "slug", what),
        category_hints=tuple(group for group in groups if isinstance(group, str)),
        close_time=close_time,
        status=status,
        resolution=resolution,
        # MKT resolves to `resolutionProbability` (docs/docs/api.md); for YES/NO it only echoes
        # the last probability, so it is kept for MKT alone.
        resolution_probability=reader.probability(
            market.get("resolutionProbability"), f"{what} resolutionProbability"
        )
        if binary and value == "MKT"
        else None,
        resolution_time=reader.epoch_ms(market.get("resolutionTime"), f"{what} resolutionTime"),
    )


def _answer_facts(
    reader: BodyReader,
    facts: MarketFacts,
    market: dict[str, Any],
    answer: dict[str, Any],
    answer_id: str,
) -> MarketFacts:
    """An answer resolves by its own `resolution`, else by the market's: the answer id that
    won (YES for it, NO for the others), MKT or CANCEL."""
    what = f"market {market['id']!r} answer {answer_id!r}"
    own = answer.get("resolution")
    market_resolution = market.get("resolution")
    probability = None
    if own is not None:
        resolution = _resolution(reader, own, f"{what} resolution")
        if own == "MKT":
            probability = reader.probability(
                answer.get("resolutionProbability"), f"{what} resolutionProbability"
            )
    elif market_resolution in _RESOLUTIONS:
        resolution = _RESOLUTIONS[market_resolution]
        if market_resolution == "MKT":
            # Without its own share, an answer's MKT payout is its probability at resolution.
            probability = reader.probability(
                answer.get("resolutionProbability", answer.get("probability")),
                f"{what} probability",
            )
    elif isinstance(market_resolution, str) and market_resolution:
        answers = market.get("answers") or []
        if not any(isinstance(a, dict) and a.get("id") == market_resolution for a in answers):
            raise reader.fail(f"{what} resolution: unknown value {market_resolution!r}")
        resolution = "YES" if market_resolution == answer_id else "NO"
    else:
        resolution = None
    text = reader.text(answer, "text", what)
    return replace(
        facts,
        outcome=text,
        parent_id=str(market["id"]),
        resolution=resolution,
        resolution_probability=probability,
    )


def _resolution(reader: BodyReader, value: Any, what: str) -> str | None:
    if value is None or value == "":
        return None
    if value not in _RESOLUTIONS:
        raise reader.fail(f"{what}: unknown value {value!r}")
    return _RESOLUTIONS[value]


# ---- bets (backfill) ---------------------------------------------------------------------


def _bets_page(
    reader: BodyReader,
    payload: Any,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    """Each bet in the window: the probability after it, and its |amount| as volume."""
    bets = reader.listing(payload, "response body")
    window = window_of(request, window)
    records: list[NormalisedRecord] = []
    last: list[tuple[str, datetime]] = []  # the last readable bet, where the next page starts

    def read_bet(index: int, item: Any) -> None:
        bet = reader.mapping(item, f"bets[{index}]")
        bet_id = reader.identifier(bet, "id", f"bets[{index}]")
        what = f"bet {bet_id!r}"
        market_id = reader.identifier(bet, "contractId", what)
        created = reader.epoch_ms(bet.get("createdTime"), f"{what} createdTime")
        if created is None:
            raise reader.fail(f"{what}: 'createdTime' is missing")
        last[:] = [(bet_id, created)]
        if not in_window(created, window):
            return
        prob_after = reader.probability(bet.get("probAfter"), f"{what} probAfter")
        if prob_after is None:
            raise reader.fail(f"{what}: 'probAfter' is missing")
        amount = reader.number(bet.get("amount"), f"{what} amount")
        if amount is None:
            raise reader.fail(f"{what}: 'amount' is missing")
        answer_id = bet.get("answerId")
        if answer_id is not None and not isinstance(answer_id, str):
            raise reader.fail(f"{what}: answerId {answer_id!r} is not an id")
        question_id = f"{market_id}:{answer_id}" if answer_id else market_id
        facts = MarketFacts(parent_id=market_id if answer_id else None)
        url = f"{BASE_URL}/bets?contractId={quote(market_id, safe='')}"
        records.extend(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=question_id,
                signal_type=signal_type,
                value=value,
                fetched_at=created,
                source_url=url,
                raw_data=bet,
                market=facts,
            )
            for signal_type, value in (("MARKET_PRICE", prob_after), ("VOLUME", abs(amount)))
        )

    _, rejects = read_each(bets, read_bet)
    last_id, last_time = last[0] if last else (None, None)
    return WholePage(
        endpoint=reader.endpoint,
        records=records,
        next_requests=_next_bets_page(bets, last_id, last_time, request, window),
        rejects=rejects,
        items=len(bets),
    )


def _last_readable_bet(reader: BodyReader, bets: list[Any]) -> tuple[str | None, datetime | None]:
    """The id and time of the page's last bet that names both, where the next page starts
    (what `_bets_page` keeps while it reads the bets)."""
    for index in range(len(bets) - 1, -1, -1):
        try:
            bet = reader.mapping(bets[index], f"bets[{index}]")
            bet_id = reader.identifier(bet, "id", f"bets[{index}]")
            what = f"bet {bet_id!r}"
            reader.identifier(bet, "contractId", what)
            created = reader.epoch_ms(bet.get("createdTime"), f"{what} createdTime")
        except ITEM_FAULTS:
            continue
        if created is not None:
            return bet_id, created
    return None, None


def _next_bets_page(
    bets: list[Any],
    last_id: str | None,
    last_time: datetime | None,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> list[PageRequest]:
    """A full page continues after its last bet, until the window's end is passed."""
    if request is None or last_id is None or last_time is None:
        return []
    limit = int(request.params.get("limit", _BETS_LIMIT))
    if len(bets) < limit or (window is not None and last_time >= window.end):
        return []
    params = {key: value for key, value in request.params.items() if key != "afterTime"}
    params["after"] = last_id
    return [
        PageRequest(
            request.endpoint,
            request.url,
            params=params,
            headers=request.headers,
            context=request.context,
        )
    ]


ADAPTER = ManifoldAdapter()
