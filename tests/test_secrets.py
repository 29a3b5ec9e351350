"""Secrets at rest: AES-256-GCM envelopes, key loading, API-key hashes and redaction."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import pickle

import pytest

from predict_pipeline.secrets import (
    ENCRYPTION_KEY_ENV,
    Redacted,
    SecretDecryptError,
    SecretKeyError,
    api_key_matches,
    decrypt_json,
    encrypt_json,
    generate_key,
    is_secret_name,
    key_id,
    load_key_from_env,
    redact,
    sha256_hex,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
FEED_CREDENTIALS = {"api_key": "sk-live-abc123", "headers": {"X-Team": "forecasting"}}


def test_round_trip_keeps_the_value_and_the_envelope_shape():
    envelope = encrypt_json(FEED_CREDENTIALS, key=KEY)

    assert set(envelope) == {"v", "alg", "kid", "nonce", "ct"}
    assert envelope["v"] == 1
    assert envelope["alg"] == "AES-256-GCM"
    assert envelope["kid"] == hashlib.sha256(KEY).hexdigest()[:8] == key_id(KEY)
    assert len(base64.b64decode(envelope["nonce"])) == 12
    assert "sk-live-abc123" not in json.dumps(envelope)
    assert decrypt_json(json.loads(json.dumps(envelope)), key=KEY) == FEED_CREDENTIALS


def test_every_encryption_uses_a_fresh_nonce():
    first = encrypt_json(FEED_CREDENTIALS, key=KEY)
    second = encrypt_json(FEED_CREDENTIALS, key=KEY)
    assert first["nonce"] != second["nonce"]
    assert first["ct"] != second["ct"]
    assert decrypt_json(first, key=KEY) == decrypt_json(second, key=KEY) == FEED_CREDENTIALS


def test_wrong_key_is_refused_by_key_id():
    envelope = encrypt_json(FEED_CREDENTIALS, key=KEY)
    with pytest.raises(SecretDecryptError) as caught:
        decrypt_json(envelope, key=OTHER_KEY)
    assert f"key id {key_id(KEY)!r}" in str(caught.value)
    assert f"has id {key_id(OTHER_KEY)!r}" in str(caught.value)


def test_wrong_key_with_a_forged_key_id_fails_authentication():
    envelope = dict(encrypt_json(FEED_CREDENTIALS, key=KEY), kid=key_id(OTHER_KEY))
    with pytest.raises(SecretDecryptError, match="failed authentication"):
        decrypt_json(envelope, key=OTHER_KEY)


def test_tampered_ciphertext_is_refused_without_leaking_plaintext():
    envelope = encrypt_json(FEED_CREDENTIALS, key=KEY)
    ciphertext = bytearray(base64.b64decode(envelope["ct"]))
    ciphertext[0] ^= 0x01
    tampered = dict(envelope, ct=base64.b64encode(bytes(ciphertext)).decode())

    with pytest.raises(SecretDecryptError) as caught:
        decrypt_json(tampered, key=KEY)

    message = str(caught.value)
    assert message == (
        "envelope failed authentication: wrong key, tampered ciphertext or AAD mismatch"
    )
    assert "sk-live-abc123" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_aad_binds_the_ciphertext_to_its_row():
    envelope = encrypt_json(FEED_CREDENTIALS, key=KEY, aad=b"feed:42")
    assert decrypt_json(envelope, key=KEY, aad="feed:42") == FEED_CREDENTIALS
    with pytest.raises(SecretDecryptError, match="AAD mismatch"):
        decrypt_json(envelope, key=KEY, aad=b"feed:43")
    with pytest.raises(SecretDecryptError, match="AAD mismatch"):
        decrypt_json(envelope, key=KEY)


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        ("not-an-envelope", "envelope must be a JSON object, got str"),
        ({"v": 2, "alg": "AES-256-GCM"}, "unsupported envelope (v=2"),
        ({"v": 1, "alg": "AES-256-GCM", "kid": key_id(KEY)}, "'nonce' is missing"),
        (
            {"v": 1, "alg": "AES-256-GCM", "kid": key_id(KEY), "nonce": "%%%", "ct": "AA=="},
            "'nonce' is not valid base64",
        ),
        (
            {"v": 1, "alg": "AES-256-GCM", "kid": key_id(KEY), "nonce": "AAAA", "ct": "AA=="},
            "nonce must be 12 bytes, got 3",
        ),
    ],
)
def test_malformed_envelopes_are_refused(envelope, reason):
    with pytest.raises(SecretDecryptError) as caught:
        decrypt_json(envelope, key=KEY)
    assert reason in str(caught.value)


def test_non_json_values_are_refused_without_echoing_them():
    with pytest.raises(TypeError) as caught:
        encrypt_json({"token": b"raw-bytes-secret"}, key=KEY)
    assert "raw-bytes-secret" not in str(caught.value)


def test_generated_key_loads_from_the_environment():
    text = generate_key()
    key = load_key_from_env({ENCRYPTION_KEY_ENV: text})
    assert len(key) == 32
    assert base64.urlsafe_b64encode(key).decode() == text
    assert generate_key() != text


def test_standard_and_urlsafe_base64_both_load():
    raw = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in standard base64
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "+" in standard or "/" in standard
    assert load_key_from_env({ENCRYPTION_KEY_ENV: standard}) == raw
    assert load_key_from_env({ENCRYPTION_KEY_ENV: urlsafe}) == raw


def test_missing_key_error_names_the_variable():
    with pytest.raises(SecretKeyError) as caught:
        load_key_from_env({})
    assert f"{ENCRYPTION_KEY_ENV} is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            base64.b64encode(b"sixteen-byte-key").decode(),
            "must decode to 32 bytes for AES-256, got 16",
        ),
        ("not base64 at all!!", "is not valid base64 text"),
        ("   ", "is empty"),
    ],
)
def test_malformed_key_error_names_the_variable_but_not_the_value(value, reason):
    with pytest.raises(SecretKeyError) as caught:
        load_key_from_env({ENCRYPTION_KEY_ENV: value})
    message = str(caught.value)
    assert message.startswith(ENCRYPTION_KEY_ENV)
    assert reason in message
    if value.strip():
        assert value not in message
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_raw_key_of_the_wrong_size_is_refused():
    with pytest.raises(SecretKeyError, match="must be 32 raw bytes, got 16"):
        encrypt_json({}, key=b"0123456789abcdef")


def test_api_keys_are_stored_as_sha256_and_compared():
    stored = sha256_hex("pk_live_4f2a")
    assert stored == hashlib.sha256(b"pk_live_4f2a").hexdigest()
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert api_key_matches("pk_live_4f2a", stored)
    assert api_key_matches("pk_live_4f2a", stored.upper())
    assert not api_key_matches("pk_live_4f2b", stored)


def test_redact_masks_nested_secrets_and_keeps_the_rest():
    config = {
        "url": "https://api.example.org/v1/markets",
        "auth": {"username": "bot", "password": "hunter2"},
        "headers": {"Authorization": "Bearer tok", "Accept": "application/json"},
        "sources": [
            {"name": "kalshi", "apiKey": "k-1", "clob_token_ids": ["7156"]},
            {"name": "custom", "client_secret": "cs", "access_token": "at"},
        ],
        "wrapped": Redacted("pw"),
        "rate_limit_rpm": 60,
    }

    masked = redact(config)

    assert masked == {
        "url": "https://api.example.org/v1/markets",
        "auth": "***",
        "headers": {"Authorization": "***", "Accept": "application/json"},
        "sources": [
            {"name": "kalshi", "apiKey": "***", "clob_token_ids": ["7156"]},
            {"name": "custom", "client_secret": "***", "access_token": "***"},
        ],
        "wrapped": "***",
        "rate_limit_rpm": 60,
    }
    assert config["auth"] == {"username": "bot", "password": "hunter2"}  # input untouched
    json.dumps(masked)


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("X-API-Key", True),
        ("api_key", True),
        ("apiKey", True),
        ("refresh_token", True),
        ("passphrase", True),
        ("Cookie", True),
        ("token_id", False),
        ("clobTokenIds", False),
        ("tokens", False),
        ("series_ticker", False),
    ],
)
def test_secret_names(name, secret):
    assert is_secret_name(name) is secret


def test_redacted_never_shows_its_value():
    secret = Redacted("hunter2")
    assert repr(secret) == "Redacted('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert "hunter2" not in repr({"password": secret})
    assert secret.reveal() == "hunter2"
    assert secret == Redacted("hunter2") and secret != Redacted("other")
    assert copy.deepcopy({"s": secret})["s"] is secret
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
