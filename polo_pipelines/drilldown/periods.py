"""The periods and settings of a drill-down, and the ISO-week arithmetic every part of Polo shares.

Periods are [start, end) dates. Weeks are ISO weeks, Monday to Sunday, in UTC: the same in SQL,
in the weekly partitions, the sensors, the summary and the drill-down.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from polo_pipelines.store.events import CHARGE_CATEGORIES, NON_USAGE_CATEGORIES

WEEK = dt.timedelta(days=7)


class DeltaError(ValueError):
    """A drill-down that cannot be answered as asked (bad periods, unknown node or resource)."""


class UnknownEntity(DeltaError):
    """The store holds no node or resource by that id."""


def week_start(day: dt.date) -> dt.date:
    """The Monday of the ISO week holding ``day``."""
    return day - dt.timedelta(days=day.weekday())


def last_complete_week(today: dt.date) -> dt.date:
    """The Monday of the last ISO week that ended before ``today``."""
    return week_start(today) - WEEK


def first_monday_from(day: dt.date) -> dt.date:
    """The first Monday on or after ``day`` (the first whole ISO week from there)."""
    return day + dt.timedelta(days=(7 - day.weekday()) % 7)


def week_days(monday: dt.date) -> list[dt.date]:
    return [monday + dt.timedelta(days=n) for n in range(7)]


def day_span(start: dt.date, end_exclusive: dt.date) -> str:
    """How a person reads [start, end): both days included, ``2026-11-16..2026-11-22``."""
    return f"{start}..{end_exclusive - dt.timedelta(days=1)}"


@dataclass(frozen=True)
class Periods:
    current_start: dt.date
    current_end: dt.date
    compare_start: dt.date
    compare_end: dt.date

    def __post_init__(self) -> None:
        for name, start, end in (("current", self.current_start, self.current_end), ("compare", self.compare_start, self.compare_end)):
            if start >= end:
                raise DeltaError(f"the {name} period is empty or inverted: {start} .. {end} (end is exclusive)")
        if self.current_start < self.compare_end and self.compare_start < self.current_end:
            raise DeltaError(
                f"the periods overlap: current {self.current_start}..{self.current_end}, compare {self.compare_start}..{self.compare_end}"
            )

    @classmethod
    def preceding(cls, start: dt.date, end: dt.date) -> Periods:
        """``[start, end)`` against the period of the same length just before it."""
        length = end - start
        return cls(start, end, start - length, start)

    @classmethod
    def last_complete_week(cls, today: dt.date) -> Periods:
        """The last complete ISO week (Monday to Sunday) against the week before."""
        return cls.week(last_complete_week(today))

    @classmethod
    def week(cls, monday: dt.date) -> Periods:
        """The ISO week starting ``monday`` against the week before."""
        if monday.weekday() != 0:
            raise DeltaError(f"{monday} is not a Monday: weeks are ISO weeks")
        return cls.preceding(monday, monday + WEEK)

    def params(self) -> dict[str, dt.date]:
        return {
            "cs": self.current_start,
            "ce": self.current_end,
            "ps": self.compare_start,
            "pe": self.compare_end,
            "lo": min(self.current_start, self.compare_start),
            "hi": max(self.current_end, self.compare_end),
        }

    def describe(self) -> str:
        return f"{day_span(self.current_start, self.current_end)} vs {day_span(self.compare_start, self.compare_end)}"

    def as_json(self) -> dict[str, str]:
        return {name: getattr(self, name).isoformat() for name in ("current_start", "current_end", "compare_start", "compare_end")}


@dataclass(frozen=True)
class Settings:
    """What the drill-down counts and shows; these defaults are the only ones (CLI, weekly assets, API)."""

    node_threshold: float = 1.0  # USD: a node is listed when |delta| exceeds this
    resource_threshold: float = 0.5  # USD: a resource is listed when |delta| exceeds this
    include_non_usage: bool = False  # count credits, refunds and tax too

    def __post_init__(self) -> None:
        for name in ("node_threshold", "resource_threshold"):
            value = getattr(self, name)
            if not (value >= 0 and value < float("inf")):
                raise DeltaError(f"{name} must be a non-negative amount in USD, got {value!r}")

    def as_json(self) -> dict[str, Any]:
        return {
            "node_threshold": self.node_threshold,
            "resource_threshold": self.resource_threshold,
            "include_credits": self.include_non_usage,
        }

    @property
    def categories(self) -> list[str]:
        return list(CHARGE_CATEGORIES) if self.include_non_usage else [c for c in CHARGE_CATEGORIES if c not in NON_USAGE_CATEGORIES]
