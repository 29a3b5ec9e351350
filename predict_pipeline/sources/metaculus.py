"""Metaculus (`/api/posts/`): community predictions as EXPERT signals.

The community prediction is a forecast aggregate, not a market price, so it is an EXPERT
signal: `aggregations.recency_weighted.latest.centers[0]` (else `forecast_values[1]`) for a
binary question, `forecast_values[i]` for option i of a multiple-choice question
(`<questionId>:<option>`). A null `latest` means the caller may not see the CP: no record,
never 0. Numeric, discrete and date questions forecast a distribution, not a probability,
and give no record; every such question is listed in the page's `skipped` with the reason.
Aggregation times are float unix seconds; post and question times are ISO strings.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

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
    in_window,
    is_backfill,
    resolve_config,
    window_context,
    window_of,
)
from predict_pipeline.sources.items import read_each

SOURCE = "metaculus"
BASE_URL = "https://www.metaculus.com/api"
SITE_URL = "https://www.metaculus.com"
# 1,000 requests per hour (Metaculus/metaculus docs/openapi.yml), rounded down per minute.
RATE_LIMIT_RPM = 16
SUPPORTS_BACKFILL = True

POSTS = "posts"
POST = "post"

_AGGREGATION = "recency_weighted"
_STATUSES = {
    "open": "open",
    "upcoming": "unknown",
    "closed": "closed",
    "pending_resolution": "closed",
    "resolved": "resolved",
}
_OUTCOMES = {"yes": "YES", "no": "NO", "annulled": "CANCELLED", "ambiguous": "AMBIGUOUS"}
# The earlier API (api2) wrote a binary resolution as a number: 1 yes, 0 no, -1 ambiguous,
# -2 annulled.
_LEGACY_OUTCOMES = {1.0: "YES", 0.0: "NO", -1.0: "AMBIGUOUS", -2.0: "CANCELLED"}
_DISTRIBUTION_TYPES = ("numeric", "discrete", "date")

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Metaculus feed",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "post_ids": {
            "description": "Posts to follow (GET /posts/{id}/); none lists GET /posts/.",
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "uniqueItems": True,
        },
        "statuses": {
            "description": "Post statuses listed by GET /posts/.",
            "type": "array",
            "items": {"enum": ["upcoming", "open", "closed", "resolved"]},
            "minItems": 1,
            "uniqueItems": True,
        },
        "forecast_types": {
            "description": "Question types listed by GET /posts/ (the forecast_type filter).",
            "type": "array",
            "items": {
                "enum": [
                    "binary",
                    "multiple_choice",
                    "numeric",
                    "discrete",
                    "date",
                    "conditional",
                    "group_of_questions",
                ]
            },
            "minItems": 1,
            "uniqueItems": True,
        },
        "tournaments": {
            "description": "Tournament ids or slugs to restrict GET /posts/ to.",
            "type": "array",
            "items": {"type": ["string", "integer"]},
            "uniqueItems": True,
        },
        "order_by": {
            "description": "Ordering of GET /posts/, e.g. '-hotness' or '-published_at'.",
            "type": "string",
            "minLength": 1,
        },
        "limit": {
            "description": "Posts per page of GET /posts/ (1 to 100).",
            "type": "integer",
            "minimum": 1,
            "maximum": 100,
        },
        "max_pages": {
            "description": "Pages of GET /posts/ read per fetch (following 'next').",
            "type": "integer",
            "minimum": 1,
        },
        "credentials": {
            "description": "Run-time secret from the feed's encrypted credentials; not stored.",
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "token": {
                    "description": "Metaculus API token, sent as 'Authorization: Token <token>'.",
                    "type": "string",
                    "minLength": 1,
                }
            },
            "required": ["token"],
        },
    },
}
DEFAULT_CONFIG: dict[str, Any] = {
    "statuses": ["open"],
    "forecast_types": ["binary", "multiple_choice"],
    "order_by": "-hotness",
    "limit": 100,
    "max_pages": 5,
}


class MetaculusAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """Poll: the configured posts or the filtered list. Backfill: the same, read for history.

        A post's CP history comes whole with its detail, so `cursor` is not used.
        """
        settings = resolve_config(SOURCE, CONFIG_SCHEMA, DEFAULT_CONFIG, config)
        token = (settings.get("credentials") or {}).get("token")
        if not token:
            raise ValueError(f"{SOURCE}: config credentials carry no API token")
        headers = {"Authorization": f"Token {token}"}
        context: dict[str, Any] = {"mode": mode, "max_pages": settings["max_pages"], "page": 1}
        if mode == "backfill":
            context.update(window_context(window))
        elif mode != "poll":
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")
        if settings.get("post_ids"):
            return [_post_request(post_id, headers, context) for post_id in settings["post_ids"]]
        params = {
            "limit": str(settings["limit"]),
            "offset": "0",
            "statuses": ",".join(settings["statuses"]),
            "forecast_type": ",".join(settings["forecast_types"]),
            "order_by": settings["order_by"],
        }
        if settings.get("tournaments"):
            params["tournaments"] = ",".join(str(t) for t in settings["tournaments"])
        return [
            PageRequest(
                POSTS, f"{BASE_URL}/posts/", params=params, headers=headers, context=context
            )
        ]

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """A poll's post list pages on by its `next` link without reading the posts; a
        backfill's list asks each post's detail, and a detail is read whole (it is the page)."""
        endpoint, reader, body = _body(payload, request)
        if endpoint == POSTS and not is_backfill(request, window):
            posts = reader.listing(body.get("results"), "'results'")
            next_page, _ = _next_page(reader, body, request)
            return PageNavigation(endpoint, next_page, items=len(posts))
        return _read(reader, body, _UNOBSERVED, request, window).navigation()

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> RecordsWithSkips:
        _, reader, body = _body(payload, request)
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
    if endpoint == POSTS:
        return _posts_page(reader, body, fetched_at, request, window)
    if endpoint == POST:
        records, skipped = _post_records(reader, body, fetched_at, request, window, "post")
        return WholePage(endpoint=endpoint, records=records, skipped=tuple(skipped), items=1)
    raise reader.fail(f"unknown endpoint {endpoint!r}")


def _recognise(payload: Any) -> str:
    if isinstance(payload, dict):
        if isinstance(payload.get("results"), list) and "next" in payload:
            return POSTS
        if "id" in payload and any(
            key in payload for key in ("question", "group_of_questions", "conditional")
        ):
            return POST
    raise PayloadError(
        SOURCE, "unrecognised", "body is neither a post list ('results', 'next') nor a post"
    )


def _post_request(post_id: int | str, headers: dict[str, str], context: dict) -> PageRequest:
    return PageRequest(POST, f"{BASE_URL}/posts/{post_id}/", headers=headers, context=context)


def _posts_page(
    reader: BodyReader,
    body: dict[str, Any],
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
) -> WholePage:
    """Poll: each post's CP. Backfill: each post's detail is asked for its CP history."""
    posts = reader.listing(body.get("results"), "'results'")
    backfill = is_backfill(request, window)
    context = request.context if request is not None else {}
    headers = request.headers if request is not None else {}
    records: list[NormalisedRecord] = []
    follow_ups: list[PageRequest] = []
    skipped: list[SkippedItem] = []

    def read_post(
        index: int, item: Any
    ) -> tuple[list[NormalisedRecord], list[PageRequest], list[SkippedItem]]:
        post = reader.mapping(item, f"results[{index}]")
        if backfill:
            post_id = reader.identifier(post, "id", f"results[{index}]")
            return [], [_post_request(post_id, headers, {**context, "page": 1})], []
        read, skips = _post_records(reader, post, fetched_at, request, window, f"results[{index}]")
        return read, [], skips

    results, rejects = read_each(posts, read_post)
    for read, follows, skips in results:
        records.extend(read)
        follow_ups.extend(follows)
        skipped.extend(skips)
    next_page, limit_reached = _next_page(reader, body, request)
    return WholePage(
        endpoint=reader.endpoint,
        records=records,
        next_requests=follow_ups + next_page,
        rejects=rejects,
        skipped=tuple(skipped + limit_reached),
        items=len(posts),
    )


def _next_page(
    reader: BodyReader, body: dict[str, Any], request: PageRequest | None
) -> tuple[list[PageRequest], list[SkippedItem]]:
    """The `next` link's query on our base URL (the API writes http://), up to max_pages."""
    link = body.get("next")
    if link is None:
        return [], []
    if not isinstance(link, str) or not link:
        raise reader.fail(f"'next' must be a URL or null, got {link!r}")
    context = request.context if request is not None else {}
    page = int(context.get("page", 1))
    if page >= int(context.get("max_pages", DEFAULT_CONFIG["max_pages"])):
        return [], [SkippedItem("next page", f"max_pages ({page}) reached; 'next' was {link}")]
    params = dict(parse_qsl(urlsplit(link).query, keep_blank_values=True))
    if request is not None and params == request.params:
        raise reader.fail(f"'next' {link} repeats this page's query: paging would not advance")
    headers = request.headers if request is not None else {}
    return [
        PageRequest(
            POSTS,
            f"{BASE_URL}/posts/",
            params=params,
            headers=headers,
            context={**context, "page": page + 1},
        )
    ], []


