"""Cost delta decomposition: which nodes moved, which resources inside a node, which events explain one resource.

Level 1 reads ``cost_node_daily``, Level 2 ``cost_resource_daily`` for the node's resources
(one prefix read of ``resource_ancestry``), Level 3 ``resource_events``. Periods are
[start, end) dates. Credits, refunds and tax (charge categories Credit, Adjustment, Tax)
are left out unless asked for. A node's listed resource deltas plus its "other (below
threshold)" line add up to the node's delta.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pandas as pd

from polo_pipelines.drilldown.periods import DeltaError, Periods, Settings, UnknownEntity
from polo_pipelines.store.events import ALLOCATION_COLLECTORS, as_utc
from polo_pipelines.store.storage import Store

OTHER = "other (below threshold)"
ARRAY_SLICE = 100_000  # ids per array parameter


# One bounding range lets ClickHouse prune partitions and use the primary key (an OR of two ranges does not);
# the If-conditions below split it, and days between two non-adjacent periods count in neither.
_IN_PERIODS = "day >= {lo:Date} AND day < {hi:Date}"
_CURRENT = "day >= {cs:Date} AND day < {ce:Date}"
_COMPARE = "day >= {ps:Date} AND day < {pe:Date}"


CENT = 0.005  # an amount that rounds to $0.00 is float noise or nothing, never a base for a percentage


def pct_change(compare: float, current: float) -> float | None:
    """Percent change; None where the compare period's amount rounds to $0.00 (a percentage of noise means nothing)."""
    if abs(compare) < CENT:
        return None
    return (current - compare) / abs(compare) * 100


def change_label(compare: float, current: float) -> str:
    """The change as people read it: a percentage against a base of at least a cent, else "new" (it appeared), "gone"
    (it went to $0.00) or "—" (both round to $0.00)."""
    was, now = abs(compare) >= CENT, abs(current) >= CENT
    if not was:
        return "new" if now else "—"
    if not now:
        return "gone"
    if abs(current - compare) < CENT:  # float noise is no change, never "-0.0%"
        return "0.0%"
    return f"{(current - compare) / abs(compare) * 100:+.1f}%"


def totals(store: Store, periods: Periods, settings: Settings = Settings()) -> tuple[float, float, float, float]:
    """(compare, current) cost of everything, whatever the hierarchy, then the same billed (before amortization); an
    allocation's costs (the spans' share of hosts already billed) are not counted again."""
    frame = store.query_df(
        f"""
        SELECT sumIf(cost, {_COMPARE}) AS compare_cost, sumIf(cost, {_CURRENT}) AS current_cost,
               sumIf(billed_cost, {_COMPARE}) AS compare_billed, sumIf(billed_cost, {_CURRENT}) AS current_billed
        FROM polo.cost_resource_daily
        WHERE {_IN_PERIODS} AND charge_category IN {{cats:Array(String)}} AND collector NOT IN {{allocations:Array(String)}}
        """,
        {**periods.params(), "cats": settings.categories, "allocations": list(ALLOCATION_COLLECTORS)},
    )
    return tuple(float(frame[c][0] or 0.0) for c in ("compare_cost", "current_cost", "compare_billed", "current_billed"))


def daily_totals(store: Store, start: dt.date, end: dt.date, settings: Settings = Settings()) -> pd.DataFrame:
    """Every day of [start, end) with its cost (0 where nothing was stored), whatever the hierarchy."""
    frame = store.query_df(
        """
        SELECT day, sum(cost) AS cost FROM polo.cost_resource_daily
        WHERE day >= {lo:Date} AND day < {hi:Date} AND charge_category IN {cats:Array(String)}
          AND collector NOT IN {allocations:Array(String)}
        GROUP BY day
        """,
        {"lo": start, "hi": end, "cats": settings.categories, "allocations": list(ALLOCATION_COLLECTORS)},
    )
    days = pd.date_range(start, end - dt.timedelta(days=1), freq="D").date
    held = dict(zip(pd.to_datetime(frame["day"]).dt.date, frame["cost"].astype(float))) if not frame.empty else {}
    return pd.DataFrame({"day": days, "cost": [held.get(d, 0.0) for d in days]})


