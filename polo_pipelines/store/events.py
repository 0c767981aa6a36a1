"""The resource event frame every collector produces, and the one way it reaches the store.

A collector turns its source into a frame with ``EVENT_COLUMNS`` for a window of days, then
calls ``replace_days``: the frame is checked as a whole and written to a scratch table with
the rest of each month it touches (copied inside ClickHouse), and each (collector, month)
partition of ``polo.resource_events`` is swapped for the scratch table's with ``REPLACE
PARTITION`` (or dropped where nothing is left), together with the resource rollup's and the
load log, as one journaled load (``store.swap``): a run killed between the swaps is finished
by the next session. A reader sees a day's old rows or its new rows, never half of them and
never both, and running the same partition again leaves the same totals. Before anything is
written the frame is checked (amounts finite and within ``POLO_MAX_EVENT_AMOUNT_USD``, every
event inside the window) and a day that held events is not emptied unless asked. Two writers of one collector must not rebuild the same month at once: the
embedded store's lock serialises them, and each collector asset has a Dagster pool of one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.schema import EVENTS_ORDER
from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import atomic_load

# Charge categories as FOCUS names them; the ones left out of resource deltas by default.
CHARGE_CATEGORIES = ("Usage", "Purchase", "Tax", "Credit", "Adjustment")
NON_USAGE_CATEGORIES = ("Tax", "Credit", "Adjustment")
# Collectors whose costs divide up costs another collector already holds (OpenTelemetry spans' estimates, reconciled to
# the hosts' bills): their resources sit in their own hierarchy only (``service``), and totals across collectors leave
# them out, so a host is never counted twice.
ALLOCATION_COLLECTORS = ("cost_otel",)
ALLOCATION_HIERARCHIES = ("service",)

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

PROPERTIES_TYPE = pa.map_(pa.string(), pa.string())
PROPERTIES_DTYPE = pd.ArrowDtype(PROPERTIES_TYPE)


def properties_column(values, index=None) -> pd.Series:
    """Event properties as an Arrow map column: built once, inserted without a Python object per row."""
    if isinstance(values, pd.Series) and values.dtype == PROPERTIES_DTYPE:
        return values.reset_index(drop=True) if index is None else values.set_axis(index)
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        array = values
    else:
        array = pa.array([list(v.items()) if isinstance(v, dict) else [] for v in values], type=PROPERTIES_TYPE)
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=index)


def build_properties(
    n: int,
    *,
    constant: dict[str, str] | None = None,
    columns: dict[str, pd.Series | np.ndarray | pa.Array] | None = None,
    pairs: tuple[np.ndarray, pa.Array, pa.Array] | None = None,
) -> pa.MapArray:
    """Assemble n property maps column-wise.

    ``constant``: the same key/value on every event; ``columns``: key -> one value per event
    ("" or null leaves the key out); ``pairs``: (event index, keys, values) for per-event extras
    such as tags, in the order given. Nothing loops over events in Python: keys are numbered,
    each entry's place in its map is computed, and the texts are moved once."""
    everyone = np.arange(n, dtype=np.int64)
    names: list[str] = []
    idx: list[np.ndarray] = []
    key_codes: list[np.ndarray] = []
    values: list[pa.Array] = []
    for key, value in (constant or {}).items():
        names.append(key)
        idx.append(everyone)
        key_codes.append(np.full(n, len(names) - 1, dtype=np.int32))
        values.append(pa.array([value], type=pa.string()).take(pa.array(np.zeros(n, dtype=np.int32))))
    for key, series in (columns or {}).items():
        text = _texts_or_null(series)
        keep = pc.fill_null(pc.not_equal(text, ""), False)
        names.append(key)
        idx.append(everyone[keep.to_numpy(zero_copy_only=False)])
        key_codes.append(np.full(len(idx[-1]), len(names) - 1, dtype=np.int32))
        values.append(text.filter(keep))
    if pairs is not None and len(pairs[0]):
        pair_keys = pc.dictionary_encode(pairs[1].cast(pa.string()))
        pair_codes = pair_keys.indices.to_numpy(zero_copy_only=False).astype(np.int32) + len(names)
        names.extend(pair_keys.dictionary.to_pylist())
        idx.append(np.asarray(pairs[0], dtype=np.int64))
        key_codes.append(pair_codes)
        values.append(pairs[2].cast(pa.string()))
    if not idx:
        return pa.array([[]] * n, type=PROPERTIES_TYPE)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(np.concatenate(idx), minlength=n), out=offsets[1:])
    cursor = offsets[:-1].copy()
    places = []
    for source, at in enumerate(idx):
        if pairs is not None and len(pairs[0]) and source == len(idx) - 1:  # several entries per event: in their order
            order = np.argsort(at, kind="stable")
            ranked = np.empty(len(at), dtype=np.int64)
            sorted_at = at[order]
            ranked[order] = np.arange(len(at)) - np.searchsorted(sorted_at, sorted_at, side="left")
            places.append(cursor[at] + ranked)
        else:  # at most one entry per event
            places.append(cursor[at])
            cursor[at] += 1
    total = int(offsets[-1])
    moved = np.empty(total, dtype=np.int64)
    moved[np.concatenate(places)] = np.arange(total)
    order = pa.array(moved)
    keys = pa.DictionaryArray.from_arrays(pa.array(np.concatenate(key_codes)).take(order), pa.array(names, type=pa.string()))
    return pa.MapArray.from_arrays(pa.array(offsets.astype(np.int32)), keys.cast(pa.string()), pa.concat_arrays(values).take(order))


