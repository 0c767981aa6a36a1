"""The tables every collector writes beside its events, in the same swap: in the graph so its lineage is whole."""

import dagster as dg

from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS

cost_resource_daily = dg.AssetSpec(
    "cost_resource_daily",
    group_name="collection",
    kinds={"clickhouse"},
    deps=COLLECTOR_ASSETS,
    metadata={"dagster/table_name": "polo.cost_resource_daily"},
    description="Cost per resource, day and charge category, written by each collector in the same swap as its events.",
)

partition_loads = dg.AssetSpec(
    "partition_loads",
    group_name="collection",
    kinds={"clickhouse"},
    deps=COLLECTOR_ASSETS,
    metadata={"dagster/table_name": "polo.partition_loads"},
    description="What each collector's last load of each day wrote (rows, cost, sources): the integrity checks compare against it.",
)
