"""FOCUS: any provider's FOCUS 1.0-1.3 billing export, CSV or Parquet, local or on S3."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="focus",
    platform="",  # each row's provider (ServiceProviderName) names its platform
    collector="cost_focus",
    description="Daily costs from a FOCUS billing export of any provider (collector cost_focus).",
    kinds=("s3",),
    configured_by="POLO_FOCUS_URI",
    settings=(
        Setting("POLO_FOCUS_URI", "one .csv/.csv.gz/.parquet file or a folder of them, local or `s3://`"),
        Setting(
            "POLO_FOCUS_ALLOW_DUPLICATE_ROWS",
            "`1` keeps rows repeated in every column (refused by default: they are almost always a file delivered twice)",
        ),
    ),
)
