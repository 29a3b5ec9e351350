import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta, timezone

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from predict_pipeline.model import MarketFacts, NormalisedRecord, RecordReject
from predict_pipeline.sources.push.config import (
    CONFIG_SCHEMA,
    DEFAULT_CONFIG,
    RATE_LIMIT_RPM,
    SUPPORTS_BACKFILL,
)
from predict_pipeline.sources.push.decode import UploadError
from predict_pipeline.sources.push.delivery import UPLOAD, WEBHOOK, parse_upload, parse_webhook
from predict_pipeline.sources.push.signature import (
    SignatureError,
    SignedDelivery,
    sign_delivery,
    verify_signature,
)

RECEIVED_AT = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
SECRET = b"whsec_9f86d081884c7d659a2feaa0c55ad015"


def upload(data: bytes | str, filename: str = "signals.csv", **config) -> list[NormalisedRecord]:
    """The records of a delivery that holds no record rejected alone."""
    records, rejects = upload_with_rejects(data, filename, **config)
    assert rejects == []
    return records


def upload_with_rejects(
    data: bytes | str, filename: str = "signals.csv", **config
) -> tuple[list[NormalisedRecord], list[RecordReject]]:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return parse_upload(raw, filename, feed_config=config, received_at=RECEIVED_AT)


def refused(data: bytes | str, filename: str = "signals.csv", **config) -> UploadError:
    with pytest.raises(UploadError) as caught:
        upload(data, filename, **config)
    return caught.value


def where(error: UploadError) -> tuple:
    return (error.line, error.column, error.field, error.reason)


# --- the contract ---------------------------------------------------------------------------


def test_schema_is_strict_documented_and_the_default_config_is_valid():
    jsonschema.Draft202012Validator.check_schema(CONFIG_SCHEMA)
    jsonschema.Draft202012Validator(CONFIG_SCHEMA).validate(DEFAULT_CONFIG)
    schemas = [CONFIG_SCHEMA, CONFIG_SCHEMA["properties"]["columns"]]
    for schema in schemas:
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("description"), name
    assert (RATE_LIMIT_RPM, SUPPORTS_BACKFILL) == (None, False)
    assert (WEBHOOK.source, WEBHOOK.parse) == ("webhook", parse_webhook)
    assert (UPLOAD.source, UPLOAD.parse) == ("upload", parse_upload)


def test_a_bad_config_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match=r"upload config: \$\.columns: Additional properties"):
        upload("source_event_id,value\na,0.5\n", columns={"price": "Price"})
    with pytest.raises(ValueError, match=r"upload config: \$\.signal_type: 'PRICE' is not one of"):
        upload("source_event_id,value\na,0.5\n", signal_type="PRICE")


def test_received_at_must_be_timezone_aware():
    with pytest.raises(ValueError, match="upload: received_at must be timezone-aware"):
        parse_upload(
            b"source_event_id,value\na,1\n",
            "a.csv",
            feed_config={},
            received_at=datetime(2026, 2, 1),
        )


# --- CSV ------------------------------------------------------------------------------------

GOOD_CSV = (
    "\ufeffsource_event_id,signal_type,value,fetched_at,title,narrative,source_url,weight,"
    "close_time,category,status,resolution,desk\r\n"
    'fed-cut-2026-03,MARKET_PRICE,0.62,2026-01-31T13:10:26Z,"Fed cuts rates in March, 2026?",'
    '"Desk view:\r\nlikely hold",https://example.org/fed,1.5,2026-03-18T18:00:00Z,'
    "economy; rates,open,,rates\r\n"
    "\r\n"
    "ebola-deaths-2025,news,,2025-12-31T17:00:00+01:00,,WHO update,,,,,,,health\r\n"
    "spirit-ch11,MARKET_PRICE,0.08,,Spirit emerges from Chapter 11?,,,,,,resolved,NO,\r\n"
)


