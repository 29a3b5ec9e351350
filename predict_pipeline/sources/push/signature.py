"""Signed webhook deliveries: the headers a sender adds (`sign_delivery`) and the receiver's
constant-time check of them (`verify_signature`), described in the package docstring."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

SIGNATURE_HEADER = "X-Predict-Signature"
TIMESTAMP_HEADER = "X-Predict-Timestamp"
DELIVERY_HEADER = "X-Predict-Delivery"
# How far a delivery's signed timestamp may be from the receiver's clock; older ones are replays.
SIGNATURE_TOLERANCE = timedelta(minutes=5)
_SIGNATURE = re.compile(r"sha256=([0-9a-fA-F]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class SignatureError(ValueError):
    """A webhook delivery whose signature is missing or wrong. Never carries the secret."""


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    """What a verified signature vouches for besides the body: the sender's id and time."""

    delivery_id: str
    sent_at: datetime


def signed_message(timestamp: int, delivery_id: str, body: bytes) -> bytes:
    """What the signature covers: the timestamp and delivery id bind the body to one sending."""
    return f"{timestamp}.{delivery_id}.".encode("ascii") + body


def sign_delivery(
    secret: str | bytes,
    body: bytes,
    *,
    sent_at: datetime,
    delivery_id: str,
    header: str = SIGNATURE_HEADER,
) -> dict[str, str]:
    """The headers that make `body` a signed delivery (what verify_signature checks)."""
    if _DELIVERY_ID.fullmatch(delivery_id) is None:
        raise ValueError("a delivery id is 1-128 characters of A-Z a-z 0-9 . _ : -")
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    timestamp = int(sent_at.timestamp())
    digest = hmac.new(key, signed_message(timestamp, delivery_id, body), hashlib.sha256)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        DELIVERY_HEADER: delivery_id,
        header: f"sha256={digest.hexdigest()}",
    }


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: bytes,
    *,
    now: datetime,
    header: str = SIGNATURE_HEADER,
    tolerance: timedelta = SIGNATURE_TOLERANCE,
) -> SignedDelivery:
    """Check the signature in constant time, then that it was sent within `tolerance` of `now`.

    SignatureError names the header at fault and never carries the secret or the digest.
    """
    if not secret:
        raise ValueError("webhook secret is empty; store a secret or none at all")
    provided = _header_values(headers, (header, TIMESTAMP_HEADER, DELIVERY_HEADER))
    for name, value in zip((header, TIMESTAMP_HEADER, DELIVERY_HEADER), provided, strict=True):
        if value is None:
            raise SignatureError(f"webhook: missing {name} header on a feed that has a secret")
    signature, timestamp, delivery_id = (value.strip() for value in provided if value is not None)
    match = _SIGNATURE.fullmatch(signature)
    if match is None:
        raise SignatureError(f"webhook: {header} must look like 'sha256=<64 hex digits>'")
    if _TIMESTAMP.fullmatch(timestamp) is None:
        raise SignatureError(f"webhook: {TIMESTAMP_HEADER} must be the unix time in seconds")
    if _DELIVERY_ID.fullmatch(delivery_id) is None:
        raise SignatureError(
            f"webhook: {DELIVERY_HEADER} must be 1-128 characters of A-Z a-z 0-9 . _ : -"
        )
    message = signed_message(int(timestamp), delivery_id, body)
    expected = hmac.new(secret, message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group(1).lower()):
        raise SignatureError(
            f"webhook: {header} does not match the timestamp, delivery id and body"
        )
    sent_at = datetime.fromtimestamp(int(timestamp), UTC)
    skew = abs((now - sent_at).total_seconds())
    if skew > tolerance.total_seconds():
        raise SignatureError(
            f"webhook: {TIMESTAMP_HEADER} is {skew:.0f} s from the receiver's clock, more than "
            f"the {tolerance.total_seconds():.0f} s tolerated: a stale or replayed delivery"
        )
    return SignedDelivery(delivery_id, sent_at)


def _header_values(headers: Mapping[str, str], names: tuple[str, ...]) -> list[str | None]:
    """Values of `names`, looked up case-insensitively as HTTP header names are."""
    lowered = {key.lower(): value for key, value in headers.items()}
    return [lowered.get(name.lower()) for name in names]