def _texts_or_null(series: pd.Series | np.ndarray | pa.Array) -> pa.Array:
    """One value per event as Arrow text (null where missing)."""
    if isinstance(series, pa.ChunkedArray):
        series = series.combine_chunks()
    if isinstance(series, pa.Array):
        return series.cast(pa.string())
    try:
        return pa.array(np.asarray(series, dtype=object), type=pa.string(), from_pandas=True)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.array(pd.Series(series).astype("string").to_numpy(dtype=object, na_value=None), type=pa.string())


def map_pairs(maps: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array, pa.Array]:
    """A map column as long (row index, key, value) arrays, nulls and empty values dropped."""
    if isinstance(maps, pa.ChunkedArray):
        maps = maps.combine_chunks() if maps.num_chunks else pa.array([], type=maps.type)
    # Arrow's list kernels abort on map arrays, so walk the offsets with NumPy.
    offsets = maps.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    lengths = np.diff(offsets) * maps.is_valid().to_numpy(zero_copy_only=False)
    parents = np.repeat(np.arange(len(maps), dtype=np.int64), lengths)
    starts = np.repeat(offsets[:-1] - (np.cumsum(lengths) - lengths), lengths)
    take = pa.array(np.arange(len(parents), dtype=np.int64) + starts)
    keys, items = maps.keys.take(take), maps.items.take(take)
    keep = pc.and_(pc.is_valid(items), pc.not_equal(pc.fill_null(items, ""), ""))
    return parents[keep.to_numpy(zero_copy_only=False)], keys.filter(keep), items.filter(keep)


def add_properties(frame: pd.DataFrame, constant: dict[str, str]) -> pd.DataFrame:
    """The events with ``constant`` added to every event's properties (replacing a key already there)."""
    parents, keys, values = map_pairs(pa.array(frame["properties"]))
    kept = pc.invert(pc.is_in(keys, value_set=pa.array(list(constant), type=pa.string())))
    pairs = (parents[kept.to_numpy(zero_copy_only=False)], keys.filter(kept), values.filter(kept))
    out = frame.copy()
    out["properties"] = properties_column(build_properties(len(frame), constant=constant, pairs=pairs), index=frame.index)
    return out


