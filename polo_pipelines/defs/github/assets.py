"""GitHub cost events: one daily partition of collector cost_github in polo.resource_events."""

from polo_pipelines import collect

github_cost_events = collect.platform_asset(
    "github",
    "Daily GitHub costs per repository, product and Actions workflow, reconciled to the billing report (collector cost_github).",
)
