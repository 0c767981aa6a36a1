"""The daily collection job: every registered cost collector, one partition (or one backfill range) per run."""

import dagster as dg

from polo_pipelines.sources import SOURCES

# Collectors of different sources run in parallel in a run; each source's own pool keeps one write of it at a time.
COLLECTOR_ASSETS = tuple(spec.asset_name for spec in SOURCES)
# the collectors of costs alone: what a week's figures wait for (activity explains them, it does not make them)
COST_COLLECTOR_ASSETS = tuple(spec.asset_name for spec in SOURCES if spec.kind == "cost")

daily_cost_collection = dg.define_asset_job(
    "daily_cost_collection",
    # the cost collectors by name: the aws group also holds aws_inventory_events, which runs every 15 minutes
    selection=dg.AssetSelection.assets(*COLLECTOR_ASSETS),
    description="Collect every configured source (costs and the activity that explains them) for a day (or a backfill range) into polo.resource_events.",
)
