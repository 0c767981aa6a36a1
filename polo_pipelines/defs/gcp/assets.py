"""GCP cost events: one daily partition of collector cost_gcp in polo.resource_events."""

from typing import Iterator

import dagster as dg

from polo_pipelines import collect
from polo_pipelines.defs.gcp.resources import GcpSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="gcp",
    kinds={"clickhouse", "gcp"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_gcp",
)
def gcp_cost_events(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, gcp: GcpSource) -> Iterator[dg.MaterializeResult]:
    """Daily GCP costs per resource (or project and service), credits as their own rows, from the BigQuery billing export (collector cost_gcp)."""
    yield from collect.materialize_platform(context, clickhouse, gcp, *window_days(context))