def held_hierarchies(store: Store) -> list[str]:
    """The hierarchies the store holds, by name (the service orders them as the hierarchy file does)."""
    return sorted(store.query_df("SELECT DISTINCT hierarchy FROM polo.resource_ancestry")["hierarchy"])


def hierarchies_of(store: Store, node_id: str) -> list[str]:
    """The hierarchies a node is in; a DeltaError naming the node when no resource sits under it."""
    found = store.query_df(
        "SELECT DISTINCT hierarchy FROM polo.resource_ancestry WHERE ancestor_id = {n:String} ORDER BY hierarchy", {"n": node_id}
    )["hierarchy"].tolist()
    if not found:
        raise UnknownEntity(f"unknown node {node_id!r}: no resource sits under it (node ids look like cluster:acme-prod-1)")
    return found


def hierarchy_of(store: Store, node_id: str) -> str:
    found = hierarchies_of(store, node_id)
    if len(found) > 1:
        raise DeltaError(f"node {node_id!r} is in several hierarchies ({', '.join(sorted(found))}): say which")
    return found[0]


def node_deltas(
    store: Store,
    hierarchy: str,
    periods: Periods,
    *,
    parent: str | None = None,
    settings: Settings = Settings(),
    limit: int | None = 20,
) -> pd.DataFrame:
    """Level 1: the hierarchy's nodes (or one node's children) ranked by |delta|, above the node threshold."""
    frame = store.query_df(
        f"""
        SELECT node_id, any(node_type) AS type_of_node, any(parent_id) AS parent_of_node, any(depth) AS node_depth,
               sumIf(cost, {_COMPARE}) AS compare_cost, sumIf(cost, {_CURRENT}) AS current_cost,
               current_cost - compare_cost AS delta
        FROM polo.cost_node_daily
        WHERE hierarchy = {{h:String}} AND {_IN_PERIODS} AND charge_category IN {{cats:Array(String)}}
          AND (NOT {{has_parent:Bool}} OR parent_id = {{parent:String}})
        GROUP BY node_id
        HAVING abs(delta) > {{threshold:Float64}}
        ORDER BY abs(delta) DESC, node_id
        LIMIT {{limit:UInt32}}
        """,
        {
            **periods.params(),
            "h": hierarchy,
            "cats": settings.categories,
            "has_parent": parent is not None,
            "parent": parent or "",
            "threshold": settings.node_threshold,
            "limit": limit if limit is not None else 2**31,
        },
    )
    if frame.empty:
        # Nothing moved, or the question names something that does not exist: only then is it worth asking which.
        held = held_hierarchies(store)
        if hierarchy not in held:
            raise DeltaError(f"unknown hierarchy {hierarchy!r}; the store has {', '.join(held) or 'none (materialize resource_ancestry)'}")
        if parent is not None and hierarchy_of(store, parent) != hierarchy:
            raise DeltaError(f"node {parent!r} is not in hierarchy {hierarchy!r}")
    frame = frame.rename(columns={"type_of_node": "node_type", "parent_of_node": "parent_id", "node_depth": "depth"})
    frame["pct_change"] = [pct_change(c, n) for c, n in zip(frame["compare_cost"], frame["current_cost"])]
    frame.insert(0, "hierarchy", hierarchy)
    return frame


CAUSE_COLUMNS = [
    "node_id",
    "hierarchy",
    "depth",
    "delta",
    "node_delta",
    "resources",
    "top_resource",
    "top_resource_delta",
    "top_resource_name",
]


