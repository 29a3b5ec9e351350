"""Message templates of rule actions: Slack text, email subject and body, a pause reason.

A template is `{name}` placeholders from TEMPLATE_FIELDS with an optional simple format spec
(`{probability:.0%}`); no attribute or index access, no conversions, no nested fields. A value
the firing lacks renders as "n/a".
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from predict_pipeline.rules.trigger_schemas import TRIGGER_VALUE_NAMES
from predict_pipeline.rules.triggers import Firing

_COMMON_FIELDS = (
    "rule_id",
    "rule_name",
    "event_id",
    "event_title",
    "trigger_type",
    "summary",
    "state_key",
    "as_of",
    "fired_at",
)
TEMPLATE_FIELDS = frozenset(_COMMON_FIELDS) | {
    name for names in TRIGGER_VALUE_NAMES.values() for name in names if name != "flags"
}
# fill/align, sign, zero, width, grouping, precision, type; widths stay below 100 characters.
_FORMAT_SPEC = re.compile(r"([^{}]?[<>^=])?[+\- ]?0?\d{0,2}[,_]?(\.\d{1,2})?[bdeEfFgGnosxX%]?")


class _TemplateFormatter(string.Formatter):
    def __init__(self, escape: Callable[[str], str] | None = None):
        self._escape = escape

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        return kwargs.get(field_name), field_name  # plain names only (checked by template_fault)

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            text = "n/a"
        else:
            try:
                text = format(value, format_spec)
            except (TypeError, ValueError):
                text = str(value)  # a number spec on text: show the text
        return self._escape(text) if self._escape else text


def template_fault(template: str) -> str | None:
    """Why a message template is refused, or None when it is fine."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template ({exc}); write a literal brace as {{{{ or }}}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:
            known = ", ".join(sorted(TEMPLATE_FIELDS))
            return f"unknown placeholder {{{name[:40]}}}; known: {known}"
        if conversion is not None:
            return f"placeholder {{{name}}}: conversions such as !{conversion} are not allowed"
        if spec and not _FORMAT_SPEC.fullmatch(spec):
            return f"placeholder {{{name}}}: format spec {spec[:20]!r} is not allowed"
    return None


def render_template(
    template: str, values: Mapping[str, Any], *, escape: Callable[[str], str] | None = None
) -> str:
    """`template` with its placeholders filled from `values`; `escape` applies to each value."""
    return _TemplateFormatter(escape).vformat(template, (), values)


def slack_escape(text: str) -> str:
    """Slack's three control characters, so an event title cannot mention @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What every action of one execution knows: the rule and the firing."""

    rule_id: str
    rule_name: str
    firing: Firing


def template_values(context: ActionContext, now: datetime) -> dict[str, Any]:
    """The values message templates may use, for one firing: every TEMPLATE_FIELDS name."""
    snapshot = context.firing.trigger_snapshot
    values: dict[str, Any] = dict.fromkeys(TEMPLATE_FIELDS)
    for name, value in snapshot.get("values", {}).items():
        if name in TEMPLATE_FIELDS and isinstance(value, str | int | float):
            values[name] = value
    values.update(
        rule_id=context.rule_id,
        rule_name=context.rule_name,
        event_id=context.firing.event_id,
        event_title=snapshot.get("event_title") or context.firing.event_id,
        trigger_type=context.firing.trigger_type,
        summary=snapshot.get("summary"),
        state_key=context.firing.state_key,
        as_of=snapshot.get("as_of"),
        fired_at=now.astimezone(UTC).isoformat(),
    )
    return values
