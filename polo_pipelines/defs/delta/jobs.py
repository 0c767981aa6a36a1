"""Both weekly delta assets, one ISO week per run."""

import dagster as dg

weekly_cost_deltas = dg.define_asset_job(
    "weekly_cost_deltas",
    selection=["cost_delta_nodes_weekly", "cost_delta_resources_weekly"],
    description="Compute one ISO week's node and resource deltas against the week before.",
)
