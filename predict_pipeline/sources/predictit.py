"""PredictIt: the public all-markets snapshot; every contract of a market is one question.

PredictIt publishes no price history, so this adapter polls only.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

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
)
from predict_pipeline.sources.items import read_each
from predict_pipeline.sources.parsing import finite_float, utc_from_iso, within_range

SOURCE = "predictit"
MARKETDATA_ALL = "marketdata_all"
MARKETDATA_URL = "https://www.predictit.org/api/marketdata/all/"
# `timeStamp` and `dateEnd` carry no offset; PredictIt is a US (Eastern time) exchange.
EXCHANGE_TZ = ZoneInfo("America/New_York")

# SOURCES.md found no documented limit; the body is one whole snapshot, so one request every
# ten seconds is ample and polite.
RATE_LIMIT_RPM = 6
SUPPORTS_BACKFILL = False

CONFIG_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "PredictIt feed",
    "description": "Reads the PredictIt all-markets snapshot.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "market_ids": {
            "description": "PredictIt market ids to keep from the snapshot (empty: all markets).",
            "type": "array",
            "items": {"type": "integer", "minimum": 1},
            "uniqueItems": True,
        },
    },
}

DEFAULT_CONFIG: dict[str, Any] = {"market_ids": []}

_CONFIG_VALIDATOR = Draft202012Validator(CONFIG_SCHEMA)
_STATUSES = {"open": "open", "closed": "closed"}
# Some contracts write `dateEnd` US-style with the zone spelt out: "02/04/2026 11:00:00 AM (ET)".
_US_DATE = re.compile(r"(\d{2}/\d{2}/\d{4} \d{1,2}:\d{2}:\d{2} [AP]M) \(ET\)")
_QUOTE_FIELDS = {
    "bestBuyYesCost": "best_buy_yes_cost",
    "bestBuyNoCost": "best_buy_no_cost",
    "bestSellYesCost": "best_sell_yes_cost",
    "bestSellNoCost": "best_sell_no_cost",
    "lastClosePrice": "last_close_price",
}


class PredictItAdapter:
    source = SOURCE

    def plan(
        self, config: dict[str, Any], mode: FetchMode, window: FetchWindow, cursor: str | None
    ) -> list[PageRequest]:
        """One request for the current snapshot; `window` and `cursor` do not apply to it."""
        settings = {**DEFAULT_CONFIG, **config}
        errors = sorted(_CONFIG_VALIDATOR.iter_errors(settings), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "config"
            raise ValueError(f"{SOURCE}: invalid config at {where}: {errors[0].message}")
        if mode == "backfill":
            raise ValueError(
                f"{SOURCE}: backfill is not supported: the public marketdata API has no "
                "history endpoint, so history is built by polling snapshots"
            )
        if mode != "poll":
            raise ValueError(f"{SOURCE}: unknown fetch mode {mode!r}")
        context = {"market_ids": settings["market_ids"]} if settings["market_ids"] else {}
        return [PageRequest(MARKETDATA_ALL, MARKETDATA_URL, context=context)]

    def navigate(
        self,
        payload: Any,
        *,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageNavigation:
        """The snapshot is one page: it leads nowhere."""
        endpoint, markets = _snapshot(payload, request)
        return PageNavigation(endpoint, items=len(markets))

    def read_records(
        self,
        payload: Any,
        *,
        fetched_at: datetime,
        request: PageRequest | None = None,
        window: FetchWindow | None = None,
    ) -> PageRecords:
        """Read the snapshot body; records are observed at `fetched_at`."""
        if fetched_at.tzinfo is None:
            raise ValueError(f"{SOURCE}: fetched_at must be timezone-aware")
        observed = fetched_at.astimezone(UTC)
        endpoint, markets = _snapshot(payload, request)
        wanted = request.context.get("market_ids") if request is not None else None
        keep = {str(market_id) for market_id in wanted or ()}

        def read_market(index: int, market: Any) -> list[NormalisedRecord]:
            if not isinstance(market, dict):
                raise PayloadError(SOURCE, endpoint, f"market {index} is {_kind(market)}")
            if market.get("id") in (None, ""):
                raise PayloadError(SOURCE, endpoint, f"market {index} has no id")
            if keep and str(market["id"]) not in keep:
                return []
            return _market_records(market, observed)

        results, rejects = read_each(markets, read_market)
        return PageRecords(endpoint, [r for read in results for r in read], rejects=rejects)


def _snapshot(payload: Any, request: PageRequest | None) -> tuple[str, list[Any]]:
    """The endpoint and the markets of a snapshot body; PayloadError when it holds none."""
    endpoint = request.endpoint if request is not None else MARKETDATA_ALL
    if endpoint != MARKETDATA_ALL:
        raise PayloadError(SOURCE, endpoint, "not an endpoint of this adapter")
    markets = payload.get("markets") if isinstance(payload, dict) else None
    if not isinstance(markets, list):
        raise PayloadError(
            SOURCE, endpoint, f"expected an object with a `markets` array, got {_kind(payload)}"
        )
    if not markets:
        raise PayloadError(SOURCE, endpoint, "the snapshot holds no markets")
    return endpoint, markets


ADAPTER = PredictItAdapter()


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:8]}"
    return f"a {type(value).__name__}"


def _number(value: Any, what: str) -> float | None:
    try:
        return finite_float(value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(SOURCE, MARKETDATA_ALL, f"{what} {value!r} is not a number") from exc


def _eastern_time(value: Any, what: str) -> datetime | None:
    if value in (None, "", "NA"):
        return None  # "NA": the contract has no end date
    if not isinstance(value, str):
        raise PayloadError(SOURCE, MARKETDATA_ALL, f"{what} {value!r} is not a timestamp string")
    try:
        us_date = _US_DATE.fullmatch(value.strip())
        if us_date:
            local = datetime.strptime(us_date.group(1), "%m/%d/%Y %I:%M:%S %p")
            return within_range(local.replace(tzinfo=EXCHANGE_TZ).astimezone(UTC))
        return utc_from_iso(value, assume_tz=EXCHANGE_TZ)
    except ValueError as exc:
        raise PayloadError(SOURCE, MARKETDATA_ALL, f"{what} {value!r} is not a timestamp") from exc


def _market_records(market: dict[str, Any], observed: datetime) -> list[NormalisedRecord]:
    market_id = str(market["id"])
    contracts = market.get("contracts")
    if not isinstance(contracts, list) or not contracts:
        raise PayloadError(SOURCE, MARKETDATA_ALL, f"market {market_id} has no contracts")
    snapshot = _eastern_time(market.get("timeStamp"), f"market {market_id} timeStamp")
    name = market.get("name")
    records = []
    for index, contract in enumerate(contracts):
        if not isinstance(contract, dict) or contract.get("id") in (None, ""):
            raise PayloadError(
                SOURCE, MARKETDATA_ALL, f"market {market_id} contract {index} has no id"
            )
        contract_id = str(contract["id"])
        label = f"contract {contract_id}"
        price = _number(contract.get("lastTradePrice"), f"{label} lastTradePrice")
        if price is not None and not 0.0 <= price <= 1.0:
            raise PayloadError(
                SOURCE, MARKETDATA_ALL, f"{label} lastTradePrice {price} is outside 0..1"
            )
        outcome = contract.get("name")
        status = str(contract.get("status") or market.get("status") or "").lower()
        raw: dict[str, Any] = {
            "market_id": market_id,
            "contract_id": contract_id,
            "short_name": contract.get("shortName"),
            "snapshot_time": snapshot.isoformat() if snapshot else None,
        }
        for field, key in _QUOTE_FIELDS.items():
            raw[key] = _number(contract.get(field), f"{label} {field}")  # null: empty book side
        records.append(
            NormalisedRecord(
                source=SOURCE,
                source_event_id=contract_id,
                signal_type="MARKET_PRICE",
                value=price,
                fetched_at=observed,
                source_url=contract.get("url") or market.get("url"),
                raw_data=raw,
                market=MarketFacts(
                    # A lone contract is the market's own question; otherwise name the contract.
                    title=name if len(contracts) == 1 or not outcome else f"{name} — {outcome}",
                    close_time=_eastern_time(contract.get("dateEnd"), f"{label} dateEnd"),
                    status=_STATUSES.get(status, "unknown"),
                    parent_id=market_id,
                    outcome=outcome,
                ),
            )
        )
    return records
