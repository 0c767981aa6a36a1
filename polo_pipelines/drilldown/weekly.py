"""The weekly cost deltas: each ISO week against the week before, stored for dashboards and the Dagster UI.

``cost_delta_nodes_weekly`` holds every node of every hierarchy that moved more than the node
threshold; ``cost_delta_resources_weekly`` every resource that moved more than the resource
threshold (join ``resource_ancestry`` to see them per node). A week is written whole,
replacing what its partition held.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pandas as pd

from polo_pipelines.drilldown import delta
from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import scratch_copy, swap_in

NODE_COLUMNS = ["hierarchy", "node_id", "node_type", "parent_id", "depth", "compare_cost", "current_cost", "delta", "pct_change"]


def week_periods(week_start: dt.date) -> delta.Periods:
    if week_start.weekday() != 0:
        raise delta.DeltaError(f"{week_start} is not a Monday: weeks are ISO weeks")
    return delta.Periods.preceding(week_start, week_start + dt.timedelta(days=7))


def week_days(week_start: dt.date) -> list[dt.date]:
    return [week_start + dt.timedelta(days=n) for n in range(7)]


def node_deltas(store: Store, week_start: dt.date, settings: delta.Settings = delta.Settings()) -> pd.DataFrame:
    periods = week_periods(week_start)
    frames = [delta.node_deltas(store, h, periods, settings=settings, limit=None) for h in delta.hierarchies(store)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=NODE_COLUMNS)
    return frame[NODE_COLUMNS]


def resource_deltas(store: Store, week_start: dt.date, settings: delta.Settings = delta.Settings()) -> pd.DataFrame:
    periods = week_periods(week_start)
    frame = delta.resource_frame(store, periods, settings=settings)
    return delta.with_attributes(store, delta.above_threshold(frame, settings.resource_threshold))


def write_week(store: Store, table: str, week_start: dt.date, frame: pd.DataFrame) -> None:
    rows = frame.assign(week_start=week_start)
    with scratch_copy(store, table) as scratch:
        store.insert_df(scratch, rows)
        swap_in(store, table, scratch, "{w:Date}", {"w": week_start}, len(rows) > 0)


def week_ready(materialized: Mapping[str, set[str]], week_start: dt.date) -> bool:
    """Every collector that has ever collected holds all seven days of the week (and at least one has)."""
    days = {d.isoformat() for d in week_days(week_start)}
    active = [partitions for partitions in materialized.values() if partitions]
    return bool(active) and all(days <= partitions for partitions in active)
