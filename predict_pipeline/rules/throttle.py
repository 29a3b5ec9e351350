"""Whether a rule that fired may run its actions now: active hours, cooldown, daily cap.

`decide` checks, in this order, and returns the first that holds:

1. SKIPPED_HOURS: `now` lies outside the rule's active hours. Checked first because it depends
   only on the clock: a sleeping rule reports that, whatever its history.
2. SKIPPED_COOLDOWN: fewer than `cooldown_minutes` have passed since `last_fired_at`. Exactly
   `cooldown_minutes` later is allowed again.
3. SKIPPED_LIMIT: the rule already fired `max_fires_per_day` times in the current UTC day
   (from `utc_day_start(now)`, midnight UTC, inclusive).
4. FIRE.

Active hours (`prediction_rules.active_hours`, see ACTIVE_HOURS_SCHEMA) are read on the wall
clock of their time zone, so a DST change moves them with the local day. A window whose end is
before its start runs across midnight, and its after-midnight part belongs to the day the
window started: with days ["fri"] and 22:00-02:00, Friday 22:00 to Saturday 02:00 is active,
Friday 01:00 is not (that is Thursday's window). Start is inclusive, end exclusive, at minute
resolution ("end": "24:00" closes at midnight).

A NULL cooldown_minutes means no cooldown, a NULL max_fires_per_day no daily cap, a NULL
active_hours every hour of every day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jsonschema import Draft202012Validator

from predict_pipeline.rules import (
    JSON_SCHEMA_DIALECT,
    RuleError,
    parse_json,
    schema_fault,
    with_defaults,
)

Decision = Literal["FIRE", "SKIPPED_COOLDOWN", "SKIPPED_LIMIT", "SKIPPED_HOURS"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()
MAX_COOLDOWN_MINUTES = 525_600  # one year

ACTIVE_HOURS_SCHEMA: dict[str, Any] = {
    "$schema": JSON_SCHEMA_DIALECT,
    "title": "Rule active hours",
    "description": "When a rule may run its actions, on a time zone's wall clock. A window "
    "whose end is before its start runs across midnight; its after-midnight part belongs to "
    "the day the window started.",
    "type": "object",
    "properties": {
        "timezone": {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "description": "IANA time zone name, e.g. Europe/Lisbon or America/New_York.",
        },
        "days": {
            "type": "array",
            "items": {"enum": list(WEEKDAYS)},
            "minItems": 1,
            "uniqueItems": True,
            "default": list(WEEKDAYS),
            "description": "The local days a window starts on; every day when absent.",
        },
        "start": {
            "type": "string",
            "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$",
            "description": "Local start time HH:MM, inclusive.",
        },
        "end": {
            "type": "string",
            "pattern": "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$",
            "description": "Local end time HH:MM, exclusive; 24:00 is midnight at the end of "
            "the day. Before start: the window runs across midnight.",
        },
    },
    "required": ["timezone", "start", "end"],
    "additionalProperties": False,
}
_ACTIVE_HOURS_VALIDATOR = Draft202012Validator(ACTIVE_HOURS_SCHEMA)


@dataclass(frozen=True, slots=True)
class ActiveHours:
    """A daily window on a zone's wall clock; minutes count from local midnight."""

    timezone: ZoneInfo
    days: frozenset[int]  # date.weekday() numbers: 0 is Monday
    start_minute: int
    end_minute: int  # 1440 for 24:00; below start_minute when the window crosses midnight

    def window_day(self, now: datetime) -> date | None:
        """The local day whose window holds `now`, or None when `now` is outside every window."""
        local = now.astimezone(self.timezone)
        minute = local.hour * 60 + local.minute
        if self.start_minute < self.end_minute:
            day = local.date() if self.start_minute <= minute < self.end_minute else None
        elif minute >= self.start_minute:
            day = local.date()
        elif minute < self.end_minute:
            day = local.date() - timedelta(days=1)  # the part after midnight: yesterday's window
        else:
            day = None
        return day if day is not None and day.weekday() in self.days else None

    def contains(self, now: datetime) -> bool:
        return self.window_day(now) is not None


