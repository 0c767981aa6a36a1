"""Cloudflare cost events: one daily partition of collector cost_cloudflare in polo.resource_events."""

from typing import Iterator

import dagster as dg

from polo_pipelines import collect
from polo_pipelines.defs.cloudflare.resources import CloudflareSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="cloudflare",
    kinds={"clickhouse", "cloudflare"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_cloudflare",
)
def cloudflare_cost_events(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, cloudflare: CloudflareSource) -> Iterator[dg.MaterializeResult]:
    """Daily Cloudflare costs per Workers script and R2 bucket, free allowances applied month by month (collector cost_cloudflare)."""
    yield from collect.materialize_platform(context, clickhouse, cloudflare, *window_days(context))
