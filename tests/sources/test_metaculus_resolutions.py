"""Metaculus's terminal states in both API shapes: the posts API's `question.resolution`
("yes", "no", "ambiguous", "annulled", a multiple-choice option) and the earlier api2's numbers
(1, 0, -1, -2) with `active_state`.

The posts-API cases are the recorded post 578 (fixtures/payloads/SOURCES.md), open when it was
recorded, with `status` and `resolution` set to each documented value. The api2 listing item
is built from the documented field names; the api2 question details are real recordings
(fixtures/real/SOURCES.md, TetraspaceW/metaculus-tetra).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.sources import metaculus
from predict_pipeline.sources.base import read_page
from tests.real.recordings import metaculus_api2_questions

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"
FETCHED_AT = datetime(2025, 8, 25, 19, 22, tzinfo=UTC)


def _post() -> dict:
    return json.loads((PAYLOADS / "metaculus_post_detail_with_cp.json").read_text())


@pytest.mark.parametrize(
    ("resolution", "outcome", "status"),
    [
        ("yes", "YES", "resolved"),
        ("no", "NO", "resolved"),
        ("ambiguous", "AMBIGUOUS", "resolved"),
        ("annulled", "CANCELLED", "cancelled"),
        (None, None, "resolved"),
    ],
)
def test_a_resolved_binary_post_settles_as_metaculus_says(resolution, outcome, status):
    post = _post()
    post["question"] = {**post["question"], "status": "resolved", "resolution": resolution}
    page = read_page(metaculus.ADAPTER, post, fetched_at=FETCHED_AT)
    [record] = page.records
    assert (record.source_event_id, record.market.resolution, record.market.status) == (
        "578",
        outcome,
        status,
    )


def test_an_unknown_binary_resolution_rejects_the_post_alone():
    first, second = _post(), _post()
    first["question"] = {**first["question"], "resolution": "maybe"}
    body = {"results": [first, second], "next": None, "previous": None}
    page = read_page(metaculus.ADAPTER, body, fetched_at=FETCHED_AT)
    [reject] = page.rejects
    assert (reject.item_index, reject.source_event_id) == (0, "578")
    assert "unknown value 'maybe'" in reject.detail
    assert [r.source_event_id for r in page.records] == ["578"]


@pytest.mark.parametrize(
    ("number", "outcome"),
    [(1.0, "YES"), (0.0, "NO"), (-1.0, "AMBIGUOUS"), (-2.0, "CANCELLED"), (None, None)],
)
def test_an_api2_question_reads_its_numeric_resolution(number, outcome):
    item = {
        "id": 3479,
        "title": "Will it happen?",
        "possibilities": {"type": "binary"},
        "active_state": "RESOLVED" if number is not None else "OPEN",
        "close_time": "2021-01-01T00:00:00Z",
        "resolve_time": "2021-01-02T00:00:00Z",
        "resolution": number,
        "community_prediction": {"full": {"q1": 0.2, "q2": 0.35, "q3": 0.5}},
    }
    body = {"results": [item], "next": None, "previous": None}
    [record] = read_page(metaculus.ADAPTER, body, fetched_at=FETCHED_AT).records
    assert (record.source_event_id, record.value, record.market.resolution) == (
        "3479",
        0.35,
        outcome,
    )
    status = {None: "open", -2.0: "cancelled"}.get(number, "resolved")
    assert record.market.status == status
    if number is not None:
        assert record.market.resolution_time == datetime(2021, 1, 2, tzinfo=UTC)


def test_real_api2_question_details_read_resolved_without_active_state():
    """The recorded details carry no `active_state` (their `status` "A" is moderation):
    7386 resolved 1.0 and 455 resolved -1.0 are resolved, 1493 (no resolution) stays
    unknown, and the continuous, discussion and hidden-CP questions give no record."""
    recording = metaculus_api2_questions()
    assert {item["status"] for item in recording.items} == {"A"}
    assert not any("active_state" in item for item in recording.items)
    page = read_page(metaculus.ADAPTER, recording.payload, fetched_at=recording.fetched_at)
    read = {
        r.source_event_id: (r.value, r.market.status, r.market.resolution) for r in page.records
    }
    assert read == {
        "7386": (0.99, "resolved", "YES"),
        "455": (0.05, "resolved", "AMBIGUOUS"),
        "1493": (0.2, "unknown", None),
    }
    assert page.rejects == []
    skipped = {s.item: s.reason for s in page.skipped}
    assert skipped["8541"] == "community prediction not visible (latest null)"
    assert skipped["956"] == "question type 'api2 discussion' has no probability"
    assert sum("api2 continuous" in reason for reason in skipped.values()) == 6
