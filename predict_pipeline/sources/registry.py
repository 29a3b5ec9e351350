"""The built-in sources: what `prediction_data_sources` is seeded with, and their adapters."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from predict_pipeline.http import ResponseLimits
from predict_pipeline.sources import (
    custom_api,
    kalshi,
    manifold,
    metaculus,
    polymarket,
    predictit,
    simulator,
)
from predict_pipeline.sources.base import Adapter
from predict_pipeline.sources.push import config as push_config


@dataclass(frozen=True, slots=True)
class SourceDefinition:
    source_id: str
    name: str
    category: str
    adapter_type: str  # built_in | custom_api | webhook | upload
    description: str
    module: ModuleType
    supports_pull: bool = True
    supports_push: bool = False
    rate_limit_rpd: int | None = None
    # Prior trust in the source's numbers, written as prediction_signals.reliability: real-money
    # markets highest, play money and user-supplied data lower.
    reliability: float = 0.5
    # The most one request to the source may take: decoded body size and seconds end to end.
    response_limits: ResponseLimits = ResponseLimits()

    @property
    def adapter(self) -> Adapter | None:
        return getattr(self.module, "ADAPTER", None) if self.supports_pull else None

    @property
    def trusted(self) -> bool:
        """Built-in sources call fixed public hosts; user-configured URLs pass the SSRF guard."""
        return self.adapter_type == "built_in"

    def seed_row(self) -> dict[str, Any]:
        return {
            "source_id": self.source_id,
            "name": self.name,
            "category": self.category,
            "description": self.description,
            "adapter_type": self.adapter_type,
            "config_schema": self.module.CONFIG_SCHEMA,
            "default_config": self.module.DEFAULT_CONFIG,
            "supports_pull": self.supports_pull,
            "supports_push": self.supports_push,
            "supports_backfill": bool(self.module.SUPPORTS_BACKFILL),
            "rate_limit_rpm": self.module.RATE_LIMIT_RPM,
            "rate_limit_rpd": self.rate_limit_rpd,
            "is_system": True,
        }


SOURCES: dict[str, SourceDefinition] = {
    s.source_id: s
    for s in (
        SourceDefinition(
            "polymarket",
            "Polymarket",
            "prediction_market",
            "built_in",
            "Polymarket Gamma markets/events and CLOB price history (USDC markets).",
            polymarket,
            reliability=0.9,
        ),
        SourceDefinition(
            "kalshi",
            "Kalshi",
            "prediction_market",
            "built_in",
            "Kalshi trade API v2 markets and events; candlesticks from the live and "
            "historical tiers.",
            kalshi,
            reliability=0.9,
        ),
        SourceDefinition(
            "manifold",
            "Manifold",
            "prediction_market",
            "built_in",
            "Manifold Markets (play money) markets; history rebuilt from bets.",
            manifold,
            reliability=0.7,
        ),
        SourceDefinition(
            "metaculus",
            "Metaculus",
            "prediction_market",
            "built_in",
            "Metaculus community predictions (recency-weighted aggregation) and history.",
            metaculus,
            rate_limit_rpd=24_000,
            reliability=0.85,
        ),
        SourceDefinition(
            "predictit",
            "PredictIt",
            "prediction_market",
            "built_in",
            "PredictIt market data snapshot of all markets (no history API).",
            predictit,
            reliability=0.8,
        ),
        SourceDefinition(
            "simulator",
            "Market simulator",
            "alternative",
            "built_in",
            "A deterministic, seeded sandbox of simulated markets (three venues, volume, "
            "sentiment, posts, news, injected anomalies and settlements); no network.",
            simulator,
            # Synthetic numbers: a middling prior, below the real-money markets.
            reliability=0.6,
        ),
        SourceDefinition(
            "custom_api",
            "Custom JSON API",
            "custom",
            "custom_api",
            "A user's JSON API: URL, method, headers, field mapping and pagination.",
            custom_api,
            # A user's server is nobody we know: a smaller body and a shorter wait.
            response_limits=ResponseLimits(max_bytes=16 * 2**20, deadline_s=60.0),
        ),
        SourceDefinition(
            "webhook",
            "Webhook push",
            "custom",
            "webhook",
            "Signals pushed to the platform as signed JSON deliveries.",
            push_config,
            supports_pull=False,
            supports_push=True,
        ),
        SourceDefinition(
            "upload",
            "File upload",
            "custom",
            "upload",
            "Signals uploaded as a CSV, JSON or JSON Lines file.",
            push_config,
            supports_pull=False,
            supports_push=True,
        ),
    )
}


def source_definition(source_id: str) -> SourceDefinition:
    try:
        return SOURCES[source_id]
    except KeyError:
        raise KeyError(f"unknown source {source_id!r}; known: {', '.join(SOURCES)}") from None
