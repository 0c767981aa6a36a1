"""Azure cost events: one daily partition of collector cost_azure in polo.resource_events."""

from typing import Iterator

import dagster as dg

from polo_pipelines import collect
from polo_pipelines.defs.azure.resources import AzureSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="azure",
    kinds={"clickhouse", "azure"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_azure",
)
def azure_cost_events(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, azure: AzureSource) -> Iterator[dg.MaterializeResult]:
    """Daily Azure costs per resource and service, amortized and billed, from Cost Management (collector cost_azure)."""
    yield from collect.materialize_platform(context, clickhouse, azure, *window_days(context))
