"""The drill-down service: periods, settings and hierarchies in; typed results with one JSON form out.

The CLI, the weekly assets and the HTTP API call only this. Level 1 is ``nodes`` (and the
``causes`` across hierarchies), Level 2 ``resources`` under one node, Level 3 ``timeline`` of
one resource. Every result has ``as_json()``; ``to_json`` turns any of them (or a list) into
plain JSON values: dates and times as ISO strings, a percentage with no base as null.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.completeness import Completeness, of_periods
from polo_pipelines.drilldown.delta import TimelineEvent
from polo_pipelines.drilldown.explain import Explanation, ResourceStory, explain, story
from polo_pipelines.drilldown.periods import DeltaError, Periods, Settings
from polo_pipelines.hierarchy.ancestry import Hierarchy, HierarchyError
from polo_pipelines.hierarchy.ancestry import load as load_hierarchies
from polo_pipelines.store.storage import Store

_PLAIN = frozenset({str, int, bool, type(None)})


@functools.cache
def _field_names(row_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(row_type))


def to_json(value: Any) -> Any:
    """Plain JSON values for a result, a row, a list of them or a mapping: the drill-down's one JSON form. (The web API
    turns a few hundred rows into JSON per answer: the common kinds are taken first, by their exact type.)"""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): to_json(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [to_json(v) for v in value]
    if hasattr(value, "as_json"):
        return value.as_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_json(getattr(value, name)) for name in _field_names(kind)}
    if hasattr(value, "as_json"):
        return value.as_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class Headline:
    """Everything's cost in both periods, whatever the hierarchy."""

    compare_cost: float
    current_cost: float
    compare_billed: float | None = None  # before amortization: commitments on the day they were billed
    current_billed: float | None = None

    @property
    def delta(self) -> float:
        return self.current_cost - self.compare_cost

    @property
    def pct_change(self) -> float | None:
        return delta.pct_change(self.compare_cost, self.current_cost)

    def as_json(self) -> dict[str, Any]:
        return {
            "current_cost": self.current_cost,
            "compare_cost": self.compare_cost,
            "delta": self.delta,
            "pct_change": self.pct_change,
            "current_billed": self.current_billed,
            "compare_billed": self.compare_billed,
        }


@dataclass(frozen=True)
class NodeDelta:
    hierarchy: str
    node_id: str
    node_type: str
    parent_id: str
    depth: int
    compare_cost: float
    current_cost: float
    delta: float
    pct_change: float | None


@dataclass(frozen=True)
class Cause:
    """The most concrete node that explains a move, each resource's change counted once across causes."""

    node_id: str
    hierarchy: str
    depth: int
    delta: float
    node_delta: float
    resources: int
    top_resource: str
    top_resource_delta: float
    top_resource_name: str = ""


@dataclass(frozen=True)
class ResourceDelta:
    resource_arn: str
    resource_type: str
    resource_name: str
    detail: str
    created_by: str
    compare_cost: float
    current_cost: float
    delta: float
    change_type: str  # new_resource | terminated | cost_changed


@dataclass(frozen=True)
class NodeResources:
    """Level 2: the resources under one node that moved past the threshold, and the rest as one line."""

    node_id: str
    hierarchy: str
    compare_cost: float
    current_cost: float
    lines: tuple[ResourceDelta, ...]
    other: float  # the delta of all the resources below the threshold together
    other_count: int

    @property
    def node_delta(self) -> float:
        return self.current_cost - self.compare_cost

    def as_json(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "hierarchy": self.hierarchy,
            "node_delta": self.node_delta,
            "compare_cost": self.compare_cost,
            "current_cost": self.current_cost,
            "resources": to_json(list(self.lines)),
            "other": {"label": delta.OTHER, "delta": self.other, "resources": self.other_count},
        }


@functools.cache
def _fields(row_type: type) -> tuple[tuple[str, bool], ...]:
    """Each field of a row type, and whether it may be None (a number with no base, such as a percentage)."""
    return tuple((f.name, "None" in str(f.type)) for f in dataclasses.fields(row_type))


def _rows(frame: pd.DataFrame, row_type: type) -> list:
    """The frame's rows as ``row_type`` values, a missing number as None. Column by column in plain Python:
    Level 1 and 2 answer in a few milliseconds, and pandas calls per row or per column would add a tenth."""
    columns = []
    for name, optional in _fields(row_type):
        values = frame[name].tolist()
        columns.append([None if v != v else v for v in values] if optional else values)  # NaN is the one value != itself
    return [row_type(*values) for values in zip(*columns)]


