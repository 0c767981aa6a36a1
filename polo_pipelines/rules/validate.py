"""What every rule type's condition parsing shares: the error, where-and-why checks, business hours and filters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from polo_pipelines.validation import known_keys, require

PERIODS = ("day", "week", "month")
FILTERS = ("resource_type", "service", "collector", "aws_account_id", "environment", "untagged", "tags")
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


class RuleError(ValueError):
    """A rule that cannot be accepted, with where and why."""


@dataclass(frozen=True)
class BusinessHours:
    timezone: str = "Australia/Melbourne"
    days: tuple[int, ...] = (0, 1, 2, 3, 4)
    start: dt.time = dt.time(8, 0)
    end: dt.time = dt.time(18, 0)

    def contains(self, moment: dt.datetime) -> bool:
        """Whether an aware moment falls in business hours in the rule's time zone (DST included)."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        return local.weekday() in self.days and self.start <= local.time() < self.end


def plain(value: Any) -> Any:
    if isinstance(value, BusinessHours):
        names = {v: k for k, v in DAYS.items()}
        return {
            "timezone": value.timezone,
            "days": ",".join(names[d] for d in value.days),
            "start": plain(value.start),
            "end": plain(value.end),
        }
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    return value


def need(cond: bool, where: str, message: str) -> None:
    require(cond, where, message, RuleError)


def allowed_keys(doc: Mapping, allowed: set[str], where: str) -> None:
    known_keys(doc, allowed, where, RuleError)


def number(value: Any, where: str, name: str, minimum: float = 0.0) -> float:
    need(isinstance(value, (int, float)) and not isinstance(value, bool), where, f"{name} must be a number, got {value!r}")
    need(value >= minimum, where, f"{name} must be >= {minimum}, got {value}")
    return float(value)


def strings(value: Any, where: str, name: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    need(all(isinstance(v, str) and v for v in items) and items, where, f"{name} must be a non-empty string or list of strings")
    return list(items)


def clock(value: Any, where: str, name: str) -> dt.time:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 18:00 as the sexagesimal number 1080
        hhmm = f"{value // 60:02d}:{value % 60:02d}"
        raise RuleError(
            f"{where}: {name} must be HH:MM in quotes: write {name}: '{hhmm}' (YAML reads an unquoted {hhmm} as the number {value})"
        )
    try:
        return dt.time.fromisoformat(str(value))
    except ValueError:
        raise RuleError(f"{where}: {name} must be HH:MM, got {value!r}") from None


def parse_business_hours(doc: Any, where: str) -> BusinessHours:
    if doc is True:
        return BusinessHours()
    need(isinstance(doc, Mapping), where, "business_hours must be true or a mapping")
    allowed_keys(doc, {"timezone", "days", "start", "end"}, f"{where}.business_hours")
    zone = str(doc.get("timezone", "Australia/Melbourne"))
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleError(f"{where}: unknown time zone {zone!r}") from None
    days_text = str(doc.get("days", "mon-fri")).lower()
    days: list[int] = []
    for part in days_text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            need(a in DAYS and b in DAYS, where, f"days must look like mon-fri or sat,sun, got {days_text!r}")
            days.extend(range(DAYS[a], DAYS[b] + 1))
        else:
            need(part in DAYS, where, f"days must look like mon-fri or sat,sun, got {days_text!r}")
            days.append(DAYS[part])
    start, end = clock(doc.get("start", "08:00"), where, "start"), clock(doc.get("end", "18:00"), where, "end")
    need(start < end, where, "business hours must start before they end")
    return BusinessHours(zone, tuple(sorted(set(days))), start, end)


def parse_filters(doc: Any, where: str) -> dict[str, Any]:
    need(isinstance(doc, Mapping), where, "filters must be a mapping")
    filters = dict(doc)
    allowed_keys(filters, set(FILTERS), where)
    for key, value in filters.items():
        if key == "untagged":
            need(isinstance(value, bool), where, "filter untagged must be true or false")
        elif key == "tags":
            need(
                isinstance(value, Mapping) and all(isinstance(k, str) and k for k in value),
                where,
                "filter tags must map tag keys to values",
            )
            filters[key] = {k: strings(v, where, f"tags.{k}") for k, v in value.items()}
        else:
            filters[key] = strings(value, where, f"filter {key}")
    return filters
