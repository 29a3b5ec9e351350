"""Throttling: cooldown, the daily cap at UTC midnight, active hours across midnight and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from jsonschema import Draft202012Validator

from predict_pipeline.rules import RuleError
from predict_pipeline.rules.throttle import (
    ACTIVE_HOURS_SCHEMA,
    ActiveHours,
    RuleThrottle,
    decide,
    fires_today,
    parse_active_hours,
    utc_day_start,
    validate_throttle,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def hours(**spec) -> ActiveHours:
    parsed = parse_active_hours(spec)
    assert isinstance(parsed, ActiveHours), parsed
    return parsed


def throttle(**columns) -> RuleThrottle:
    columns = {"cooldown_minutes": None, "max_fires_per_day": None, "active_hours": None} | columns
    validated = validate_throttle(**columns)
    assert isinstance(validated, RuleThrottle), validated
    return validated


def test_active_hours_schema_is_a_closed_2020_12_schema():
    Draft202012Validator.check_schema(ACTIVE_HOURS_SCHEMA)
    assert ACTIVE_HOURS_SCHEMA["additionalProperties"] is False


# ---------------------------------------------------------------------------------------------
# Cooldown and daily cap


def test_cooldown_boundary_is_inclusive_of_the_full_cooldown():
    rule = throttle(cooldown_minutes=30)
    last = utc(2026, 3, 2, 10, 0)
    just_before = utc(2026, 3, 2, 10, 29, 59)
    assert decide(rule, now=just_before, last_fired_at=last, fires_today=1) == "SKIPPED_COOLDOWN"
    exactly = utc(2026, 3, 2, 10, 30)
    assert decide(rule, now=exactly, last_fired_at=last, fires_today=1) == "FIRE"
    assert decide(rule, now=just_before, last_fired_at=None, fires_today=0) == "FIRE"


def test_daily_cap_resets_at_utc_midnight():
    rule = throttle(max_fires_per_day=3)
    fired = [utc(2026, 3, 2, 20, 0), utc(2026, 3, 2, 22, 0), utc(2026, 3, 2, 23, 59, 59)]
    late = utc(2026, 3, 2, 23, 59, 59, 500000)
    assert fires_today(fired, now=late) == 3
    assert decide(rule, now=late, last_fired_at=fired[-1], fires_today=3) == "SKIPPED_LIMIT"
    midnight = utc(2026, 3, 3, 0, 0)
    assert fires_today(fired, now=midnight) == 0
    assert decide(rule, now=midnight, last_fired_at=fired[-1], fires_today=0) == "FIRE"


def test_the_utc_day_is_taken_in_utc_whatever_the_offset_of_now():
    # 01:30 in Lisbon summer time is still the previous day in UTC.
    lisbon_summer = timezone(timedelta(hours=1))
    now = datetime(2026, 7, 1, 0, 30, tzinfo=lisbon_summer)
    assert utc_day_start(now) == utc(2026, 6, 30)


def test_checks_run_hours_then_cooldown_then_limit():
    rule = throttle(
        cooldown_minutes=60,
        max_fires_per_day=1,
        active_hours={"timezone": "UTC", "start": "09:00", "end": "17:00"},
    )
    last = utc(2026, 3, 2, 8, 30)
    night = utc(2026, 3, 2, 8, 45)
    assert decide(rule, now=night, last_fired_at=last, fires_today=1) == "SKIPPED_HOURS"
    morning = utc(2026, 3, 2, 9, 15)
    assert decide(rule, now=morning, last_fired_at=last, fires_today=1) == "SKIPPED_COOLDOWN"
    later = utc(2026, 3, 2, 9, 45)
    assert decide(rule, now=later, last_fired_at=last, fires_today=1) == "SKIPPED_LIMIT"
    assert decide(rule, now=later, last_fired_at=last, fires_today=0) == "FIRE"


def test_null_columns_mean_no_throttling():
    rule = throttle()
    assert rule == RuleThrottle(cooldown_minutes=0, max_fires_per_day=None, active_hours=None)
    now = utc(2026, 3, 2, 3, 0)
    assert decide(rule, now=now, last_fired_at=now, fires_today=10_000) == "FIRE"


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="now must be a tz-aware datetime"):
        decide(throttle(), now=datetime(2026, 3, 2), last_fired_at=None, fires_today=0)


# ---------------------------------------------------------------------------------------------
# Active hours


NEW_YORK_FRIDAY_NIGHTS = {
    "timezone": "America/New_York",
    "days": ["fri"],
    "start": "22:00",
    "end": "02:00",
}


@pytest.mark.parametrize(
    ("now", "window_day"),
    [
        (utc(2026, 3, 7, 2, 59), None),  # Friday 21:59 EST
        (utc(2026, 3, 7, 3, 0), date(2026, 3, 6)),  # Friday 22:00 EST (Saturday in UTC)
        (utc(2026, 3, 7, 6, 30), date(2026, 3, 6)),  # Saturday 01:30 EST: Friday's window
        (utc(2026, 3, 7, 7, 0), None),  # Saturday 02:00 EST: closed (end is exclusive)
        (utc(2026, 3, 6, 6, 30), None),  # Friday 01:30 EST: that is Thursday's window
        (utc(2026, 3, 14, 3, 0), date(2026, 3, 13)),  # Friday 23:00 EDT, a week later
        (utc(2026, 3, 15, 3, 0), None),  # Saturday 23:00 EDT is not a Friday
    ],
)
def test_a_window_across_midnight_belongs_to_the_day_it_started(now, window_day):
    window = hours(**NEW_YORK_FRIDAY_NIGHTS)
    assert window.window_day(now) == window_day
    rule = RuleThrottle(active_hours=window)
    expected = "SKIPPED_HOURS" if window_day is None else "FIRE"
    assert decide(rule, now=now, last_fired_at=None, fires_today=0) == expected


@pytest.mark.parametrize(
    ("now", "active"),
    [
        # 2026-03-08 02:00 EST the clocks jump to 03:00 EDT (a Sunday).
        (utc(2026, 3, 8, 3, 0), True),  # Saturday 22:00 EST
        (utc(2026, 3, 8, 6, 59), True),  # Sunday 01:59 EST
        (utc(2026, 3, 8, 7, 0), False),  # Sunday 03:00 EDT: 02:00 never happened
        # 2026-11-01 02:00 EDT the clocks fall back to 01:00 EST: 01:30 happens twice.
        (utc(2026, 11, 1, 2, 0), True),  # Saturday 22:00 EDT
        (utc(2026, 11, 1, 5, 30), True),  # Sunday 01:30 EDT
        (utc(2026, 11, 1, 6, 30), True),  # Sunday 01:30 EST, the second time
        (utc(2026, 11, 1, 7, 0), False),  # Sunday 02:00 EST
    ],
)
def test_new_york_saturday_nights_on_dst_change_days(now, active):
    window = hours(timezone="America/New_York", days=["sat"], start="22:00", end="02:00")
    assert window.contains(now) is active


def test_lisbon_office_hours_move_with_summer_time():
    # Lisbon goes from UTC+0 to UTC+1 on 2026-03-29 at 01:00 UTC.
    window = hours(timezone="Europe/Lisbon", start="08:00", end="18:00")
    assert not window.contains(utc(2026, 3, 28, 7, 30))  # 07:30 WET
    assert window.contains(utc(2026, 3, 29, 7, 30))  # 08:30 WEST
    assert window.contains(utc(2026, 3, 28, 17, 30))  # 17:30 WET
    assert not window.contains(utc(2026, 3, 29, 17, 30))  # 18:30 WEST


def test_end_24_00_runs_to_midnight():
    window = hours(timezone="UTC", days=["mon"], start="00:00", end="24:00")
    assert window.contains(utc(2026, 3, 2, 0, 0))  # Monday
    assert window.contains(utc(2026, 3, 2, 23, 59, 59))
    assert not window.contains(utc(2026, 3, 3, 0, 0))  # Tuesday


def test_active_hours_as_json_text_and_null():
    assert parse_active_hours(None) is None
    parsed = parse_active_hours('{"timezone": "Europe/Lisbon", "start": "08:00", "end": "18:00"}')
    assert isinstance(parsed, ActiveHours)
    assert parsed.days == frozenset(range(7))
    assert (parsed.start_minute, parsed.end_minute) == (480, 1080)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{"timezone": "UTC", "start": "08:00"', "active_hours: not valid JSON"),
        (
            {"timezone": "Mars/Olympus_Mons", "start": "08:00", "end": "18:00"},
            "active_hours.timezone: unknown time zone 'Mars/Olympus_Mons'; use an IANA name",
        ),
        (
            {"timezone": "America", "start": "08:00", "end": "18:00"},
            "active_hours.timezone: unknown time zone 'America'",
        ),
        (
            {"timezone": "UTC", "start": "25:00", "end": "18:00"},
            "active_hours.start: must match the pattern",
        ),
        (
            {"timezone": "UTC", "start": "08:00", "end": "08:00"},
            "active_hours: start and end are the same time, an empty window",
        ),
        (
            {"timezone": "UTC", "start": "08:00", "end": "18:00", "days": ["funday"]},
            "active_hours.days[0]: must be one of mon, tue, wed, thu, fri, sat, sun",
        ),
        (
            {"timezone": "UTC", "start": "08:00", "end": "18:00", "tz": "UTC"},
            "active_hours: unknown field 'tz' (allowed: days, end, start, timezone)",
        ),
        ({"start": "08:00", "end": "18:00"}, "active_hours: missing required field 'timezone'"),
        (["08:00", "18:00"], "active_hours: must be of type object"),
    ],
)
def test_bad_active_hours_give_a_rule_error(value, reason):
    error = parse_active_hours(value)
    assert isinstance(error, RuleError)
    assert error.reason.startswith(reason), error.reason


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        ({"cooldown_minutes": -5}, "cooldown_minutes: must be a whole number from 0 to 525600"),
        ({"cooldown_minutes": True}, "cooldown_minutes: must be a whole number from 0 to 525600"),
        ({"max_fires_per_day": 0}, "max_fires_per_day: must be a whole number of at least 1"),
        ({"active_hours": "not json"}, "active_hours: not valid JSON"),
    ],
)
def test_bad_throttle_columns_give_a_rule_error(columns, reason):
    merged = {"cooldown_minutes": 60, "max_fires_per_day": 10, "active_hours": None} | columns
    error = validate_throttle(**merged)
    assert isinstance(error, RuleError)
    assert error.reason.startswith(reason), error.reason
