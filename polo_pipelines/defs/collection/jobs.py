"""The daily collection job: every cost collector, one partition (or one backfill range) per run."""

import dagster as dg

# Asset group (one per platform) -> its collector asset. Collectors of different platforms run in parallel in a run.
COLLECTOR_ASSETS_BY_GROUP = {
    "aws": "aws_cost_events",
    "github": "github_cost_events",
    "azure": "azure_cost_events",
    "gcp": "gcp_cost_events",
    "cloudflare": "cloudflare_cost_events",
    "datadog": "datadog_cost_events",
    "focus": "focus_cost_events",
}

daily_cost_collection = dg.define_asset_job(
    "daily_cost_collection",
    # the cost collectors by name: their groups also hold other assets (aws_inventory_events runs every 15 minutes)
    selection=dg.AssetSelection.assets(*COLLECTOR_ASSETS_BY_GROUP.values()),
    description="Collect every configured cost source for a day (or a backfill range) into polo.resource_events.",
)