@dataclass(frozen=True, slots=True)
class RuleThrottle:
    """A rule's throttling columns, validated."""

    cooldown_minutes: int = 0
    max_fires_per_day: int | None = None
    active_hours: ActiveHours | None = None


def parse_active_hours(value: Any) -> ActiveHours | None | RuleError:
    """`active_hours` (a dict, JSON text or None) as ActiveHours; None means always active."""
    raw = parse_json(value, "active_hours")
    if raw is None or isinstance(raw, RuleError):
        return raw
    fault = schema_fault(_ACTIVE_HOURS_VALIDATOR, raw, "active_hours")
    if fault is not None:
        return fault
    spec = with_defaults(ACTIVE_HOURS_SCHEMA, raw)
    try:
        zone = ZoneInfo(spec["timezone"])
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: a key naming a folder of the tz database ("America") is not a zone.
        return RuleError(
            f"active_hours.timezone: unknown time zone {spec['timezone']!r}; "
            "use an IANA name such as Europe/Lisbon"
        )
    start, end = _minute_of_day(spec["start"]), _minute_of_day(spec["end"])
    if start == end:
        return RuleError(
            "active_hours: start and end are the same time, an empty window; "
            "use start 00:00 and end 24:00 for the whole day"
        )
    days = frozenset(WEEKDAYS.index(name) for name in spec["days"])
    return ActiveHours(zone, days, start, end)


def validate_throttle(
    *, cooldown_minutes: Any, max_fires_per_day: Any, active_hours: Any
) -> RuleThrottle | RuleError:
    """A rule's throttling columns as a RuleThrottle, or a RuleError naming the bad one."""
    if cooldown_minutes is None:
        cooldown_minutes = 0
    if not _is_int(cooldown_minutes) or not 0 <= cooldown_minutes <= MAX_COOLDOWN_MINUTES:
        return RuleError(
            f"cooldown_minutes: must be a whole number from 0 to {MAX_COOLDOWN_MINUTES}"
        )
    if max_fires_per_day is not None and (not _is_int(max_fires_per_day) or max_fires_per_day < 1):
        return RuleError(
            "max_fires_per_day: must be a whole number of at least 1, or null for no cap "
            "(disable the rule to stop it firing)"
        )
    hours = parse_active_hours(active_hours)
    if isinstance(hours, RuleError):
        return hours
    return RuleThrottle(int(cooldown_minutes), max_fires_per_day, hours)


def decide(
    rule: RuleThrottle, *, now: datetime, last_fired_at: datetime | None, fires_today: int
) -> Decision:
    """FIRE, or why not (see the module docstring for the order of the checks)."""
    _require_aware(now, "now")
    if rule.active_hours is not None and not rule.active_hours.contains(now):
        return "SKIPPED_HOURS"
    if last_fired_at is not None and rule.cooldown_minutes > 0:
        _require_aware(last_fired_at, "last_fired_at")
        if now - last_fired_at < timedelta(minutes=rule.cooldown_minutes):
            return "SKIPPED_COOLDOWN"
    if rule.max_fires_per_day is not None and fires_today >= rule.max_fires_per_day:
        return "SKIPPED_LIMIT"
    return "FIRE"


def utc_day_start(now: datetime) -> datetime:
    """Midnight UTC starting the day `now` is in: the daily cap counts fires from here on."""
    _require_aware(now, "now")
    moment = now.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def fires_today(fired_at: Iterable[datetime], *, now: datetime) -> int:
    """How many of the times a rule fired fall in the UTC day of `now` (up to `now`)."""
    start = utc_day_start(now)
    return sum(1 for moment in fired_at if start <= moment <= now)


def _minute_of_day(text: str) -> int:
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a tz-aware datetime, got a naive one")
