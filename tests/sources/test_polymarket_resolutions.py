"""Polymarket's terminal states, on a real auto-resolved Gamma market object (the BTC 5-minute
recording, fixtures/real/SOURCES.md) with its UMA fields and final prices set to each
state Gamma documents: resolved, proposed, disputed, a 50-50 split, not yet closed."""

from __future__ import annotations

import pytest

from predict_pipeline.sources import polymarket
from predict_pipeline.sources.base import read_page
from tests.real.recordings import polymarket_btc_5m

RECORDING = polymarket_btc_5m()


def _up_won() -> dict:
    return next(m for m in RECORDING.items if m["outcomePrices"] == '["1", "0"]')


@pytest.mark.parametrize(
    ("fields", "resolution", "probability"),
    [
        ({}, "YES", None),  # as recorded: closed, "resolved", history "[]"
        ({"umaResolutionStatuses": '["proposed"]'}, "YES", None),  # auto-resolved, stale history
        ({"umaResolutionStatuses": '["proposed", "disputed", "proposed", "resolved"]'},
         "YES", None),
        ({"outcomePrices": '["0", "1"]'}, "NO", None),
        ({"umaResolutionStatus": "proposed"}, None, None),  # the proposal may still be disputed
        ({"umaResolutionStatus": "disputed"}, None, None),
        ({"umaResolutionStatus": None, "umaResolutionStatuses": '["proposed"]',
          "automaticallyResolved": None}, None, None),  # only a pending history: wait
        ({"umaResolutionStatus": None, "umaResolutionStatuses": '["proposed"]'}, "YES", None),
        ({"outcomePrices": '["0.5", "0.5"]'}, "AMBIGUOUS", 0.5),  # a 50-50 split
        ({"outcomePrices": '["0.9995", "0.0005"]'}, None, None),  # not a payout
        ({"closed": False, "umaResolutionStatus": None}, None, None),
        ({"closed": False}, "YES", None),  # UMA says resolved before the CLOB closes
    ],
)  # fmt: skip
def test_a_gamma_market_resolves_as_polymarket_reports(fields, resolution, probability):
    market = {**_up_won(), **fields}
    page = read_page(polymarket.ADAPTER, [market], fetched_at=RECORDING.fetched_at)
    [price] = [r for r in page.records if r.signal_type == "MARKET_PRICE"]
    assert price.source_event_id == market["id"] and price.market.outcome == "Up"
    assert (price.market.resolution, price.market.resolution_probability) == (
        resolution,
        probability,
    )
    assert price.market.status == ("resolved" if resolution else price.market.status)
