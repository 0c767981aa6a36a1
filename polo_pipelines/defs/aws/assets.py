"""AWS cost events: one daily partition of collector cost_aws in polo.resource_events."""


from typing import Iterator

import dagster as dg
from dagster_aws.s3 import S3Resource

from polo_pipelines import collect, sample
from polo_pipelines.defs.aws.resources import AwsCostSource, AwsInventorySource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.events import window_label
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="aws",
    kinds={"clickhouse", "aws", "s3"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_aws",
)
def aws_cost_events(
    context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, aws_costs: AwsCostSource, s3: S3Resource
) -> Iterator[dg.MaterializeResult]:
    """Daily AWS costs per resource and charge category (collector cost_aws), from the data export or Cost Explorer."""
    start, end = window_days(context)
    mode = collect.sample_mode(not aws_costs.is_sample, clickhouse.is_embedded)
    if mode == "skip":
        context.log.info(
            "aws is not configured (POLO_AWS_CUR_URI or POLO_AWS_MODE=cost_explorer) and the sample world is off "
            "(POLO_SAMPLE=0, or a ClickHouse server without POLO_SAMPLE_TO_SERVER=1): nothing collected, nothing materialized"
        )
        return
    if mode == "sample":
        if sample.sample_window() is None:
            sample.write_sample()
    s3_client = s3.get_client() if (aws_costs.export_uri or "").startswith("s3://") else None
    collected = collect.read_or_fail(lambda: aws_costs.collect(start, end, s3_client=s3_client))
    with clickhouse.session() as store:
        loads = collect.write(store, collected, start, end, context.run.run_id)
    context.log.info(f"cost_aws {window_label(start, end)}: {len(collected.events)} events written from {collected.source}")
    yield collect.result(collected, loads, start, end)


@dg.asset(group_name="aws", kinds={"clickhouse", "aws"}, pool="inventory_aws", retry_policy=collect.COLLECTOR_RETRY)
def aws_inventory_events(
    context: dg.AssetExecutionContext, config: collect.AsOfConfig, clickhouse: ClickHouseResource, aws_inventory: AwsInventorySource
) -> dg.MaterializeResult:
    """Running instances, EBS volumes and SageMaker notebooks per account and region: what changed since the last
    snapshot, as config and lifecycle events (collector inventory_aws)."""
    from polo_pipelines.aws import inventory

    mode = collect.sample_mode(aws_inventory.configured, clickhouse.is_embedded)
    if mode == "skip":
        context.log.info("no inventory targets (POLO_AWS_INVENTORY_TARGETS) and the sample world is off: nothing listed")
        return dg.MaterializeResult(metadata={"observed": 0, "changed": 0})
    at = config.moment()
    with clickhouse.session() as store:
        if mode == "sample":
            from polo_pipelines.sample.inventory import sample_aws

            if sample.sample_window() is None:
                sample.write_sample()
            with sample_aws(sample.sample_window()[1]) as (targets, observe_fn):
                result = collect.read_or_fail(lambda: inventory.snapshot(store, targets, at, observe_fn=observe_fn))
        else:
            result = collect.read_or_fail(lambda: inventory.snapshot(store, aws_inventory.targets(), at))
    context.log.info(f"inventory at {at.isoformat()}: {result.observed} resources, {result.changed} changed, {result.deleted} deleted")
    return dg.MaterializeResult(
        metadata={
            "as_of": at.isoformat(),
            "observed": result.observed,
            "changed": result.changed,
            "deleted": result.deleted,
            "dagster/row_count": len(result.events),
            "accounts": ", ".join(result.accounts),
        }
    )
