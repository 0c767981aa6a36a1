"""The weekly cost deltas: each ISO week against the week before, stored for dashboards and the Dagster UI.

``cost_delta_nodes_weekly`` holds every node of every hierarchy that moved more than the node
threshold; ``cost_delta_resources_weekly`` every resource that moved more than the resource
threshold (join ``resource_ancestry`` to see them per node). A week is written whole,
replacing what its partition held.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

import pandas as pd

from polo_pipelines.drilldown.periods import Periods, Settings, week_days
from polo_pipelines.drilldown.service import DrillDown, NodeDelta, ResourceDelta
from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import atomic_load

NODE_COLUMNS = [f.name for f in dataclasses.fields(NodeDelta)]
RESOURCE_COLUMNS = [f.name for f in dataclasses.fields(ResourceDelta)]


def node_deltas(store: Store, week_start: dt.date, settings: Settings = Settings()) -> pd.DataFrame:
    """Every node of every hierarchy that moved past the node threshold in the week, as the weekly table holds them."""
    rows = DrillDown(store).every_node(Periods.week(week_start), settings)
    return pd.DataFrame([dataclasses.astuple(r) for r in rows], columns=NODE_COLUMNS)


def resource_deltas(store: Store, week_start: dt.date, settings: Settings = Settings()) -> pd.DataFrame:
    """Every resource that moved past the resource threshold in the week, with its attributes."""
    rows = DrillDown(store).moved_resources(Periods.week(week_start), settings)
    return pd.DataFrame([dataclasses.astuple(r) for r in rows], columns=RESOURCE_COLUMNS)


def write_week(store: Store, table: str, week_start: dt.date, frame: pd.DataFrame) -> None:
    rows = frame.assign(week_start=week_start)
    with atomic_load(store, f"{table} week {week_start}") as load:
        scratch = load.scratch(table)
        store.insert_df(scratch, rows)
        load.replace(table, scratch, "{w:Date}", {"w": week_start}, len(rows) > 0)
        load.commit()


def week_ready(materialized: Mapping[str, set[str]], week_start: dt.date) -> bool:
    """Every collector that has ever collected holds all seven days of the week (and at least one has)."""
    days = {d.isoformat() for d in week_days(week_start)}
    active = [partitions for partitions in materialized.values() if partitions]
    return bool(active) and all(days <= partitions for partitions in active)
