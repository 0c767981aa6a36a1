"""Datadog cost events: one daily partition of collector cost_datadog in polo.resource_events."""

from typing import Iterator

import dagster as dg

from polo_pipelines import collect
from polo_pipelines.defs.datadog.resources import DatadogSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="datadog",
    kinds={"clickhouse", "datadog"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_datadog",
)
def datadog_cost_events(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, datadog: DatadogSource) -> Iterator[dg.MaterializeResult]:
    """Daily Datadog cost per product, estimated until the month is final (collector cost_datadog)."""
    yield from collect.materialize_platform(context, clickhouse, datadog, *window_days(context))
