"""The rows of a delivery's body: CSV, JSON and JSON Lines read into record objects, each
with where it sits (line and column), so a fault is reported at its place; a malformed body
is refused whole (`UploadError`)."""

from __future__ import annotations

import bisect
import csv
import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from predict_pipeline.sources.push.config import REQUIRED_CSV_COLUMNS
from predict_pipeline.sources.push.fields import shown_value

_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_NEWLINE = re.compile("\n")


class UploadError(ValueError):
    """A malformed upload file or webhook body; the whole delivery is refused."""

    def __init__(
        self,
        source: str,
        name: str,
        reason: str,
        *,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ):
        self.source = source
        self.name = name
        self.reason = reason
        self.line = line
        self.column = column
        self.field = field
        where = [f"line {line}"] if line is not None else []
        if column is not None:
            where.append(f"column {column}")
        if field is not None:
            where.append(f"({field})")
        place = f" {', '.join(where)}" if where else ""
        super().__init__(f"{source} {name}{place}: {reason}")


@dataclass(frozen=True, slots=True)
class _Row:
    """One record as delivered: its raw object and the accepted fields found in it."""

    raw: dict[str, Any]
    fields: dict[str, Any]


class _Places(Protocol):
    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        """(line, column, name in the data) of a row's field, or of the row when it lacks it."""
        ...


def _decode(data: bytes, source: str, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        codec = "utf-8-sig" if line_start == 0 else "utf-8"  # a BOM is no column
        before = data[line_start : exc.start].decode(codec, errors="replace")
        raise UploadError(
            source,
            name,
            f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
            line=data.count(b"\n", 0, exc.start) + 1,
            column=len(before) + 1,
        ) from None


# --- CSV ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CsvPlaces:
    lines: list[int]  # each row's first line
    columns: dict[str, tuple[int, str]]  # field -> (0-based index, column name)

    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        if field in self.columns:
            index, column = self.columns[field]
            return self.lines[row], index + 1, column
        return self.lines[row], None, field


def _csv_rows(
    text: str,
    names: Mapping[str, str],
    filename: str,
    required: tuple[str, ...] = REQUIRED_CSV_COLUMNS,
    source: str = "upload",
) -> tuple[list[_Row], _CsvPlaces]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)

    def fault(reason: str, line: int, column: int | None = None, field: str | None = None):
        return UploadError(source, filename, reason, line=line, column=column, field=field)

    rows: list[_Row] = []
    lines: list[int] = []
    header: list[str] | None = None
    columns: dict[str, tuple[int, str]] = {}  # field -> (index, column name), set by the header
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise fault(f"unreadable CSV: {exc}", line) from None
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = _csv_header(cells, names, fault, line, required)
            columns = {
                name: (header.index(column), column)
                for name, column in names.items()
                if column in header
            }
            continue
        if len(cells) != len(header):
            first_bad = min(len(cells), len(header))
            field = header[first_bad] if len(cells) < len(header) else None
            reason = f"the row has {len(cells)} cells but the header has {len(header)} columns"
            raise fault(reason, line, first_bad + 1, field)
        rows.append(
            _Row(
                raw=dict(zip(header, cells, strict=True)),
                fields={name: cells[index] for name, (index, _) in columns.items()},
            )
        )
        lines.append(line)
    if header is None:
        raise fault("the file is empty; expected a header row", 1)
    return rows, _CsvPlaces(lines, columns)


def _csv_header(
    cells: list[str],
    names: Mapping[str, str],
    fault: Callable[..., UploadError],
    line: int,
    required: tuple[str, ...],
) -> list[str]:
    header = [cell.strip() for cell in cells]
    for index, column in enumerate(header):
        if not column:
            raise fault("the header has an unnamed column", line, index + 1)
        if column in header[:index]:
            raise fault("the header repeats this column", line, index + 1, column)
    for name in required:
        if names[name] not in header:
            raise fault(f"missing required column {names[name]!r}", line, field=names[name])
    return header


# --- JSON and JSON Lines --------------------------------------------------------------------
#
# One reader of the shapes (`_json_objects`), two ways of reading each record object: the
# standard decoder at C speed, noting only where each record starts, or member by member,
# noting where each value starts. The second runs only when something is wrong: over the whole
# delivery to say where a fault is, or over one record to place its rejected field.

_Located = list[tuple[dict[str, Any], dict[str, int] | None, int]]


class _JsonFault(Exception):
    def __init__(self, reason: str, pos: int):
        self.reason = reason
        self.pos = pos


class _RepeatedKey(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    members = dict(pairs)
    if len(members) != len(pairs):
        raise _RepeatedKey
    return members


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)
_QUICK_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _json_rows(
    text: str, names: Mapping[str, str], source: str, name: str
) -> tuple[list[_Row], _JsonPlaces]:
    try:
        located = _json_objects(text, _quick_object)
    except (_JsonFault, ValueError, RecursionError):
        # Read again member by member: the fault, wherever the quick read met it, is placed.
        try:
            located = _json_objects(text, _object)
        except _JsonFault as exc:
            line, column = _line_column(text, exc.pos)
            raise UploadError(source, name, exc.reason, line=line, column=column) from None
    rows = [
        _Row(raw=obj, fields={field: obj[key] for field, key in names.items() if key in obj})
        for obj, _, _ in located
    ]
    return rows, _JsonPlaces(text, names, located)