def property_dicts(frame: pd.DataFrame) -> list[dict[str, str]]:
    """The properties of each event as plain dicts (for people and tests; writers stay columnar)."""
    return [dict(v) if v is not None else {} for v in frame["properties"].tolist()]


def cost_events(
    *,
    resource_arn,
    resource_type,
    resource_name,
    day,
    charge_category,
    value,
    billed_cost,
    list_cost,
    service,
    provider,
    properties,
    collector: str,
    actor_name="",
    aws_account_id="",
    aws_region="",
) -> pd.DataFrame:
    """Daily cost events in USD (one per resource, day and charge category), as every collector writes them.

    Every argument is one value per event, or one value for all of them."""
    if isinstance(charge_category, str):
        charge_category = [charge_category] * len(resource_arn)
    category = pd.Series(charge_category)
    return conform(
        pd.DataFrame(
            {
                "resource_arn": resource_arn,
                "resource_type": resource_type,
                "resource_name": resource_name,
                "event_time": day,
                "event_type": "cost",
                "event_action": category.str.lower().to_numpy(),
                "value": value,
                "billed_cost": billed_cost,
                "list_cost": list_cost,
                "charge_category": category.to_numpy(),
                "service": service,
                "provider": provider,
                "unit": "USD",
                "properties": properties_column(properties),
                "actor_name": actor_name,
                "collector": collector,
                "aws_account_id": aws_account_id,
                "aws_region": aws_region,
            }
        )
    )


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
            out[name] = properties_column(col, index=out.index)
    return out.reset_index(drop=True)


@dataclass(frozen=True)
class DayLoad:
    day: dt.date
    row_count: int
    value_total: float
    billed_total: float
    previous_rows: int = 0  # what the store held for the day before this load
    previous_total: float = 0.0

    @property
    def emptied(self) -> bool:
        """The day held events and this load left it with none."""
        return self.previous_rows > 0 and self.row_count == 0


# One event's amount beyond this (either sign) is refused: no real line item is a billion dollars a day.
DEFAULT_MAX_AMOUNT_USD = 1e9


def max_amount_setting() -> float:
    """POLO_MAX_EVENT_AMOUNT_USD: the largest |amount| one event may carry (default 1e9)."""
    raw = os.environ.get("POLO_MAX_EVENT_AMOUNT_USD", "")
    try:
        bound = float(raw) if raw else DEFAULT_MAX_AMOUNT_USD
    except ValueError:
        raise PoloInputError(f"not a number: {raw!r}", source="settings", field="POLO_MAX_EVENT_AMOUNT_USD") from None
    if not (bound > 0 and math.isfinite(bound)):
        raise PoloInputError(f"must be a positive number, got {raw!r}", source="settings", field="POLO_MAX_EVENT_AMOUNT_USD")
    return bound


