"""Secrets at rest and in logs: AES-256-GCM envelopes, API-key hashes and redaction.

The encryption key comes from the environment variable `PREDICT_ENCRYPTION_KEY` (base64 or
urlsafe base64 of 32 random bytes; `generate_key()` makes one). Ciphertexts are JSON envelopes
so they can be stored in a JSONB column next to the row they belong to.

Associated data (AAD): pass `aad=` to bind a ciphertext to its row, for example
`aad=f"feed:{feed_id}".encode()`. The AAD is not stored in the envelope; decryption must pass the
same bytes, so an envelope copied onto another row fails to decrypt instead of leaking there.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

ENCRYPTION_KEY_ENV = "PREDICT_ENCRYPTION_KEY"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the 96-bit nonce GCM is specified for
ENVELOPE_VERSION = 1
ENVELOPE_ALG = "AES-256-GCM"
MASK = "***"

# The last word of a field name decides whether its value is a secret ("access_token", "apiKey",
# "client_secret"), so public ids such as Polymarket's "clob_token_ids" stay readable in logs.
_SECRET_LAST_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "key",
        "passphrase",
        "passwd",
        "password",
        "pwd",
        "secret",
        "sig",
        "signature",
        "token",
    }
)
_NAME_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

T = TypeVar("T")


class SecretKeyError(ValueError):
    """The encryption key is missing or malformed; the message never contains the key."""


class SecretDecryptError(ValueError):
    """An envelope cannot be decrypted; the message never contains plaintext or key."""


def generate_key() -> str:
    """A fresh random key as the urlsafe-base64 text to put in PREDICT_ENCRYPTION_KEY."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(text: str, *, name: str = ENCRYPTION_KEY_ENV) -> bytes:
    """Decode base64 or urlsafe-base64 text into a 32-byte key; errors name `name`, not the text."""
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    if not compact:
        raise SecretKeyError(f"{name} is empty; set it to the output of generate_key()")
    compact += "=" * (-len(compact) % 4)
    try:
        key = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{name} is not valid base64 text") from None
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"{name} must decode to {KEY_BYTES} bytes for AES-256, got {len(key)} bytes"
        )
    return key


def load_key_from_env(env: Mapping[str, str] = os.environ) -> bytes:
    """The 32-byte key from PREDICT_ENCRYPTION_KEY; SecretKeyError when missing or malformed."""
    text = env.get(ENCRYPTION_KEY_ENV)
    if text is None:
        raise SecretKeyError(
            f"{ENCRYPTION_KEY_ENV} is not set; set it to the output of "
            "predict_pipeline.secrets.generate_key()"
        )
    return decode_key(text)


def key_id(key: bytes) -> str:
    """A short, non-secret fingerprint of a key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(_checked_key(key)).hexdigest()[:8]


def encrypt_json(obj: Any, *, key: bytes, aad: bytes | str = b"") -> dict[str, Any]:
    """Encrypt a JSON-serialisable value into a JSON-serialisable envelope (fresh nonce)."""
    aesgcm = AESGCM(_checked_key(key))
    try:
        plaintext = json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        # The message names the offending type only; the value itself may be a secret.
        raise TypeError(f"secret value is not JSON-serialisable: {type(exc).__name__}") from None
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = aesgcm.encrypt(nonce, plaintext.encode("utf-8"), _aad_bytes(aad))
    return {
        "v": ENVELOPE_VERSION,
        "alg": ENVELOPE_ALG,
        "kid": key_id(key),
        "nonce": base64.b64encode(nonce).decode("ascii"),
        "ct": base64.b64encode(ciphertext).decode("ascii"),
    }


def decrypt_json(envelope: Mapping[str, Any], *, key: bytes, aad: bytes | str = b"") -> Any:
    """Decrypt an envelope made by `encrypt_json` with the same key and AAD."""
    if not isinstance(envelope, Mapping):
        raise SecretDecryptError(f"envelope must be a JSON object, got {type(envelope).__name__}")
    if envelope.get("v") != ENVELOPE_VERSION or envelope.get("alg") != ENVELOPE_ALG:
        raise SecretDecryptError(
            f"unsupported envelope (v={envelope.get('v')!r}, alg={envelope.get('alg')!r}); "
            f"expected v={ENVELOPE_VERSION}, alg={ENVELOPE_ALG}"
        )
    current_kid = key_id(key)
    if envelope.get("kid") != current_kid:
        raise SecretDecryptError(
            f"envelope was encrypted with key id {envelope.get('kid')!r}, "
            f"but the configured key has id {current_kid!r}"
        )
    nonce = _b64_field(envelope, "nonce")
    ciphertext = _b64_field(envelope, "ct")
    if len(nonce) != NONCE_BYTES:
        raise SecretDecryptError(f"envelope nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    try:
        plaintext = AESGCM(key).decrypt(nonce, ciphertext, _aad_bytes(aad))
    except InvalidTag:
        raise SecretDecryptError(
            "envelope failed authentication: wrong key, tampered ciphertext or AAD mismatch"
        ) from None
    return json.loads(plaintext.decode("utf-8"))


def sha256_hex(text: str) -> str:
    """The SHA-256 hex digest of `text` (UTF-8); API keys are stored only in this form."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def api_key_matches(presented: str, stored_sha256_hex: str) -> bool:
    """Compare a presented API key with a stored hash in constant time."""
    return hmac.compare_digest(sha256_hex(presented), stored_sha256_hex.lower())


def is_secret_name(name: str) -> bool:
    """True when a field, header or query-parameter name holds a credential."""
    words = _NAME_WORDS.findall(name)
    return bool(words) and words[-1].lower() in _SECRET_LAST_WORDS


class Redacted(Generic[T]):
    """Holds a secret value; `repr`, `str` and formatting show '***' so it cannot reach logs."""

    __slots__ = ("_value",)

    def __init__(self, value: T):
        self._value = value

    def reveal(self) -> T:
        """The wrapped value, for the one place that has to use it (a request header, a DSN)."""
        return self._value

    def __repr__(self) -> str:
        return f"Redacted({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Redacted) and self._value == other._value

    def __hash__(self) -> int:
        return hash((Redacted, self._value))

    def __copy__(self) -> Redacted[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Redacted[T]:
        return self

    def __reduce__(self) -> Any:
        # Pickled bytes end up in run storage and logs; a secret must not travel that way.
        raise TypeError("Redacted values cannot be pickled; pass the secret's name instead")


def redact(value: Any) -> Any:
    """A copy of a mapping/list tree with secret-named values and `Redacted` values masked."""
    if isinstance(value, Redacted):
        return MASK
    if isinstance(value, Mapping):
        return {
            key: (MASK if isinstance(key, str) and is_secret_name(key) else redact(item))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    return value


def _checked_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        size = len(key) if isinstance(key, bytes | bytearray) else type(key).__name__
        raise SecretKeyError(f"encryption key must be {KEY_BYTES} raw bytes, got {size}")
    return bytes(key)


def _aad_bytes(aad: bytes | str) -> bytes:
    return aad.encode("utf-8") if isinstance(aad, str) else bytes(aad)


def _b64_field(envelope: Mapping[str, Any], field: str) -> bytes:
    text = envelope.get(field)
    if not isinstance(text, str):
        raise SecretDecryptError(f"envelope field {field!r} is missing or not a string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SecretDecryptError(f"envelope field {field!r} is not valid base64") from None
