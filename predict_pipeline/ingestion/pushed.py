"""Uploads and webhook deliveries: checked whole, then landed beside fetched pages.

A malformed file or body is refused with the line and column at fault and nothing of it
lands; the refusal is still a FAILED feed run with the reason, so it is accounted for.

A webhook delivery lands at most once per delivery id (X-Predict-Delivery): its id is
recorded in prediction_webhook_deliveries in the transaction that lands it, and a delivery
whose id is already there is answered with the earlier feed run instead of landing again.

Records rejected alone (a timestamp outside the accepted range, an id too long to index) are
counted on the run; the rest land. A delivery that cannot be written to the landing zone (a
full disk) leaves no temporary file and a FAILED run that says why.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from predict_pipeline.ingestion.landing import LandedPage, LandingZone, landing_fault
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.ingestion.runs import FeedRunResult, finish_feed_run, start_feed_run
from predict_pipeline.ingestion.store import CLOSED_SOURCE_STATUSES, Feed
from predict_pipeline.model import FetchWindow, NormalisedRecord, RecordReject
from predict_pipeline.secrets import SecretDecryptError, decrypt_json
from predict_pipeline.sources.push.config import CONFIG_SCHEMA, DEFAULT_CONFIG, validated_config
from predict_pipeline.sources.push.decode import UploadError
from predict_pipeline.sources.push.delivery import parse_upload, parse_webhook
from predict_pipeline.sources.push.signature import SignatureError, SignedDelivery, verify_signature


class PushRefused(ValueError):
    """A delivery that did not land; `status` is the HTTP status a receiver should answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class LandingFailed(PushRefused):
    """A good delivery that could not be written to the landing zone (our fault, not the
    sender's): nothing of it landed and its run is FAILED; the sender may retry."""

    def __init__(self, message: str):
        super().__init__(message, status=503)


@dataclass(frozen=True, slots=True)
class PushReport:
    feed_run_id: str
    records: int
    landing_file: str
    duplicate: bool = False  # a delivery id seen before: nothing landed, the earlier run named
    rejected: list[RecordReject] = field(default_factory=list)


def hour_window(at: datetime) -> FetchWindow:
    start = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return FetchWindow(start, start + timedelta(hours=1))


