"""GCP: the Cloud Billing export table in BigQuery, credits as their own rows."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="gcp",
    platform="gcp",
    collector="cost_gcp",
    description="Daily GCP costs per resource (or project and service) from the Cloud Billing export in BigQuery (collector cost_gcp).",
    kinds=("gcp", "bigquery"),
    configured_by="POLO_GCP_BILLING_TABLE",
    settings=(
        Setting(
            "POLO_GCP_BILLING_TABLE",
            "`project.dataset.table` of the billing export (`gcp_billing_export_resource_v1_*` is the detailed one)",
        ),
        Setting("POLO_GCP_PROJECT", "the project that runs the query jobs (default: the table's)"),
        Setting(
            "POLO_GCP_CREDENTIALS",
            "service-account key, a file path or JSON (default: Application Default Credentials)",
            secret="polo/gcp-service-account",
        ),
        Setting("POLO_GCP_DETAILED_EXPORT", "force the detailed (1) or standard (0) export's schema"),
        Setting("POLO_GCP_PARTITIONED_TABLE", "0 when the table is not partitioned by export time"),
        Setting("POLO_GCP_BIGQUERY_URL", "BigQuery's API root, for an emulator"),
    ),
    sample="server",
)