def test_a_good_csv_upload_gives_exact_records():
    fed, ebola, spirit = upload(GOOD_CSV.encode("utf-8"))
    assert fed == NormalisedRecord(
        source="upload",
        source_event_id="fed-cut-2026-03",
        signal_type="MARKET_PRICE",
        value=0.62,
        fetched_at=datetime(2026, 1, 31, 13, 10, 26, tzinfo=UTC),
        source_url="https://example.org/fed",
        narrative="Desk view:\r\nlikely hold",
        raw_data={
            "source_event_id": "fed-cut-2026-03",
            "signal_type": "MARKET_PRICE",
            "value": "0.62",
            "fetched_at": "2026-01-31T13:10:26Z",
            "title": "Fed cuts rates in March, 2026?",
            "narrative": "Desk view:\r\nlikely hold",
            "source_url": "https://example.org/fed",
            "weight": 1.5,
            "close_time": "2026-03-18T18:00:00Z",
            "category": "economy; rates",
            "status": "open",
            "resolution": "",
            "desk": "rates",
        },
        market=MarketFacts(
            title="Fed cuts rates in March, 2026?",
            category_hints=("economy", "rates"),
            close_time=datetime(2026, 3, 18, 18, 0, tzinfo=UTC),
            status="open",
        ),
    )
    assert (ebola.signal_type, ebola.value, ebola.narrative) == ("NEWS", None, "WHO update")
    assert ebola.fetched_at == datetime(2025, 12, 31, 16, 0, tzinfo=UTC)
    assert ebola.market == MarketFacts()
    assert (spirit.value, spirit.fetched_at) == (0.08, RECEIVED_AT)
    assert spirit.market == MarketFacts(
        title="Spirit emerges from Chapter 11?", status="resolved", resolution="NO"
    )


def test_renamed_columns_scale_and_epoch_timestamps():
    csv_text = "Market,Price (cents),Seen\nKXELONTWEETS-25APR11-300,50,1744300800\n"
    [record] = upload(
        csv_text,
        columns={"source_event_id": "Market", "value": "Price (cents)", "fetched_at": "Seen"},
        value_scale=0.01,
        timestamp_format="epoch_s",
        signal_type="MARKET_PRICE",
    )
    assert (record.source_event_id, record.value) == ("KXELONTWEETS-25APR11-300", 0.5)
    assert record.fetched_at == datetime(2025, 4, 10, 16, 0, tzinfo=UTC)
    assert record.raw_data == {
        "Market": "KXELONTWEETS-25APR11-300",
        "Price (cents)": "50",
        "Seen": "1744300800",
    }


def test_a_value_that_overflows_its_scale_is_refused():
    error = refused("source_event_id,value\na,1e308\n", value_scale=10)
    assert where(error) == (2, 2, "value", "1e+308 times the value_scale 10 is not a finite number")


def test_naive_timestamps_are_read_in_the_configured_timezone():
    csv_text = "source_event_id,value,fetched_at\n7589,0.25,2026-01-31T13:10:26.3247098\n"
    [record] = upload(csv_text, timezone="America/New_York")
    assert record.fetched_at == datetime(2026, 1, 31, 18, 10, 26, 324709, tzinfo=UTC)


def test_lf_and_crlf_and_bom_give_the_same_records():
    lf = "source_event_id,value\na,0.1\nb,0.2\n"
    crlf = "\ufeff" + lf.replace("\n", "\r\n")
    assert upload(lf) == upload(crlf.encode("utf-8"))
    assert [r.value for r in upload(crlf)] == [0.1, 0.2]


