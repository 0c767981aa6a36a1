"""How complete a period's figures are: per collector, the days it never loaded (missing) and the days it may still
restate (unsettled), so an export that stopped part-way never reads as a real drop.

What counts, from ``polo.partition_loads`` (one row per collector and day, its last load):

- **missing**: a day of the period, from ``POLO_START_DATE`` and before today (UTC), that a collector which has loaded
  anything never loaded. A day loaded with no events is not missing: its source said it was empty.
- **unsettled**: a day among a collector's last ``POLO_LOOKBACK_DAYS`` loaded days (the days the daily run collects
  again; a source's newest day is often partial, and billing data is restated for days).
- **after the data ends**: a day of the period, today or later, after the collector's last loaded day: not collected
  yet, and said with the last day the data holds (a window after the data ends is never a drop to $0.00 "gone").
- **restated**: a day whose latest load's cost differs by a cent or more from its first load's
  (``polo.partition_load_history``): figures read before are shown old and new.

Every figure of the drill-down, the summary and the weekly assets carries this, in words
("cost_aws: 2026-04-17..19 missing") and in JSON.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from polo_pipelines.drilldown.delta import CENT
from polo_pipelines.settings import lookback
from polo_pipelines.sources import cost_collectors
from polo_pipelines.sources.sample import first_partition_day
from polo_pipelines.store.events import ALLOCATION_COLLECTORS
from polo_pipelines.store.storage import Store


def _counted() -> list[str]:
    """The collectors whose days the totals count: every cost collector but an allocation's (the spans' share of
    hosts a billing collector already holds, settled when that collector's days are)."""
    return sorted(cost_collectors() - set(ALLOCATION_COLLECTORS))


def runs(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Consecutive days as inclusive (first, last) runs."""
    out: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if out and day == out[-1][1] + dt.timedelta(days=1):
            out[-1] = (out[-1][0], day)
        else:
            out.append((day, day))
    return out


def span(first: dt.date, last: dt.date) -> str:
    """2026-04-17, 2026-04-17..19 (same month), 2026-04-28..2026-05-02."""
    if first == last:
        return first.isoformat()
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.isoformat()}..{last.day:02d}"
    return f"{first.isoformat()}..{last.isoformat()}"


@dataclass(frozen=True)
class Coverage:
    """One collector over one period."""

    collector: str
    missing: tuple[dt.date, ...]
    unsettled: tuple[dt.date, ...]
    restated: tuple[tuple[dt.date, float, float], ...] = ()  # (day, first loaded cost, latest)
    beyond: tuple[dt.date, ...] = ()  # days after the data ends (today or later, after last_day)
    last_day: dt.date | None = None

    def words(self) -> str:
        return f"{self.collector}: {self.gap_words()}"

    def gap_words(self) -> str:
        parts = []
        if self.missing:
            parts.append(", ".join(span(*r) for r in runs(list(self.missing))) + " missing")
        if self.unsettled:
            parts.append(", ".join(span(*r) for r in runs(list(self.unsettled))) + " unsettled")
        if self.beyond:
            parts.append(", ".join(span(*r) for r in runs(list(self.beyond))) + f" not collected yet (the data ends {self.last_day})")
        if self.restated:
            from polo_pipelines.cli.text import usd

            parts.append("restated " + ", ".join(f"{d} {usd(old)} → {usd(new)}" for d, old, new in self.restated))
        return "; ".join(parts)

    def as_json(self) -> dict[str, Any]:
        return {
            "collector": self.collector,
            "missing": [[a.isoformat(), b.isoformat()] for a, b in runs(list(self.missing))],
            "unsettled": [[a.isoformat(), b.isoformat()] for a, b in runs(list(self.unsettled))],
            "not_collected_yet": [[a.isoformat(), b.isoformat()] for a, b in runs(list(self.beyond))],
            "last_day": self.last_day.isoformat() if self.last_day else None,
            "restated": [{"day": d.isoformat(), "first_loaded_usd": old, "now_usd": new} for d, old, new in self.restated],
        }


@dataclass(frozen=True)
class Completeness:
    """Every collector's gaps in one period [start, end); ``complete`` when there are none."""

    start: dt.date
    end: dt.date
    gaps: tuple[Coverage, ...]

    @property
    def complete(self) -> bool:
        return not any(g.missing or g.unsettled or g.beyond for g in self.gaps)

    @property
    def restated(self) -> bool:
        return any(g.restated for g in self.gaps)

    @property
    def has_missing(self) -> bool:
        return any(g.missing or g.beyond for g in self.gaps)

    def words(self, name: str = "this period") -> str:
        """Empty when complete and never restated; else what is missing, unsettled or restated, and what it means."""
        if self.complete and not self.restated:
            return ""
        if self.has_missing:
            verdict = "incomplete"
        elif not self.complete:
            verdict = "not final (still being restated)"
        else:
            verdict = "restated since first loaded"
        alike: dict[str, list[str]] = {}  # collectors with the same gaps are named together
        for gap in self.gaps:
            alike.setdefault(gap.gap_words(), []).append(gap.collector)
        listed = "; ".join(f"{', '.join(names)}: {gaps}" for gaps, names in alike.items())
        return f"{listed}: figures for {name} are {verdict}"

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "end_is_exclusive": True,
            "complete": self.complete,
            "words": self.words(),
            "collectors": [g.as_json() for g in self.gaps],
        }


