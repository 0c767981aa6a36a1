"""Azure cost events: one daily partition of collector cost_azure in polo.resource_events."""

from polo_pipelines import collect

azure_cost_events = collect.platform_asset(
    "azure",
    "Daily Azure costs per resource and service, amortized and billed, from Cost Management (collector cost_azure).",
)
