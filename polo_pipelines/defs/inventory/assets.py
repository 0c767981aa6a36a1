"""The AWS inventory (what changed among running instances, EBS volumes and notebooks, as config and lifecycle events)
and the AWS Organization (its accounts, their names and tags, and the organizational units above them)."""

import datetime as dt

import dagster as dg

from polo_pipelines.defs.collection.factory import COLLECTOR_RETRY, AsOfConfig, read_or_fail, sample_mode
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources import sample
from polo_pipelines.sources.aws import inventory
from polo_pipelines.sources.aws.source import AwsInventorySource, AwsOrganizationSource


@dg.asset(
    group_name="aws",
    kinds={"clickhouse", "aws"},
    pool="inventory_aws",
    retry_policy=COLLECTOR_RETRY,
    metadata={"dagster/table_name": "polo.resource_events", "collector": inventory.COLLECTOR},
)
def aws_inventory_events(
    context: dg.AssetExecutionContext, config: AsOfConfig, clickhouse: ClickHouseResource, aws_inventory: AwsInventorySource
) -> dg.MaterializeResult:
    """Running instances, EBS volumes and SageMaker notebooks per account and region: what changed since the last
    snapshot, as config and lifecycle events (collector inventory_aws)."""
    mode = sample_mode(aws_inventory.configured, clickhouse.is_embedded)
    if mode == "skip":
        context.log.info("no inventory targets (POLO_AWS_INVENTORY_TARGETS) and the sample world is off: nothing listed")
        return dg.MaterializeResult(metadata={"observed": 0, "changed": 0})
    at = config.moment()
    with clickhouse.session() as store:
        if mode == "sample":
            from polo_pipelines.sources.aws.sample_inventory import sample_aws

            if sample.sample_window() is None:
                sample.write_sample()
            with sample_aws(sample.sample_window()[1]) as (targets, observe_fn):
                result = read_or_fail(lambda: inventory.snapshot(store, targets, at, observe_fn=observe_fn))
        else:
            result = read_or_fail(lambda: inventory.snapshot(store, aws_inventory.targets(), at))
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


@dg.asset(
    group_name="aws",
    kinds={"clickhouse", "aws"},
    pool="inventory_aws",
    retry_policy=COLLECTOR_RETRY,
    automation_condition=dg.AutomationCondition.on_cron("0 5 * * *"),  # before the 06:00 collection, so names are fresh
    metadata={"dagster/table_name": "polo.aws_organization"},
)
def aws_organization(
    context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, aws_organization: AwsOrganizationSource
) -> dg.MaterializeResult:
    """The AWS Organization read whole (POLO_AWS_ORGANIZATION=1): each account's name, status, tags and OU path. The
    hierarchy asset makes it the aws_organization hierarchy and names every account level from it."""
    if not aws_organization.configured:
        context.log.info("POLO_AWS_ORGANIZATION is not set: the organization is not read")
        return dg.MaterializeResult(metadata={"accounts": 0})
    from polo_pipelines.sources.aws.organization import write_organization

    frame = read_or_fail(lambda: aws_organization.read(dt.datetime.now(dt.UTC)))
    with clickhouse.session() as store:
        write_organization(store, frame)
    units = {"/".join(path) for path in frame["ou_names"] if len(path)}
    return dg.MaterializeResult(
        metadata={
            "accounts": len(frame),
            "organizational_units": len(units),
            "roots": ", ".join(sorted(set(frame["root_id"]))),
            "dagster/row_count": len(frame),
        }
    )