def check_events(frame: pd.DataFrame, *, collector: str, days: Sequence[dt.date], source: str, max_amount: float | None = None) -> None:
    """Refuse a frame that would write something wrong; the message names source, field and partition."""
    window = window_label(min(days), max(days) + dt.timedelta(days=1))
    bound = max_amount if max_amount is not None else max_amount_setting()
    for name in ("value", "billed_cost", "list_cost"):
        amounts = frame[name].to_numpy(dtype="float64")
        bad = ~np.isfinite(amounts)
        if bad.any():
            first = frame.loc[bad].iloc[0]
            raise PoloInputError(
                f"{int(bad.sum())} event(s) have a missing or non-numeric amount, first for {first['resource_arn']!r}",
                source=source,
                field=name,
                partition=str(first["event_time"].date()),
            )
        # dollars are bounded; a metric's value is a measurement (840 GB is 8.4e11 bytes), only finite
        huge = (np.abs(amounts) > bound) & (frame["event_type"].to_numpy() == "cost")
        if huge.any():
            first = frame.loc[huge].iloc[0]
            raise PoloInputError(
                f"{int(huge.sum())} event(s) carry an amount beyond ±{bound:,.0f} USD, first {first[name]!r} for "
                f"{first['resource_arn']!r} ({first['service'] or first['resource_type']}); "
                "raise POLO_MAX_EVENT_AMOUNT_USD if such amounts are real",
                source=source,
                field=name,
                partition=str(first["event_time"].date()),
            )
        with np.errstate(over="ignore", invalid="ignore"):
            sums = pd.Series(amounts).groupby(_days_of(frame)).sum() if len(frame) else pd.Series(dtype="float64")
        if len(sums) and not np.isfinite(sums.to_numpy()).all():
            day = pd.Timestamp(sums.index[~np.isfinite(sums.to_numpy())][0]).date()
            raise PoloInputError("the day's amounts add up to more than a float can hold", source=source, field=name, partition=str(day))
    for name in REQUIRED_NON_EMPTY:
        if (frame[name] == "").any():
            raise PoloInputError("event(s) without a value", source=source, field=name, partition=window)
    if len(frame) and (frame["collector"] != collector).any():
        raise PoloInputError(f"event(s) not of collector {collector!r}", source=source, field="collector", partition=window)
    event_days = _days_of(frame)
    outside = ~np.isin(event_days, np.array(days, dtype="datetime64[D]"))
    if outside.any():
        raise PoloInputError(
            f"{int(outside.sum())} event(s) fall outside the partition window, e.g. {event_days[outside][0]}",
            source=source,
            field="event_time",
            partition=window,
        )


def stored_days(store: Store, collector: str, days: Sequence[dt.date]) -> dict[dt.date, tuple[int, float]]:
    """(events, cost) the store holds for the collector on each of ``days`` that holds any."""
    rows = store.query_rows(
        """
        SELECT toDate(event_time) AS day, count(), sumIf(value, event_type = 'cost') FROM polo.resource_events
        WHERE collector = {collector:String} AND toDate(event_time) IN {days:Array(Date)}
        GROUP BY day
        """,
        {"collector": collector, "days": list(days)},
    )
    return {pd.Timestamp(day).date(): (int(n), float(v)) for day, n, v in rows}


