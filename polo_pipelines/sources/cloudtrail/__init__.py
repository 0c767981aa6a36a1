"""CloudTrail: who changed what. Management events from a trail's S3 delivery, as config and lifecycle events."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="cloudtrail",
    platform="aws",
    collector="activity_aws",
    description="Who changed what on AWS resources, per day (collector activity_aws): a trail's management events, as "
    "config and lifecycle events with their actor and a short summary.",
    kinds=("aws", "s3"),
    configured_by="POLO_CLOUDTRAIL_URI or POLO_CLOUDTRAIL_LOOKUP_REGIONS",
    settings=(
        Setting(
            "POLO_CLOUDTRAIL_URI",
            "the trail's delivery root, the folder holding `AWSLogs/`: `s3://bucket/prefix`, or a local folder of the same "
            "layout (account and organisation trails alike)",
        ),
        Setting(
            "POLO_CLOUDTRAIL_LOOKUP_REGIONS",
            "for an account with no trail in S3: the regions whose `LookupEvents` to ask, comma-separated (the caller's "
            "account, the last 90 days, two requests a second; used only when POLO_CLOUDTRAIL_URI is unset)",
        ),
    ),
    sample="files",
    top_costs_by=("event_type", "event_action"),
    kind="activity",
)