def completeness(store: Store, start: dt.date, end: dt.date, *, today: dt.date | None = None) -> Completeness:
    """The gaps of every collector that has loaded anything, over [start, end)."""
    return _gaps(start, end, today, _held(store), _changed(store, start, end))


def of_periods(store: Store, periods, *, today: dt.date | None = None) -> dict[str, Completeness]:
    """The current and the compare period's completeness (two reads for both)."""
    held = _held(store)
    changed = _changed(store, min(periods.current_start, periods.compare_start), max(periods.current_end, periods.compare_end))
    return {
        "current": _gaps(periods.current_start, periods.current_end, today, held, changed),
        "compare": _gaps(periods.compare_start, periods.compare_end, today, held, changed),
    }


def _held(store: Store):
    """Per cost collector: the days it has loaded and its last one."""
    return store.query_df(
        """
        SELECT collector, groupArray(partition_date) AS days, max(partition_date) AS last_day
        FROM (SELECT collector, partition_date FROM polo.partition_loads FINAL WHERE collector IN {costs:Array(String)})
        GROUP BY collector ORDER BY collector
        """,
        {"costs": _counted()},
        columns=["collector", "days", "last_day"],
    )


def _changed(store: Store, start: dt.date, end: dt.date):
    """The days of [start, end) whose total changed since first loaded: first and latest total."""
    return store.query_df(
        """
        SELECT collector, partition_date AS day, argMin(value_total, loaded_at) AS first_cost, argMax(value_total, loaded_at) AS latest_cost
        FROM (SELECT * FROM polo.partition_load_history FINAL)
        WHERE partition_date >= {start:Date} AND partition_date < {end:Date} AND collector IN {costs:Array(String)}
        GROUP BY collector, partition_date
        HAVING abs(latest_cost - first_cost) >= {cent:Float64}
        ORDER BY collector, day
        """,
        {"start": start, "end": end, "cent": CENT, "costs": _counted()},
        columns=["collector", "day", "first_cost", "latest_cost"],
    )


def _gaps(start: dt.date, end: dt.date, today: dt.date | None, held, changed) -> Completeness:
    today = today or dt.datetime.now(dt.UTC).date()
    days_back = lookback()
    first_day = first_partition_day()
    restated: dict[str, list[tuple[dt.date, float, float]]] = {}
    for collector, day, first, now in zip(changed["collector"], changed["day"], changed["first_cost"], changed["latest_cost"]):
        if start <= _date(day) < end:
            restated.setdefault(str(collector), []).append((_date(day), float(first), float(now)))
    gaps = []
    period = [start + dt.timedelta(days=n) for n in range((end - start).days)]
    for collector, days, last_day in zip(held["collector"], held["days"], held["last_day"]):
        loaded = {_date(d) for d in days}
        settled_before = _date(last_day) - dt.timedelta(days=days_back - 1)
        missing = tuple(d for d in period if d not in loaded and first_day <= d < today)
        unsettled = tuple(d for d in period if d in loaded and d >= settled_before)
        changes = tuple(restated.get(str(collector), ()))
        beyond = tuple(d for d in period if d >= today and d > _date(last_day))
        if missing or unsettled or changes or beyond:
            gaps.append(Coverage(str(collector), missing, unsettled, changes, beyond, _date(last_day)))
    return Completeness(start, end, tuple(gaps))


def _date(value) -> dt.date:
    return value if isinstance(value, dt.date) and not isinstance(value, dt.datetime) else value.date()
