"""Explanations of significant moves: which sources moved, by how much, and the signals behind.

The moves of a snapshot batch are read from prediction_snapshots in the batch's window, each
with the state before it, and their sources' pooled probabilities are computed by the
snapshots' own pooling SQL (predict_pipeline/snapshots/compute.py): one statement reads every
move, one writes every explanation, whatever the number of events.

The default generator is deterministic and templated (`model_used = 'template'`); an LLM
generator can implement `ExplanationWriter` and be passed instead — nothing requires one.
Explanations are keyed by event and interval (`trigger_data.interval_end`), so re-running an
interval replaces them rather than adding more.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
import psycopg

from predict_pipeline.snapshots.compute import (
    CLIP_EPSILON,
    HELD_EVENTS_SQL,
    SnapshotBatch,
    pooled_probability_sql,
    signal_terms_sql,
    source_probability_sql,
    source_sums_sql,
)

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


# The batch's snapshots with the state before each (the row before in the window, else the last
# stored state within the carry-forward), the moves among them, and for each move its sources'
# sums from the snapshots' pooling SQL; a move in an interval without a pooled probability
# (carried forward) is not one.
_MOVES_SQL = """
WITH batch AS (
  SELECT s.event_id, s.snapshot_at, s.probability, s.sentiment_score, s.divergence,
         s.volatility,
         lag(s.probability) OVER series AS prev_probability,
         lag(s.sentiment_score) OVER series AS prev_sentiment,
         lag(s.divergence) OVER series AS prev_divergence,
         row_number() OVER series AS n
  FROM prediction_snapshots s
  WHERE s.snapshot_at > %(start)s AND s.snapshot_at <= %(end)s
    AND s.event_id NOT IN ({held})  -- their snapshots were left as they were
  WINDOW series AS (PARTITION BY s.event_id ORDER BY s.snapshot_at)
),
stated AS (
  SELECT b.event_id, b.snapshot_at, b.probability, b.sentiment_score, b.divergence,
         b.volatility,
         CASE WHEN b.n > 1 THEN b.prev_probability ELSE before.probability END
           AS prev_probability,
         CASE WHEN b.n > 1 THEN b.prev_sentiment ELSE before.sentiment_score END
           AS prev_sentiment,
         CASE WHEN b.n > 1 THEN b.prev_divergence ELSE before.divergence END AS prev_divergence
  FROM batch b
  LEFT JOIN LATERAL (
    SELECT p.probability, p.sentiment_score, p.divergence FROM prediction_snapshots p
    WHERE b.n = 1 AND p.event_id = b.event_id AND p.snapshot_at <= %(start)s
      AND p.snapshot_at > %(start)s - %(carry)s AND p.probability IS NOT NULL
    ORDER BY p.snapshot_at DESC LIMIT 1
  ) before ON true
),
flagged AS (
  SELECT st.*,
         coalesce(abs(st.probability - st.prev_probability) >= %(prob)s, false)
           AS probability_shift,
         coalesce(abs(st.sentiment_score - st.prev_sentiment) >= %(sent)s, false)
           AS sentiment_shift,
         coalesce(st.divergence = ANY(%(div_levels)s)
                  AND st.divergence IS DISTINCT FROM st.prev_divergence
                  AND coalesce(st.prev_divergence, 'NONE') <> ALL(%(div_levels)s), false)
           AS divergence_reached,
         coalesce(st.volatility >= %(anomaly)s, false) AS anomaly
  FROM stated st
),
moved AS (
  SELECT * FROM flagged
  WHERE probability_shift OR sentiment_shift OR divergence_reached OR anomaly
),
terms AS MATERIALIZED (
{terms}
),
per_source AS (
{per_source}
),
sources AS (
  SELECT ps.event_id, ps.snapshot_at,
         jsonb_agg(jsonb_build_object(
           'source', ps.source, 'probability', {source_probability},
           'weight', ps.all_w, 'signals', ps.n)) AS sources,
         CASE WHEN sum(ps.prob_w) > 0
              THEN round(({pooled})::numeric, 4)::float8 END AS pooled_probability
  FROM per_source ps JOIN moved m USING (event_id, snapshot_at)
  GROUP BY 1, 2
),
top AS (
  SELECT x.event_id, x.snapshot_at,
         jsonb_agg(jsonb_build_object('id', x.id::text, 'source', x.source,
                                      'signal_type', x.signal_type, 'value', x.v,
                                      'weight', x.w) ORDER BY x.rank) AS signals
  FROM (SELECT t.event_id, t.snapshot_at, t.id, t.source, t.signal_type, t.v, t.w,
               row_number() OVER (PARTITION BY t.event_id, t.snapshot_at
                                  ORDER BY t.w DESC, t.id) AS rank
        FROM terms t) x
  WHERE x.rank <= %(top)s
  GROUP BY 1, 2
)
SELECT m.event_id, e.title, m.snapshot_at, m.probability::float8, m.prev_probability::float8,
       m.sentiment_score::float8, m.prev_sentiment::float8, m.divergence, m.prev_divergence,
       m.volatility::float8, m.probability_shift, m.sentiment_shift, m.divergence_reached,
       m.anomaly, src.sources, src.pooled_probability, coalesce(top.signals, '[]'::jsonb)
