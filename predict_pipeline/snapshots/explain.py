"""Explanations of significant moves: which sources moved, by how much, and the signals behind.

The default generator is deterministic and templated (`model_used = 'template'`); an LLM
generator can implement `ExplanationWriter` and be passed instead — nothing requires one.
Explanations are keyed by event and interval (`trigger_data.interval_end`), so re-running an
interval replaces them rather than adding more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

PROMPT_VERSION = "template-v1"
DIVERGENCE_RANK = {"NONE": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "EXTREME": 4}
TOP_SIGNALS = 5


@dataclass(frozen=True, slots=True)
class MoveThresholds:
    probability_shift: float = 0.05  # absolute change in pooled probability
    sentiment_shift: float = 0.25
    divergence_to: str = "HIGH"  # divergence reaching this level (from below) is explained
    volatility_anomaly: float = 0.5  # volatility at or above this is an ANOMALY


@dataclass(frozen=True, slots=True)
class Move:
    event_id: uuid.UUID
    title: str
    snapshot_at: datetime
    trigger_type: str
    before: Any
    after: Any
    sources: list[dict[str, Any]]  # per source: probability, weight, signals
    top_signals: list[dict[str, Any]]  # id, source, type, value, weight


@dataclass(frozen=True, slots=True)
class Explanation:
    headline: str
    summary: str
    detailed: str
    model_used: str = "template"
    prompt_version: str = PROMPT_VERSION


class ExplanationWriter(Protocol):
    def write(self, move: Move) -> Explanation: ...


class TemplateWriter:
    """Deterministic text from the numbers alone."""

    def write(self, move: Move) -> Explanation:
        when = f"{move.snapshot_at:%Y-%m-%d %H:%M} UTC"
        if move.trigger_type == "PROBABILITY_SHIFT":
            direction = "up" if move.after > move.before else "down"
            headline = (
                f"{move.title}: probability {direction} from {move.before:.0%} to {move.after:.0%}"
            )
        elif move.trigger_type == "SENTIMENT_SHIFT":
            headline = f"{move.title}: sentiment moved from {move.before:+.2f} to {move.after:+.2f}"
        elif move.trigger_type == "DIVERGENCE":
            headline = f"{move.title}: sources now disagree ({move.before} → {move.after})"
        else:
            headline = f"{move.title}: unusually volatile (volatility {move.after:.2f})"
        ranked = sorted(move.sources, key=lambda s: -s["weight"])
        lead = ranked[0] if ranked else None
        summary = (
            f"In the hour to {when}, "
            + (
                f"{lead['source']} carried the most weight at {lead['probability']:.0%}"
                if lead and lead["probability"] is not None
                else "no market price moved it"
            )
            + f"; {sum(s['signals'] for s in move.sources)} signals from "
            f"{len(move.sources)} source(s)."
        )
        lines = [
            f"- {s['source']}: {s['probability']:.1%} from {s['signals']} signal(s), "
            f"weight {s['weight']:.2f}"
            if s["probability"] is not None
            else f"- {s['source']}: {s['signals']} signal(s) without a probability"
            for s in ranked
        ]
        lines += [
            f"- signal {t['id']} ({t['source']} {t['signal_type']} {t['value']}) weight "
            f"{t['weight']:.2f}"
            for t in move.top_signals
        ]
        return Explanation(headline=headline, summary=summary, detailed="\n".join(lines))


_MOVES_SQL = """
SELECT b.event_id, e.title, b.snapshot_at, b.probability::float8, b.prev_probability::float8,
       b.sentiment_score::float8, b.prev_sentiment::float8, b.divergence, b.prev_divergence,
       b.volatility::float8
FROM snapshot_batch b JOIN prediction_events e ON e.id = b.event_id
WHERE NOT b.carried_forward AND (
      abs(b.probability - b.prev_probability) >= %(prob)s
   OR abs(b.sentiment_score - b.prev_sentiment) >= %(sent)s
   OR (b.divergence = ANY(%(div_levels)s) AND b.divergence IS DISTINCT FROM b.prev_divergence
       AND coalesce(b.prev_divergence, 'NONE') <> ALL(%(div_levels)s))
   OR b.volatility >= %(anomaly)s)
"""

# Signals of the moved (event, interval) pairs, with the same weight as the pooling.
_SIGNALS_SQL = """
SELECT s.id, s.event_id, s.source, s.signal_type, s.value::float8 AS value,
       coalesce(s.weight, 1)::float8 * coalesce(s.reliability, 1)::float8
         * exp(-0.6931471805599453 * date_part('epoch', %(at)s::timestamptz - s.fetched_at)
               / (60.0 * %(half_life)s)) AS w
FROM prediction_signals s
WHERE s.event_id = ANY(%(events)s)
  AND s.fetched_at >= %(at)s::timestamptz - interval '1 hour' AND s.fetched_at < %(at)s