class DrillDown:
    """The drill-down over one store, with the hierarchy configuration that orders and explains it."""

    def __init__(self, store: Store, hierarchies: Mapping[str, Hierarchy] | None = None):
        self.store = store
        if hierarchies is None:
            try:
                hierarchies = load_hierarchies()
            except HierarchyError:
                hierarchies = {}  # the store's hierarchies still answer; the file's problem shows where it is loaded
        self.configured = dict(hierarchies)

    @property
    def catch_all(self) -> set[str]:
        """The hierarchies' unassigned nodes: they hold what no tag explains, so they name no cause."""
        return {h.unassigned for h in self.configured.values() if h.unassigned}

    def hierarchies(self) -> list[str]:
        """The hierarchies the store holds, in the hierarchy file's order (then any others by name)."""
        held = set(self.store.query_df("SELECT DISTINCT hierarchy FROM polo.resource_ancestry")["hierarchy"])
        configured = [name for name in self.configured if name in held]
        return configured + sorted(held - set(configured))

    def completeness(self, periods: Periods, today: dt.date | None = None) -> dict[str, Completeness]:
        """How complete each period's figures are (missing and unsettled days per collector)."""
        return of_periods(self.store, periods, today=today)

    def headline(self, periods: Periods, settings: Settings = Settings()) -> Headline:
        return Headline(*delta.totals(self.store, periods, settings))

    def daily(self, periods: Periods, settings: Settings = Settings()) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Each day's cost in the current period, then in the compare period (day, cost)."""
        return (
            delta.daily_totals(self.store, periods.current_start, periods.current_end, settings),
            delta.daily_totals(self.store, periods.compare_start, periods.compare_end, settings),
        )

    def causes(self, periods: Periods, settings: Settings = Settings(), limit: int = 10) -> list[Cause]:
        frame = delta.causes(self.store, periods, settings=settings, catch_all=self.catch_all, limit=limit)
        return _rows(frame, Cause)

    def nodes(
        self, hierarchy: str, periods: Periods, settings: Settings = Settings(), *, parent: str | None = None, limit: int | None = 20
    ) -> list[NodeDelta]:
        frame = delta.node_deltas(self.store, hierarchy, periods, parent=parent, settings=settings, limit=limit)
        return _rows(frame, NodeDelta)

    def every_node(self, periods: Periods, settings: Settings = Settings()) -> list[NodeDelta]:
        """Level 1 of every hierarchy, each node past the threshold (the weekly node table)."""
        return [node for h in self.hierarchies() for node in self.nodes(h, periods, settings, limit=None)]

    def resources(self, node_id: str, periods: Periods, settings: Settings = Settings(), *, hierarchy: str | None = None) -> NodeResources:
        found = delta.resource_deltas(self.store, node_id, periods, hierarchy=hierarchy, settings=settings)
        return NodeResources(
            node_id=found.node_id,
            hierarchy=found.hierarchy,
            compare_cost=found.compare_cost,
            current_cost=found.current_cost,
            lines=tuple(_rows(found.lines, ResourceDelta)),
            other=found.other,
            other_count=found.other_count,
        )

    def moved_resources(self, periods: Periods, settings: Settings = Settings()) -> list[ResourceDelta]:
        """Every resource that moved past the resource threshold, whatever the node (the weekly resource table)."""
        frame = delta.resource_frame(self.store, periods, settings=settings)
        return _rows(delta.with_attributes(self.store, delta.above_threshold(frame, settings.resource_threshold)), ResourceDelta)

    def timeline(self, resource_arn: str, start: dt.date, end: dt.date, limit: int = 50) -> list[TimelineEvent]:
        return delta.resource_timeline(self.store, resource_arn, start, end, limit=limit)

    def explain(self, resource_arn: str, periods: Periods, settings: Settings = Settings()) -> Explanation:
        """Level 3's explanation: the change point, the metric that best matches it, the activity at it."""
        return explain(self.store, resource_arn, periods, settings)

    def story(self, resource_arn: str, periods: Periods, settings: Settings = Settings(), limit: int = 50) -> ResourceStory:
        """Level 3 whole, from one read: the resource's events over both periods, newest first, and their explanation."""
        return story(self.store, resource_arn, periods, settings, limit)

    def overview(
        self,
        periods: Periods,
        settings: Settings = Settings(),
        *,
        hierarchy: str | None = None,
        parent: str | None = None,
        limit: int = 20,
        causes: int = 8,
    ) -> Overview:
        """The headline, the causes (unless one hierarchy or node is asked about) and Level 1 of each hierarchy."""
        names = [hierarchy] if hierarchy else self.hierarchies()
        if not names:
            raise DeltaError("the store has no hierarchy yet: materialize resource_ancestry (make run does)")
        listed = None if hierarchy or parent else self.causes(periods, settings, limit=causes)
        nodes = {h: self.nodes(h, periods, settings, parent=parent, limit=limit) for h in names}
        return Overview(periods, settings, self.headline(periods, settings), listed, nodes, parent)


@dataclass(frozen=True)
class Overview:
    periods: Periods
    settings: Settings
    headline: Headline
    causes: Sequence[Cause] | None
    nodes: Mapping[str, Sequence[NodeDelta]]
    parent: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": to_json(self.headline)}
        if self.causes is not None:
            out["causes"] = to_json(list(self.causes))
        out["nodes"] = {h: to_json(list(rows)) for h, rows in self.nodes.items()}
        return out


def answer(periods: Periods, settings: Settings, body: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON envelope of every drill-down answer: its periods and settings, then the answer itself."""
    return {"periods": periods.as_json(), "end_is_exclusive": True, "settings": settings.as_json(), **to_json(body)}