def _quick_object(text: str, pos: int) -> tuple[dict[str, Any], None, int]:
    """The object at `pos` by the standard decoder (a repeated key anywhere inside, NaN or
    nesting too deep raise), without the places of its values."""
    obj, end = _QUICK_DECODER.raw_decode(text, pos)
    return obj, None, end


class _JsonPlaces:
    """Where each record and field sits; a record read quickly is read again member by member
    the first time one of its fields is asked for."""

    def __init__(self, text: str, names: Mapping[str, str], located: _Located):
        self._text = text
        self._names = names
        self._located = located
        self._newlines: list[int] | None = None

    def of(self, row: int, field: str) -> tuple[int, int | None, str]:
        obj, positions, start = self._located[row]
        if positions is None:
            positions = _object(self._text, start)[1]
            self._located[row] = (obj, positions, start)
        key = self._names.get(field, field)
        if key in positions:
            return (*self._line_column(positions[key]), key)
        return (*self._line_column(start), field)

    def _line_column(self, pos: int) -> tuple[int, int]:
        """As `_line_column`, by bisecting the newline offsets found once."""
        if self._newlines is None:
            self._newlines = [match.start() for match in _NEWLINE.finditer(self._text)]
        before = bisect.bisect_left(self._newlines, pos)
        return before + 1, pos - (self._newlines[before - 1] if before else -1)


_ReadObject = Callable[[str, int], tuple[dict[str, Any], dict[str, int] | None, int]]


def _json_objects(text: str, read: _ReadObject) -> _Located:
    """The record objects of a JSON document or JSON Lines text, each with where it starts
    (and, read by `_object`, where its values start, so a bad value is reported at its own
    line and column). The first top-level object is always read member by member: it may be
    the {"records": [...]} wrapper, whose list is then read record by record."""
    pos = _skip_space(text, 0)
    if pos == len(text):
        raise _JsonFault("holds no JSON", pos)
    if text[pos] == "[":
        array, end = _object_array(text, pos, read)
        if _skip_space(text, end) != len(text):
            raise _JsonFault("unexpected data after the JSON array", _skip_space(text, end))
        return array
    if text[pos] != "{":
        raise _JsonFault("expected a JSON array or object of records", pos)
    first, positions, end = _object(text, pos)
    if _skip_space(text, end) == len(text):
        if "records" not in first:
            return [(first, positions, pos)]
        start = positions["records"]
        if text[start] != "[":
            raise _JsonFault('"records" must be a list of record objects', start)
        return _object_array(text, start, read)[0]
    records: _Located = [(first, positions, pos)]
    pos = _skip_space(text, end)
    while pos < len(text):  # JSON Lines: one object after another
        if text[pos] != "{":
            raise _JsonFault("expected a JSON object on each line", pos)
        obj, places, end = read(text, pos)
        records.append((obj, places, pos))
        pos = _skip_space(text, end)
    return records


def _object_array(text: str, pos: int, read: _ReadObject) -> tuple[_Located, int]:
    records: _Located = []
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return records, pos + 1
    while True:
        if text[pos : pos + 1] != "{":
            raise _JsonFault("each record must be a JSON object", pos)
        obj, positions, end = read(text, pos)
        records.append((obj, positions, pos))
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator == "]":
            return records, pos + 1
        if separator != ",":
            raise _JsonFault("expected ',' or ']' after a record", pos)
        pos = _skip_space(text, pos + 1)


def _object(text: str, pos: int) -> tuple[dict[str, Any], dict[str, int], int]:
    """Decode the object at `pos` member by member, noting where each value starts."""
    members: dict[str, Any] = {}
    positions: dict[str, int] = {}
    pos = _skip_space(text, pos + 1)
    if text[pos : pos + 1] == "}":
        return members, positions, pos + 1
    while True:
        if text[pos : pos + 1] != '"':
            raise _JsonFault("expected a key in double quotes", pos)
        key, end = _decode_value(text, pos)
        if key in members:
            raise _JsonFault(f"the key {shown_value(key)} appears twice in this record", pos)
        pos = _skip_space(text, end)
        if text[pos : pos + 1] != ":":
            raise _JsonFault("expected ':' after the key", pos)
        pos = _skip_space(text, pos + 1)
        members[key], end = _decode_value(text, pos)
        positions[key] = pos
        pos = _skip_space(text, end)
        separator = text[pos : pos + 1]
        if separator == "}":
            return members, positions, pos + 1
        if separator != ",":
            raise _JsonFault("expected ',' or '}' in the object", pos)
        pos = _skip_space(text, pos + 1)


def _decode_value(text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as exc:
        raise _JsonFault(exc.msg, exc.pos) from None
    except ValueError as exc:  # NaN / Infinity, refused by _refuse_constant
        raise _JsonFault(str(exc), pos) from None
    except RecursionError:
        raise _JsonFault("the value is nested too deeply", pos) from None


def _skip_space(text: str, pos: int) -> int:
    match = _JSON_SPACE.match(text, pos)
    return match.end() if match else pos


def _line_column(text: str, pos: int) -> tuple[int, int]:
    """1-based line and column of `pos`, counted the way json.JSONDecodeError counts them."""
    line = text.count("\n", 0, pos) + 1
    return line, pos - text.rfind("\n", 0, pos)
