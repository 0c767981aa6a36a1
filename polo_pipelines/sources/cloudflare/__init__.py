"""Cloudflare: Workers and R2 usage from GraphQL Analytics, priced with the published prices and allowances."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="cloudflare",
    platform="cloudflare",
    collector="cost_cloudflare",
    description="Daily Cloudflare costs per Workers script and R2 bucket, free allowances applied month by month (collector cost_cloudflare).",
    kinds=("cloudflare",),
    configured_by="POLO_CLOUDFLARE_ACCOUNT_ID",
    settings=(
        Setting("POLO_CLOUDFLARE_ACCOUNT_ID", "the account"),
        Setting("POLO_CLOUDFLARE_TOKEN", "API token with Account Analytics read", secret="polo/cloudflare-token"),
        Setting("POLO_CLOUDFLARE_API_URL", "the API root (default https://api.cloudflare.com/client/v4)"),
    ),
    sample="server",
)
