"""Azure: Cost Management queries over subscriptions or billing accounts, amortized and billed."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="azure",
    platform="azure",
    collector="cost_azure",
    description="Daily Azure costs per resource and service, amortized and billed, from Cost Management (collector cost_azure).",
    kinds=("azure",),
    configured_by="POLO_AZURE_SCOPES",
    settings=(
        Setting("POLO_AZURE_SCOPES", "comma-separated scopes: `subscriptions/<id>` or `providers/Microsoft.Billing/billingAccounts/<id>`"),
        Setting("POLO_AZURE_TENANT_ID", "the application's tenant"),
        Setting("POLO_AZURE_CLIENT_ID", "the application (Cost Management Reader on the scopes)"),
        Setting("POLO_AZURE_CLIENT_SECRET", "the application's secret", secret="polo/azure-client-secret"),
        Setting("POLO_AZURE_MANAGEMENT_URL", "the management API root (default https://management.azure.com)"),
        Setting("POLO_AZURE_AUTHORITY_URL", "the login authority (default https://login.microsoftonline.com)"),
    ),
    sample="server",
)
