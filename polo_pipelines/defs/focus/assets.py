"""FOCUS cost events: one daily partition of collector cost_focus in polo.resource_events."""


from typing import Iterator

import dagster as dg
from dagster_aws.s3 import S3Resource

from polo_pipelines import collect
from polo_pipelines.defs.focus.resources import FocusSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="focus",
    kinds={"clickhouse", "s3"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_focus",
)
def focus_cost_events(
    context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, focus_source: FocusSource, s3: S3Resource
) -> Iterator[dg.MaterializeResult]:
    """Daily costs from a FOCUS billing export of any provider (collector cost_focus)."""
    if not focus_source.configured:
        context.log.info("POLO_FOCUS_URI is not set: no FOCUS export to collect, nothing materialized")
        return
    start, end = window_days(context)
    s3_client = s3.get_client() if (focus_source.uri or "").startswith("s3://") else None
    collected = collect.read_or_fail(lambda: focus_source.collect(start, end, s3_client=s3_client))
    with clickhouse.session() as store:
        loads = collect.write(store, collected, start, end, context.run.run_id)
    yield collect.result(collected, loads, start, end)
