"""A small JSONPath-like selector for user-defined field mappings (parsed, never evaluated).

Grammar, by example:

- `$` is the document itself; `$.a.b` and `a.b` both walk keys `a` then `b`.
- `items[0]`, `items[-1]` pick a list element by index.
- `items[*]` (or `items.*`) fans out over every element of a list, or every value of an object.
- `$.data[*].price` takes `price` from every element of `data`.
- `['key with space']` / `["it's"]` quote a key; `\\` escapes the quote character or a backslash.

A bare key is any run of characters other than `.`, `[`, `]`, quotes and whitespace. Selection
never raises on the document's shape: a missing key, an index out of range, or a key asked of a
list simply matches nothing. A malformed path raises `FieldPathError` with the 1-based position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_KEY, _INDEX, _WILDCARD = "key", "index", "wildcard"
_NAME_STOP = frozenset(".[]'\"") | frozenset(" \t\r\n")
_INDEX_DIGITS = re.compile(r"-?[0-9]+")


class FieldPathError(ValueError):
    """A path that cannot be parsed; `position` is the 1-based character where it went wrong."""

    def __init__(self, path: str, position: int, reason: str):
        self.path = path
        self.position = position
        self.reason = reason
        super().__init__(f"malformed field path {path!r} at position {position}: {reason}")


class ShapeError(ValueError):
    """A document that lacks the structure a records path expects."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: str  # _KEY, _INDEX or _WILDCARD
    key: str | int | None = None

    def apply(self, node: Any) -> list[Any]:
        if self.kind == _KEY:
            return [node[self.key]] if isinstance(node, dict) and self.key in node else []
        if self.kind == _INDEX:
            index = int(self.key or 0)
            return (
                [node[index]] if isinstance(node, list) and -len(node) <= index < len(node) else []
            )
        if isinstance(node, list):
            return list(node)
        if isinstance(node, dict):
            return list(node.values())
        return []

    def text(self) -> str:
        if self.kind == _WILDCARD:
            return "[*]"
        if self.kind == _INDEX:
            return f"[{self.key}]"
        key = str(self.key)
        if key and not any(ch in _NAME_STOP for ch in key):
            return f".{key}"
        return "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


@dataclass(frozen=True, slots=True)
class FieldPath:
    source: str
    steps: tuple[Step, ...]

    @property
    def single_key(self) -> str | None:
        """The key of a one-key path (`price`), which callers may read without a match list."""
        if len(self.steps) == 1 and self.steps[0].kind == _KEY:
            return str(self.steps[0].key)
        return None

    def select(self, doc: Any) -> list[Any]:
        if len(self.steps) == 1:  # the common `field` mapping: one key, no list to build
            return self.steps[0].apply(doc)
        nodes = [doc]
        for step in self.steps:
            nodes = [match for node in nodes for match in step.apply(node)]
            if not nodes:
                break
        return nodes


def compile_path(path: str) -> FieldPath:
    """Parse `path` once (cached); raise FieldPathError when it is malformed."""
    if not isinstance(path, str):
        raise FieldPathError(repr(path), 1, f"a path must be text, got {type(path).__name__}")
    return _compile(path)


@lru_cache(maxsize=1024)
def _compile(path: str) -> FieldPath:
    if not path:
        raise FieldPathError(path, 1, "the path is empty")
    steps: list[Step] = []
    pos = 0
    if path[0] == "$":
        pos = 1
    elif path[0] != "[":
        key, pos = _read_name(path, 0)
        steps.append(_key_step(key))
    while pos < len(path):
        char = path[pos]
        if char == ".":
            key, pos = _read_name(path, pos + 1)
            steps.append(_key_step(key))
        elif char == "[":
            step, pos = _read_bracket(path, pos + 1)
            steps.append(step)
        else:
            raise FieldPathError(path, pos + 1, f"expected '.' or '[', found {char!r}")
    return FieldPath(path, tuple(steps))


def _key_step(key: str) -> Step:
    return Step(_WILDCARD) if key == "*" else Step(_KEY, key)