@pytest.mark.parametrize(
    ("text", "line", "column", "field", "reason"),
    [
        (
            "source_event_id,value\na,0.5\nb,abc\n",
            3,
            2,
            "value",
            "expected a number, got 'abc'",
        ),
        (
            "source_event_id,value\na,1e999\n",
            2,
            2,
            "value",
            "expected a finite number, got '1e999'",
        ),
        (
            "source_event_id,value\na,\n",
            2,
            2,
            "value",
            "missing; a MARKET_PRICE signal needs a number",
        ),
        (
            "id,source_event_id,value,fetched_at\n1,a,0.5,2026-02-30T00:00:00Z\n",
            2,
            4,
            "fetched_at",
            "expected an ISO-8601 timestamp, got '2026-02-30T00:00:00Z'",
        ),
        (
            "source_event_id,value,fetched_at\na,0.5,2026-01-31 13:10\n",
            2,
            3,
            "fetched_at",
            "timestamp '2026-01-31 13:10' has no UTC offset; add one (e.g. 'Z') "
            "or set the feed's timezone",
        ),
        (
            "source_event_id,signal_type,value\na,PRICE,0.5\n",
            2,
            2,
            "signal_type",
            "unknown signal type 'PRICE'; expected one of ('MARKET_PRICE', 'SENTIMENT', "
            "'VOLUME', 'NEWS', 'SOCIAL', 'EXPERT', 'MANUAL')",
        ),
        (
            "source_event_id,value,weight\na,0.5,7\n",
            2,
            3,
            "weight",
            "weight must be between 0 and 5, got 7",
        ),
        (
            "source_event_id,value,source_url\na,0.5,javascript:alert(1)\n",
            2,
            3,
            "source_url",
            "expected an http(s) URL, got 'javascript:alert(1)'",
        ),
        ("source_event_id,title\na,x\n", 1, None, "value", "missing required column 'value'"),
        (
            "source_event_id,value,title\na,0.5\n",
            2,
            3,
            "title",
            "the row has 2 cells but the header has 3 columns",
        ),
        (
            "source_event_id,value\na,0.5,extra\n",
            2,
            3,
            None,
            "the row has 3 cells but the header has 2 columns",
        ),
        ("source_event_id,value,value\na,1,2\n", 1, 3, "value", "the header repeats this column"),
        ("source_event_id,,value\na,1,2\n", 1, 2, None, "the header has an unnamed column"),
        (
            'source_event_id,value,narrative\na,0.5,"two\nlines"\nb,0.6,"never closed\n',
            4,
            None,
            None,
            "unreadable CSV: unexpected end of data",
        ),
        (
            'source_event_id,value\na,"0.5"x\n',
            2,
            None,
            None,
            "unreadable CSV: ',' expected after '\"'",
        ),
    ],
)
def test_a_malformed_csv_is_refused_whole_with_line_and_column(text, line, column, field, reason):
    error = refused(text)
    assert where(error) == (line, column, field, reason)
    assert (error.source, error.name) == ("upload", "signals.csv")


def test_the_line_of_a_fault_counts_quoted_newlines_and_blank_lines():
    text = 'source_event_id,value,narrative\r\n\r\na,0.5,"one\r\ntwo\r\nthree"\r\nb,x,\r\n'
    assert where(refused(text)) == (6, 2, "value", "expected a number, got 'x'")


def test_undecodable_utf8_is_located():
    data = "source_event_id,value,title\r\na,0.5,Zürich\r\nb,0.6,Gen".encode() + b"\xe8ve\r\n"
    error = refused(data)
    assert where(error) == (3, 10, None, "not UTF-8: byte 0xe8 cannot be decoded")
    assert (
        str(error) == "upload signals.csv line 3, column 10: not UTF-8: byte 0xe8 cannot be decoded"
    )


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "the file is empty; expected a header row"),
        (b"\r\n  \r\n", "the file is empty; expected a header row"),
        (b"source_event_id,value\r\n", "holds no records"),
    ],
)
def test_an_upload_without_records_is_refused(data, reason):
    assert refused(data).reason == reason


def test_an_unknown_file_type_is_refused():
    error = refused(b"source_event_id,value\na,1\n", "signals.xlsx")
    assert str(error) == (
        "upload signals.xlsx: unsupported file type; expected .csv, .json, .jsonl or .ndjson"
    )


# --- JSON and JSON Lines --------------------------------------------------------------------

JSON_RECORDS = [
    {
        "source_event_id": "39336",
        "signal_type": "EXPERT",
        "value": 0.12,
        "title": "Will the US attack Venezuela?",
    },
    {
        "source_event_id": 8152,
        "value": "0.55",
        "fetched_at": "2026-01-31T13:10:26Z",
        "category": ["politics", "us"],
    },
]


