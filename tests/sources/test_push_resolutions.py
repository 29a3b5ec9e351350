"""Uploads take each platform's own resolution values; a value that maps to no outcome rejects
its row with the reason, never the file."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from predict_pipeline.sources.push.delivery import parse_upload

RECEIVED_AT = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)


def parsed(data: str, filename: str = "signals.csv"):
    return parse_upload(data.encode("utf-8"), filename, feed_config={}, received_at=RECEIVED_AT)


@pytest.mark.parametrize(
    ("given", "outcome", "probability"),
    [
        # Every platform's documented words, in the case each one writes them.
        ("YES", "YES", None),
        ("NO", "NO", None),
        ("AMBIGUOUS", "AMBIGUOUS", None),
        ("CANCELLED", "CANCELLED", None),
        ("MKT", "AMBIGUOUS", None),  # Manifold, without its resolutionProbability column
        ("CANCEL", "CANCELLED", None),  # Manifold
        ("yes", "YES", None),  # Kalshi
        ("no", "NO", None),
        ("void", "CANCELLED", None),
        ("scalar", "AMBIGUOUS", None),
        ("annulled", "CANCELLED", None),  # Metaculus
        ("ambiguous", "AMBIGUOUS", None),
        ("-1", "AMBIGUOUS", None),  # Metaculus api2
        ("-2", "CANCELLED", None),
        ("true", "YES", None),
        ("False", "NO", None),
        ("1", "YES", None),
        ("0", "NO", None),
        ("1.0", "YES", None),
        ("0.37", "AMBIGUOUS", 0.37),  # resolved to a probability
        ('"[""1"", ""0""]"', "YES", None),  # Polymarket outcomePrices, Yes first
        ('"[""0"", ""1""]"', "NO", None),
        ('"[""0.5"", ""0.5""]"', "AMBIGUOUS", 0.5),
    ],
)
def test_a_platform_resolution_value_maps_to_its_outcome(given, outcome, probability):
    records, rejects = parsed(f"source_event_id,value,resolution\nq1,0.5,{given}\n")
    assert rejects == []
    [record] = records
    assert (record.market.resolution, record.market.resolution_probability) == (
        outcome,
        probability,
    )
    assert record.market.status == "resolved"


def test_manifold_mkt_keeps_its_resolution_probability_from_json():
    body = json.dumps(
        [
            {"source_event_id": "m1", "value": 0.47, "resolution": "MKT",
             "resolution_probability": 0.4671959490356428},
            {"source_event_id": "m2", "value": 0.9, "resolution": True},
            {"source_event_id": "m3", "value": 0.1, "resolution": 0},
            {"source_event_id": "m4", "value": 0.5, "resolution": ["0.5", "0.5"]},
        ]
    )  # fmt: skip
    records, rejects = parsed(body, "signals.json")
    assert rejects == []
    assert [(r.market.resolution, r.market.resolution_probability) for r in records] == [
        ("AMBIGUOUS", 0.4671959490356428),
        ("YES", None),
        ("NO", None),
        ("AMBIGUOUS", 0.5),
    ]


def test_an_unmappable_value_rejects_its_row_alone_with_the_reason():
    text = (
        "source_event_id,value,resolution,status\n"
        "good-1,0.5,MKT,\n"
        "bad-word,0.5,MAYBE,\n"
        "bad-number,0.5,1.5,\n"
        'bad-prices,0.5,"[""0.7"", ""0.7""]",\n'
        "bad-status,0.5,,halted\n"
        "good-2,0.25,annulled,\n"
    )
    records, rejects = parsed(text)
    assert [(r.source_event_id, r.market.resolution) for r in records] == [
        ("good-1", "AMBIGUOUS"),
        ("good-2", "CANCELLED"),
    ]
    assert [(r.source_event_id, r.reason, r.item_index) for r in rejects] == [
        ("bad-word", "unmappable_resolution", 1),
        ("bad-number", "unmappable_resolution", 2),
        ("bad-prices", "unmappable_resolution", 3),
        ("bad-status", "unmappable_status", 4),
    ]
    assert rejects[0].detail.startswith("line 3, column 3 (resolution): unmappable resolution")
    assert "'MAYBE'" in rejects[0].detail
    assert rejects[3].detail.startswith("line 6, column 4 (status): unknown status 'halted'")


def test_a_probability_outside_zero_to_one_rejects_its_row():
    records, rejects = parsed(
        "source_event_id,value,resolution,resolution_probability\na,0.5,MKT,0.25\nb,0.5,MKT,1.25\n"
    )
    assert [(r.source_event_id, r.market.resolution_probability) for r in records] == [("a", 0.25)]
    [reject] = rejects
    assert (reject.source_event_id, reject.reason) == ("b", "unmappable_resolution")