FROM moved m
JOIN prediction_events e ON e.id = m.event_id
JOIN sources src USING (event_id, snapshot_at)
LEFT JOIN top USING (event_id, snapshot_at)
WHERE src.pooled_probability IS NOT NULL
ORDER BY m.event_id, m.snapshot_at
"""


def _moves_sql() -> str:
    terms = signal_terms_sql(
        " AND s.event_id IN (SELECT event_id FROM moved)", extra=" s.id, s.signal_type,"
    )
    return (
        _MOVES_SQL.replace("{held}", HELD_EVENTS_SQL)
        .replace("{terms}", terms)
        .replace("{per_source}", source_sums_sql("SELECT * FROM terms", ", sum(t.w) AS all_w"))
        .replace("{source_probability}", source_probability_sql("ps.prob_num", "ps.prob_w"))
        .replace("{pooled}", pooled_probability_sql("(sum(ps.prob_num) / sum(ps.prob_w))"))
    )


# Re-running an interval replaces its template explanations: those of every event of the
# batch, so a move that is no longer one (history arrived late) loses its explanation.
_WRITE_SQL = """
WITH written AS (
  SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb) AS x(
    event_id uuid, trigger_type text, trigger_data jsonb, headline text, summary text,
    detailed text, contributing_signals uuid[], factors jsonb, model_used text,
    prompt_version text)
),
replaced AS (
  DELETE FROM prediction_explanations x
  WHERE x.model_used = 'template'
    AND x.event_id IN (SELECT s.event_id FROM prediction_snapshots s
                       WHERE s.snapshot_at > %(start)s AND s.snapshot_at <= %(end)s
                         AND s.event_id NOT IN ({held}))
    AND (x.trigger_data->>'interval_end')::timestamptz > %(start)s
    AND (x.trigger_data->>'interval_end')::timestamptz <= %(end)s
)
INSERT INTO prediction_explanations
  (event_id, trigger_type, trigger_data, headline, summary, detailed, contributing_signals,
   factors, model_used, prompt_version)
SELECT event_id, trigger_type, trigger_data, headline, summary, detailed, contributing_signals,
       factors, model_used, prompt_version
FROM written
""".replace("{held}", HELD_EVENTS_SQL)


def explain_moves(
    conn: psycopg.Connection,
    batch: SnapshotBatch,
    *,
    thresholds: MoveThresholds,
    writer: ExplanationWriter | None = None,
) -> int:
    """Write an explanation for every significant move among the batch's snapshots."""
    writer = writer or TemplateWriter()
    levels = [
        k for k, v in DIVERGENCE_RANK.items() if v >= DIVERGENCE_RANK[thresholds.divergence_to]
    ]
    rows = conn.execute(
        _moves_sql(),
        {
            "start": batch.start,
            "end": batch.end,
            "carry": timedelta(days=batch.settings.carry_forward_days),
            "half_life": batch.settings.half_life_minutes,
            "alpha": batch.settings.extremize,
            "eps": CLIP_EPSILON,
            "prob": thresholds.probability_shift,
            "sent": thresholds.sentiment_shift,
            "div_levels": levels,
            "anomaly": thresholds.volatility_anomaly,
            "top": TOP_SIGNALS,
        },
    ).fetchall()
    written = []
    for (
        event_id,
        title,
        at,
        prob,
        prev_prob,
        sent,
        prev_sent,
        div,
        prev_div,
        vol,
        probability_shift,
        sentiment_shift,
        divergence_reached,
        anomaly,
        by_source,
        pooled,
        top,
    ) in rows:
        kinds = []
        if probability_shift:
            kinds.append(("PROBABILITY_SHIFT", prev_prob, prob))
        if sentiment_shift:
            kinds.append(("SENTIMENT_SHIFT", prev_sent, sent))
        if divergence_reached:
            kinds.append(("DIVERGENCE", prev_div or "NONE", div))
        if anomaly:
            kinds.append(("ANOMALY", None, vol))
        sources = [
            {
                "source": s["source"],
                "probability": None if s["probability"] is None else round(s["probability"], 4),
                "weight": round(s["weight"], 4),
                "signals": s["signals"],
            }
            for s in sorted(by_source, key=lambda s: s["source"])
        ]
        top_signals = [
            {
                "id": t["id"],
                "source": t["source"],
                "signal_type": t["signal_type"],
                "value": t["value"],
                "weight": round(t["weight"], 4),
            }
            for t in top
        ]
        for trigger_type, before, after in kinds:
            move = Move(event_id, title, at, trigger_type, before, after, sources, top_signals)
            text = writer.write(move)
            written.append(
                {
                    "event_id": event_id,
                    "trigger_type": trigger_type,
                    "trigger_data": {
                        "interval_end": at.isoformat(),
                        "before": before,
                        "after": after,
                    },
                    "headline": text.headline,
                    "summary": text.summary,
                    "detailed": text.detailed,
                    "contributing_signals": [t["id"] for t in top_signals],
                    "factors": {
                        "sources": sources,
                        "pooled_probability": pooled,
                        "volatility": vol,
                        "divergence": div,
                        "previous_divergence": prev_div,
                    },
                    "model_used": text.model_used,
                    "prompt_version": text.prompt_version,
                }
            )
    conn.execute(
        _WRITE_SQL,
        {"rows": orjson.dumps(written).decode(), "start": batch.start, "end": batch.end},
    )
    return len(written)