def expected_json_records(source: str) -> list[NormalisedRecord]:
    return [
        NormalisedRecord(
            source=source,
            source_event_id="39336",
            signal_type="EXPERT",
            value=0.12,
            fetched_at=RECEIVED_AT,
            raw_data=JSON_RECORDS[0],
            market=MarketFacts(title="Will the US attack Venezuela?"),
        ),
        NormalisedRecord(
            source=source,
            source_event_id="8152",
            signal_type="MARKET_PRICE",
            value=0.55,
            fetched_at=datetime(2026, 1, 31, 13, 10, 26, tzinfo=UTC),
            raw_data=JSON_RECORDS[1],
            market=MarketFacts(category_hints=("politics", "us")),
        ),
    ]


@pytest.mark.parametrize(
    ("filename", "text"),
    [
        ("signals.json", json.dumps(JSON_RECORDS, indent=2)),
        ("signals.json", json.dumps({"records": JSON_RECORDS})),
        ("signals.jsonl", "\r\n".join(json.dumps(r) for r in JSON_RECORDS) + "\r\n\r\n"),
        ("signals.NDJSON", "\ufeff" + "\n".join(json.dumps(r) for r in JSON_RECORDS)),
        ("signals.json", "\n".join(json.dumps(r) for r in JSON_RECORDS)),  # JSON Lines as .json
    ],
)
def test_json_shapes_give_exact_records(filename, text):
    assert upload(text, filename) == expected_json_records("upload")


def test_a_single_record_object_is_one_record():
    [record] = upload('{"source_event_id": "a", "value": 0.3}', "one.json")
    assert (record.source_event_id, record.value) == ("a", 0.3)


def decoder_position(text: str) -> tuple[int, int]:
    with pytest.raises(json.JSONDecodeError) as caught:
        json.loads(text)
    return caught.value.lineno, caught.value.colno


@pytest.mark.parametrize(
    "text",
    [
        '[\n  {"source_event_id": "a", "value": 0.5},\n'
        '  {"source_event_id": "b", "value": 0.5,}\n]',
        '[\n  {"source_event_id": "a" "value": 0.5}\n]',
        '{"records": [\n{"source_event_id": "a", "value": tru}]}',
        '[{"source_event_id": "a\n"}]',
    ],
)
def test_json_syntax_errors_carry_the_decoders_line_and_column(text):
    error = refused(text, "signals.json")
    assert (error.line, error.column) == decoder_position(text)


@pytest.mark.parametrize(
    ("filename", "text", "line", "column", "field", "reason"),
    [
        (
            "s.json",
            '[\n  {"source_event_id": "a", "value": 0.5},\n'
            '  {"source_event_id": "b", "value": "n/a"}\n]',
            3,
            37,
            "value",
            "expected a number, got 'n/a'",
        ),
        (
            "s.json",
            '[\n  {"source_event_id": "a", "value": 0.5},\n  {"value": 0.4}\n]',
            3,
            3,
            "source_event_id",
            "missing",
        ),
        (
            "s.json",
            '{"records": [\n  {"source_event_id": "a"}\n]}',
            2,
            3,
            "value",
            "missing; a MARKET_PRICE signal needs a number",
        ),
        (
            "s.jsonl",
            '{"source_event_id": "a", "value": 0.5}\r\n{"source_event_id": "b", "value": 0.5, '
            '"fetched_at": 1769865026}\r\n',
            2,
            54,
            "fetched_at",
            "expected an ISO-8601 timestamp, got 1769865026",
        ),
        (
            "s.jsonl",
            '{"source_event_id": "a", "value": 0.5}\n["b", 0.5]\n',
            2,
            1,
            None,
            "expected a JSON object on each line",
        ),
        (
            "s.json",
            '[{"source_event_id": "a", "value": 0.5}, 7]',
            1,
            42,
            None,
            "each record must be a JSON object",
        ),
        (
            "s.json",
            '{"records": {"a": 1}}',
            1,
            13,
            None,
            '"records" must be a list of record objects',
        ),
        (
            "s.json",
            '[{"source_event_id": "a", "value": NaN}]',
            1,
            36,
            None,
            "NaN is not valid JSON",
        ),
        (
            "s.json",
            '[{"source_event_id": "a", "value": 0.5, "value": 0.6}]',
            1,
            41,
            None,
            "the key 'value' appears twice in this record",
        ),
        ("s.json", '"just text"', 1, 1, None, "expected a JSON array or object of records"),
        ("s.json", "[]", None, None, None, "holds no records"),
        ("s.json", "  \n ", 2, 2, None, "holds no JSON"),
    ],
)
def test_a_malformed_json_upload_is_refused_whole_with_line_and_column(
    filename, text, line, column, field, reason
):
    assert where(refused(text, filename)) == (line, column, field, reason)