def refuse_emptied(loads: Sequence[DayLoad], *, source: str) -> None:
    """A source that suddenly holds nothing for days that held events is almost always a broken delivery."""
    emptied = [load for load in loads if load.emptied]
    if not emptied:
        return
    listed = ", ".join(f"{load.day} ({load.previous_rows} events, ${load.previous_total:,.2f})" for load in emptied[:5])
    more = f" and {len(emptied) - 5} more" if len(emptied) > 5 else ""
    raise PoloInputError(
        f"the source holds nothing for {len(emptied)} day(s) the store holds events for: {listed}{more}. "
        "The stored days are kept; if the days really are empty now, run again with allow_empty_days: true",
        source=source,
        field="events",
        partition=window_label(emptied[0].day, emptied[-1].day + dt.timedelta(days=1)),
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
    allow_empty_days: bool = False,
    within: tuple[dt.datetime, dt.datetime] | None = None,
) -> list[DayLoad]:
    """Make the store hold exactly ``frame`` for the collector on each of ``days``; with ``within`` (start, end), only
    for that part of the days, the rest of each day kept as it is (a collector of 15-minute windows).

    A day that held events and would be left with none is refused (PoloInputError, nothing
    written) unless ``allow_empty_days``; each DayLoad says what the day held before and holds after."""
    days = sorted(set(days))
    if not days:
        return []
    frame = conform(frame)
    check_events(frame, collector=collector, days=days, source=source)
    outside = "0"  # which of the days' events are kept: none, but for ``within``
    params: dict = {"collector": collector, "days": days}
    if within is not None:
        lo, hi = (as_utc(t).replace(tzinfo=None) for t in within)
        times = frame["event_time"]
        if len(frame) and (times.min() < pd.Timestamp(lo) or times.max() >= pd.Timestamp(hi)):
            raise PoloInputError(f"events outside the window {lo}..{hi}", source=source, field="event_time")
        outside = "NOT (event_time >= {lo:DateTime64(3)} AND event_time < {hi:DateTime64(3)})"
        params.update(lo=lo, hi=hi)
    now = pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ms")
    frame["_loaded_at"] = now

    before = stored_days(store, collector, days)
    kept = _kept_totals(store, outside, params) if within is not None else {}
    loads = [
        dataclasses.replace(
            load,
            row_count=load.row_count + kept.get(load.day, (0, 0.0, 0.0))[0],
            value_total=load.value_total + kept.get(load.day, (0, 0.0, 0.0))[1],
            billed_total=load.billed_total + kept.get(load.day, (0, 0.0, 0.0))[2],
            previous_rows=before.get(load.day, (0, 0.0))[0],
            previous_total=before.get(load.day, (0, 0.0))[1],
        )
        for load in _day_totals(frame, days)
    ]
    if not allow_empty_days:
        refuse_emptied(loads, source=source)
    months = sorted({month_of(d) for d in days})
    with atomic_load(store, f"{collector} {window_label(days[0], days[-1] + dt.timedelta(days=1))}") as load:
        scratch = load.scratch("polo.resource_events")
        rollup = load.scratch("polo.cost_resource_daily")
        log = load.scratch("polo.partition_loads")
        # One insert per day, in time order: each day becomes one part.
        frame = frame.take(np.argsort(_days_of(frame), kind="stable")).reset_index(drop=True)
        bounds = np.flatnonzero(np.diff(_days_of(frame).astype(np.int64))) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(frame)]):
            store.insert_df(scratch, frame.iloc[lo:hi])
        # Partitions are months: the months' other days (and the days' other hours, ``within``) come along as they
        # are, copied inside ClickHouse. Read in the table's order, so the copy comes in sorted blocks that the insert
        # need not sort again (a fifth of the copy's time).
        store.command(
            f"""
            INSERT INTO {scratch} SELECT * FROM polo.resource_events
            WHERE collector = {{collector:String}} AND toYYYYMM(event_time) IN {{months:Array(UInt32)}}
              AND (toDate(event_time) NOT IN {{days:Array(Date)}} OR {outside})
            ORDER BY {EVENTS_ORDER}
            SETTINGS max_partitions_per_insert_block = 0
            """,
            {**params, "months": months},
        )
        # The resource rollup: the days written aggregated from their events, the months' other days kept as they are
        # (a narrow copy, not the months' events aggregated again).
        fill_resource_rollup(store, scratch, rollup, days=days)
        store.command(
            f"""
            INSERT INTO {rollup} SELECT * FROM polo.cost_resource_daily
            WHERE collector = {{collector:String}} AND toYYYYMM(day) IN {{months:Array(UInt32)}} AND day NOT IN {{days:Array(Date)}}
            SETTINGS max_partitions_per_insert_block = 0
            """,
            {"collector": collector, "days": days, "months": months},
        )
        store.insert_df(log, _load_log(collector, loads, sources, run_id, now))
        held_events = _rows_per_month(store, scratch, "event_time")
        held_rollup = _rows_per_month(store, rollup, "day")
        partition = "({collector:String}, {month:UInt32})"
        for month in months:
            params = {"collector": collector, "month": month}
            load.replace("polo.resource_events", scratch, partition, params, held_events.get(month, 0) > 0)
            load.replace("polo.cost_resource_daily", rollup, partition, params, held_rollup.get(month, 0) > 0)
        load.append("polo.partition_loads", log)
        load.append("polo.partition_load_history", log)
        load.commit()
    return loads