def causes(
    store: Store,
    periods: Periods,
    *,
    settings: Settings = Settings(),
    catch_all: Iterable[str] = (),
    limit: int = 10,
    explained_share: float = 0.5,
) -> pd.DataFrame:
    """Concrete causes across every hierarchy: each resource's delta counted once, under the most concrete node.

    Every node that moved past the node threshold is a candidate. The deepest nodes are taken
    first, then larger moves; ``catch_all`` nodes (a hierarchy's ``unassigned`` node, e.g.
    ``customer:untagged``) come last because they name no cause. A candidate is kept when the
    resource deltas no kept node has claimed yet still make up ``explained_share`` of its own
    delta (and pass the threshold); it then claims those resources. So
    ``cluster:acme-prod-1`` is kept and ``customer:acme`` and ``account:prod`` above it are not,
    while ``platform:github`` is kept for the GitHub resources no logical node explains.
    """
    # The moved resources meet their ancestry inside ClickHouse: however many moved (a million and more), no list of
    # them is ever sent back as a query parameter.
    pairs = store.query_df(
        f"""
        SELECT a.resource_arn AS resource_arn, a.ancestor_id AS node_id, a.hierarchy AS hierarchy, a.depth AS depth, m.delta AS delta
        FROM polo.resource_ancestry AS a
        INNER JOIN (
            SELECT resource_arn, sumIf(cost, {_CURRENT}) - sumIf(cost, {_COMPARE}) AS delta
            FROM polo.cost_resource_daily
            WHERE {_IN_PERIODS} AND charge_category IN {{cats:Array(String)}}
            GROUP BY resource_arn
            HAVING delta != 0
        ) AS m ON m.resource_arn = a.resource_arn
        """,
        {**periods.params(), "cats": settings.categories},
        columns=["resource_arn", "node_id", "hierarchy", "depth", "delta"],
    )
    if pairs.empty:
        return pd.DataFrame(columns=CAUSE_COLUMNS)
    nodes = pairs.groupby(["node_id", "hierarchy"], as_index=False).agg(depth=("depth", "max"), node_delta=("delta", "sum"))
    nodes = nodes[nodes["node_delta"].abs() > settings.node_threshold]
    catch = set(catch_all)
    nodes["catch_all"] = nodes["node_id"].isin(catch)
    nodes["size"] = nodes["node_delta"].abs()
    nodes = nodes.sort_values(["catch_all", "depth", "size", "node_id"], ascending=[True, False, False, True])
    members = {key: group[["resource_arn", "delta"]] for key, group in pairs.groupby(["node_id", "hierarchy"])}
    claimed: set[str] = set()
    rows = []
    for node in nodes.itertuples(index=False):
        mine = members[(node.node_id, node.hierarchy)]
        free = mine[~mine["resource_arn"].isin(claimed)]
        unexplained = float(free["delta"].sum())
        if abs(unexplained) <= settings.node_threshold or abs(unexplained) < explained_share * abs(node.node_delta):
            continue
        claimed.update(free["resource_arn"])
        # the largest change, ties broken by id: the same resource on every run
        top = free.assign(size=free["delta"].abs()).sort_values(["size", "resource_arn"], ascending=[False, True]).iloc[0]
        rows.append(
            (
                node.node_id,
                node.hierarchy,
                int(node.depth),
                unexplained,
                float(node.node_delta),
                len(free),
                top["resource_arn"],
                float(top["delta"]),
            )
        )
    out = pd.DataFrame(rows, columns=CAUSE_COLUMNS[:-1])
    out = out.reindex(out["delta"].abs().sort_values(ascending=False, kind="stable").index).head(limit).reset_index(drop=True)
    # named as Level 2 names it (a workflow is "search E2E" in both places, not e2e.yml in one of them)
    found = attributes(store, out["top_resource"].tolist())
    names = dict(zip(found["resource_arn"], found["resource_name"]))
    return out.assign(top_resource_name=[names.get(arn, "") for arn in out["top_resource"]])


@dataclass
class ResourceDeltas:
    node_id: str
    hierarchy: str
    lines: pd.DataFrame  # the resources above the threshold, by |delta|
    other: float  # the delta of all the others together
    other_count: int
    compare_cost: float
    current_cost: float

    @property
    def node_delta(self) -> float:
        return self.current_cost - self.compare_cost