def test_renamed_json_keys_are_located_by_their_name_in_the_file():
    text = '[{"id": "a", "p": 0.5}, {"id": "b", "p": true}]'
    error = refused(text, "s.json", columns={"source_event_id": "id", "value": "p"})
    assert where(error) == (1, 42, "p", "expected a number, got True")


def test_deep_nesting_is_refused_not_crashed():
    text = (
        '[{"source_event_id": "a", "value": 0.5, "extra": ' + "[" * 100_000 + "]" * 100_000 + "}]"
    )
    assert where(refused(text, "s.json")) == (1, 50, None, "the value is nested too deeply")


# --- records rejected alone: timestamps outside the accepted range, ids too long to index ---


def test_out_of_range_timestamps_are_rejected_alone_with_a_named_reason():
    text = (
        "[\n"
        ' {"source_event_id": "ok-1", "value": 0.5, "fetched_at": "2026-01-31T13:10:26Z"},\n'
        ' {"source_event_id": "y1", "value": 0.5, "fetched_at": "0001-01-01T00:00:00Z"},\n'
        ' {"source_event_id": "y9999", "value": 0.5, "fetched_at": "9999-12-31T23:59:59Z"},\n'
        ' {"source_event_id": "late", "value": 0.5, "close_time": "2262-04-12T00:00:00+00:00"},\n'
        ' {"source_event_id": "ok-2", "value": 0.6}\n'
        "]"
    )
    records, rejects = upload_with_rejects(text, "s.json")
    assert [r.source_event_id for r in records] == ["ok-1", "ok-2"]
    assert [(r.reason, r.item_index, r.source_event_id) for r in rejects] == [
        ("timestamp_out_of_range", 1, "y1"),
        ("timestamp_out_of_range", 2, "y9999"),
        ("timestamp_out_of_range", 3, "late"),
    ]
    assert rejects[0].detail == (
        "line 3, column 56 (fetched_at): timestamp 0001-01-01T00:00:00+00:00 is outside "
        "1900-01-01 .. 2200-01-01 (UTC)"
    )
    assert rejects[2].detail.startswith("line 5, column 58 (close_time): timestamp ")
    assert rejects[1].item == json.loads(text)[2]


@pytest.mark.parametrize(
    ("timestamp_format", "cell"),
    [("epoch_s", "-2208988801"), ("epoch_ms", "7258118400000"), ("epoch_s", "1e300")],
)
def test_out_of_range_epoch_timestamps_are_rejected_alone(timestamp_format, cell):
    csv_text = f"source_event_id,value,fetched_at\nold,0.5,{cell}\nnew,0.5,1769865026\n"
    records, [reject] = upload_with_rejects(csv_text, timestamp_format=timestamp_format)
    assert [r.source_event_id for r in records] == ["new"]
    assert (reject.reason, reject.item_index, reject.source_event_id) == (
        "timestamp_out_of_range",
        0,
        "old",
    )
    assert reject.detail.startswith("line 2, column 3 (fetched_at): timestamp ")


def test_the_accepted_range_is_inclusive_at_its_start_and_exclusive_at_its_end():
    csv_text = (
        "source_event_id,value,fetched_at\n"
        "first,0.5,1900-01-01T00:00:00Z\n"
        "last,0.5,2199-12-31T23:59:59.999999Z\n"
        "past,0.5,2200-01-01T00:00:00Z\n"
        "before,0.5,1900-01-01T00:00:00+00:01\n"
    )
    records, rejects = upload_with_rejects(csv_text)
    assert [r.source_event_id for r in records] == ["first", "last"]
    assert [r.source_event_id for r in rejects] == ["past", "before"]


