"""The pre-aggregations that keep the cost drill-down fast as history grows, and how they follow the data.

- ``cost_resource_daily``: cost per resource, day and charge category, partitioned like
  ``resource_events`` (collector, month) and written by the collector in the same swap.
- ``cost_node_daily``: cost per hierarchy node, day and charge category (the ancestry joined
  once, at write time), partitioned by month: Level 1 of the drill-down.
- ``cost_node_resource_daily``: cost per node, day, resource and charge category, with the
  resource's type, name, detail and creator (from ``resources``), ordered node first: Level 2
  (the resources under one node) as one prefix read.

Writes flow one way: collectors write events and ``cost_resource_daily``; the hierarchy asset
writes ``resource_ancestry`` and ``resources``; the node-rollup asset, downstream of both,
brings the two node tables up to date (``update_node_rollups``): every day when the ancestry
or the resources' attributes changed since its last run, else only the days loaded since.

Inserts spanning many months (a multi-year backfill or rebuild) lift ClickHouse's default
limit of 100 partitions per insert on purpose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from polo_pipelines.store.events import as_utc
from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import atomic_load

# Each node table, and how its rows for some days are computed from cost_resource_daily and the current ancestry.
NODE_ROLLUPS = {
    "polo.cost_node_resource_daily": """
        SELECT a.hierarchy, a.ancestor_id, r.day, r.resource_arn, r.charge_category, r.cost,
               d.resource_type, d.resource_name, d.detail, d.created_by
        FROM polo.cost_resource_daily AS r
        INNER JOIN polo.resource_ancestry AS a ON a.resource_arn = r.resource_arn
        LEFT JOIN polo.resources AS d ON d.resource_arn = r.resource_arn
        WHERE r.day IN {days:Array(Date)}
    """,
    "polo.cost_node_daily": """
        SELECT a.hierarchy, a.ancestor_id, any(a.ancestor_type), any(a.parent_id), any(a.depth),
               r.day, r.charge_category, sum(r.cost), sum(r.billed_cost), uniqExact(r.resource_arn)
        FROM polo.cost_resource_daily AS r
        INNER JOIN polo.resource_ancestry AS a ON a.resource_arn = r.resource_arn
        WHERE r.day IN {days:Array(Date)}
        GROUP BY a.hierarchy, a.ancestor_id, r.day, r.charge_category
    """,
}


def refresh_node_days(store: Store, days: Sequence[dt.date]) -> dict[str, int]:
    """Recompute the node rollups for ``days`` from cost_resource_daily and the current ancestry.

    Returns each table's rows in the months it rewrote."""
    days = sorted(set(days))
    if not days:
        return {table: 0 for table in NODE_ROLLUPS}
    months = sorted({d.year * 100 + d.month for d in days})
    written = {}
    with atomic_load(store, f"node rollups {days[0]}..{days[-1]}") as load:
        for table, select in NODE_ROLLUPS.items():
            scratch = load.scratch(table)
            store.command(
                f"""
                INSERT INTO {scratch} SELECT * FROM {table}
                WHERE toYYYYMM(day) IN {{months:Array(UInt32)}} AND day NOT IN {{days:Array(Date)}}
                SETTINGS max_partitions_per_insert_block = 0
                """,
                {"months": months, "days": days},
            )
            store.command(f"INSERT INTO {scratch} {select} SETTINGS max_partitions_per_insert_block = 0", {"days": days})
            counts = store.query_df(f"SELECT toYYYYMM(day) AS month, count() AS n FROM {scratch} GROUP BY month")
            held = {int(m): int(n) for m, n in zip(counts["month"], counts["n"])}
            for month in months:
                load.replace(table, scratch, "{month:UInt32}", {"month": month}, held.get(month, 0) > 0)
            written[table] = sum(held.values())
        load.commit()
    return written


def rebuild_node_rollup(store: Store) -> dict[str, int]:
    """Recompute the node rollups for every day that has costs (after the ancestry changed)."""
    days = store.query_df("SELECT DISTINCT day FROM polo.cost_resource_daily ORDER BY day")["day"]
    stale = store.query_df(
        "SELECT DISTINCT day FROM polo.cost_node_daily UNION DISTINCT SELECT DISTINCT day FROM polo.cost_node_resource_daily"
    )["day"]
    every = {pd.Timestamp(d).date() for d in days} | {pd.Timestamp(d).date() for d in stale}
    return refresh_node_days(store, sorted(every))


