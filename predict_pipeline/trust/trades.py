"""Account-level trades: trades whose raw_data names the account (Manifold bets), their round
trips (WASH_TRADING, market_integrity's f_accounts), and the account behind a post or trade."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from predict_pipeline.trust.config import ACCOUNT_KEYS, TrustConfig, nanoseconds


def account_of(raw: Any) -> str | None:
    if isinstance(raw, dict):
        for key in ACCOUNT_KEYS:
            value = raw.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
    return None


TRADE_COLUMNS = [
    "event_id",
    "source",
    "trade_key",
    "t",
    "account",
    "direction",
    "amount",
    "in_interval",
    "round_trip",
    "involved",
]


def account_trades(
    sig: pd.DataFrame, start_ns: int, config: TrustConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trades whose raw_data names the account (Manifold bets): one row per trade, and the ids.

    Round trips are read per venue (the trade's source): account ids are each venue's own.
    direction = +1 for a trade that pushes the YES price up (buying YES, selling NO), -1
    otherwise; `round_trip` marks a trade in the interval whose account traded the opposite
    direction within `wash_window` before it, `involved` both trades of such a pair. A trade
    reported as several signals (a bet's price and its volume) is one trade; the second frame
    maps every such signal (event_id, trade_key, signal_id) with its trade's `involved`.
    """
    wash_ns = nanoseconds(config.wash_window)
    # the near rows' positions: only the columns read below are taken, not the whole frame
    near = np.flatnonzero(sig["t"].to_numpy() >= start_ns - wash_ns)
    parsed = [
        _trade(raw) if isinstance(raw, dict) and "outcome" in raw else None
        for raw in sig["raw_data"].to_numpy()[near]
    ]
    keep = near[np.fromiter((p is not None for p in parsed), dtype=bool, count=len(parsed))]
    rows = pd.DataFrame.from_records(
        [p for p in parsed if p is not None],
        columns=["trade_key", "account", "direction", "amount"],
    )
    rows.insert(0, "event_id", sig["event_id"].to_numpy()[keep])
    rows.insert(1, "source", sig["source"].to_numpy()[keep])
    rows["signal_id"] = sig["id"].to_numpy()[keep]
    rows["t"] = sig["t"].to_numpy()[keep].astype("int64")
    trades = rows.drop_duplicates(["event_id", "trade_key"]).sort_values(
        ["event_id", "source", "account", "t", "trade_key"], kind="stable"
    )
    # an account is a venue's: the same name on two venues is two traders
    same = (
        trades["event_id"].eq(trades["event_id"].shift())
        & trades["source"].eq(trades["source"].shift())
        & trades["account"].eq(trades["account"].shift())
    )
    flip = (
        same
        & trades["direction"].ne(trades["direction"].shift())
        & (trades["t"] - trades["t"].shift() <= wash_ns)
    )
    trades["in_interval"] = trades["t"] >= start_ns
    trades["round_trip"] = flip & trades["in_interval"]
    trades["involved"] = trades["round_trip"] | trades["round_trip"].shift(-1, fill_value=False)
    trades = trades.sort_values(["event_id", "t", "trade_key"], kind="stable")
    ids = rows[["event_id", "trade_key", "signal_id", "t"]].merge(
        trades[["event_id", "trade_key", "involved"]], on=["event_id", "trade_key"]
    )
    return trades[TRADE_COLUMNS].reset_index(drop=True), ids


def _trade(raw: dict) -> tuple[str, str, int, float] | None:
    """(trade key, account, direction, |amount|) of a raw trade, None if it is not one."""
    if raw.get("isRedemption") is True:
        return None
    account = account_of(raw)
    outcome = str(raw.get("outcome", "")).upper()
    amount = raw.get("amount")
    if account is None or outcome not in ("YES", "NO") or not isinstance(amount, int | float):
        return None
    if isinstance(amount, bool) or not math.isfinite(amount) or amount == 0:
        return None
    key = raw.get("id")
    key = str(key) if isinstance(key, str | int) else f"{account}:{raw.get('createdTime')}:{amount}"
    direction = (1 if amount > 0 else -1) * (1 if outcome == "YES" else -1)
    return key, account, direction, abs(float(amount))


def wash_summary(measured_trades: pd.DataFrame) -> pd.DataFrame:
    """Per event: interval trade amount, round trips, round-tripping amount, share, accounts
    (from the measured trades: `Measurements.trades`)."""
    trades = measured_trades[measured_trades["in_interval"]]
    if trades.empty:
        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64")
                for c in ("amount", "round_trips", "wash_amount", "share", "accounts")
            },
            index=pd.Index([], name="event_id", dtype=object),
        )
    involved = trades["amount"].where(trades["involved"], 0.0)
    summary = pd.DataFrame(
        {
            "amount": trades.groupby("event_id")["amount"].sum(),
            "round_trips": trades.groupby("event_id")["round_trip"].sum().astype("int64"),
            "wash_amount": involved.groupby(trades["event_id"]).sum(),
            "accounts": trades[trades["involved"]].groupby("event_id")["account"].nunique(),
        }
    )
    summary["accounts"] = summary["accounts"].fillna(0).astype("int64")
    summary["share"] = summary["wash_amount"] / summary["amount"]
    return summary