def test_an_id_too_long_to_index_is_rejected_alone_measured_in_utf8_bytes():
    fits = "é" * 512  # 1,024 bytes: exactly the limit
    too_long = "é" * 513
    body = json.dumps(
        [
            {"source_event_id": fits, "value": 0.5},
            {"source_event_id": too_long, "value": 0.5},
            {"source_event_id": 10**1100, "value": 0.5},
        ]
    )
    records, rejects = upload_with_rejects(body, "s.json")
    assert [r.source_event_id for r in records] == [fits]
    assert [(r.reason, r.item_index, r.source_event_id) for r in rejects] == [
        ("source_event_id_too_long", 1, None),
        ("source_event_id_too_long", 2, None),
    ]
    column = body.index(json.dumps(too_long)) + 1  # ASCII-escaped: 6 characters per "é"
    assert rejects[0].detail == (
        f"line 1, column {column} (source_event_id): 1026 bytes, over the 1024 an indexed id "
        "may have"
    )


def test_a_malformed_record_still_refuses_the_delivery_whole():
    text = (
        '[{"source_event_id": "y1", "value": 0.5, "fetched_at": "0001-01-01T00:00:00Z"},\n'
        ' {"source_event_id": "b", "value": "n/a"}]'
    )
    assert where(refused(text, "s.json")) == (2, 36, "value", "expected a number, got 'n/a'")


def test_a_delivery_whose_every_record_is_rejected_lands_no_records():
    records, [reject] = upload_with_rejects(
        '{"source_event_id": "a", "value": 0.1, "fetched_at": "1800-01-01T00:00:00Z"}', "s.json"
    )
    assert records == [] and reject.reason == "timestamp_out_of_range"


# --- linear reading: the quick read and the positional reader agree -------------------------

JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
RECORD_OBJECT = st.dictionaries(
    st.sampled_from(["source_event_id", "value", "title", "x", "fetched_at"]), JSON_VALUE
)


@settings(max_examples=150, deadline=None)
@given(
    records=st.lists(RECORD_OBJECT, max_size=4),
    shape=st.sampled_from(["array", "wrapped", "lines", "single"]),
    indent=st.sampled_from([None, 1]),
)
def test_the_quick_read_gives_what_the_positional_reader_gives(records, shape, indent):
    from predict_pipeline.sources.push.decode import _json_objects, _object, _quick_object

    if shape == "array":
        text = json.dumps(records, indent=indent)
    elif shape == "wrapped":
        text = json.dumps({"records": records}, indent=indent)
    elif shape == "lines":
        text = "\r\n".join(json.dumps(r) for r in records)
    else:
        text = json.dumps(records[0] if records else {}, indent=indent)
    try:
        quick = [(obj, start) for obj, _, start in _json_objects(text, _quick_object)]
    except Exception:
        quick = None
    try:
        located = [(obj, start) for obj, _, start in _json_objects(text, _object)]
    except Exception:
        located = None
    # The quick read may hand a case to the positional reader, never disagree with it.
    assert quick is None or quick == located


def test_fault_positions_deep_in_a_large_delivery_are_exact():
    lines = [json.dumps({"source_event_id": f"m{i}", "value": 0.5}) for i in range(20_000)]
    lines[19_990] = '{"source_event_id": "late", "value": 0.5, "fetched_at": "1066-10-14T00:00Z"}'
    lines[19_999] = '{"source_event_id": "bad", "value": "x"}'
    text = "\n".join(lines)
    assert where(refused(text, "s.jsonl")) == (20_000, 37, "value", "expected a number, got 'x'")
    lines[19_999] = lines[0]
    records, [reject] = upload_with_rejects("\n".join(lines), "s.jsonl")
    assert len(records) == 19_999
    assert reject.detail.startswith("line 19991, column 57 (fetched_at): ")


# --- webhooks -------------------------------------------------------------------------------

WEBHOOK_BODY = json.dumps({"records": JSON_RECORDS}).encode()
SENT_AT = int(RECEIVED_AT.timestamp()) - 2  # sent two seconds before it was received
DELIVERY = "dlv_01HZX3"


