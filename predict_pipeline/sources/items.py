"""Reading a page's items one by one: an item that cannot be read becomes a reject with its
reason and never stops the items after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from predict_pipeline.model import MAX_SOURCE_EVENT_ID_BYTES, RecordReject
from predict_pipeline.sources.parsing import TimestampOutOfRange

T = TypeVar("T")

# What reading one item of a page can raise: a body whose shape or values the adapter cannot
# read (PayloadError and the timestamp readers' errors are ValueErrors), or junk of a type the
# field readers did not expect.
ITEM_FAULTS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    ArithmeticError,
    RecursionError,  # nested junk deeper than the interpreter's stack
)
_DETAIL_CHARS = 300


def item_reject(
    index: int, item: Any, exc: BaseException, id_keys: tuple[str, ...]
) -> RecordReject:
    """The reject of item `index` that raised `exc`: its named reason, one line of detail, and
    its id when the item still names one."""
    ident = None
    if isinstance(item, dict):
        for key in id_keys:
            value = item.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                ident = str(value)[:MAX_SOURCE_EVENT_ID_BYTES]
                break
    detail = " ".join(str(exc).split())[:_DETAIL_CHARS] or type(exc).__name__
    cause = exc if isinstance(exc, TimestampOutOfRange) else exc.__cause__
    reason = cause.reason if isinstance(cause, TimestampOutOfRange) else "unreadable_item"
    return RecordReject(reason, detail, index, ident, item)


def read_each(
    items: list[Any], read: Callable[[int, Any], T], *, id_keys: tuple[str, ...] = ("id",)
) -> tuple[list[T], list[RecordReject]]:
    """`read(index, item)` for every item of a page; an item it cannot read becomes a reject
    with its reason and never stops the items after it."""
    results: list[T] = []
    rejects: list[RecordReject] = []
    for index, item in enumerate(items):
        try:
            results.append(read(index, item))
        except ITEM_FAULTS as exc:
            rejects.append(item_reject(index, item, exc, id_keys))
    return results, rejects
