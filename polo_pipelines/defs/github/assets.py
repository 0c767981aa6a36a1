"""GitHub cost events: one daily partition of collector cost_github in polo.resource_events."""

from typing import Iterator

import dagster as dg

from polo_pipelines import collect
from polo_pipelines.defs.github.resources import GithubSource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.partitions import daily_partitions, window_days


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="github",
    kinds={"clickhouse", "github"},
    retry_policy=collect.COLLECTOR_RETRY,
    output_required=False,
    pool="cost_github",
)
def github_cost_events(context: dg.AssetExecutionContext, clickhouse: ClickHouseResource, github: GithubSource) -> Iterator[dg.MaterializeResult]:
    """Daily GitHub costs per repository, product and Actions workflow, reconciled to the billing report (collector cost_github)."""
    yield from collect.materialize_platform(context, clickhouse, github, *window_days(context))