def signed(
    body: bytes,
    secret: bytes = SECRET,
    *,
    timestamp: int = SENT_AT,
    delivery: str = DELIVERY,
    header: str = "X-Predict-Signature",
) -> dict[str, str]:
    """The documented contract written out by hand: HMAC-SHA256 of '<ts>.<id>.<body>'."""
    message = f"{timestamp}.{delivery}.".encode() + body
    digest = hmac.new(secret, message, hashlib.sha256).hexdigest()
    return {
        "X-Predict-Timestamp": str(timestamp),
        "X-Predict-Delivery": delivery,
        header: f"sha256={digest}",
    }


def deliver(body: bytes, headers: dict, secret: bytes | None = SECRET, **config):
    records, rejects = parse_webhook(
        body, headers, feed_config=config, secret=secret, received_at=RECEIVED_AT
    )
    assert rejects == []
    return records


def test_a_signed_webhook_gives_exact_records():
    records = deliver(WEBHOOK_BODY, {k.lower(): v for k, v in signed(WEBHOOK_BODY).items()})
    assert records == expected_json_records("webhook")


def test_sign_delivery_writes_the_headers_verify_signature_reads():
    sent_at = datetime.fromtimestamp(SENT_AT, UTC)
    headers = sign_delivery(SECRET.decode(), WEBHOOK_BODY, sent_at=sent_at, delivery_id=DELIVERY)
    assert headers == signed(WEBHOOK_BODY)
    verified = verify_signature(WEBHOOK_BODY, headers, SECRET, now=RECEIVED_AT)
    assert verified == SignedDelivery(DELIVERY, sent_at)
    with pytest.raises(ValueError, match="a delivery id is 1-128 characters"):
        sign_delivery(SECRET, WEBHOOK_BODY, sent_at=sent_at, delivery_id="two words")


def test_the_signature_header_name_is_configurable():
    headers = signed(WEBHOOK_BODY, header="X-Hub-Signature-256")
    headers["X-Hub-Signature-256"] = (
        headers["X-Hub-Signature-256"].upper().replace("SHA256=", "sha256=")
    )
    records = deliver(WEBHOOK_BODY, headers, signature_header="X-Hub-Signature-256")
    assert [r.source_event_id for r in records] == ["39336", "8152"]


def test_a_feed_without_a_secret_accepts_unsigned_deliveries():
    [record] = deliver(b'{"source_event_id": "x", "value": 0.9}', {}, secret=None)
    assert (record.source, record.source_event_id, record.value) == ("webhook", "x", 0.9)


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k != name}


GOOD = signed(WEBHOOK_BODY)
MISMATCH = "webhook: X-Predict-Signature does not match the timestamp, delivery id and body"


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        (
            _without(GOOD, "X-Predict-Signature"),
            "webhook: missing X-Predict-Signature header on a feed that has a secret",
        ),
        (
            _without(GOOD, "X-Predict-Timestamp"),
            "webhook: missing X-Predict-Timestamp header on a feed that has a secret",
        ),
        (
            _without(GOOD, "X-Predict-Delivery"),
            "webhook: missing X-Predict-Delivery header on a feed that has a secret",
        ),
        (
            {**GOOD, "X-Predict-Signature": "sha1=abc"},
            "webhook: X-Predict-Signature must look like 'sha256=<64 hex digits>'",
        ),
        (
            {**GOOD, "X-Predict-Timestamp": "2026-02-01T09:30:00Z"},
            "webhook: X-Predict-Timestamp must be the unix time in seconds",
        ),
        (
            {**GOOD, "X-Predict-Delivery": "a/b"},
            "webhook: X-Predict-Delivery must be 1-128 characters of A-Z a-z 0-9 . _ : -",
        ),
        (signed(WEBHOOK_BODY, b"another-secret"), MISMATCH),
        (signed(WEBHOOK_BODY + b" "), MISMATCH),
        # A captured delivery resent under a new id or a fresh timestamp is not signed for it.
        ({**GOOD, "X-Predict-Delivery": "dlv_other"}, MISMATCH),
        ({**GOOD, "X-Predict-Timestamp": str(SENT_AT + 60)}, MISMATCH),
        # The old contract (HMAC of the body alone) is refused: it could be replayed forever.
        (
            {
                "X-Predict-Signature": "sha256="
                + hmac.new(SECRET, WEBHOOK_BODY, "sha256").hexdigest()
            },
            "webhook: missing X-Predict-Timestamp header on a feed that has a secret",
        ),
    ],
)
def test_a_missing_or_wrong_signature_is_refused_without_echoing_the_secret(headers, message):
    with pytest.raises(SignatureError) as caught:
        deliver(WEBHOOK_BODY, headers)
    expected_digest = GOOD["X-Predict-Signature"].removeprefix("sha256=")
    shown = f"{caught.value} {caught.value!r} {caught.value.args}"
    assert str(caught.value) == message
    assert SECRET.decode() not in shown and expected_digest not in shown