def ancestry_fingerprint(store: Store) -> tuple[int, int, int, int]:
    """What the node rollups were computed from: the ancestry rows and the resources' attributes they copy.

    Order-free (a XOR of row hashes, with the row counts), so the same content gives the same fingerprint."""
    frame = store.query_df(
        """
        SELECT (SELECT count() FROM polo.resource_ancestry) AS ancestry_rows,
               (SELECT groupBitXor(cityHash64(hierarchy, ancestor_id, resource_arn, ancestor_type, depth, parent_id))
                FROM polo.resource_ancestry) AS ancestry_hash,
               (SELECT count() FROM polo.resources) AS resource_rows,
               (SELECT groupBitXor(cityHash64(resource_arn, resource_type, resource_name, detail, created_by))
                FROM polo.resources) AS resource_hash
        """
    )
    return tuple(int(frame[c][0]) for c in ("ancestry_rows", "ancestry_hash", "resource_rows", "resource_hash"))


def missing_node_days(store: Store) -> list[dt.date]:
    """Days with resource costs that a node rollup lacks (an interrupted refresh, say)."""
    frame = store.query_df(
        """
        SELECT DISTINCT day FROM polo.cost_resource_daily
        WHERE day NOT IN (SELECT day FROM polo.cost_node_daily) OR day NOT IN (SELECT day FROM polo.cost_node_resource_daily)
        ORDER BY day
        """,
        columns=["day"],
    )
    return [pd.Timestamp(d).date() for d in frame["day"]]


@dataclass(frozen=True)
class RollupState:
    """What the node rollups were last computed from: the ancestry's fingerprint and the loads they include."""

    fingerprint: tuple[int, int, int, int]
    loads_through: dt.datetime | None


def last_state(store: Store) -> RollupState | None:
    rows = store.query_rows(
        """
        SELECT ancestry_rows, ancestry_hash, resource_rows, resource_hash, loads_through
        FROM polo.node_rollup_state ORDER BY computed_at DESC LIMIT 1
        """
    )
    if not rows:
        return None
    *fingerprint, loads_through = rows[0]
    return RollupState(tuple(int(v) for v in fingerprint), as_utc(loads_through) if loads_through else None)


def newest_load(store: Store) -> dt.datetime | None:
    """When any collector last loaded a day (None: never)."""
    (row,) = store.query_rows("SELECT count(), max(loaded_at) FROM polo.partition_loads")
    return as_utc(row[1]) if row[0] else None


def _days_loaded_since(store: Store, moment: dt.datetime | None) -> list[dt.date]:
    """The days any collector loaded after ``moment`` (None: every day ever loaded)."""
    rows = store.query_rows(
        "SELECT DISTINCT partition_date FROM polo.partition_loads WHERE {all:Bool} OR loaded_at > {t:DateTime64(3, 'UTC')} ORDER BY partition_date",
        {"all": moment is None, "t": (moment or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)).astimezone(dt.UTC).replace(tzinfo=None)},
    )
    return [pd.Timestamp(day).date() for (day,) in rows]


def update_node_rollups(store: Store) -> tuple[str, dict[str, int]]:
    """Bring the node rollups in line with the current ancestry and every load since their last update.

    A changed ancestry, or changed resource attributes, rebuilds every day. An unchanged one
    refreshes only the days loaded since the last update, and any day a node rollup lacks (an
    update that died half-way). Returns what was done and the rows written."""
    before = last_state(store)
    fingerprint = ancestry_fingerprint(store)
    newest = newest_load(store)
    if before is None or before.fingerprint != fingerprint:
        action, written = "rebuilt", rebuild_node_rollup(store)
    else:
        loaded = _days_loaded_since(store, before.loads_through)
        missing = missing_node_days(store)
        filled = set(missing) - set(loaded)
        days = sorted(set(loaded) | filled)
        action = f"{len(loaded)} loaded day(s) refreshed" + (f", {len(filled)} missing day(s) filled" if filled else "")
        written = refresh_node_days(store, days)
    store.insert_df(
        "polo.node_rollup_state",
        pd.DataFrame(
            {
                "computed_at": [pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ms")],
                "ancestry_rows": [fingerprint[0]],
                "ancestry_hash": [fingerprint[1]],
                "resource_rows": [fingerprint[2]],
                "resource_hash": [fingerprint[3]],
                "loads_through": [pd.Timestamp(newest).tz_convert("UTC").tz_localize(None).as_unit("ms") if newest else pd.NaT],
            }
        ),
    )
    return action, written
