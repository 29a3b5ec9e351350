import json

import pytest

from predict_pipeline.config import PROJECT_ROOT
from predict_pipeline.sources.fieldpath import (
    FieldPathError,
    ShapeError,
    compile_path,
    select,
    select_items,
    select_one,
)

PAYLOADS = PROJECT_ROOT / "fixtures" / "payloads"

DOC = {
    "a": {"b": 1},
    "items": [{"price": 0.25}, {"price": 0.5}, {"other": True}],
    "data": [{"price": "0.1"}, {"price": None}],
    "key with space": {"it's": "quoted"},
    "back\\slash": 7,
    "scores": {"x": 1, "y": 2},
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$", [DOC]),
        ("$.a.b", [1]),
        ("a.b", [1]),
        ("items[0]", [{"price": 0.25}]),
        ("items[-1].other", [True]),
        ("items[*].price", [0.25, 0.5]),
        ("$.data[*].price", ["0.1", None]),
        ("items.*.price", [0.25, 0.5]),
        ("['key with space']", [{"it's": "quoted"}]),
        ("$['key with space'][\"it's\"]", ["quoted"]),
        ("$['key with space']['it\\'s']", ["quoted"]),
        ("$['back\\\\slash']", [7]),
        ("$.scores[*]", [1, 2]),
    ],
)
def test_each_syntax_form_selects_in_document_order(path, expected):
    assert select(DOC, path) == expected


@pytest.mark.parametrize(
    "path",
    ["$.missing", "a.b.c", "items[3]", "items[-4]", "a[0]", "items.price", "$.a.b[*]"],
)
def test_a_path_the_document_does_not_have_matches_nothing(path):
    assert select(DOC, path) == []


def test_select_one_returns_the_match_the_default_or_refuses_several():
    assert select_one(DOC, "$.a.b") == 1
    assert select_one(DOC, "$.nope") is None
    assert select_one(DOC, "$.nope", default="n/a") == "n/a"
    assert select_one(DOC, "$.data[1].price", default="n/a") is None  # present but null
    with pytest.raises(ValueError, match=r"matched 2 values"):
        select_one(DOC, "items[*].price")


def test_select_reads_a_recorded_payload():
    predictit = json.loads((PAYLOADS / "predictit_marketdata_all.json").read_text())
    assert select_one(predictit, "$.markets[0].contracts[0].lastTradePrice") == 0.25
    assert select(predictit, "markets[*].id")[:3] == [7589, 8152, 8153]
    assert len(select(predictit, "$.markets[*].contracts[*].id")) == 123


@pytest.mark.parametrize(
    ("path", "position", "reason"),
    [
        ("", 1, "the path is empty"),
        ("$.", 3, "expected a field name, found the end of the path"),
        ("a..b", 3, "expected a field name, found '.'"),
        ("$x", 2, "expected '.' or '[', found 'x'"),
        ("a b", 2, "expected '.' or '[', found ' '"),
        ("a[", 3, "expected an index, '*' or a quoted key after '['"),
        ("a[x]", 3, "expected an index, '*' or a quoted key after '[', found 'x'"),
        ("a[-]", 3, "expected an index, '*' or a quoted key after '[', found '-'"),
        ("a[1", 4, "expected ']'"),
        ("a[1.5]", 4, "expected ']'"),
        ("a[*", 4, "expected ']'"),
        ("a['b", 3, "the quoted key opened here is never closed by '"),
        ("a['b\\x']", 5, "'\\' may only escape ' or '\\'"),
        ("a]", 2, "expected '.' or '[', found ']'"),
    ],
)
def test_a_malformed_path_names_position_and_reason(path, position, reason):
    with pytest.raises(FieldPathError) as caught:
        compile_path(path)
    assert (caught.value.position, caught.value.reason) == (position, reason)
    assert f"at position {position}: {reason}" in str(caught.value)


def test_a_path_that_is_not_text_is_refused():
    with pytest.raises(FieldPathError, match="a path must be text, got int"):
        compile_path(3)  # type: ignore[arg-type]


def test_select_items_reads_a_named_list_or_what_wildcards_reach():
    assert select_items({"data": [1, 2]}, "$.data") == [1, 2]
    assert select_items({"data": [1, 2]}, "$.data[*]") == [1, 2]
    assert select_items([{"id": 1}], "$") == [{"id": 1}]
    assert select_items({"data": []}, "$.data") == []
    assert select_items({"m": []}, "$.m[*].c[*]") == []
    # a group whose list is null holds no items; the others still count
    assert select_items({"m": [{"c": None}, {"c": [5]}]}, "m[*].c[*]") == [5]


@pytest.mark.parametrize(
    ("doc", "path", "message"),
    [
        ({"error": "busy"}, "$.data", "nothing at $.data (an object with keys error there)"),
        ({"data": {}}, "$.data", "$.data holds an empty object where a list was expected"),
        ({"data": "x"}, "$.data[*]", "$.data holds a str where a list was expected"),
        ({"m": [{"x": 1}]}, "$.m[*].c[*]", "nothing at $.m[*].c (an object with keys x there)"),
        ({"d": [1]}, "$.d[1]", "nothing at $.d[1] (a list there)"),
    ],
)
def test_select_items_refuses_a_document_without_the_path_shape(doc, path, message):
    with pytest.raises(ShapeError) as caught:
        select_items(doc, path)
    assert str(caught.value) == message