def _kept_totals(store: Store, outside: str, params: dict) -> dict[dt.date, tuple[int, float, float]]:
    """(events, cost, billed) of each day's events a windowed load keeps."""
    rows = store.query_rows(
        f"""
        SELECT toDate(event_time) AS day, count(), sumIf(value, event_type = 'cost'), sumIf(billed_cost, event_type = 'cost')
        FROM polo.resource_events
        WHERE collector = {{collector:String}} AND toDate(event_time) IN {{days:Array(Date)}} AND {outside}
        GROUP BY day
        """,
        params,
    )
    return {pd.Timestamp(day).date(): (int(n), float(v), float(b)) for day, n, v, b in rows}


def fill_resource_rollup(store: Store, events_table: str, target: str, days: Sequence[dt.date] | None = None) -> None:
    """Aggregate the cost events of ``events_table`` (of ``days`` only, when given) into ``target`` (shaped like
    cost_resource_daily)."""
    store.command(
        f"""
        INSERT INTO {target}
        SELECT toDate(event_time) AS day, collector, resource_arn, charge_category,
               sum(value), sum(billed_cost), sum(list_cost), count()
        FROM {events_table}
        WHERE event_type = 'cost' {"AND toDate(event_time) IN {days:Array(Date)}" if days is not None else ""}
        GROUP BY day, collector, resource_arn, charge_category
        SETTINGS max_partitions_per_insert_block = 0
        """,
        {"days": list(days)} if days is not None else None,
    )


def month_of(day: dt.date) -> int:
    """The partition month of a day, as toYYYYMM gives it."""
    return day.year * 100 + day.month


def _rows_per_month(store: Store, table: str, column: str) -> dict[int, int]:
    counts = store.query_df(f"SELECT toYYYYMM({column}) AS month, count() AS n FROM {table} GROUP BY month")
    return {int(m): int(n) for m, n in zip(counts["month"], counts["n"])}


def _days_of(frame: pd.DataFrame) -> np.ndarray:
    return frame["event_time"].to_numpy().astype("datetime64[D]")


def _day_totals(frame: pd.DataFrame, days: Sequence[dt.date]) -> list[DayLoad]:
    """Each day's events and the cost among them (a metric's value, bytes or minutes, is no cost)."""
    cost = frame["event_type"].to_numpy() == "cost"
    amounts = frame[["value", "billed_cost"]].where(pd.Series(cost, index=frame.index), 0.0)
    by_day = amounts.groupby(_days_of(frame)).agg(["size", "sum"])
    loads = []
    for day in days:
        key = np.datetime64(day, "D")
        if key in by_day.index:
            row = by_day.loc[key]
            loads.append(DayLoad(day, int(row[("value", "size")]), float(row[("value", "sum")]), float(row[("billed_cost", "sum")])))
        else:
            loads.append(DayLoad(day, 0, 0.0, 0.0))
    return loads


def _load_log(collector: str, loads: Sequence[DayLoad], sources: Sequence[str], run_id: str, now: pd.Timestamp) -> pd.DataFrame:
    return pd.DataFrame(
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


def window_label(start: dt.date, end_exclusive: dt.date) -> str:
    """How errors and metadata name a window of days: ``2026-11-02`` or ``2026-11-02..2026-11-08``."""
    last = end_exclusive - dt.timedelta(days=1)
    return str(start) if last == start else f"{start}..{last}"


def as_utc(moment: dt.datetime) -> dt.datetime:
    """An aware UTC time; a naive one is taken as UTC, the store's convention (the embedded client hands
    DateTime64(3, 'UTC') back naive, a server client aware)."""
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


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
        LEFT JOIN (SELECT toDate(event_time) AS day, count() AS rows, sumIf(value, event_type = 'cost') AS cost
                   FROM polo.resource_events WHERE collector = {collector:String} GROUP BY day) AS e
          ON e.day = l.partition_date
        WHERE loaded_rows != stored_rows OR abs(loaded_cost - stored_cost) > 1e-6
        ORDER BY day
        """,
        {"collector": collector},
    )