@pytest.mark.parametrize(
    ("sent_at", "accepted"),
    [(-300, True), (-301, False), (300, True), (301, False), (-3600, False)],
)
def test_a_signature_older_or_newer_than_five_minutes_is_refused(sent_at, accepted):
    headers = signed(WEBHOOK_BODY, timestamp=int(RECEIVED_AT.timestamp()) + sent_at)
    if accepted:
        assert len(deliver(WEBHOOK_BODY, headers)) == 2
        return
    with pytest.raises(SignatureError) as caught:
        deliver(WEBHOOK_BODY, headers)
    assert str(caught.value) == (
        f"webhook: X-Predict-Timestamp is {abs(sent_at)} s from the receiver's clock, "
        "more than the 300 s tolerated: a stale or replayed delivery"
    )


def test_the_signature_is_checked_before_the_body_is_read():
    with pytest.raises(SignatureError):
        deliver(b"{not json", {**GOOD, "X-Predict-Signature": "sha256=" + "0" * 64})


def test_an_empty_secret_is_a_configuration_fault():
    with pytest.raises(ValueError, match="webhook secret is empty"):
        deliver(WEBHOOK_BODY, signed(WEBHOOK_BODY, b""), secret=b"")


def test_a_malformed_webhook_body_is_refused_with_line_and_column():
    body = b'{"records": [\n {"source_event_id": "a", "value": "high"}\n]}'
    with pytest.raises(UploadError) as caught:
        deliver(body, signed(body))
    assert (caught.value.source, caught.value.name) == ("webhook", "body")
    assert where(caught.value) == (2, 36, "value", "expected a number, got 'high'")


def test_webhook_timestamps_with_offsets_become_utc():
    body = b'{"source_event_id": "a", "value": 0.4, "fetched_at": "2026-01-31T08:00:00-05:00"}'
    [record] = deliver(body, {}, secret=None)
    assert record.fetched_at == datetime(2026, 1, 31, 13, 0, tzinfo=UTC)
    assert record.fetched_at.tzinfo is UTC
    other_zone = datetime(2026, 2, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    [record], [] = parse_webhook(
        b'{"source_event_id": "a", "value": 0.4}',
        {},
        feed_config=None,
        secret=None,
        received_at=other_zone,
    )
    assert record.fetched_at == RECEIVED_AT and record.fetched_at.tzinfo is UTC


# --- property -------------------------------------------------------------------------------

CSV_ALPHABET = (
    'source_event_id,value,fetched_at,signal_type,weight"\r\n 0123456789.-:TZe+abc\x00\xe9'
)
CSV_HEADER = b"source_event_id,value,fetched_at,signal_type,weight\r\n"


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(alphabet=CSV_ALPHABET, max_size=200).map(str.encode),
        st.text(alphabet=CSV_ALPHABET, max_size=200).map(lambda t: CSV_HEADER + t.encode()),
    )
)
def test_arbitrary_csvish_bytes_give_records_or_an_upload_error(data):
    try:
        records, rejects = upload_with_rejects(data)
    except UploadError as error:
        assert error.line is None or error.line >= 1
        assert error.column is None or error.column >= 1
    else:
        assert records or rejects
        assert all(r.fetched_at.tzinfo is UTC for r in records)
        assert all(r.reason == "timestamp_out_of_range" for r in rejects)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='{}[]",: \n\r0123456789.-eNaTruflsource_event_idvalue', max_size=200))
def test_arbitrary_jsonish_text_gives_records_or_an_upload_error(text):
    try:
        records, rejects = upload_with_rejects(text, "s.jsonl")
    except UploadError as error:
        assert error.line is None or error.line >= 1
    else:
        assert records or rejects