def _post_records(
    reader: BodyReader,
    post: dict[str, Any],
    fetched_at: datetime,
    request: PageRequest | None,
    window: FetchWindow | None,
    where: str,
) -> tuple[list[NormalisedRecord], list[SkippedItem]]:
    """Records of every question a post holds: its own, a group's, a conditional's branches."""
    post_id = reader.identifier(post, "id", where)
    what = f"post {post_id}"
    questions: list[Any]
    if post.get("question") is not None:
        questions = [post["question"]]
    elif post.get("group_of_questions") is not None:
        group = reader.mapping(post["group_of_questions"], f"{what} group_of_questions")
        questions = reader.listing(group.get("questions"), f"{what} group_of_questions.questions")
    elif post.get("conditional") is not None:
        conditional = reader.mapping(post["conditional"], f"{what} conditional")
        # The condition and its child are posts of their own; the branches are this post's.
        questions = [
            conditional[key]
            for key in ("question_yes", "question_no")
            if conditional.get(key) is not None
        ]
    elif "possibilities" in post or "community_prediction" in post:
        post, questions = _from_api2(post)
    else:
        return [], [SkippedItem(what, "post holds no question, group or conditional")]
    if not questions:
        return [], [SkippedItem(what, "post's group or conditional holds no question")]
    history = window_of(request, window) if is_backfill(request, window) else None
    records: list[NormalisedRecord] = []
    skipped: list[SkippedItem] = []
    for index, item in enumerate(questions):
        question = reader.mapping(item, f"{what} question {index}")
        read, skips = _question_records(reader, post, question, fetched_at, history)
        records.extend(read)
        skipped.extend(skips)
    return records, skipped


