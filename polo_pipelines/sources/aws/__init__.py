"""AWS: costs from a CUR 2.0 / legacy CUR data export or Cost Explorer, and the live inventory of resources."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="aws",
    platform="aws",
    collector="cost_aws",
    description="Daily AWS costs per resource and charge category (collector cost_aws), from the data export or Cost Explorer.",
    kinds=("aws", "s3"),
    configured_by="POLO_AWS_CUR_URI or POLO_AWS_MODE=cost_explorer",
    settings=(
        Setting("POLO_AWS_MODE", "`export` (default) reads a CUR 2.0 or legacy CUR export; `cost_explorer` asks GetCostAndUsage"),
        Setting("POLO_AWS_CUR_URI", "the export's root: `s3://bucket/prefix/<export-name>`, or a local folder of the same layout"),
        Setting("POLO_AWS_CUR_EXPORT_NAME", "only when the folder's last component is not the export (report) name"),
        Setting("POLO_AWS_EXCLUDE_CREDITS", "Cost Explorer mode: leave credits and refunds out"),
        Setting("POLO_AWS_INVENTORY_TARGETS", 'the inventory: JSON list of `{"account_id", "role_arn", "regions"}`'),
        Setting(
            "POLO_AWS_ORGANIZATION",
            "`1` reads the AWS Organization daily (management account or delegated administrator): the `aws_organization` "
            "hierarchy (root → OUs → account) and every account level's names",
        ),
    ),
    sample="files",
    top_costs_by=("aws_account_id", "service"),
    activity_collectors=("inventory_aws",),
)
