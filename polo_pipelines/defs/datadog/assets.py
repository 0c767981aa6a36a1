"""Datadog cost events: one daily partition of collector cost_datadog in polo.resource_events."""

from polo_pipelines import collect

datadog_cost_events = collect.platform_asset(
    "datadog",
    "Daily Datadog cost per product, estimated until the month is final (collector cost_datadog).",
)