def _read_name(path: str, pos: int) -> tuple[str, int]:
    end = pos
    while end < len(path) and path[end] not in _NAME_STOP:
        end += 1
    if end == pos:
        found = repr(path[pos]) if pos < len(path) else "the end of the path"
        raise FieldPathError(path, pos + 1, f"expected a field name, found {found}")
    return path[pos:end], end


def _read_bracket(path: str, pos: int) -> tuple[Step, int]:
    """Read what follows '[' up to and including ']'."""
    if pos >= len(path):
        raise FieldPathError(path, pos + 1, "expected an index, '*' or a quoted key after '['")
    char = path[pos]
    if char == "*":
        step, end = Step(_WILDCARD), pos + 1
    elif char in "'\"":
        key, end = _read_quoted(path, pos)
        step = Step(_KEY, key)
    elif (index := _INDEX_DIGITS.match(path, pos)) is not None:
        step, end = Step(_INDEX, int(index.group())), index.end()
    else:
        raise FieldPathError(
            path, pos + 1, f"expected an index, '*' or a quoted key after '[', found {char!r}"
        )
    if end >= len(path) or path[end] != "]":
        raise FieldPathError(path, end + 1, "expected ']'")
    return step, end + 1


def _read_quoted(path: str, pos: int) -> tuple[str, int]:
    quote = path[pos]
    chars: list[str] = []
    end = pos + 1
    while end < len(path):
        char = path[end]
        if char == "\\":
            if end + 1 >= len(path) or path[end + 1] not in (quote, "\\"):
                raise FieldPathError(path, end + 1, f"'\\' may only escape {quote} or '\\'")
            chars.append(path[end + 1])
            end += 2
        elif char == quote:
            return "".join(chars), end + 1
        else:
            chars.append(char)
            end += 1
    raise FieldPathError(path, pos + 1, f"the quoted key opened here is never closed by {quote}")


def select(doc: Any, path: str) -> list[Any]:
    """Every value `path` reaches in `doc`, in document order (empty when nothing matches)."""
    return compile_path(path).select(doc)


def select_one(doc: Any, path: str, default: Any = None) -> Any:
    """The single value `path` reaches; `default` when none; ValueError when several do."""
    matches = compile_path(path).select(doc)
    if not matches:
        return default
    if len(matches) > 1:
        raise ValueError(f"path {path!r} matched {len(matches)} values where one was expected")
    return matches[0]


def select_items(doc: Any, path: str) -> list[Any]:
    """The records a records path points at: the list it names, or what its wildcards reach.

    A path that does not end in a wildcard must name exactly one list (`$.data` reads like
    `$.data[*]`). An empty list is a legitimate empty page, but a document without the
    structure the path walks (an error body, a renamed key) raises ShapeError naming the first
    step that found nothing, so an API fault never looks like an empty page.
    """
    compiled = compile_path(path)
    implicit = not compiled.steps or compiled.steps[-1].kind != _WILDCARD
    steps = (*compiled.steps, Step(_WILDCARD)) if implicit else compiled.steps
    nodes = [doc]
    walked = "$"
    for number, step in enumerate(steps, start=1):
        if not nodes:
            break
        if step.kind == _WILDCARD:
            lists_only = implicit and number == len(steps)
            containers = [node for node in nodes if node is not None]
            expected = (list,) if lists_only else (list, dict)
            odd = [node for node in containers if not isinstance(node, expected)]
            if odd:
                raise ShapeError(f"{walked} holds {_describe(odd)} where a list was expected")
            nodes = [match for node in containers for match in step.apply(node)]
        else:
            matched = [match for node in nodes for match in step.apply(node)]
            if not matched:
                raise ShapeError(f"nothing at {walked}{step.text()} ({_describe(nodes)} there)")
            nodes = matched
        walked += step.text()
    return nodes


def _describe(nodes: list[Any]) -> str:
    first = nodes[0]
    if isinstance(first, dict):
        keys = ", ".join(sorted(map(str, first))[:8])
        what = f"an object with keys {keys}" if keys else "an empty object"
    else:
        what = f"a {type(first).__name__}" if first is not None else "null"
    return what if len(nodes) == 1 else f"{len(nodes)} values, the first {what}"
