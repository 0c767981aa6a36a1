"""CloudWatch: what the usage did. The metric that drives each costly resource's cost, per day, as metric events."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="cloudwatch",
    platform="aws",
    collector="metrics_aws",
    description="What the usage of each costly AWS resource did, per day (collector metrics_aws): the CloudWatch metrics "
    "that drive its cost (NAT bytes processed, EC2 CPU and network, EBS operations, RDS, Lambda, S3, DynamoDB, load balancers).",
    kinds=("aws",),
    configured_by="POLO_CLOUDWATCH=1",
    settings=(
        Setting("POLO_CLOUDWATCH", "`1` reads, each day, the metrics of the resources that cost the most that day"),
        Setting(
            "POLO_CLOUDWATCH_MAX_RESOURCES",
            "how many resources a day, the most expensive first (default 5000): each costs one or two metrics of "
            "GetMetricData, 500 to a request",
        ),
        Setting(
            "POLO_CLOUDWATCH_ROLE",
            "a role to assume in each resource's account, `{account}` standing for its id (e.g. "
            "`arn:aws:iam::{account}:role/polo-metrics`); unset, the caller's own credentials (a monitoring account)",
        ),
    ),
    sample="moto",
    top_costs_by=("resource_type", "event_action"),
    kind="activity",
    after=("aws",),
)
