"""Stage 2's validation contract: every rule by its name, its boundaries, and robustness."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.config import config_context

from predict_pipeline.model import SIGNAL_TYPES
from predict_pipeline.signals.faults import MAX_RAW_DATA_BYTES
from predict_pipeline.signals.validation import (
    CHECK_NAMES,
    DEFAULT_CLOCK_SKEW,
    MAX_ABS_VALUE,
    MAX_NARRATIVE_CHARS,
    rejection_summary,
    signal_schema,
    validate_signals,
)

NOW = datetime(2026, 11, 22, 15, 40, tzinfo=UTC)
FETCHED = NOW - timedelta(minutes=3)
LONE_SURROGATE = "\ud800"


def signal(**overrides: Any) -> dict[str, Any]:
    """One good MARKET_PRICE row as the frame builder makes it; overrides change fields."""
    row = {
        "feed_id": "6f1c0d2e-0000-4000-8000-000000000001",
        "feed_run_id": "6f1c0d2e-0000-4000-8000-0000000000aa",
        "landing_file": "polymarket/2026/11/22/page-0003.json",
        "page_index": 3,
        "record_index": 0,
        "source": "polymarket",
        "source_event_id": "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1",
        "signal_type": "MARKET_PRICE",
        "value": 0.42,
        "fetched_at": FETCHED,
        "source_url": "https://polymarket.com/event/fed-decision-in-december",
        "narrative": None,
        "raw_data": {"id": "516710", "bestBid": 0.41, "bestAsk": 0.43},
        "weight": 1.0,
        "reliability": 0.9,
        "title": "Fed decreases interest rates by 25 bps after December 2026 meeting?",
        "slug": "fed-decreases-interest-rates-by-25-bps-after-december-2026-meeting",
        "category_hints": ["economy"],
        "close_time": datetime(2026, 12, 10, 19, tzinfo=UTC),
        "status": "open",
        "resolution": None,
        "resolution_time": None,
        "parent_id": "fed-decision-in-december",
        "outcome": "Yes",
    }
    row.update(overrides)
    return row


def frame(*rows: dict[str, Any], index: Any = None) -> pd.DataFrame:
    records = [{**row, "record_index": i} for i, row in enumerate(rows)]
    return pd.DataFrame(records, columns=list(signal()), index=index)


def reasons_of(result) -> dict[Any, list[str]]:
    return dict(zip(result.rejected.index, result.rejected["reasons"], strict=True))


def verdict(row: dict[str, Any], **options: Any) -> list[str]:
    """The reasons one row is rejected for; [] when it is valid."""
    result = validate_signals(frame(row), now=NOW, **options)
    assert len(result.valid) + len(result.rejected) == 1
    return [] if len(result.valid) else list(result.rejected["reasons"].iat[0])


# --- a page with good rows and one of each kind of bad row ---------------------------------

MIXED_PAGE = [
    (signal(), []),
    (signal(signal_type="NEWS", value=None, narrative="Fed minutes show a split vote"), []),
    (signal(signal_type="SENTIMENT", value=-0.3), []),
    (signal(signal_type="VOLUME", value=1250.5), []),
    (signal(signal_type="EXPERT", value=0.7, reliability=None), []),
    (signal(signal_type="PRICE"), ["signal_type_known"]),
    (signal(value=None), ["value_present"]),
    (signal(signal_type="SOCIAL", value=float("inf")), ["value_finite"]),
    (signal(signal_type="NEWS", value=2_000_000.0), ["value_fits_column"]),
    (signal(value=1.2), ["probability_in_unit_interval"]),
    (signal(signal_type="SENTIMENT", value=1.5), ["sentiment_in_range"]),
    (signal(signal_type="VOLUME", value=-3.0), ["volume_non_negative"]),
    (signal(fetched_at=datetime(2026, 11, 22, 15, 37)), ["fetched_at_timezone_aware"]),
    (signal(fetched_at=NOW + timedelta(hours=1)), ["fetched_at_not_in_future"]),
    (signal(source_event_id=""), ["source_event_id_present"]),
    (signal(weight=7.0), ["weight_in_range"]),
    (signal(reliability=1.5), ["reliability_in_range"]),
    (signal(narrative="x" * (MAX_NARRATIVE_CHARS + 1)), ["narrative_size"]),
    (signal(raw_data={"tags": {"fed", "rates"}}), ["raw_data_size"]),
    (signal(source_url="https://polymarket.com/event/\x00"), ["text_valid_utf8"]),
    (signal(value=1.5, weight=-1.0), ["probability_in_unit_interval", "weight_in_range"]),
]


def test_mixed_page_splits_into_valid_rows_and_rows_rejected_for_exactly_their_reasons():
    page = frame(*(row for row, _ in MIXED_PAGE))
    result = validate_signals(page, now=NOW)

    expected = {i: reasons for i, (_, reasons) in enumerate(MIXED_PAGE) if reasons}
    assert reasons_of(result) == expected
    assert list(result.valid.index) == [0, 1, 2, 3, 4]
    assert len(result.valid) + len(result.rejected) == len(page) == 21
    # Provenance and market facts are carried through untouched.
    assert list(result.valid.columns) == list(page.columns)
    assert list(result.rejected.columns) == [*page.columns, "reasons", "detail"]
    assert result.valid["record_index"].tolist() == [0, 1, 2, 3, 4]
    assert result.rejected.loc[9, "landing_file"] == "polymarket/2026/11/22/page-0003.json"
    assert result.rejected.loc[9, "category_hints"] == ["economy"]
    # The naive row made fetched_at an object column; valid rows come back as UTC datetimes.
    assert page["fetched_at"].dtype == object
    assert str(result.valid["fetched_at"].dtype) == "datetime64[ns, UTC]"
    assert result.valid["fetched_at"].tolist() == [pd.Timestamp(FETCHED)] * 5
    assert result.valid["value"].tolist()[0] == 0.42


def test_details_name_the_first_failure_with_the_offending_value():
    result = validate_signals(frame(*(row for row, _ in MIXED_PAGE)), now=NOW)
    detail = result.rejected["detail"]
    assert detail[5] == (
        "signal_type_known: signal_type 'PRICE' is not one of MARKET_PRICE, SENTIMENT, VOLUME, "
        "NEWS, SOCIAL, EXPERT, MANUAL"
    )
    assert detail[6] == "value_present: value is missing, which a MARKET_PRICE signal needs"
    assert detail[9] == (
        "probability_in_unit_interval: MARKET_PRICE value 1.2 is not a probability in [0, 1]"
    )
    assert detail[12] == (
        "fetched_at_timezone_aware: fetched_at 2026-11-22T15:37:00 has no timezone"
    )
    assert detail[13] == (
        "fetched_at_not_in_future: fetched_at 2026-11-22T16:40:00+00:00 is in the future "
        "(now + 0:05:00 is 2026-11-22T15:45:00+00:00)"
    )
    assert detail[17] == "narrative_size: narrative has 10001 characters, over 10000"
    assert detail[18] == (
        "raw_data_size: raw_data is not JSON-serialisable "
        "(TypeError: Object of type set is not JSON serializable)"
    )
    assert detail[19] == (
        "text_valid_utf8: source_url 'https://polymarket.com/event/\\x00' contains a NUL character"
    )
    # Two failures: the detail names the one first in CHECK_NAMES order.
    assert detail[20] == (
        "probability_in_unit_interval: MARKET_PRICE value 1.5 is not a probability in [0, 1]"
    )


def test_details_are_truncated():
    long_title = "Will it rain? " * 100 + LONE_SURROGATE
    result = validate_signals(frame(signal(title=long_title)), now=NOW)
    detail = result.rejected["detail"].iat[0]
    assert detail.startswith("text_valid_utf8: title 'Will it rain? Will it rain?")
    assert detail.endswith("contains a lone surrogate (not UTF-8)")
    assert len(detail) < 160
    detail.encode("utf-8")  # the repr escaped the surrogate

    unserialisable = type("ObservationWithAVeryLongName" * 10, (), {})()
    result = validate_signals(frame(signal(raw_data={"observation": unserialisable})), now=NOW)
    detail = result.rejected["detail"].iat[0]
    assert detail.startswith(
        "raw_data_size: raw_data is not JSON-serialisable (TypeError: Object of type "
        "ObservationWithAVeryLongName"
    )
    assert len(detail) == 240 and detail.endswith("…")


# --- boundaries -----------------------------------------------------------------------------

SKEW = DEFAULT_CLOCK_SKEW


@pytest.mark.parametrize(
    ("overrides", "reasons"),
    [
        ({"value": 0.0}, []),
        ({"value": 1.0}, []),
        ({"value": 1.0001}, ["probability_in_unit_interval"]),
        ({"value": -0.0001}, ["probability_in_unit_interval"]),
        ({"signal_type": "EXPERT", "value": 1.0001}, ["probability_in_unit_interval"]),
        ({"signal_type": "MANUAL", "value": 1.5}, ["probability_in_unit_interval"]),
        ({"signal_type": "MANUAL", "value": None}, []),
        ({"signal_type": "SENTIMENT", "value": -1.0}, []),
        ({"signal_type": "SENTIMENT", "value": 1.0}, []),
        ({"signal_type": "SENTIMENT", "value": -1.01}, ["sentiment_in_range"]),
        ({"signal_type": "SENTIMENT", "value": None}, ["value_present"]),
        ({"signal_type": "VOLUME", "value": 0.0}, []),
        ({"signal_type": "VOLUME", "value": -0.01}, ["volume_non_negative"]),
        ({"signal_type": "VOLUME", "value": float("nan")}, ["value_present"]),
        ({"signal_type": "NEWS", "value": MAX_ABS_VALUE}, []),
        ({"signal_type": "NEWS", "value": 1_000_000.0}, ["value_fits_column"]),
        ({"signal_type": "NEWS", "value": -1_000_000.0}, ["value_fits_column"]),
        ({"signal_type": "SOCIAL", "value": float("-inf")}, ["value_finite"]),
        ({"weight": 5.0}, []),
        ({"weight": 0.0}, []),
        ({"weight": 5.01}, ["weight_in_range"]),
        ({"weight": -0.01}, ["weight_in_range"]),
        ({"weight": float("nan")}, ["weight_in_range"]),
        ({"reliability": 1.0}, []),
        ({"reliability": None}, []),
        ({"reliability": 1.01}, ["reliability_in_range"]),
        ({"fetched_at": NOW + SKEW}, []),
        ({"fetched_at": NOW + SKEW + timedelta(seconds=1)}, ["fetched_at_not_in_future"]),
        ({"fetched_at": datetime(2026, 11, 22, 18, 44, tzinfo=timezone(timedelta(hours=3)))}, []),
        (
            {"fetched_at": datetime(2026, 11, 22, 18, 46, tzinfo=timezone(timedelta(hours=3)))},
            ["fetched_at_not_in_future"],
        ),
        ({"fetched_at": datetime(2026, 11, 22, 15, 37)}, ["fetched_at_timezone_aware"]),
        ({"fetched_at": "2026-11-22T15:37:00Z"}, ["fetched_at_timezone_aware"]),
        ({"fetched_at": None}, ["fetched_at_timezone_aware"]),
        ({"narrative": "x" * MAX_NARRATIVE_CHARS}, []),
        ({"narrative": "x" * (MAX_NARRATIVE_CHARS + 1)}, ["narrative_size"]),
        ({"narrative": "Rates\x00held"}, ["text_valid_utf8"]),
        ({"narrative": "Rates held " + LONE_SURROGATE}, ["text_valid_utf8"]),
        ({"narrative": "Rates held 😀 — “quoted”"}, []),
        ({"title": "Fed" + LONE_SURROGATE}, ["text_valid_utf8"]),
        ({"source_event_id": "0x5f" + LONE_SURROGATE}, ["text_valid_utf8"]),
        ({"source_event_id": "   "}, ["source_event_id_present"]),
        ({"raw_data": {"tags": {"fed"}}}, ["raw_data_size"]),
        ({"raw_data": {"bestBid": float("nan")}}, ["raw_data_size"]),
        ({"raw_data": {(1, 2): "tuple key"}}, ["raw_data_size"]),
        ({"raw_data": ["not", "an", "object"]}, ["raw_data_size"]),
        ({"raw_data": None}, []),
        ({"raw_data": {"blob": "x" * (MAX_RAW_DATA_BYTES - 11)}}, []),
        ({"raw_data": {"blob": "x" * (MAX_RAW_DATA_BYTES - 10)}}, ["raw_data_size"]),
        ({"raw_data": {"blob": "é" * ((MAX_RAW_DATA_BYTES - 11) // 2)}}, []),
        ({"raw_data": {"blob": "é" * ((MAX_RAW_DATA_BYTES - 11) // 2 + 1)}}, ["raw_data_size"]),
        ({"raw_data": {"nested": [{"note": "a\x00b"}]}}, ["text_valid_utf8"]),
        ({"raw_data": {LONE_SURROGATE: 1}}, ["text_valid_utf8"]),
        ({"raw_data": {"path": "C:\\u0000 is text, not NUL"}}, []),
        ({"raw_data": {"tags": {"a\x00"}}}, ["raw_data_size", "text_valid_utf8"]),
    ],
)
def test_boundaries(overrides: dict[str, Any], reasons: list[str]):
    assert verdict(signal(**overrides)) == reasons


def test_clock_skew_is_a_parameter():
    row = signal(fetched_at=NOW + timedelta(seconds=1))
    assert verdict(row, clock_skew=timedelta(0)) == ["fetched_at_not_in_future"]
    assert verdict(row, clock_skew=timedelta(seconds=1)) == []


def test_a_missing_event_id_is_rejected_only_for_pull_sources():
    row = signal(source_event_id=None)
    assert verdict(row, pull_source=True) == ["source_event_id_present"]
    assert verdict(row, pull_source=False) == []
    assert verdict(signal(source_event_id=""), pull_source=False) == []


def test_object_number_columns_are_judged_and_come_back_as_floats():
    page = frame(
        signal(value=0.25),
        signal(value="0.5"),
        signal(weight="heavy"),
        signal(value=True),
    )
    assert page["value"].dtype == object
    result = validate_signals(page, now=NOW)
    assert reasons_of(result) == {
        1: ["value_finite"],
        2: ["weight_in_range"],
        3: ["value_finite"],
    }
    assert result.valid["value"].dtype == np.float64
    assert result.valid["value"].tolist() == [0.25]
    assert result.valid["weight"].tolist() == [1.0]


def test_sparse_bad_raw_data_among_many_rows_is_found_exactly():
    rows = [signal(raw_data={"id": str(i), "bestBid": i / 2000}) for i in range(2000)]
    rows[7] = signal(raw_data={"id": "7", "bestBid": float("inf")})
    rows[1500] = signal(raw_data={"id": "1500", "note": "a\x00"})
    rows[1999] = signal(raw_data={"id": "1999", "blob": "x" * MAX_RAW_DATA_BYTES})
    result = validate_signals(frame(*rows), now=NOW)
    assert reasons_of(result) == {
        7: ["raw_data_size"],
        1500: ["text_valid_utf8"],
        1999: ["raw_data_size"],
    }
    assert result.rejected.loc[1999, "detail"] == (
        "raw_data_size: raw_data is 65559 bytes as JSON, over 65536"
    )


def test_fetched_at_in_another_zone_or_unit_is_read_as_utc():
    paris = timezone(timedelta(hours=1))
    page = frame(signal(fetched_at=datetime(2026, 11, 22, 16, 30, tzinfo=paris)))
    page["fetched_at"] = page["fetched_at"].astype("datetime64[us, Europe/Paris]")
    result = validate_signals(page, now=NOW)
    assert str(result.valid["fetched_at"].dtype) == "datetime64[ns, UTC]"
    assert result.valid["fetched_at"].iat[0] == pd.Timestamp("2026-11-22T15:30:00Z")


def test_timestamps_beyond_the_nanosecond_range_are_out_of_the_accepted_range():
    far_future = datetime(9999, 1, 1, tzinfo=UTC)
    far_past = datetime(1066, 10, 14, tzinfo=UTC)
    result = validate_signals(
        frame(signal(fetched_at=far_future), signal(fetched_at=far_past)), now=NOW
    )
    assert result.rejected["reasons"].tolist() == [["fetched_at_in_range"]] * 2
    assert result.rejected["detail"].tolist() == [
        "fetched_at_in_range: fetched_at 9999-01-01T00:00:00+00:00 is after the accepted range "
        "1900-01-01 .. 2200-01-01 (UTC)",
        "fetched_at_in_range: fetched_at 1066-10-14T00:00:00+00:00 is before the accepted range "
        "1900-01-01 .. 2200-01-01 (UTC)",
    ]


@pytest.mark.parametrize(
    ("fetched_at", "reasons"),
    [
        (datetime(1900, 1, 1, tzinfo=UTC), []),
        (datetime(1899, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), ["fetched_at_in_range"]),
        (datetime(1900, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))), ["fetched_at_in_range"]),
        (datetime(1677, 9, 22, tzinfo=UTC), ["fetched_at_in_range"]),
        (datetime(2199, 12, 31, 23, 59, tzinfo=UTC), ["fetched_at_not_in_future"]),
        (datetime(2200, 1, 1, tzinfo=UTC), ["fetched_at_in_range", "fetched_at_not_in_future"]),
        (datetime(2262, 4, 11, tzinfo=UTC), ["fetched_at_in_range", "fetched_at_not_in_future"]),
    ],
)
def test_the_accepted_range_of_fetched_at(fetched_at, reasons):
    assert verdict(signal(fetched_at=fetched_at)) == reasons


def test_a_frame_of_typed_timestamps_is_range_checked_too():
    page = frame(signal(fetched_at=datetime(1800, 1, 1, tzinfo=UTC)), signal())
    page["fetched_at"] = pd.to_datetime(page["fetched_at"], utc=True)
    result = validate_signals(page, now=NOW)
    assert result.rejected["reasons"].tolist() == [["fetched_at_in_range"]]
    assert len(result.valid) == 1


def test_indexed_text_longer_than_its_index_allows_is_rejected():
    fits = "é" * 512  # 1,024 bytes in UTF-8
    rows = [
        signal(source_event_id=fits),
        signal(source_event_id=fits + "x"),
        signal(source_event_id="\U0001f600" * 257),  # 1,028 bytes in 257 characters
        signal(source="s" * 129),
    ]
    result = validate_signals(frame(*rows), now=NOW)
    assert result.valid["record_index"].tolist() == [0]
    assert result.rejected["reasons"].tolist() == [
        ["source_event_id_size"],
        ["source_event_id_size"],
        ["source_size"],
    ]
    assert result.rejected["detail"].tolist() == [
        "source_event_id_size: source_event_id is 1025 bytes, over the 1024 indexed",
        "source_event_id_size: source_event_id is 1028 bytes, over the 1024 indexed",
        "source_size: source is 129 bytes, over the 128 indexed",
    ]


def test_original_index_is_kept_even_when_duplicated():
    page = frame(signal(), signal(value=3.0), signal(), index=["p1", "p1", "p2"])
    result = validate_signals(page, now=NOW)
    assert list(result.valid.index) == ["p1", "p2"]
    assert list(result.rejected.index) == ["p1"]
    assert result.rejected["value"].tolist() == [3.0]


def test_empty_frame_gives_two_empty_frames():
    page = frame(signal()).iloc[:0]
    result = validate_signals(page, now=NOW)
    assert result.valid.empty and result.rejected.empty
    assert list(result.valid.columns) == list(page.columns)
    assert list(result.rejected.columns) == [*page.columns, "reasons", "detail"]
    assert str(result.valid["fetched_at"].dtype) == "datetime64[ns, UTC]"


def test_programmer_errors_raise_clearly():
    with pytest.raises(ValueError, match="lacks column\\(s\\) 'raw_data'"):
        validate_signals(frame(signal()).drop(columns=["raw_data"]), now=NOW)
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime"):
        validate_signals(frame(signal()), now=datetime(2026, 11, 22, 15, 40))


def test_validation_runs_even_when_pandera_is_switched_off():
    with config_context(validation_enabled=False):
        result = validate_signals(frame(signal(value=2.0)), now=NOW)
    assert list(result.rejected["reasons"]) == [["probability_in_unit_interval"]]


def test_schema_has_one_named_check_per_rule():
    def names(schema) -> set[str]:
        return {check.name for column in schema.columns.values() for check in column.checks}

    assert names(signal_schema(now=NOW)) == set(CHECK_NAMES)
    assert names(signal_schema(now=NOW, pull_source=False)) == set(CHECK_NAMES) - {
        "source_event_id_present"
    }


def test_rejection_summary_counts_reasons_and_samples_rows_as_storable_json():
    page = frame(
        signal(),
        signal(value=1.2),
        signal(source_event_id="id" + LONE_SURROGATE, value=float("nan")),
        signal(signal_type="VOLUME", value=-1.0, weight=9.0),
    )
    summary = rejection_summary(validate_signals(page, now=NOW).rejected, limit=2)
    assert summary["rejected"] == 3
    assert summary["reasons"] == {
        "value_present": 1,
        "probability_in_unit_interval": 1,
        "volume_non_negative": 1,
        "weight_in_range": 1,
        "text_valid_utf8": 1,
    }
    assert summary["samples"] == [
        {
            "source_event_id": signal()["source_event_id"],
            "signal_type": "MARKET_PRICE",
            "value": 1.2,
            "reasons": ["probability_in_unit_interval"],
            "detail": "probability_in_unit_interval: MARKET_PRICE value 1.2 is not a "
            "probability in [0, 1]",
        },
        {
            "source_event_id": "'id\\ud800'",
            "signal_type": "MARKET_PRICE",
            "value": None,
            "reasons": ["text_valid_utf8", "value_present"],
            "detail": "value_present: value is missing, which a MARKET_PRICE signal needs",
        },
    ]
    json.dumps(summary, allow_nan=False).encode("utf-8")
    assert rejection_summary(validate_signals(frame(signal()), now=NOW).rejected) == {
        "rejected": 0,
        "reasons": {},
        "samples": [],
    }


# --- property: no input makes validation raise, and every row lands once -------------------

ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | ANY_TEXT
    | st.sets(st.integers(), max_size=2)
)
JSON_LIKE = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
NEAR_NOW = st.datetimes(
    min_value=datetime(2026, 11, 22, 15, 30), max_value=datetime(2026, 11, 22, 15, 50)
)
FETCHED_AT = st.one_of(
    NEAR_NOW.map(lambda d: d.replace(tzinfo=UTC)),
    st.datetimes(timezones=ZONES),
    st.datetimes(),
    st.none(),
    ANY_TEXT,
    st.integers(),
    st.floats(),
)
RECORD = st.fixed_dictionaries(
    {
        "source_event_id": st.none() | ANY_TEXT,
        "signal_type": st.sampled_from(SIGNAL_TYPES) | ANY_TEXT,
        "value": st.none() | st.floats() | st.integers(),
        "fetched_at": FETCHED_AT,
        "source_url": st.none() | ANY_TEXT,
        "narrative": st.none() | ANY_TEXT,
        "title": st.none() | ANY_TEXT,
        "raw_data": st.none() | st.dictionaries(ANY_TEXT, JSON_LIKE, max_size=4) | JSON_LIKE,
        "weight": st.none() | st.floats(),
        "reliability": st.none() | st.floats(),
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(RECORD, max_size=8), pull_source=st.booleans())
def test_arbitrary_records_never_raise_and_every_row_lands_once(records, pull_source):
    page = frame(*(signal(**record) for record in records))
    result = validate_signals(page, now=NOW, pull_source=pull_source)

    assert len(result.valid) + len(result.rejected) == len(page)
    assert sorted(
        result.valid["record_index"].tolist() + result.rejected["record_index"].tolist()
    ) == list(range(len(page)))
    for reasons, detail in zip(result.rejected["reasons"], result.rejected["detail"], strict=True):
        assert reasons and reasons == sorted(set(reasons)) and set(reasons) <= set(CHECK_NAMES)
        assert detail.split(":")[0] in reasons
        assert "\x00" not in detail
        detail.encode("utf-8")
    valid = result.valid
    assert str(valid["fetched_at"].dtype) == "datetime64[ns, UTC]"
    assert (valid["fetched_at"] <= NOW + DEFAULT_CLOCK_SKEW).all()
    assert valid["signal_type"].isin(SIGNAL_TYPES).all()
    assert valid["weight"].between(0, 5).all()
    assert np.isfinite(valid["value"].fillna(0)).all()
    json.dumps(rejection_summary(result.rejected), allow_nan=False).encode("utf-8")