# Each resource's compare and current cost, delta and change type, over rows of (day, resource_arn, cost).
_RESOURCE_COSTS = f"""
    resource_arn,
    sumIf(cost, {_COMPARE}) AS compare_cost, sumIf(cost, {_CURRENT}) AS current_cost, current_cost - compare_cost AS delta,
    multiIf(countIf({_COMPARE}) = 0, 'new_resource', countIf({_CURRENT}) = 0, 'terminated', 'cost_changed') AS change_type
"""
_FRAME_COLUMNS = ["resource_arn", "compare_cost", "current_cost", "delta", "change_type"]


def resource_frame(store: Store, periods: Periods, *, settings: Settings = Settings()) -> pd.DataFrame:
    """Every resource's compare and current cost, delta and change type, by |delta|."""
    return store.query_df(
        f"""
        SELECT {_RESOURCE_COSTS}
        FROM polo.cost_resource_daily
        WHERE {_IN_PERIODS} AND charge_category IN {{cats:Array(String)}}
        GROUP BY resource_arn
        ORDER BY abs(delta) DESC, resource_arn
        """,
        {**periods.params(), "cats": settings.categories},
        columns=_FRAME_COLUMNS,
    )


RESOURCE_COLUMNS = [
    "resource_arn",
    "resource_type",
    "resource_name",
    "detail",
    "created_by",
    "compare_cost",
    "current_cost",
    "delta",
    "change_type",
]
_ATTRIBUTES = ["resource_type", "resource_name", "detail", "created_by"]