def _question_records(
    reader: BodyReader,
    post: dict[str, Any],
    question: dict[str, Any],
    fetched_at: datetime,
    history: FetchWindow | None,
) -> tuple[list[NormalisedRecord], list[SkippedItem]]:
    post_id = str(post["id"])
    question_id = reader.identifier(question, "id", f"post {post_id} question")
    what = f"question {question_id}"
    kind = question.get("type")
    if kind in _DISTRIBUTION_TYPES:
        return [], [SkippedItem(question_id, f"{kind} question: a distribution, no probability")]
    if kind not in ("binary", "multiple_choice"):
        return [], [SkippedItem(question_id, f"question type {kind!r} has no probability")]
    options = _options(reader, question, what) if kind == "multiple_choice" else []
    aggregations = question.get("aggregations")
    if aggregations is None:
        return [], [SkippedItem(question_id, "no 'aggregations' in the body")]
    aggregation = reader.mapping(aggregations, f"{what} aggregations").get(_AGGREGATION)
    if aggregation is None:
        return [], [SkippedItem(question_id, f"no {_AGGREGATION} aggregation in the body")]
    aggregation = reader.mapping(aggregation, f"{what} aggregations.{_AGGREGATION}")
    facts = _question_facts(reader, post, question, what)
    source_url = f"{SITE_URL}/questions/{post_id}/"

    if history is not None:
        entries = reader.listing(aggregation.get("history") or [], f"{what} history")
        points = []
        for index, item in enumerate(entries):
            entry = reader.mapping(item, f"{what} history[{index}]")
            start = reader.epoch_s(entry.get("start_time"), f"{what} history[{index}] start_time")
            if start is None:
                raise reader.fail(f"{what} history[{index}]: 'start_time' is missing")
            if in_window(start, history):
                points.append((start, entry))
        if not points:
            return [], [SkippedItem(question_id, "no CP history entry inside the window")]
    else:
        latest = aggregation.get("latest")
        if latest is None:
            return [], [SkippedItem(question_id, "community prediction not visible (latest null)")]
        points = [(fetched_at, reader.mapping(latest, f"{what} latest"))]

    records: list[NormalisedRecord] = []
    skipped: list[SkippedItem] = []
    for moment, entry in points:
        label = f"{what} {'history' if history is not None else 'latest'}"
        raw = {
            "post_id": post["id"],
            "question_id": question["id"],
            "question_type": kind,
            "aggregation": _AGGREGATION,
            "entry": {key: value for key, value in entry.items() if key != "histogram"},
        }
        values = _cp_values(reader, entry, kind, options, label)
        if values is None:
            skipped.append(SkippedItem(question_id, f"{label} has no centers or forecast_values"))
            continue
        for outcome, value in values:
            is_option = kind == "multiple_choice"
            records.append(
                NormalisedRecord(
                    source=SOURCE,
                    source_event_id=f"{question_id}:{outcome}" if is_option else question_id,
                    signal_type="EXPERT",
                    value=value,
                    fetched_at=moment,
                    source_url=source_url,
                    raw_data=raw,
                    market=_outcome_facts(reader, facts, question, outcome, what)
                    if is_option
                    else facts,
                )
            )
    return records, skipped


