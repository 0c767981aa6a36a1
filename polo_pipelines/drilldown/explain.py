"""Level 3's explanation: what the data says moved one resource's cost, computed, never written by hand.

From the resource's own events over the compare and current periods: the day its daily cost changed most
(the split that moves the mean of the days after it furthest from the mean of the days before), how much,
the metric whose change best matches it ("bytes processed 4.0× (210 GB → 840 GB a day); cost 3.6×"), and
the config and lifecycle events within a day of that change, with their actors. Where nothing does, it says so.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from polo_pipelines.drilldown.delta import CENT, TIMELINE_COLUMNS, TIMELINE_SETTINGS, TimelineEvent, known_resource
from polo_pipelines.drilldown.periods import Periods, Settings
from polo_pipelines.store.events import as_utc
from polo_pipelines.store.storage import Store

NEAR = dt.timedelta(days=1)  # activity this close to the change point is "at" it
SHOWN = 4  # activity events named in the line


@dataclass(frozen=True)
class Activity:
    event_time: dt.datetime
    event_type: str
    event_action: str
    summary: str
    actor_name: str


@dataclass(frozen=True)
class MetricChange:
    name: str
    unit: str
    before: float  # a day, on average
    after: float
    ratio: float


@dataclass(frozen=True)
class Explanation:
    resource_arn: str
    change_day: dt.date | None
    cost_before: float  # a day, on average, before the change day
    cost_after: float
    activity: tuple[Activity, ...] = ()
    metric: MetricChange | None = None
    text: str = ""
    metrics_seen: tuple[str, ...] = field(default=())

    def as_json(self) -> dict[str, Any]:
        return {
            "resource_arn": self.resource_arn,
            "change_day": self.change_day.isoformat() if self.change_day else None,
            "cost_per_day_before": self.cost_before,
            "cost_per_day_after": self.cost_after,
            "metric": None if self.metric is None else self.metric.__dict__,
            "activity": [
                {
                    "event_time": a.event_time.isoformat(),
                    "event_type": a.event_type,
                    "event_action": a.event_action,
                    "summary": a.summary,
                    "actor_name": a.actor_name,
                }
                for a in self.activity
            ],
            "text": self.text,
        }


def change_point(days: list[dt.date], costs: list[float]) -> int | None:
    """The index of the first day after the split that moves the mean cost the most (None: fewer than two days)."""
    best, best_gap = None, 0.0
    for i in range(1, len(days)):
        before, after = costs[:i], costs[i:]
        gap = abs(sum(after) / len(after) - sum(before) / len(before))
        if gap > best_gap + 1e-12:
            best, best_gap = i, gap
    return best


def times(after: float, before: float) -> str:
    if abs(before) < CENT:
        return "new" if abs(after) >= CENT else "—"
    return f"{after / before:.1f}×"


def amount(value: float, unit: str) -> str:
    """A metric's daily amount as people write it: 840 GB, 1.2M requests, 35%."""
    if unit == "Bytes":
        for scale, name in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
            if abs(value) >= scale:
                return f"{value / scale:,.0f} {name}" if value / scale >= 10 else f"{value / scale:,.1f} {name}"
        return f"{value:,.0f} B"
    if unit == "Percent":
        return f"{value:.0f}%"
    if unit == "Count":
        return f"{value:,.0f}" if abs(value) >= 10 or value == int(value) else f"{value:,.1f}"
    if abs(value) >= 1e6:
        return f"{value / 1e6:,.1f}M {unit.lower()}".rstrip()
    return f"{value:,.0f} {unit.lower()}".rstrip()


@dataclass(frozen=True)
class ResourceStory:
    """Level 3 whole: the resource's events newest first (at most the limit) and the explanation of its change."""

    resource_arn: str
    events: list[TimelineEvent]
    explanation: Explanation

    def as_json(self) -> dict[str, Any]:
        return {"resource": self.resource_arn, "events": [e.as_json() for e in self.events], "explanation": self.explanation.as_json()}


