"""The pre-aggregations that keep the cost drill-down fast as history grows.

- ``cost_resource_daily``: cost per resource, day and charge category, partitioned like
  ``resource_events`` (collector, month) and swapped in with the same months.
- ``cost_node_daily``: cost per hierarchy node, day and charge category (the ancestry joined
  once, at write time), partitioned by month: Level 1 of the drill-down.
- ``cost_node_resource_daily``: cost per node, day, resource and charge category, with the
  resource's type, name, detail and creator (from ``resources``, rewritten with the ancestry),
  ordered node first: Level 2 (the resources under one node) as one prefix read.

The node rollups are refreshed together: a collector day refreshes its days (the months'
other days are copied as they are); a new ancestry refreshes every day.

Inserts spanning many months (a multi-year backfill or rebuild) lift ClickHouse's default
limit of 100 partitions per insert on purpose.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd

from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import scratch_copy, swap_in


def fill_resource_rollup(store: Store, events_table: str, target: str) -> None:
    """Aggregate the cost events of ``events_table`` into ``target`` (shaped like cost_resource_daily)."""
    store.command(
        f"""
        INSERT INTO {target}
        SELECT toDate(event_time) AS day, collector, resource_arn, charge_category,
               sum(value), sum(billed_cost), sum(list_cost), count()
        FROM {events_table}
        WHERE event_type = 'cost'
        GROUP BY day, collector, resource_arn, charge_category
        SETTINGS max_partitions_per_insert_block = 0
        """
    )


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
    for table, select in NODE_ROLLUPS.items():
        with scratch_copy(store, table) as scratch:
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
                swap_in(store, table, scratch, "{month:UInt32}", {"month": month}, held.get(month, 0) > 0)
        written[table] = sum(held.values())
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


def follow_ancestry(store: Store, before: tuple[int, int, int, int]) -> tuple[str, dict[str, int]]:
    """Bring the node rollups in line with an ancestry just rewritten (``before``: its fingerprint beforehand).

    A changed ancestry, or changed resource attributes, rebuilds every day. An unchanged one
    keeps them: each collector day already refreshed its own days with this ancestry, so only days
    missing from a node rollup are filled. Returns what was done and the rows written."""
    if ancestry_fingerprint(store) != before:
        return "rebuilt", rebuild_node_rollup(store)
    missing = missing_node_days(store)
    return ("kept" if not missing else f"kept, {len(missing)} missing day(s) filled"), refresh_node_days(store, missing)