def _cp_values(
    reader: BodyReader, entry: dict[str, Any], kind: str, options: list[str], label: str
) -> list[tuple[str, float]] | None:
    """(outcome, probability) pairs of one aggregation entry; None when it holds no values."""
    centers = entry.get("centers")
    forecast_values = entry.get("forecast_values")
    if kind == "binary":
        if centers:
            values = reader.listing(centers, f"{label} centers")
            return [("Yes", _probability(reader, values[0], f"{label} centers[0]"))]
        if forecast_values:
            values = reader.listing(forecast_values, f"{label} forecast_values")
            if len(values) != 2:
                raise reader.fail(f"{label} forecast_values: expected [P(no), P(yes)]")
            return [("Yes", _probability(reader, values[1], f"{label} forecast_values[1]"))]
        return None
    per_option = forecast_values or centers
    if not per_option:
        return None
    values = reader.listing(per_option, f"{label} forecast_values")
    if len(values) != len(options):
        raise reader.fail(f"{label}: {len(values)} values for {len(options)} options")
    return [
        (option, _probability(reader, value, f"{label} value for {option!r}"))
        for option, value in zip(options, values, strict=True)
    ]


def _probability(reader: BodyReader, value: Any, what: str) -> float:
    probability = reader.probability(value, what)
    if probability is None:
        raise reader.fail(f"{what}: null probability")
    return probability


def _options(reader: BodyReader, question: dict[str, Any], what: str) -> list[str]:
    options = reader.listing(question.get("options"), f"{what} options")
    if not options or not all(isinstance(option, str) for option in options):
        raise reader.fail(f"{what} options: expected a list of option texts")
    return options


