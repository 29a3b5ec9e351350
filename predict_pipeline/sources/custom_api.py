"""A user-defined JSON API: the feed config says where the items are and how to read them.

The config (CONFIG_SCHEMA) names the request (`url`, `method`, `headers`, `params`, `body`),
`records_path` (a field path, see fieldpath.py, to the list of items), `fields` (a path per
record field, relative to one item), how values are read (`signal_type`, `value_scale`,
`timestamp_format`, `timezone`, `missing_values`, shared with push.py's normaliser) and the
`pagination` mode:

- `none`: one request.
- `offset`: sends `limit_param=page_size` and `offset_param=0, page_size, ...`; stops at a
  page with fewer than `page_size` items.
- `page`: sends `page_param=start, start+1, ...` (and `limit_param=page_size` when both are
  given); stops at a short page when `page_size` is set, otherwise at an empty page.
- `cursor`: reads the next cursor at `cursor_path` in the response and sends it as
  `cursor_param`; stops when it is absent, empty, or repeats the cursor just used.
- `next_url`: follows the URL at `next_url_path` (relative URLs are resolved); stops when it
  is absent or empty. It must stay on the configured host, because the feed's headers (often
  credentials) go with it; an http link from an https API is upgraded (Metaculus sends those).

Every mode stops after `max_pages` pages (default 20) and flags `page_limit_reached`.

The mapping travels in each PageRequest's `context` (without headers or body, which may hold
credentials), so a landed page can be parsed again later without the feed config.

Backfill: SUPPORTS_BACKFILL is True, but it is a per-feed question: a config with
`window_start_param` and `window_end_param` puts the window into the query (in
`window_format`); `plan` raises ValueError for a backfill of a config without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from predict_pipeline.model import (
    FetchMode,
    FetchWindow,
    PageNavigation,
    PageRecords,
    PageRequest,
    PayloadError,
    RecordReject,
)
from predict_pipeline.sources.fieldpath import (
    FieldPath,
    FieldPathError,
    ShapeError,
    compile_path,
    select_items,
    select_one,
)
from predict_pipeline.sources.push.config import RULE_PROPERTIES, validated_config
from predict_pipeline.sources.push.fields import FieldError, FieldRules, normalise_fields

SOURCE = "custom_api"
RATE_LIMIT_RPM = 60  # a polite default for an API whose limits we do not know
SUPPORTS_BACKFILL = True  # only for configs with window params; see the module docstring
MAX_PAGES = 20
UNREADABLE_ITEM = "unreadable_item"  # the reason of an item a malformed field keeps out

# The record fields a config can map, each with what its path should reach.
_FIELD_MEANINGS = {
    "source_event_id": "the item's id at the source (required)",
    "value": "the item's number (a price, a count)",
    "fetched_at": "when the value was observed; the fetch time when not mapped",
    "title": "the question's title",
    "narrative": "free text kept with the signal",
    "source_url": "a link to the item",
    "close_time": "when the question closes",
    "category": "category hints (text with ';' separators, or a list of text)",
    "status": "open / closed / resolved / cancelled (and common synonyms)",
    "resolution": "YES / NO / AMBIGUOUS / CANCELLED once settled",
}


def _text_property(description: str) -> dict[str, Any]:
    return {"description": description, "type": "string", "minLength": 1}


def _max_pages_property() -> dict[str, Any]:
    return {
        "description": f"Stop after this many pages (default {MAX_PAGES}).",
        "type": "integer",
        "minimum": 1,
    }


def _page_size_property() -> dict[str, Any]:
    return {"description": "Items asked for per page.", "type": "integer", "minimum": 1}


def _pagination_mode(
    mode: str, description: str, required: dict[str, Any], optional: dict[str, Any]
) -> dict[str, Any]:
    return {
        "description": description,
        "type": "object",
        "additionalProperties": False,
        "required": ["mode", *required],
        "properties": {
            "mode": {"description": "Pagination mode.", "const": mode},
            "max_pages": _max_pages_property(),
            **required,
            **optional,
        },
    }


PAGINATION_SCHEMA: dict[str, Any] = {
    "description": "How further pages are requested.",
    "oneOf": [
        _pagination_mode("none", "A single request.", {}, {}),
        _pagination_mode(
            "offset",
            "limit/offset query parameters.",
            {
                "limit_param": _text_property("Query parameter for the page size."),
                "offset_param": _text_property("Query parameter for the offset."),
                "page_size": _page_size_property(),
            },
            {},
        ),
        _pagination_mode(
            "page",
            "A page-number query parameter.",
            {"page_param": _text_property("Query parameter for the page number.")},
            {
                "start": {
                    "description": "Number of the first page (default 1).",
                    "type": "integer",
                    "minimum": 0,
                },
                "page_size": _page_size_property(),
                "limit_param": _text_property("Query parameter for the page size."),
            },
        ),
        _pagination_mode(
            "cursor",
            "A cursor read from each response and sent back.",
            {
                "cursor_path": _text_property("Field path of the next cursor in the response."),
                "cursor_param": _text_property("Query parameter that carries the cursor."),
            },
            {},
        ),
        _pagination_mode(
            "next_url",
            "A next-page URL read from each response.",
            {"next_url_path": _text_property("Field path of the next page's URL.")},
            {},
        ),
    ],
}

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Custom JSON API feed",
    "description": "A JSON API the user describes: request, where the items are, their fields.",
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "records_path", "fields"],
    "dependentRequired": {
        "window_start_param": ["window_end_param"],
        "window_end_param": ["window_start_param"],
    },
    "properties": {
        "url": {
            "description": "The API's http(s) URL.",
            "type": "string",
            "pattern": "^https?://[^\\s/?#]+",
        },
        "method": {"description": "HTTP method.", "enum": ["GET", "POST"]},
        "headers": {
            "description": "Request headers (store credentials in the feed's encrypted "
            "credentials, not here).",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "params": {
            "description": "Query parameters sent with every request.",
            "type": "object",
            "additionalProperties": {"type": "string"},
        },
        "body": {"description": "JSON body sent with a POST request."},
        "records_path": {
            "description": "Field path to the items, e.g. $.data or $.markets[*].contracts[*].",
            "type": "string",
            "minLength": 1,
        },
        "fields": {
            "description": "Field path of each record field, relative to one item.",
            "type": "object",
            "additionalProperties": False,
            "required": ["source_event_id"],
            "properties": {
                name: _text_property(f"Path to {meaning}.")
                for name, meaning in _FIELD_MEANINGS.items()
            },
        },
        **RULE_PROPERTIES,
        "window_start_param": _text_property("Query parameter for a backfill window's start."),
        "window_end_param": _text_property("Query parameter for a backfill window's end."),
        "window_format": {
            "description": "How the backfill window is written in the query.",
            "enum": ["iso", "epoch_s", "epoch_ms"],
        },
        "pagination": PAGINATION_SCHEMA,
    },
}

# A complete, working example to start from (PredictIt's public snapshot of all markets);
# it travels in CONFIG_SCHEMA["examples"] so whoever configures a feed sees it.
EXAMPLE_CONFIG: dict[str, Any] = {
    "url": "https://www.predictit.org/api/marketdata/all/",
    "method": "GET",
    "headers": {},
    "params": {},
    "records_path": "$.markets[*].contracts[*]",
    "fields": {
        "source_event_id": "id",
        "value": "lastTradePrice",
        "title": "name",
        "close_time": "dateEnd",
        "status": "status",
    },
    "signal_type": "MARKET_PRICE",
    "value_scale": 1,
    "timestamp_format": "iso",
    "timezone": "America/New_York",  # PredictIt's timestamps carry no offset
    "missing_values": ["NA"],  # PredictIt's dateEnd when there is no end date
    "pagination": {"mode": "none", "max_pages": 1},
}

# What a config leaves out falls back to these neutral values, never to the example above.
DEFAULT_CONFIG: dict[str, Any] = {
    "method": "GET",
    "headers": {},
    "params": {},
    "signal_type": "MARKET_PRICE",
    "value_scale": 1,
    "timestamp_format": "iso",
    "missing_values": [],
    "window_format": "iso",
    "pagination": {"mode": "none"},
}
CONFIG_SCHEMA["examples"] = [EXAMPLE_CONFIG]
# The parts of the config needed to read a page; headers and body stay out of the landing zone.
_MAPPING_KEYS = (
    "url",
    "records_path",
    "fields",
    "signal_type",
    "value_scale",
    "timestamp_format",
    "timezone",
    "missing_values",
    "pagination",
)


@dataclass(frozen=True, slots=True)
class ItemError:
    """An item of a page that could not become a record; `index` is its place among the items."""

    index: int
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class CustomRecords(PageRecords):
    rejected: list[ItemError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CustomNavigation(PageNavigation):
    page_limit_reached: bool = False  # more pages were offered than max_pages allows


def checked_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """The config checked against CONFIG_SCHEMA and its paths compiled; ValueError on a fault."""
    merged = validated_config(config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source=SOURCE)
    if merged.get("body") is not None and merged["method"] != "POST":
        raise ValueError(f"{SOURCE} config: $.body: a body is only sent with method POST")
    paths = {"records_path": merged["records_path"]}
    paths.update({f"fields.{name}": path for name, path in merged["fields"].items()})
    paths.update(
        {
            f"pagination.{key}": merged["pagination"][key]
            for key in ("cursor_path", "next_url_path")
            if key in merged["pagination"]
        }
    )
    for where, path in paths.items():
        try:
            compile_path(path)
        except FieldPathError as exc:
            raise ValueError(f"{SOURCE} config: $.{where}: {exc}") from exc
    return merged


class CustomApiAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """The first request. The feed cursor is not used: a custom API has no incremental
        cursor we could know the meaning of."""
        settings = checked_config(config)
        params = dict(settings["params"])
        if mode == "backfill":
            if "window_start_param" not in settings:
                raise ValueError(
                    f"{SOURCE} {settings['url']}: backfill needs window_start_param and "
                    "window_end_param in the feed config to put the window in the query"
                )
            params[settings["window_start_param"]] = _window_bound(window.start, settings)
            params[settings["window_end_param"]] = _window_bound(window.end, settings)
        elif mode != "poll":
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")
        pagination = settings["pagination"]
        context: dict[str, Any] = {
            "mapping": {key: settings[key] for key in _MAPPING_KEYS if key in settings},
            "page_number": 1,
        }
        if pagination["mode"] == "offset":
            params[pagination["limit_param"]] = str(pagination["page_size"])
            params[pagination["offset_param"]] = "0"
            context["offset"] = 0
        elif pagination["mode"] == "page":
            context["page"] = pagination.get("start", 1)
            params[pagination["page_param"]] = str(context["page"])
            if "limit_param" in pagination and "page_size" in pagination:
                params[pagination["limit_param"]] = str(pagination["page_size"])
        return [
            PageRequest(
                endpoint=settings["url"],
                url=settings["url"],
                params=params,
                method=settings["method"],
                headers=dict(settings["headers"]),
                body=settings.get("body"),
                context=context,
            )
        ]

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> CustomNavigation:
        """The next page from the pagination mode: the items are counted, never read."""
        mapping, endpoint = _mapping(request)
        items = _items(payload, mapping, endpoint)
        assert request is not None  # _mapping refused a page without its request
        next_request, limit_reached = _next_request(payload, len(items), request, endpoint)
        return CustomNavigation(
            endpoint=endpoint,
            next_requests=[next_request] if next_request is not None else [],
            items=len(items),
            page_limit_reached=limit_reached,
        )

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> CustomRecords:
        """Map each item to a record; items that cannot be read are returned as `rejected`."""
        mapping, endpoint = _mapping(request)
        if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
            raise ValueError(f"{SOURCE}: fetched_at must be timezone-aware")
        items = _items(payload, mapping, endpoint)
        try:
            paths = _field_paths(mapping["fields"])
        except FieldPathError as exc:
            raise PayloadError(SOURCE, endpoint, f"fields: {exc}") from None
        rules = FieldRules.from_config(mapping)
        observed_at = fetched_at.astimezone(UTC)
        records, rejected, rejects = [], [], []
        for index, item in enumerate(items):
            try:
                fields = _item_fields(item, paths)
                records.append(
                    normalise_fields(
                        fields,
                        source=SOURCE,
                        rules=rules,
                        observed_at=observed_at,
                        raw_data=item if isinstance(item, dict) else {"item": item},
                    )
                )
            except FieldError as fault:
                rejected.append(ItemError(index, fault.field, fault.reason))
                rejects.append(
                    RecordReject(
                        reason=fault.code or UNREADABLE_ITEM,
                        detail=f"{fault.field}: {fault.reason}",
                        item_index=index,
                        item=item,
                    )
                )
        return CustomRecords(endpoint=endpoint, records=records, rejects=rejects, rejected=rejected)


def _mapping(request: PageRequest | None) -> tuple[dict[str, Any], str]:
    """The feed's mapping, carried by the request that fetched the page, and its endpoint."""
    if request is None or not isinstance(request.context.get("mapping"), dict):
        endpoint = request.endpoint if request is not None else "(no request)"
        raise PayloadError(
            SOURCE, endpoint, "a custom API page is read with the mapping in its request"
        )
    mapping = request.context["mapping"]
    return mapping, mapping["url"]


