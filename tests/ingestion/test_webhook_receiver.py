"""The webhook receiver as it runs (`predict-pipeline webhooks serve` on a free port) against a
real PostgreSQL: replays, signatures, body limits, stalls, saturation, the key, health, shutdown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import select
import signal
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from psycopg import sql

from predict_pipeline.db.connection import connect
from predict_pipeline.ingestion.landing import LandingZone
from predict_pipeline.ingestion.runner import credentials_aad
from predict_pipeline.ingestion.webhook_server import MAX_BODY_BYTES
from predict_pipeline.secrets import encrypt_json, generate_key
from tests.conftest import _scratch_database
from tests.support.feeds import USER_ID, make_feed
from tests.support.receiver import (
    KEY_TEXT,
    SECRET,
    Receiver,
    delivery_body,
    receiver_env,
    running_receiver,
    serve_command,
    signed_headers,
    wait_until,
)


@pytest.fixture
def feed_id(conn):
    return make_feed(conn, "webhook", {}, credentials={"webhook_secret": SECRET})


@dataclass
class Shared:
    """A receiver started once per module (start-up costs seconds), with a fresh feed a test."""

    receiver: Receiver
    landing: LandingZone
    conn: psycopg.Connection
    feed_id: uuid.UUID


@pytest.fixture(scope="module")
def shared_receiver(pg_admin_url, template_db, tmp_path_factory) -> Iterator[tuple]:
    database = _scratch_database(pg_admin_url, template=template_db)
    url = next(database)
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO auth.users (id, email) VALUES (%s, 'feeds@example.com')", (USER_ID,)
        )
    landing = LandingZone(str(tmp_path_factory.mktemp("landing")))
    try:
        with running_receiver(url, landing.root) as receiver:
            yield url, receiver, landing
    finally:
        next(database, None)


@pytest.fixture
def shared(shared_receiver) -> Iterator[Shared]:
    url, receiver, landing = shared_receiver
    with connect(url, autocommit=True) as conn:
        feed = make_feed(conn, "webhook", {}, credentials={"webhook_secret": SECRET})
        yield Shared(receiver, landing, conn, feed)


def landed_pages(landing, feed_id=None) -> list[dict]:
    """The first record of every page landed (for `feed_id` only, when given)."""
    files = [f for f in landing.fs.find(landing.root) if f.endswith(".jsonl.gz")]
    files = [f for f in files if feed_id is None or f"/{feed_id}/" in f]
    return [json.loads(page.body_text)[0] for f in files for page in landing.read(f)]


def runs(conn, feed_id) -> list[tuple[str, str | None]]:
    return conn.execute(
        "SELECT status, error_message FROM prediction_feed_runs WHERE feed_id = %s"
        " ORDER BY started_at",
        (feed_id,),
    ).fetchall()


def head(feed_id, *lines: str) -> bytes:
    return "\r\n".join(
        [f"POST /webhooks/{feed_id} HTTP/1.1", "Host: receiver", *lines, "", ""]
    ).encode()


def read_answer(sock: socket.socket, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response, read until the server closes the socket."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head_text, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_text.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def connect_to(receiver) -> socket.socket:
    return socket.create_connection(("127.0.0.1", receiver.port), timeout=30)


# --- idempotency and signatures ---------------------------------------------------------------


def test_a_delivery_lands_once_however_often_its_id_is_replayed(shared):
    receiver, url = shared.receiver, shared.receiver.url(shared.feed_id)
    body = delivery_body("replayed")
    first = signed_headers(body, delivery_id="dlv-replayed")
    landed = httpx.post(url, content=body, headers=first)
    same = httpx.post(url, content=body, headers=first)
    retried = httpx.post(
        url, content=body, headers=signed_headers(body, delivery_id="dlv-replayed")
    )
    other_body = delivery_body("smuggled")
    reused = httpx.post(
        url, content=other_body, headers=signed_headers(other_body, delivery_id="dlv-replayed")
    )
    assert landed.status_code == 202 and landed.json()["records"] == 1
    run_id = landed.json()["feed_run_id"]
    for answer in (same, retried, reused):
        assert answer.status_code == 200
        assert answer.json() == {
            "records": 1,
            "feed_run_id": run_id,
            "delivery_id": "dlv-replayed",
            "duplicate": True,
        }
    assert runs(shared.conn, shared.feed_id) == [("SUCCESS", None)]
    assert [p["source_event_id"] for p in landed_pages(shared.landing, shared.feed_id)] == [
        "replayed"
    ]
    assert shared.conn.execute(
        "SELECT delivery_id, feed_run_id::text, body_sha256 FROM prediction_webhook_deliveries"
        " WHERE feed_id = %s",
        (shared.feed_id,),
    ).fetchall() == [("dlv-replayed", run_id, hashlib.sha256(body).hexdigest())]
    # Structured logs: one JSON object a line, a line per delivery, no secret or signature.
    receiver.wait_for("delivery", feed_id=str(shared.feed_id), status=200, duplicate=True)
    logged = [e for e in receiver.events() if e.get("feed_id") == str(shared.feed_id)]
    assert [(e["event"], e["status"], e["duplicate"]) for e in logged] == [
        ("delivery", 202, False),
        ("delivery", 200, True),
        ("delivery", 200, True),
        ("delivery", 200, True),
    ]
    log = "\n".join(receiver.lines)
    signature = first["X-Predict-Signature"].removeprefix("sha256=")
    assert SECRET not in log and KEY_TEXT not in log and signature not in log


def test_a_forged_or_malformed_delivery_is_refused_with_its_reason(shared):
    url = shared.receiver.url(shared.feed_id)
    body = json.dumps([{"source_event_id": "wh-1", "value": 0.7}]).encode()
    forged = httpx.post(url, content=body, headers=signed_headers(body, secret="not-the-secret"))
    broken_body = b'[{"source_event_id": "wh-2", "value": }]'
    broken_headers = signed_headers(broken_body, delivery_id="dlv-corrected")
    broken = httpx.post(url, content=broken_body, headers=broken_headers)
    assert forged.status_code == 401 and SECRET not in forged.text
    assert forged.json()["error"].endswith("does not match the timestamp, delivery id and body")
    assert broken.status_code == 400 and "line 1" in broken.json()["error"]
    assert [status for status, _ in runs(shared.conn, shared.feed_id)] == ["FAILED", "FAILED"]
    assert landed_pages(shared.landing, shared.feed_id) == []
    # A refused body does not use up its delivery id: the corrected delivery lands under it.
    fixed = json.dumps([{"source_event_id": "wh-2", "value": 0.4}]).encode()
    corrected = httpx.post(
        url, content=fixed, headers=signed_headers(fixed, delivery_id="dlv-corrected")
    )
    assert corrected.status_code == 202
    assert [p["source_event_id"] for p in landed_pages(shared.landing, shared.feed_id)] == ["wh-2"]


def test_concurrent_copies_of_one_delivery_land_once(shared):
    url = shared.receiver.url(shared.feed_id)
    body = delivery_body("raced")
    headers = signed_headers(body, delivery_id="dlv-raced")
    copies = 8
    start = threading.Barrier(copies)
    statuses: list[int] = []

    def send() -> None:
        with httpx.Client() as client:
            start.wait()
            statuses.append(client.post(url, content=body, headers=headers).status_code)

    senders = [threading.Thread(target=send) for _ in range(copies)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert sorted(statuses) == [200] * (copies - 1) + [202]
    assert runs(shared.conn, shared.feed_id) == [("SUCCESS", None)]
    assert [p["source_event_id"] for p in landed_pages(shared.landing, shared.feed_id)] == ["raced"]


def test_a_stale_or_old_style_signature_is_refused_and_nothing_lands(shared):
    url = shared.receiver.url(shared.feed_id)
    body = delivery_body("stale")
    an_hour_ago = signed_headers(body, sent_at=datetime.now(UTC) - timedelta(hours=1))
    digest = hmac.new(SECRET.encode(), body, "sha256").hexdigest()
    stale = httpx.post(url, content=body, headers=an_hour_ago)
    unstamped = httpx.post(url, content=body, headers={"X-Predict-Signature": f"sha256={digest}"})
    assert stale.status_code == 401
    assert stale.json()["error"].startswith("webhook: X-Predict-Timestamp is 36")
    assert stale.json()["error"].endswith("a stale or replayed delivery")
    assert unstamped.status_code == 401
    assert unstamped.json()["error"] == (
        "webhook: missing X-Predict-Timestamp header on a feed that has a secret"
    )
    assert [status for status, _ in runs(shared.conn, shared.feed_id)] == ["FAILED", "FAILED"]
    assert landed_pages(shared.landing, shared.feed_id) == []
    assert shared.conn.execute(
        "SELECT count(*) FROM prediction_webhook_deliveries WHERE feed_id = %s", (shared.feed_id,)
    ).fetchone() == (0,)


# --- body limits ------------------------------------------------------------------------------


@pytest.mark.parametrize("length", ["-1", "abc", "5e6", ""])
def test_a_negative_or_malformed_content_length_is_answered_400(shared, length):
    body = delivery_body("bad-length")
    signed = [f"{k}: {v}" for k, v in signed_headers(body).items()]
    with connect_to(shared.receiver) as sock:
        sock.sendall(head(shared.feed_id, f"Content-Length: {length}", *signed) + body)
        status, headers, answer = read_answer(sock)
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(answer)["error"].startswith("malformed HTTP request")
    assert httpx.get(f"{shared.receiver.base}/health").status_code == 200  # still serving
    assert runs(shared.conn, shared.feed_id) == []
    assert landed_pages(shared.landing, shared.feed_id) == []


def test_a_declared_oversized_body_is_refused_before_it_is_sent(shared):
    with connect_to(shared.receiver) as sock:
        # Only the head is sent: the answer cannot depend on reading the 53 MB.
        sock.sendall(head(shared.feed_id, f"Content-Length: {53 * 1024 * 1024}"))
        status, headers, answer = read_answer(sock)
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(answer) == {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    assert runs(shared.conn, shared.feed_id) == []
    assert landed_pages(shared.landing, shared.feed_id) == []


def test_a_chunked_body_stops_being_read_at_the_cap(shared):
    chunk = b"[" + b" " * (64 * 1024 - 1)
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    delivery = f"big-{shared.feed_id}"
    with connect_to(shared.receiver) as sock:
        sock.sendall(
            head(shared.feed_id, "Transfer-Encoding: chunked", f"X-Predict-Delivery: {delivery}")
        )
        # Send until the receiver answers or closes; a sender bound to 4x the cap fails here.
        while sent < 4 * MAX_BODY_BYTES:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(framed)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, _, answer = read_answer(sock)
    refused = shared.receiver.wait_for("delivery", delivery_id=delivery)
    assert status == 413 and json.loads(answer)["error"].startswith("body larger than")
    # The running count stopped the reading within one socket read (256 KiB) past the cap.
    assert MAX_BODY_BYTES < refused["bytes_read"] <= MAX_BODY_BYTES + 256 * 1024
    assert sent < 4 * MAX_BODY_BYTES
    assert runs(shared.conn, shared.feed_id) == []
    assert landed_pages(shared.landing, shared.feed_id) == []


def test_the_receiver_refuses_other_paths_and_unknown_feeds(shared):
    receiver, body = shared.receiver, delivery_body("x")
    unknown = httpx.post(receiver.url(uuid.uuid4()), content=body, headers=signed_headers(body))
    not_an_id = httpx.post(receiver.url("feed-1"), content=body, headers=signed_headers(body))
    upload = make_feed(shared.conn, "upload", {})
    wrong_kind = httpx.post(receiver.url(upload), content=body, headers=signed_headers(body))
    other_path = httpx.post(f"{receiver.base}/hooks/{shared.feed_id}", content=body)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "unknown feed"})
    assert not_an_id.status_code == 404 and other_path.status_code == 404
    assert wrong_kind.status_code == 409 and "not a webhook feed" in wrong_kind.json()["error"]
    assert landed_pages(shared.landing, upload) == []


# --- stalls, timeouts and saturation ----------------------------------------------------------


def test_stalled_connections_hold_no_threads_block_no_delivery_and_time_out(
    conn, db_url, landing, feed_id
):
    with running_receiver(db_url, landing.root, "--head-timeout", "5") as receiver:
        stalled = [connect_to(receiver) for _ in range(200)]
        try:
            for sock in stalled:
                sock.sendall(
                    b"POST /webhooks/" + str(feed_id).encode() + b" HTTP/1.1\r\nHost: x\r\n"
                )
            body = delivery_body("past-the-stall")
            landed = httpx.post(receiver.url(feed_id), content=body, headers=signed_headers(body))
            threads = receiver.threads()
            answers = [read_answer(sock) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()
    assert landed.status_code == 202
    assert threads <= 20  # main loop, 8 landing threads, pool and health workers; not 200
    assert {status for status, _, _ in answers} == {408}
    assert json.loads(answers[0][2]) == {"error": "the request head did not arrive within 5 s"}
    assert [page["source_event_id"] for page in landed_pages(landing)] == ["past-the-stall"]


def test_a_stalled_body_is_answered_408(conn, db_url, landing, feed_id):
    body = delivery_body("slow-body")
    signed = [f"{k}: {v}" for k, v in signed_headers(body).items()]
    with (
        running_receiver(db_url, landing.root, "--body-timeout", "2") as receiver,
        connect_to(receiver) as sock,
    ):
        sock.sendall(head(feed_id, f"Content-Length: {len(body)}", *signed) + body[:10])
        status, headers, answer = read_answer(sock)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(answer) == {"error": "the body did not arrive within 2 s"}
    assert runs(conn, feed_id) == [] and landed_pages(landing) == []


def test_saturation_is_answered_503_with_retry_after(conn, db_url, landing, feed_id):
    bodies = [delivery_body(f"held-{n}") for n in range(2)]
    third = delivery_body("third")
    third_headers = signed_headers(third)
    with running_receiver(db_url, landing.root, "--max-in-flight", "2") as receiver:
        held = []
        for body in bodies:
            sock = connect_to(receiver)
            signed = [f"{k}: {v}" for k, v in signed_headers(body).items()]
            sock.sendall(head(feed_id, f"Content-Length: {len(body)}", *signed) + body[:5])
            held.append((sock, body))

        def in_flight() -> int:
            return httpx.get(f"{receiver.base}/health").json()["in_flight"]

        wait_until(lambda: in_flight() == 2, what="two deliveries in flight")
        busy = httpx.post(receiver.url(feed_id), content=third, headers=third_headers)
        for sock, body in held:
            sock.sendall(body[5:])
        finished = [read_answer(sock)[0] for sock, _ in held]
        for sock, _ in held:
            sock.close()
        retried = httpx.post(receiver.url(feed_id), content=third, headers=third_headers)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json() == {"error": "2 deliveries in flight; retry later"}
    assert finished == [202, 202] and retried.status_code == 202
    assert sorted(page["source_event_id"] for page in landed_pages(landing)) == [
        "held-0",
        "held-1",
        "third",
    ]


# --- the key ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_text", "message"),
    [
        ("not-base64!!", "PREDICT_ENCRYPTION_KEY is not valid base64 text"),
        ("c2hvcnQ=", "PREDICT_ENCRYPTION_KEY must decode to 32 bytes for AES-256, got 5 bytes"),
        # Refused before the receiver starts: the stored envelopes name another key.
        (None, "is not the key this database's secrets were encrypted with"),
    ],
)
def test_a_bad_key_refuses_to_start_with_one_line(
    conn, db_url, landing, feed_id, key_text, message
):
    env = receiver_env(db_url, landing.root, key_text or generate_key())
    done = subprocess.run(
        serve_command(), env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("predict-pipeline: error: PREDICT_ENCRYPTION_KEY") and message in line


def test_a_feed_whose_secret_the_key_cannot_open_gets_503_while_others_land(
    conn, db_url, landing, feed_id
):
    stranger = make_feed(conn, "webhook", {})
    envelope = encrypt_json(
        {"webhook_secret": SECRET}, key=bytes(32), aad=credentials_aad(stranger)
    )
    conn.execute(
        "UPDATE prediction_data_feeds SET credentials_encrypted = %s WHERE id = %s",
        (psycopg.types.json.Jsonb(envelope), stranger),
    )
    body = delivery_body("opened")
    with running_receiver(db_url, landing.root) as receiver:
        warned = receiver.wait_for("feeds whose secret the key cannot open get 503")
        good = httpx.post(receiver.url(feed_id), content=body, headers=signed_headers(body))
        closed = httpx.post(receiver.url(stranger), content=body, headers=signed_headers(body))
    assert warned["feeds"] == [str(stranger)]
    assert good.status_code == 202
    assert closed.status_code == 503 and closed.headers["retry-after"] == "1"
    assert "cannot open its secret" in closed.json()["error"]


# --- health and shutdown ----------------------------------------------------------------------


def test_health_answers_ok_and_503_while_the_database_refuses(conn, db_url, landing, feed_id):
    database = conn.info.dbname
    with (
        running_receiver(db_url, landing.root) as receiver,
        psycopg.connect(db_url, dbname="postgres", autocommit=True) as admin,
    ):
        health = f"{receiver.base}/health"
        ok = httpx.get(health)
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(database))
        )
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )
        try:
            down = httpx.get(health, timeout=30)
        finally:
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(database))
            )
        wait_until(lambda: httpx.get(health, timeout=30).status_code == 200, what="recovery")
        body = delivery_body("after-recovery")
        landed = httpx.post(receiver.url(feed_id), content=body, headers=signed_headers(body))
    assert ok.status_code == 200
    assert ok.json() | {"pool": None} == {
        "status": "ok",
        "in_flight": 0,
        "max_in_flight": 32,
        "pool": None,
    }
    assert ok.json()["pool"]["pool_max"] == 8
    assert down.status_code == 503 and down.json()["status"] == "database unavailable"
    assert landed.status_code == 202


def test_sigterm_lets_the_delivery_in_flight_land_and_refuses_new_connections(
    db_url, landing, conn, feed_id
):
    body = delivery_body("in-flight")
    signed = [f"{k}: {v}" for k, v in signed_headers(body).items()]
    with running_receiver(db_url, landing.root) as receiver:
        sock = connect_to(receiver)
        sock.sendall(head(feed_id, f"Content-Length: {len(body)}", *signed) + body[:10])
        health = f"{receiver.base}/health"
        wait_until(lambda: httpx.get(health).json()["in_flight"] == 1, what="one in flight")
        receiver.process.send_signal(signal.SIGTERM)
        receiver.wait_for("draining")

        def refused() -> bool:
            try:
                socket.create_connection(("127.0.0.1", receiver.port), timeout=5).close()
            except ConnectionRefusedError:
                return True
            return False

        wait_until(refused, what="new connections refused")
        sock.sendall(body[10:])
        status, _, answer = read_answer(sock)
        sock.close()
        code = receiver.stop()
    assert status == 202 and json.loads(answer)["records"] == 1
    assert code == 0 and receiver.events()[-1]["event"] == "stopped"
    assert runs(conn, feed_id) == [("SUCCESS", None)]
    assert [page["source_event_id"] for page in landed_pages(landing)] == ["in-flight"]
