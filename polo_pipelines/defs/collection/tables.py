"""The tables every collector writes beside its events, in the same swap: in the graph so its lineage is whole."""

from collections.abc import Sequence

import dagster as dg

from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS, COST_COLLECTOR_ASSETS


def table_spec(table: str, group: str, deps: Sequence[str], description: str, **more) -> dg.AssetSpec:
    """The asset of one table of database polo, named after it, with its dagster/table_name."""
    return dg.AssetSpec(
        table,
        group_name=group,
        kinds={"clickhouse"},
        deps=deps,
        metadata={"dagster/table_name": f"polo.{table}"},
        description=description,
        **more,
    )


cost_resource_daily = table_spec(
    "cost_resource_daily",
    "collection",
    COST_COLLECTOR_ASSETS,
    "Cost per resource, day and charge category, written by each collector in the same swap as its events.",
)

partition_loads = table_spec(
    "partition_loads",
    "collection",
    COLLECTOR_ASSETS,
    "What each collector's last load of each day wrote (rows, cost, sources): the integrity checks compare against it.",
)