def _items(payload: Any, mapping: dict[str, Any], endpoint: str) -> list[Any]:
    try:
        return select_items(payload, mapping["records_path"])
    except (ShapeError, FieldPathError) as exc:
        raise PayloadError(SOURCE, endpoint, f"records_path: {exc}") from None


def _field_paths(paths: dict[str, str]) -> list[tuple[str, FieldPath, str | None]]:
    """Each mapped field's compiled path, and its key when the path is one key."""
    compiled = [(name, compile_path(path)) for name, path in paths.items()]
    return [(name, path, path.single_key) for name, path in compiled]


def _item_fields(item: Any, paths: list[tuple[str, FieldPath, str | None]]) -> dict[str, Any]:
    fields = {}
    for name, path, key in paths:
        if key is not None:  # a one-key path: a dict lookup, no match list
            if isinstance(item, dict) and key in item:
                fields[name] = item[key]
            continue
        matches = path.select(item)
        if len(matches) > 1:
            raise FieldError(name, f"path {path.source!r} matched {len(matches)} values, not one")
        if matches:
            fields[name] = matches[0]
    return fields


def _window_bound(moment: datetime, settings: dict[str, Any]) -> str:
    moment = moment.astimezone(UTC)
    if settings["window_format"] == "epoch_s":
        return str(int(moment.timestamp()))
    if settings["window_format"] == "epoch_ms":
        return str(int(moment.timestamp() * 1000))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _next_request(
    payload: Any, item_count: int, request: PageRequest, endpoint: str
) -> tuple[PageRequest | None, bool]:
    """The request for the page after this one (None at the end) and whether max_pages cut in."""
    context = request.context
    pagination = context["mapping"]["pagination"]
    mode = pagination["mode"]
    url, params, progress = request.url, dict(request.params), {}
    if mode == "offset":
        if item_count < pagination["page_size"]:
            return None, False
        progress["offset"] = context["offset"] + pagination["page_size"]
        params[pagination["offset_param"]] = str(progress["offset"])
    elif mode == "page":
        size = pagination.get("page_size")
        if item_count == 0 or (size is not None and item_count < size):
            return None, False
        progress["page"] = context["page"] + 1
        params[pagination["page_param"]] = str(progress["page"])
    elif mode == "cursor":
        cursor = _response_text(payload, pagination["cursor_path"], "cursor", endpoint)
        # An API that hands back the cursor it was just given would loop forever.
        if cursor is None or cursor == context.get("cursor"):
            return None, False
        progress["cursor"] = cursor
        params[pagination["cursor_param"]] = cursor
    elif mode == "next_url":
        link = _response_text(payload, pagination["next_url_path"], "next URL", endpoint)
        if link is None:
            return None, False
        url = _same_host_url(urljoin(request.url, link), endpoint)
        current = f"{request.url}?{urlencode(request.params)}" if request.params else request.url
        if url == current:
            return None, False
        params = {}  # the next URL carries its own query
    else:
        return None, False
    if context.get("page_number", 1) >= pagination.get("max_pages", MAX_PAGES):
        return None, True
    next_context = {**context, **progress, "page_number": context.get("page_number", 1) + 1}
    return replace(request, url=url, params=params, context=next_context), False


def _response_text(payload: Any, path: str, what: str, endpoint: str) -> str | None:
    try:
        value = select_one(payload, path)
    except ValueError as exc:
        raise PayloadError(SOURCE, endpoint, f"{what}: {exc}") from None
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PayloadError(
            SOURCE, endpoint, f"{what} at {path!r} is a {type(value).__name__}, not text"
        )
    return str(value)


def _same_host_url(url: str, endpoint: str) -> str:
    configured, link = urlsplit(endpoint), urlsplit(url)
    if (
        link.scheme not in ("http", "https")
        or link.hostname != configured.hostname
        or link.port != configured.port
    ):
        raise PayloadError(
            SOURCE,
            endpoint,
            f"the next URL points at {link.hostname or 'no host'}, not the configured host "
            f"{configured.hostname}; the feed's headers are not sent elsewhere",
        )
    if configured.scheme == "https" and link.scheme == "http":
        return urlunsplit(("https", *link[1:]))
    return url


ADAPTER = CustomApiAdapter()
