"""Cloudflare cost events: one daily partition of collector cost_cloudflare in polo.resource_events."""

from polo_pipelines import collect

cloudflare_cost_events = collect.platform_asset(
    "cloudflare",
    "Daily Cloudflare costs per Workers script and R2 bucket, free allowances applied month by month (collector cost_cloudflare).",
)