def _question_facts(
    reader: BodyReader, post: dict[str, Any], question: dict[str, Any], what: str
) -> MarketFacts:
    resolution = question.get("resolution")
    kind = question.get("type")
    mapped = _resolution(resolution)
    if resolution is not None and kind == "binary" and mapped is None:
        raise reader.fail(f"{what} resolution: unknown value {resolution!r}")
    status_text = question.get("status") or post.get("status")
    status = _STATUSES.get(status_text, "unknown") if isinstance(status_text, str) else "unknown"
    if mapped == "CANCELLED":
        status = "cancelled"
    close = question.get("actual_close_time") or question.get("scheduled_close_time")
    projects = post.get("projects")
    if not isinstance(projects, dict):
        projects = {}
    hints = [
        entry["name"]
        for key in ("category", "topic")
        for entry in projects.get(key) or []
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    ]
    return MarketFacts(
        title=reader.text(question, "title", what) or reader.text(post, "title", what),
        slug=reader.text(post, "slug", what),
        category_hints=tuple(dict.fromkeys(hints)),
        close_time=reader.iso(close, f"{what} close time"),
        status=status,
        resolution=mapped if kind == "binary" or mapped in ("CANCELLED", "AMBIGUOUS") else None,
        resolution_time=reader.iso(question.get("actual_resolve_time"), f"{what} resolve time"),
        parent_id=str(post["id"]),
        outcome="Yes" if kind == "binary" else None,
    )


def _from_api2(item: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """An item of the earlier API (`/api2/questions/`) in the posts API's shape: the item is
    its own post and question, `possibilities.type` its type, `active_state` its status,
    `resolution` a number (1 yes, 0 no, -1 ambiguous, -2 annulled) and
    `community_prediction.full.q2` its community median. A question detail
    (`/api2/questions/{id}/`) has no `active_state`: a resolution makes it resolved."""
    possibilities = item.get("possibilities")
    kind = possibilities.get("type") if isinstance(possibilities, dict) else None
    community = item.get("community_prediction")
    full = community.get("full") if isinstance(community, dict) else None
    median = full.get("q2") if isinstance(full, dict) else None
    state = item.get("active_state")
    resolution = item.get("resolution")
    if not isinstance(state, str) and resolution is not None:
        # A question detail carries no active_state (its `status` is moderation: "A"
        # approved): a resolution is what says it is resolved.
        state = "resolved"
    question = {
        "id": item.get("id"),
        "type": kind if kind == "binary" else f"api2 {kind}",
        "title": item.get("title"),
        "resolution": resolution,
        "status": state.lower() if isinstance(state, str) else None,
        "actual_close_time": item.get("close_time"),
        "actual_resolve_time": item.get("resolve_time"),
        "aggregations": {
            _AGGREGATION: {"latest": None if median is None else {"centers": [median]}}
        },
    }
    return {"id": item.get("id"), "title": item.get("title")}, [question]


def _resolution(value: Any) -> str | None:
    """A question's `resolution` as an outcome, in the current (text) or earlier (number) form."""
    if isinstance(value, str):
        return _OUTCOMES.get(value.strip().lower())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _LEGACY_OUTCOMES.get(float(value))
    return None


def _outcome_facts(
    reader: BodyReader, facts: MarketFacts, question: dict[str, Any], option: str, what: str
) -> MarketFacts:
    """A multiple-choice option resolves YES when it is the resolution, NO when another is."""
    resolution = question.get("resolution")
    if facts.resolution is not None or resolution is None:
        option_resolution = facts.resolution
    elif resolution in question.get("options", ()):
        option_resolution = "YES" if resolution == option else "NO"
    else:
        raise reader.fail(f"{what} resolution: {resolution!r} is not one of the options")
    return replace(facts, resolution=option_resolution, outcome=option)


ADAPTER = MetaculusAdapter()
