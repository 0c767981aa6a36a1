"""The daily collection job: every cost collector, one partition (or one backfill range) per run."""

import dagster as dg

COLLECTOR_GROUPS = ("aws", "focus")

daily_cost_collection = dg.define_asset_job(
    "daily_cost_collection",
    selection=dg.AssetSelection.groups(*COLLECTOR_GROUPS),
    description="Collect every configured cost source for a day (or a backfill range) into polo.resource_events.",
)
