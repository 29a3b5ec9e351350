"""Receiver load: many signed deliveries over many connections from a bounded local client.

Every delivery must end answered and landed exactly once: none lost, none duplicated, every
refusal an HTTP status (503 + Retry-After when saturated, which the client honours and retries
under the same delivery id). A tenth of the deliveries are sent again after landing, as a
sender does when an answer is lost, and must be answered 200 without landing twice.

CI runs reduced sizes; PREDICT_RECEIVER_LOAD=full runs the issue's sizes (2,000 deliveries
over 20 connections, then 600 over 150). The figures are printed (pytest -s shows them).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from predict_pipeline.ingestion.pushed import hour_window
from predict_pipeline.signals.linking import display_market_id
from predict_pipeline.signals.stage import validate_window
from tests.support.feeds import make_feed
from tests.support.receiver import SECRET, delivery_body, running_receiver, signed_headers

# End-to-end: `make test-fast` leaves it out, `make test` runs it.
pytestmark = pytest.mark.slow

FULL = os.environ.get("PREDICT_RECEIVER_LOAD") == "full"
PHASES = [(2000, 20), (600, 150)] if FULL else [(300, 20), (300, 150)]
MAX_ATTEMPTS = 60  # a bounded client: it gives up on a delivery after this many 503s
RESENT_EVERY = 10


@dataclass
class Phase:
    deliveries: int
    connections: int
    statuses: Counter = field(default_factory=Counter)  # every attempt's answer
    no_status: Counter = field(default_factory=Counter)  # attempts that got no HTTP answer
    accepted: dict[str, str] = field(default_factory=dict)  # source_event_id -> feed_run_id
    resent: dict[str, str] = field(default_factory=dict)  # the same, from a second sending
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _send(
    client: httpx.AsyncClient, url: str, phase: Phase, event_id: str, delivery_id: str
) -> str | None:
    """Send one delivery until it is answered 200/202 (or MAX_ATTEMPTS); its feed run id."""
    body = delivery_body(event_id)
    for _ in range(MAX_ATTEMPTS):
        headers = signed_headers(body, delivery_id=delivery_id)  # signed anew at each attempt
        started = time.monotonic()
        try:
            answer = await client.post(url, content=body, headers=headers)
        except httpx.TransportError as exc:
            phase.no_status[type(exc).__name__] += 1
            continue
        finally:
            phase.latencies.append(time.monotonic() - started)
        phase.statuses[answer.status_code] += 1
        if answer.status_code in (200, 202):
            return answer.json()["feed_run_id"]
        if answer.status_code != 503:
            raise AssertionError(f"{event_id}: {answer.status_code} {answer.text}")
        await asyncio.sleep(float(answer.headers["retry-after"]))
    return None


async def _run_phase(url: str, phase: Phase, tag: str) -> None:
    limits = httpx.Limits(max_connections=phase.connections, max_keepalive_connections=None)

    async def worker(client: httpx.AsyncClient, share: range) -> None:
        for n in share:
            event_id, delivery_id = f"{tag}-{n}", f"{tag}-dlv-{n}"
            run_id = await _send(client, url, phase, event_id, delivery_id)
            if run_id is not None:
                phase.accepted[event_id] = run_id
                if n % RESENT_EVERY == 0:
                    again = await _send(client, url, phase, event_id, delivery_id)
                    if again is not None:
                        phase.resent[event_id] = again

    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:
        shares = [range(k, phase.deliveries, phase.connections) for k in range(phase.connections)]
        await asyncio.gather(*(worker(client, share) for share in shares))
    phase.seconds = time.monotonic() - started


def test_receiver_load_lands_every_delivery_exactly_once(conn, db_url, landing):
    event = conn.execute(
        "INSERT INTO prediction_events (title, slug) VALUES ('Load', 'load') RETURNING id"
    ).fetchone()[0]
    event_ids = [
        f"{tag}-{n}" for tag, (total, _) in zip("ab", PHASES, strict=True) for n in range(total)
    ]
    feed_id = make_feed(
        conn,
        "webhook",
        {},
        credentials={"webhook_secret": SECRET},
        manual_event_mappings=psycopg.types.json.Jsonb({e: str(event) for e in event_ids}),
    )
    phases = [Phase(total, connections) for total, connections in PHASES]
    with running_receiver(db_url, landing.root) as receiver:
        for tag, phase in zip("ab", phases, strict=True):
            asyncio.run(_run_phase(receiver.url(feed_id), phase, tag))

    runs = dict(
        conn.execute(
            "SELECT id::text, started_at FROM prediction_feed_runs"
            " WHERE feed_id = %s AND status = 'SUCCESS'",
            (feed_id,),
        ).fetchall()
    )
    pages = [
        json.loads(page.body_text)[0]["source_event_id"]
        for path in landing.fs.find(landing.root)
        if path.endswith(".jsonl.gz")
        for page in landing.read(path)
    ]
    for window in {hour_window(at) for at in runs.values()}:
        [report] = validate_window(conn, landing, window, now=datetime.now(UTC))
        assert report.error is None
    signals = Counter(
        display_market_id(sid)  # stored in the feed's namespace
        for (sid,) in conn.execute(
            "SELECT source_event_id FROM prediction_signals WHERE feed_id = %s", (feed_id,)
        )
    )
    landed = Counter(pages)
    handled = [e for e in receiver.events() if e["event"] == "delivery"]
    lines = []
    for tag, phase in zip("ab", phases, strict=True):
        # The receiver's own time per delivery (its log), apart from the client's and the wire's.
        inside = sorted(e["ms"] for e in handled if e["delivery_id"].startswith(f"{tag}-"))
        sent = {f"{tag}-{n}" for n in range(phase.deliveries)}
        accepted = set(phase.accepted)
        lost = {sid for sid in accepted if landed[sid] == 0 or signals[sid] == 0}
        duplicated = {sid for sid in sent if landed[sid] > 1 or signals[sid] > 1}
        refused = sum(n for status, n in phase.statuses.items() if status not in (200, 202))
        lines.append(
            f"{phase.deliveries} deliveries over {phase.connections} connections in "
            f"{phase.seconds:.1f} s: accepted {len(accepted)}, landed "
            f"{sum(1 for sid in sent if landed[sid] == 1 and signals[sid] == 1)}, duplicated "
            f"{len(duplicated)}, lost {len(lost)}, refused with a status {refused} "
            f"({dict(phase.statuses)}), no status {sum(phase.no_status.values())}, resent "
            f"{len(phase.resent)} answered 200; client p50 {phase.percentile(0.5):.0f} ms, "
            f"p99 {phase.percentile(0.99):.0f} ms; receiver p50 {inside[len(inside) // 2]} ms, "
            f"p99 {inside[int(0.99 * len(inside))]} ms"
        )
        assert accepted == sent, lines[-1]
        assert not lost and not duplicated, lines[-1]
        assert not phase.no_status, lines[-1]
        # A resent delivery is answered with the run that landed it, and lands nothing.
        assert phase.resent == {sid: phase.accepted[sid] for sid in phase.resent}, lines[-1]
        assert len(phase.resent) == len(range(0, phase.deliveries, RESENT_EVERY)), lines[-1]
        assert phase.statuses[200] == len(phase.resent), lines[-1]
    assert sorted(runs) == sorted(
        run for phase in phases for run in phase.accepted.values()
    )  # one SUCCESS run per delivery: none extra
    print("\nreceiver load:", *lines, sep="\n  ")