def above_threshold(frame: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The resources of ``frame`` whose |delta| exceeds the threshold (in the frame's order)."""
    return frame[frame["delta"].abs() > threshold]


def resource_deltas(
    store: Store, node_id: str, periods: Periods, *, hierarchy: str | None = None, settings: Settings = Settings()
) -> ResourceDeltas:
    """Level 2: the resources under one node that moved, with change type, type and name.

    One prefix read of cost_node_resource_daily, which carries the resources' attributes."""
    hierarchy = hierarchy or hierarchy_of(store, node_id)
    frame = store.query_df(
        f"""
        SELECT {_RESOURCE_COSTS},
               any(resource_type) AS type_of, any(resource_name) AS name_of, any(detail) AS detail_of, any(created_by) AS creator
        FROM polo.cost_node_resource_daily
        WHERE hierarchy = {{h:String}} AND node_id = {{node:String}} AND {_IN_PERIODS} AND charge_category IN {{cats:Array(String)}}
        GROUP BY resource_arn
        ORDER BY abs(delta) DESC, resource_arn
        """,
        {**periods.params(), "h": hierarchy, "node": node_id, "cats": settings.categories},
        columns=[*_FRAME_COLUMNS, *_ATTRIBUTES],
    )
    if frame.empty and not _node_exists(store, hierarchy, node_id):
        raise UnknownEntity(f"unknown node {node_id!r} in hierarchy {hierarchy!r}")
    frame.columns = [*_FRAME_COLUMNS, *_ATTRIBUTES]  # aliased apart above: an alias equal to its column confuses any()
    shown = above_threshold(frame, settings.resource_threshold)
    compare_cost, current_cost = float(frame["compare_cost"].sum()), float(frame["current_cost"].sum())
    other = (current_cost - compare_cost) - float(shown["delta"].sum())
    return ResourceDeltas(
        node_id=node_id,
        hierarchy=hierarchy,
        lines=shown[RESOURCE_COLUMNS].reset_index(drop=True),
        other=0.0 if math.isclose(other, 0.0, abs_tol=1e-9) else other,
        other_count=len(frame) - len(shown),
        compare_cost=compare_cost,
        current_cost=current_cost,
    )


def _node_exists(store: Store, hierarchy: str, node_id: str) -> bool:
    found = store.query_df(
        "SELECT count() AS n FROM polo.resource_ancestry WHERE hierarchy = {h:String} AND ancestor_id = {n:String}",
        {"h": hierarchy, "n": node_id},
    )
    return int(found["n"][0]) > 0


def attributes(store: Store, arns: list[str]) -> pd.DataFrame:
    """Each resource's type, name, a short detail (instance type) and creator, from polo.resources."""
    return pd.concat(  # in slices: an array parameter of a million ids is more than ClickHouse takes
        [
            store.query_df(
                "SELECT resource_arn, resource_type, resource_name, detail, created_by FROM polo.resources WHERE resource_arn IN {arns:Array(String)}",
                {"arns": arns[lo : lo + ARRAY_SLICE]},
                columns=["resource_arn", *_ATTRIBUTES],
            )
            for lo in range(0, max(len(arns), 1), ARRAY_SLICE)
        ],
        ignore_index=True,
    )


def with_attributes(store: Store, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame``'s resources with their attributes (``attributes``)."""
    joined = frame.merge(attributes(store, frame["resource_arn"].tolist()), on="resource_arn", how="left")
    return joined.fillna({c: "" for c in _ATTRIBUTES})[RESOURCE_COLUMNS]


class TimelineEvent(NamedTuple):
    """One event of a resource as Level 3 shows it; a cost event's action is its charge category."""

    event_time: dt.datetime  # aware, UTC
    event_type: str
    event_action: str
    value: float
    unit: str
    properties: dict[str, str]
    actor_name: str

    def as_json(self) -> dict[str, Any]:
        return {**self._asdict(), "event_time": self.event_time.isoformat()}


# The columns a person reads; every column shown is one more read of the granule, so the list is kept short.
TIMELINE_COLUMNS = list(TimelineEvent._fields)
# A timeline reads one or two granules in each partition its window touches (a month of each collector), so planning
# is most of its cost. Plan optimizations that pay off on large reads cost more than they save here (measured on the
# 10M bench): lazy materialization (read the sort key first, fetch the other columns of the rows LIMIT keeps, one more
# plan step) and merging consecutive expression steps, each ≈0.3 ms of ≈4.5; and reading in key order on the default
# threads, which makes one stream per partition on a thread pool started for the query. One thread reading the
# partitions' granules in turn and sorting the few rows they hold costs 5-10% less (paired runs, 10M events: two
# weeks 3.99 -> 3.58 ms; with activity, three collectors, 8.29 -> 7.85 ms).
TIMELINE_SETTINGS = {
    "query_plan_optimize_lazy_materialization": 0,
    "query_plan_merge_expressions": 0,
    "optimize_read_in_order": 0,
    "max_threads": 1,
}


def resource_timeline(store: Store, resource_arn: str, start: dt.date, end: dt.date, limit: int = 50) -> list[TimelineEvent]:
    """Level 3: one resource's events in [start, end), newest first, ties in a fixed order.

    A list of at most ``limit`` events, not a frame: a frame costs more to build than the query
    costs to run (≈0.5 ms against ≈3.5 on the 10M bench)."""
    if start >= end:
        raise DeltaError(f"the window is empty or inverted: {start} .. {end} (end is exclusive)")
    rows = store.query_rows(
        f"""
        SELECT {", ".join(TIMELINE_COLUMNS)}
        FROM polo.resource_events
        WHERE resource_arn = {{arn:String}} AND event_time >= {{start:DateTime64(3, 'UTC')}} AND event_time < {{end:DateTime64(3, 'UTC')}}
        ORDER BY event_time DESC, event_type DESC, event_action DESC
        LIMIT {{limit:UInt32}}
        """,
        {"arn": resource_arn, "start": _midnight(start), "end": _midnight(end), "limit": limit},
        settings=TIMELINE_SETTINGS,
    )
    if not rows:
        known_resource(store, resource_arn)
    return [TimelineEvent(as_utc(t), *rest) for t, *rest in rows]


def known_resource(store: Store, resource_arn: str) -> None:
    """An error naming the resource when the store holds no event of it at all (an empty window is no error)."""
    (known,) = store.query_rows("SELECT count() FROM polo.resource_events WHERE resource_arn = {arn:String}", {"arn": resource_arn})
    if known[0] == 0:
        raise UnknownEntity(f"unknown resource {resource_arn!r}: the store holds no events for it")


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
