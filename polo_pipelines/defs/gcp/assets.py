"""GCP cost events: one daily partition of collector cost_gcp in polo.resource_events."""

from polo_pipelines import collect

gcp_cost_events = collect.platform_asset(
    "gcp",
    "Daily GCP costs per resource (or project and service), credits as their own rows, from the BigQuery billing export (collector cost_gcp).",
)
