"""Real platform recordings (fixtures/real, sources in its SOURCES.md) and what each
platform itself says about its markets' outcomes, read straight from the raw payload by its
documented fields, independently of the adapters.

`platform_outcomes` gives, per question id the pipeline uses, the outcome the platform reports
(YES, NO, AMBIGUOUS, CANCELLED) or None while it is open; questions whose outcome the recording
cannot tell (a multiple-choice market resolved to an answer whose answers the listing omits)
are listed apart, with the reason.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from predict_pipeline.config import PROJECT_ROOT

REAL = PROJECT_ROOT / "fixtures" / "real"


@dataclass(frozen=True)
class Recording:
    platform: str
    name: str
    source: str  # repo@commit:path
    payload: Any  # the body as the adapter reads it
    fetched_at: datetime  # when it was recorded
    items: list[Any]  # the page's items, the unit a bad record must never spread from
    request_context: dict[str, Any] = field(default_factory=dict)


def _read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else data


def manifold_listing() -> Recording:
    markets = json.loads(_read(REAL / "manifold" / "markets_listing_500.json.gz"))
    return Recording(
        "manifold",
        "GET /v0/markets, 500 markets",
        "BonelessWater/predict-ngin@3279d9d1e3fc04269618d3dbd2393738acc0d186:manifold_markets.json",
        markets,
        datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        markets,
        # Read as listed (no follow-up to /market/{id}): every market gives its own records.
        {"mode": "poll", "settings": {"limit": 500, "max_pages": 1, "fetch_answers": False}},
    )


def polymarket_btc_5m(history: str | None = None) -> Recording:
    """292 auto-resolved 5-minute BTC markets, each the full Gamma market object as recorded.

    `history` replaces every `umaResolutionStatuses` (recorded as "[]") with the given JSON
    text: '["proposed"]' is what Gamma's listings carry for auto-resolved sports and crypto
    markets once resolved (issue 18's 180 of 285 markets).
    """
    path = REAL / "polymarket" / "btc_5m_markets_2026-07-24.jsonl.gz"
    lines = [json.loads(line) for line in _read(path).decode().splitlines() if line.strip()]
    markets = [line["raw"] for line in lines]
    if history is not None:
        markets = [{**market, "umaResolutionStatuses": history} for market in markets]
    return Recording(
        "polymarket",
        "Gamma market objects, BTC 5-minute markets of 2026-07-24"
        + (f", umaResolutionStatuses {history}" if history else ""),
        "Ligengxin96/polymarket-data-samples@ec469ef137887584ba4729989cce4ba3a74b8bd1:"
        "samples/BTC-5m-markets-2026-07-24.jsonl.gz",
        markets,
        datetime(2026, 7, 25, 0, 30, tzinfo=UTC),
        markets,
    )


def polymarket_open_listing() -> Recording:
    markets = json.loads(_read(REAL / "polymarket" / "gamma_markets_open_500.json.gz"))
    return Recording(
        "polymarket",
        "GET /markets?active=true&closed=false, 500 markets",
        "BonelessWater/predict-ngin@3279d9d1e3fc04269618d3dbd2393738acc0d186:"
        "polymarket_markets.json",
        markets,
        datetime(2026, 1, 31, 12, 0, tzinfo=UTC),
        markets,
    )


def kalshi_finalized() -> Recording:
    body = json.loads(_read(REAL / "kalshi" / "markets_finalized_KXELONTWEETS-25MAR28.json"))
    return Recording(
        "kalshi",
        "GET /markets?event_ticker=KXELONTWEETS-25MAR28, 13 finalized markets",
        "DaRealBada/arb-bot@1e2c288fd1f05b5abe47f446093e3d4b316d3967:"
        "kalshi/setup/polling-rest.json",
        body,
        datetime(2025, 4, 5, 12, 0, tzinfo=UTC),
        body["markets"],
    )


def predictit_snapshot() -> Recording:
    body = json.loads(_read(REAL / "predictit" / "marketdata_all_229.json.gz"))
    return Recording(
        "predictit",
        "GET /api/marketdata/all/, 229 markets",
        "BonelessWater/predict-ngin@3279d9d1e3fc04269618d3dbd2393738acc0d186:"
        "predictit_markets.json",
        body,
        datetime(2026, 1, 31, 18, 10, tzinfo=UTC),
        body["markets"],
    )


# The question-detail bodies (GET /api2/questions/{id}/) TetraspaceW/metaculus-tetra recorded
# for its tests, in this order; each is vendored whole (gzip only).
METACULUS_API2_QUESTIONS = (
    "resolved_probability_example",
    "ambiguously_resolved_example",
    "probability_example",
    "tournament_example",
    "resolved_range_example",
    "ambiguously_resolved_range_example",
    "range_example",
    "logarithmic_range_example",
    "date_range_example",
    "logarithmic_date_range_example",
    "discussion_example",
)


def metaculus_api2_questions() -> Recording:
    """Eleven api2 question details, read as one `/api2/questions/` page: the listing carried
    the same question objects (`results`), so the page is the details side by side."""
    folder = REAL / "metaculus" / "api2_questions_tetra"
    questions = [json.loads(_read(folder / f"{name}.json.gz")) for name in METACULUS_API2_QUESTIONS]
    return Recording(
        "metaculus",
        "GET /api2/questions/{id}/, 11 question details of November 2021",
        "TetraspaceW/metaculus-tetra@3dceaeb823e10145f8bf1a612a8bd3bd0f4232f8:tests/*.json",
        {"results": questions, "next": None},
        datetime(2021, 11, 20, 23, 0, tzinfo=UTC),
        questions,
    )


def every_recording() -> list[Recording]:
    return [
        manifold_listing(),
        polymarket_btc_5m(),
        polymarket_btc_5m('["proposed"]'),
        polymarket_open_listing(),
        kalshi_finalized(),
        predictit_snapshot(),
        metaculus_api2_questions(),
    ]


# ---- what each platform says, by its documented fields ----------------------------------

# docs/docs/api.md (manifoldmarkets/manifold): resolution YES, NO, MKT (to
# resolutionProbability) or CANCEL (N/A); a multiple-choice market's is an answer id.
_MANIFOLD = {"YES": "YES", "NO": "NO", "MKT": "AMBIGUOUS", "CANCEL": "CANCELLED"}
# docs.kalshi.com Market.result: yes, no, scalar (a fraction of the payout), void; "" open.
_KALSHI = {"yes": "YES", "no": "NO", "scalar": "AMBIGUOUS", "void": "CANCELLED"}
# api2 (the Metaculus/metaculus-era API): a binary question's resolution 1 yes, 0 no,
# -1 ambiguous, -2 annulled; a continuous one's is the resolved value (scaled) or -1 / -2.
_METACULUS_API2 = {1.0: "YES", 0.0: "NO", -1.0: "AMBIGUOUS", -2.0: "CANCELLED"}


@dataclass
class PlatformView:
    outcomes: dict[str, str | None]  # question id -> outcome the platform reports, None: open
    untold: dict[str, str]  # resolved questions the recording cannot resolve -> why


def platform_outcomes(recording: Recording) -> PlatformView:
    view = PlatformView({}, {})
    if recording.platform == "manifold":
        for market in recording.items:
            resolution = market.get("resolution") if market.get("isResolved") else None
            if market.get("isResolved") and resolution is None:
                view.untold[market["id"]] = f"{market['outcomeType']} closed without an outcome"
            elif market["outcomeType"] == "BINARY" or resolution in ("MKT", "CANCEL", None):
                view.outcomes[market["id"]] = _MANIFOLD.get(resolution) if resolution else None
            else:
                view.untold[market["id"]] = (
                    f"{market['outcomeType']} resolved to answer {resolution}: its answers are"
                    " read from GET /v0/market/{id}, not in this listing"
                )
    elif recording.platform == "polymarket":
        for market in recording.items:
            prices = json.loads(market["outcomePrices"])
            # Gamma: a market is settled when UMA resolved it; the winner's price is 1.
            settled = market.get("umaResolutionStatus") == "resolved" and market.get("closed")
            first = prices[0] if settled else None
            view.outcomes[market["id"]] = {"1": "YES", "0": "NO"}.get(first)
    elif recording.platform == "kalshi":
        for market in recording.items:
            view.outcomes[market["ticker"]] = _KALSHI.get(market.get("result") or "")
    elif recording.platform == "metaculus":
        for question in recording.items:
            kind = question["possibilities"]["type"]
            resolution = question.get("resolution")
            if kind == "binary" or resolution is None:
                view.outcomes[str(question["id"])] = (
                    None if resolution is None else _METACULUS_API2[float(resolution)]
                )
            else:
                view.untold[str(question["id"])] = (
                    f"{kind} question resolved to {resolution}: a distribution, from which the"
                    " pipeline reads no probability and so no market"
                )
    elif recording.platform == "predictit":
        # The public marketdata API publishes no outcome: a settled market leaves the snapshot.
        for market in recording.items:
            for contract in market["contracts"]:
                view.outcomes[str(contract["id"])] = None
    return view