"""


def explain_moves(
    conn: psycopg.Connection,
    *,
    thresholds: MoveThresholds,
    half_life_minutes: float,
    writer: ExplanationWriter | None = None,
) -> int:
    """Write an explanation for every significant move in the current snapshot batch."""
    writer = writer or TemplateWriter()
    levels = [
        k for k, v in DIVERGENCE_RANK.items() if v >= DIVERGENCE_RANK[thresholds.divergence_to]
    ]
    with conn.cursor() as cur:
        rows = cur.execute(
            _MOVES_SQL,
            {
                "prob": thresholds.probability_shift,
                "sent": thresholds.sentiment_shift,
                "div_levels": levels,
                "anomaly": thresholds.volatility_anomaly,
            },
        ).fetchall()
    if not rows:
        return 0
    signals = _signals_of(conn, rows, half_life_minutes)
    written = 0
    for event_id, title, at, prob, prev_prob, sent, prev_sent, div, prev_div, vol in rows:
        kinds = []
        if (
            prob is not None
            and prev_prob is not None
            and abs(prob - prev_prob) >= (thresholds.probability_shift)
        ):
            kinds.append(("PROBABILITY_SHIFT", prev_prob, prob))
        if (
            sent is not None
            and prev_sent is not None
            and abs(sent - prev_sent) >= (thresholds.sentiment_shift)
        ):
            kinds.append(("SENTIMENT_SHIFT", prev_sent, sent))
        if div in levels and div != prev_div and (prev_div or "NONE") not in levels:
            kinds.append(("DIVERGENCE", prev_div or "NONE", div))
        if vol is not None and vol >= thresholds.volatility_anomaly:
            kinds.append(("ANOMALY", None, vol))
        mine = signals.get((event_id, at), [])
        sources = _by_source(mine)
        top = sorted(mine, key=lambda s: -s["w"])[:TOP_SIGNALS]
        conn.execute(
            "DELETE FROM prediction_explanations WHERE event_id = %s AND model_used = 'template'"
            " AND trigger_data->>'interval_end' = %s",
            (event_id, at.isoformat()),
        )
        for trigger_type, before, after in kinds:
            move = Move(
                event_id,
                title,
                at,
                trigger_type,
                before,
                after,
                sources,
                [
                    {
                        "id": str(t["id"]),
                        "source": t["source"],
                        "signal_type": t["signal_type"],
                        "value": t["value"],
                        "weight": round(t["w"], 4),
                    }
                    for t in top
                ],
            )
            text = writer.write(move)
            conn.execute(
                """INSERT INTO prediction_explanations
                     (event_id, trigger_type, trigger_data, headline, summary, detailed,
                      contributing_signals, factors, model_used, prompt_version)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    event_id,
                    trigger_type,
                    Jsonb({"interval_end": at.isoformat(), "before": before, "after": after}),
                    text.headline,
                    text.summary,
                    text.detailed,
                    [t["id"] for t in top],
                    Jsonb(
                        {
                            "sources": sources,
                            "volatility": vol,
                            "divergence": div,
                            "previous_divergence": prev_div,
                        }
                    ),
                    text.model_used,
                    text.prompt_version,
                ),
            )
            written += 1
    return written


def _signals_of(
    conn: psycopg.Connection, rows: list[tuple], half_life: float
) -> dict[tuple[uuid.UUID, datetime], list[dict[str, Any]]]:
    by_time: dict[datetime, list[uuid.UUID]] = {}
    for row in rows:
        by_time.setdefault(row[2], []).append(row[0])
    found: dict[tuple[uuid.UUID, datetime], list[dict[str, Any]]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for at, events in by_time.items():
            for s in cur.execute(
                _SIGNALS_SQL, {"events": events, "at": at, "half_life": half_life}
            ):
                found.setdefault((s["event_id"], at), []).append(s)
    return found


def _by_source(signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each source's pooled probability (the same log-odds pooling), weight and count."""
    import math

    grouped: dict[str, dict[str, float]] = {}
    for s in signals:
        g = grouped.setdefault(s["source"], {"num": 0.0, "w": 0.0, "n": 0, "all_w": 0.0})
        g["n"] += 1
        g["all_w"] += s["w"]
        if s["signal_type"] in ("MARKET_PRICE", "EXPERT", "MANUAL") and s["value"] is not None:
            p = min(max(s["value"], 0.001), 0.999)
            g["num"] += s["w"] * math.log(p / (1 - p))
            g["w"] += s["w"]
    return [
        {
            "source": source,
            "probability": round(1 / (1 + math.exp(-g["num"] / g["w"])), 4) if g["w"] else None,
            "weight": round(g["all_w"], 4),
            "signals": int(g["n"]),
        }
        for source, g in sorted(grouped.items())
    ]