def land_upload(
    conn: psycopg.Connection,
    landing: LandingZone,
    feed: Feed,
    data: bytes,
    filename: str,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PushReport:
    _require_source(feed, "upload")
    received_at = now()

    def parse() -> tuple[list[NormalisedRecord], list[RecordReject]]:
        return parse_upload(data, filename, feed_config=feed.config, received_at=received_at)

    return _land(conn, landing, feed, data, received_at, "upload", {"filename": filename}, parse)


def land_webhook(
    conn: psycopg.Connection,
    landing: LandingZone,
    feed: Feed,
    body: bytes,
    headers: Mapping[str, str],
    *,
    encryption_key: Callable[[], bytes],
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> PushReport:
    """Verify, then land once per delivery id; `conn` must be in autocommit mode."""
    _require_source(feed, "webhook")
    received_at = now()
    secret = _webhook_secret(feed, encryption_key)
    config = validated_config(
        feed.config, schema=CONFIG_SCHEMA, defaults=DEFAULT_CONFIG, source="webhook"
    )
    try:
        # Before the id is looked up: only a delivery signed with the secret may claim an id.
        delivery = verify_signature(
            body, headers, secret, header=config["signature_header"], now=received_at
        )
    except SignatureError as exc:
        run_id, started = start_feed_run(conn, feed.id, received_at), time.monotonic()
        digest = hashlib.sha256(body).hexdigest()
        _finish(conn, feed, run_id, received_at, started, "FAILED", 0, len(body), str(exc), digest)
        raise PushRefused(str(exc), status=401) from None

    def parse() -> tuple[list[NormalisedRecord], list[RecordReject]]:
        # secret=None: the signature was verified above, against the same clock.
        return parse_webhook(
            body, headers, feed_config=config, secret=None, received_at=received_at
        )

    refused: PushRefused | None = None
    with conn.transaction():
        earlier = _claim_delivery(conn, feed, delivery, received_at, body)
        if earlier is not None:
            return earlier
        try:
            report = _land(conn, landing, feed, body, received_at, "webhook", {}, parse)
        except PushRefused as exc:
            # The FAILED run commits; the id is freed so a corrected delivery may use it.
            _release_delivery(conn, feed, delivery)
            refused = exc
        else:
            conn.execute(
                "UPDATE prediction_webhook_deliveries SET feed_run_id = %s"
                " WHERE feed_id = %s AND delivery_id = %s",
                (report.feed_run_id, feed.id, delivery.delivery_id),
            )
    if refused is not None:
        raise refused
    return report


def _claim_delivery(
    conn: psycopg.Connection,
    feed: Feed,
    delivery: SignedDelivery,
    received_at: datetime,
    body: bytes,
) -> PushReport | None:
    """None when this transaction now holds the id; else the earlier delivery's report.

    A concurrent transaction holding the same id makes the insert wait for its outcome.
    """
    claimed = conn.execute(
        """INSERT INTO prediction_webhook_deliveries
             (feed_id, delivery_id, sent_at, received_at, body_sha256)
           VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT (feed_id, delivery_id) DO NOTHING
           RETURNING delivery_id""",
        (
            feed.id,
            delivery.delivery_id,
            delivery.sent_at,
            received_at,
            hashlib.sha256(body).hexdigest(),
        ),
    ).fetchone()
    if claimed is not None:
        return None
    row = conn.execute(
        """SELECT r.id, r.signals_fetched, l.landing_file
           FROM prediction_webhook_deliveries d
           JOIN prediction_feed_runs r ON r.id = d.feed_run_id
           LEFT JOIN prediction_feed_run_landings l ON l.feed_run_id = r.id
           WHERE d.feed_id = %s AND d.delivery_id = %s""",
        (feed.id, delivery.delivery_id),
    ).fetchone()
    assert row is not None  # a committed claim always names its run
    run_id, records, landing_file = row
    return PushReport(str(run_id), records or 0, landing_file or "", duplicate=True)


def _release_delivery(conn: psycopg.Connection, feed: Feed, delivery: SignedDelivery) -> None:
    conn.execute(
        "DELETE FROM prediction_webhook_deliveries WHERE feed_id = %s AND delivery_id = %s",
        (feed.id, delivery.delivery_id),
    )


def _land(
    conn: psycopg.Connection,
    landing: LandingZone,
    feed: Feed,
    data: bytes,
    received_at: datetime,
    kind: str,
    context: dict[str, str],
    parse: Callable[[], tuple[list[NormalisedRecord], list[RecordReject]]],
) -> PushReport:
    run_id = start_feed_run(conn, feed.id, received_at)
    started = time.monotonic()  # the run lasts what landing took, on the receipt's own clock
    digest = hashlib.sha256(data).hexdigest()
    try:
        records, rejects = parse()
    except (UploadError, SignatureError) as exc:
        _finish(conn, feed, run_id, received_at, started, "FAILED", 0, len(data), str(exc), digest)
        status = 401 if isinstance(exc, SignatureError) else 400
        raise PushRefused(str(exc), status=status) from None
    page = LandedPage(
        feed_id=str(feed.id),
        source=feed.source,
        endpoint=kind,
        request={
            "endpoint": kind,
            "method": "POST",
            "url": f"{kind}:{context.get('filename', 'body')}",
            "params": {},
            "body": None,
            "context": {**context, "sha256": digest},
        },
        status_code=None,
        body_text=data.decode("utf-8-sig"),
        fetched_at=received_at.isoformat(),
        feed_run_id=str(run_id),
    )
    name = f"{kind}-{received_at:%Y%m%dT%H%M%S%fZ}-{digest[:8]}"
    try:
        written = landing.write(feed.source, str(feed.id), hour_window(received_at), name, [page])
    except OSError as exc:
        reason = f"cannot write the landing zone, nothing landed: {landing_fault(exc)}"
        _finish(conn, feed, run_id, received_at, started, "FAILED", 0, len(data), reason, digest)
        raise LandingFailed(reason) from None
    _finish(
        conn,
        feed,
        run_id,
        received_at,
        started,
        "SUCCESS",
        len(records),
        len(data),
        None,
        digest,
        landing_file=written.path,
        rejects=rejects,
    )
    return PushReport(
        feed_run_id=str(run_id),
        records=len(records),
        landing_file=written.path,
        rejected=rejects,
    )


def _finish(
    conn: psycopg.Connection,
    feed: Feed,
    run_id,
    received_at: datetime,
    started: float,
    status: str,
    records: int,
    size: int,
    error: str | None,
    digest: str,
    *,
    landing_file: str | None = None,
    rejects: Sequence[RecordReject] = (),
) -> None:
    details: dict[str, Any] = {"sha256": digest}
    if error:
        details["errors"] = [{"kind": "push", "reason": error}]
    if rejects:  # validation counts them with the run's other rejects; this is the first word
        details["rejected_on_receipt"] = {
            "rejected": len(rejects),
            "reasons": dict(Counter(reject.reason for reject in rejects)),
            "first": rejects[0].detail[:500],
        }
    result = FeedRunResult(
        status=status,
        started_at=received_at,
        completed_at=received_at + timedelta(seconds=time.monotonic() - started),
        request_count=1,
        bytes_received=size,
        signals_fetched=records,
        error_message=error,
        error_details=details,
        window=hour_window(received_at),
        landing_file=landing_file,
    )
    with conn.transaction():
        # A refused push is the sender's fault, not the feed's: it never auto-disables it.
        finish_feed_run(conn, feed, run_id, result, disable_after_failures=2**31 - 1)


def _require_source(feed: Feed, source: str) -> None:
    if feed.source != source:
        raise PushRefused(f"feed {feed.id} is a {feed.source} feed, not a {source} feed", 409)
    if not feed.enabled:
        raise PushRefused(f"feed {feed.id} is disabled", 409)
    if feed.paused_at is not None:
        raise PushRefused(f"feed {feed.id} is paused (feeds resume)", 409)
    if feed.source_status in CLOSED_SOURCE_STATUSES:
        raise PushRefused(f"source {feed.source} is {feed.source_status}", 409)


def _webhook_secret(feed: Feed, encryption_key: Callable[[], bytes]) -> bytes:
    """Deliveries must be signed: a webhook feed without a secret accepts nothing."""
    if not feed.credentials_encrypted:
        raise PushRefused(f"webhook feed {feed.id} has no signing secret configured", 403)
    try:
        credentials = decrypt_json(
            feed.credentials_encrypted, key=encryption_key(), aad=credentials_aad(feed.id)
        )
    except SecretDecryptError:
        # The receiver's key is not the one this feed's secret was stored with: ours to fix.
        raise PushRefused(
            f"webhook feed {feed.id}: the receiver's encryption key cannot open its secret", 503
        ) from None
    secret = credentials.get("webhook_secret") if isinstance(credentials, dict) else None
    if not secret:
        raise PushRefused(f"webhook feed {feed.id} has no webhook_secret in its credentials", 403)
    return str(secret).encode("utf-8")
