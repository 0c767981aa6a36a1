"""Datadog: month-to-date cost estimates differenced into days, final bills scaled in once a month closes."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="datadog",
    platform="datadog",
    collector="cost_datadog",
    description="Daily Datadog costs per product from the usage cost APIs, estimates replaced by the final bill once a month closes (collector cost_datadog).",
    kinds=("datadog",),
    configured_by="POLO_DATADOG_SITE",
    settings=(
        Setting(
            "POLO_DATADOG_SITE",
            "datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com or ddog-gov.com",
        ),
        Setting("POLO_DATADOG_API_KEY", "API key of the parent organisation", secret="polo/datadog-api-key"),
        Setting("POLO_DATADOG_APP_KEY", "application key with usage_read", secret="polo/datadog-app-key"),
        Setting("POLO_DATADOG_API_URL", "the API root, when not the site's own"),
    ),
    sample="server",
)