def story(store: Store, resource_arn: str, periods: Periods, settings: Settings = Settings(), limit: int = 50) -> ResourceStory:
    """Level 3 from one read of the resource's events over both periods (by primary key): the timeline is the newest
    ``limit`` of them, the explanation is computed from all of them. An unknown resource is an error."""
    start, end = periods.compare_start, periods.current_end
    rows = store.query_rows(
        f"""
        SELECT {", ".join(TIMELINE_COLUMNS)}, charge_category
        FROM polo.resource_events
        WHERE resource_arn = {{arn:String}} AND event_time >= {{start:DateTime64(3, 'UTC')}} AND event_time < {{end:DateTime64(3, 'UTC')}}
        ORDER BY event_time DESC, event_type DESC, event_action DESC
        """,
        {"arn": resource_arn, "start": _midnight(start), "end": _midnight(end)},
        settings=TIMELINE_SETTINGS,
    )
    if not rows:
        known_resource(store, resource_arn)
    events = [TimelineEvent(as_utc(t), *rest) for t, *rest, _category in rows]
    return ResourceStory(resource_arn, events[:limit], explain_events(resource_arn, events, [r[-1] for r in rows], periods, settings))


def explain(store: Store, resource_arn: str, periods: Periods, settings: Settings = Settings()) -> Explanation:
    """The explanation of one resource's change between the periods (``story`` without the timeline)."""
    return story(store, resource_arn, periods, settings, limit=0).explanation


def explain_events(
    resource_arn: str, events: list[TimelineEvent], categories: list[str], periods: Periods, settings: Settings = Settings()
) -> Explanation:
    """The explanation from the resource's events over both periods (any order) and each one's charge category."""
    start, end = periods.compare_start, periods.current_end
    days = [start + dt.timedelta(days=n) for n in range((end - start).days)]
    cost = dict.fromkeys(days, 0.0)
    metrics: dict[tuple[str, str], dict[dt.date, float]] = {}
    activity = []
    for event, category in zip(reversed(events), reversed(categories)):
        day = event.event_time.date()
        if event.event_type == "cost":
            if category in settings.categories:
                cost[day] = cost.get(day, 0.0) + float(event.value)
        elif event.event_type == "metric":
            series = metrics.setdefault((event.properties.get("metric") or event.event_action, event.unit), {})
            series[day] = series.get(day, 0.0) + float(event.value)
        else:
            summary = event.properties.get("summary") or event.event_action
            activity.append(Activity(event.event_time, event.event_type, event.event_action, summary, event.actor_name))
    series = [cost[d] for d in days]
    split = change_point(days, series)
    if split is None:
        return Explanation(resource_arn, None, 0.0, 0.0, text="too few days to tell when the cost changed")
    change = days[split]
    before = sum(series[:split]) / split
    after = sum(series[split:]) / (len(series) - split)
    near = tuple(a for a in activity if abs(_midnight(change) - a.event_time) <= NEAR + dt.timedelta(hours=12))
    metric = _best_metric(metrics, days, split, after / before if abs(before) >= CENT else None)
    return Explanation(
        resource_arn, change, before, after, near, metric, _words(change, before, after, near, metric), tuple(n for n, _ in metrics)
    )


def _best_metric(metrics, days, split, cost_ratio) -> MetricChange | None:
    """The metric whose ratio after/before is closest (in log terms) to the cost's."""
    import math

    best, best_gap = None, math.inf
    for (name, unit), by_day in metrics.items():
        values = [by_day.get(d, 0.0) for d in days]
        b, a = sum(values[:split]) / split, sum(values[split:]) / (len(values) - split)
        if b <= 0 or a <= 0:
            continue
        ratio = a / b
        gap = abs(math.log(ratio) - math.log(cost_ratio)) if cost_ratio and cost_ratio > 0 else abs(math.log(ratio))
        if abs(math.log(ratio)) < math.log(1.25):  # a metric that barely moved explains nothing
            continue
        if gap < best_gap:
            best, best_gap = MetricChange(name, unit, b, a, ratio), gap
    return best


def _words(change: dt.date, before: float, after: float, near: tuple[Activity, ...], metric: MetricChange | None) -> str:
    cost = f"cost {times(after, before)} from {change} (${before:,.2f} → ${after:,.2f} a day)"
    parts = []
    if metric:
        parts.append(
            f"{metric.name} {metric.ratio:.1f}× ({amount(metric.before, metric.unit)} → {amount(metric.after, metric.unit)} a day)"
        )
    parts.append(cost)
    if near:
        said = "; ".join(f"{a.summary} ({a.actor_name})" if a.actor_name else a.summary for a in near[:SHOWN])
        more = f"; and {len(near) - SHOWN} more" if len(near) > SHOWN else ""
        parts.append(f"at the change: {said}{more}")
    if not metric and not near:
        parts.append("no activity or metric explains this change; price or rate?")
    return "; ".join(parts)


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
