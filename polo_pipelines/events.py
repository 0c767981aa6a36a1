"""The resource event frame every collector produces, and the one way it reaches the store.

A collector turns its source into a frame with ``EVENT_COLUMNS`` for a window of days, then
calls ``replace_days``: the frame is checked as a whole, written to a scratch table, and
each (collector, day) partition of ``polo.resource_events`` is swapped for the scratch
table's with ``REPLACE PARTITION`` (or dropped where the source now holds nothing). A
reader sees a day's old rows or its new rows, never half of them and never both, and
running the same partition again leaves the same totals.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.storage import Store

# Charge categories as FOCUS names them; the ones left out of resource deltas by default.
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
NON_USAGE_CATEGORIES = ("Tax", "Credit", "Adjustment")

EVENT_COLUMNS: dict[str, str] = {
    "resource_arn": "string",
    "resource_type": "string",
    "resource_name": "string",
    "event_time": "datetime",
    "event_type": "string",
    "event_action": "string",
    "value": "float",
    "billed_cost": "float",
    "list_cost": "float",
    "charge_category": "string",
    "service": "string",
    "provider": "string",
    "unit": "string",
    "properties": "map",
    "actor_name": "string",
    "collector": "string",
    "aws_account_id": "string",
    "aws_region": "string",
}

REQUIRED_NON_EMPTY = ("resource_arn", "event_type", "collector")


def empty_events() -> pd.DataFrame:
    return conform(pd.DataFrame({name: [] for name in EVENT_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with exactly EVENT_COLUMNS, in order, with the store's types."""
    missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing}")
    out = pd.DataFrame(index=frame.index)
    for name, kind in EVENT_COLUMNS.items():
        col = frame[name]
        if kind == "string":
            out[name] = col.fillna("").astype(str)
        elif kind == "float":
            out[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        elif kind == "datetime":
            times = pd.to_datetime(col, utc=True)
            out[name] = times.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ms]")
        else:
            out[name] = [v if isinstance(v, dict) else {} for v in col]
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class DayLoad:
    day: dt.date
    row_count: int
    value_total: float
    billed_total: float


def check_events(frame: pd.DataFrame, *, collector: str, days: Sequence[dt.date], source: str) -> None:
    """Refuse a frame that would write something wrong; the message names source, field and partition."""
    window = window_label(min(days), max(days) + dt.timedelta(days=1))
    for name in ("value", "billed_cost", "list_cost"):
        bad = ~np.isfinite(frame[name].to_numpy(dtype="float64"))
        if bad.any():
            first = frame.loc[bad].iloc[0]
            raise PoloInputError(
                f"{int(bad.sum())} event(s) have a missing or non-numeric amount, first for {first['resource_arn']!r}",
                source=source,
                field=name,
                partition=str(first["event_time"].date()),
            )
    for name in REQUIRED_NON_EMPTY:
        if (frame[name] == "").any():
            raise PoloInputError("event(s) without a value", source=source, field=name, partition=window)
    if len(frame) and (frame["collector"] != collector).any():
        raise PoloInputError(f"event(s) not of collector {collector!r}", source=source, field="collector", partition=window)
    event_days = frame["event_time"].dt.date
    outside = ~event_days.isin(set(days))
    if outside.any():
        raise PoloInputError(
            f"{int(outside.sum())} event(s) fall outside the partition window, e.g. {event_days[outside].iloc[0]}",
            source=source,
            field="event_time",
            partition=window,
        )


def replace_days(
    store: Store,
    frame: pd.DataFrame,
    *,
    collector: str,
    days: Iterable[dt.date],
    source: str,
    sources: Sequence[str] = (),
    run_id: str = "",
) -> list[DayLoad]:
    """Make the store hold exactly ``frame`` for the collector on each of ``days``."""
    days = sorted(set(days))
    if not days:
        return []
    frame = conform(frame)
    check_events(frame, collector=collector, days=days, source=source)
    frame["_loaded_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ms")

    scratch = f"polo.`_scratch_{collector}_{uuid.uuid4().hex[:12]}`"
    store.command(f"CREATE TABLE {scratch} AS polo.resource_events")
    try:
        store.insert_df(scratch, frame)
        loads = _day_totals(frame, days)
        for load in loads:
            params = {"collector": collector, "day": load.day}
            if load.row_count:
                store.command(
                    f"ALTER TABLE polo.resource_events REPLACE PARTITION ({{collector:String}}, {{day:Date}}) FROM {scratch}",
                    params,
                )
            else:
                store.command(
                    "ALTER TABLE polo.resource_events DROP PARTITION ({collector:String}, {day:Date})", params
                )
        _log_loads(store, collector, loads, sources, run_id)
        return loads
    finally:
        store.command(f"DROP TABLE IF EXISTS {scratch}")


def _day_totals(frame: pd.DataFrame, days: Sequence[dt.date]) -> list[DayLoad]:
    by_day = frame.groupby(frame["event_time"].dt.date).agg(
        row_count=("value", "size"), value_total=("value", "sum"), billed_total=("billed_cost", "sum")
    )
    loads = []
    for day in days:
        if day in by_day.index:
            row = by_day.loc[day]
            loads.append(DayLoad(day, int(row.row_count), float(row.value_total), float(row.billed_total)))
        else:
            loads.append(DayLoad(day, 0, 0.0, 0.0))
    return loads


def _log_loads(store: Store, collector: str, loads: Sequence[DayLoad], sources: Sequence[str], run_id: str) -> None:
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ms")
    log = pd.DataFrame(
        {
            "collector": [collector] * len(loads),
            "partition_date": [load.day for load in loads],
            "row_count": [load.row_count for load in loads],
            "value_total": [load.value_total for load in loads],
            "billed_total": [load.billed_total for load in loads],
            "sources": [list(sources)] * len(loads),
            "run_id": [run_id] * len(loads),
            "loaded_at": [now] * len(loads),
        }
    )
    store.insert_df("polo.partition_loads", log)


def window_label(start: dt.date, end_exclusive: dt.date) -> str:
    """How errors and metadata name a window of days: ``2026-11-02`` or ``2026-11-02..2026-11-08``."""
    last = end_exclusive - dt.timedelta(days=1)
    return str(start) if last == start else f"{start}..{last}"


def day_range(start: dt.date, end_exclusive: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end_exclusive - start).days)]


def lookback_days(today: dt.date, lookback: int) -> list[dt.date]:
    """The days a daily run re-collects: T-1 .. T-lookback, oldest first (billing data lands late and is restated)."""
    return [today - dt.timedelta(days=n) for n in range(lookback, 0, -1)]


def unreconciled_days(store: Store, collector: str) -> pd.DataFrame:
    """Days whose stored events differ from what the last load of that day wrote (empty when all is well)."""
    return store.query_df(
        """
        SELECT l.partition_date AS day, l.row_count AS loaded_rows, l.value_total AS loaded_cost,
               ifNull(e.rows, 0) AS stored_rows, ifNull(e.cost, 0) AS stored_cost
        FROM (SELECT partition_date, argMax(row_count, loaded_at) AS row_count, argMax(value_total, loaded_at) AS value_total
              FROM polo.partition_loads WHERE collector = {collector:String} GROUP BY partition_date) AS l
        LEFT JOIN (SELECT toDate(event_time) AS day, count() AS rows, sum(value) AS cost
                   FROM polo.resource_events WHERE collector = {collector:String} GROUP BY day) AS e
          ON e.day = l.partition_date
        WHERE loaded_rows != stored_rows OR abs(loaded_cost - stored_cost) > 1e-6
        ORDER BY day
        """,
        {"collector": collector},
    )
