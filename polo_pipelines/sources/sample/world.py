"""The sample world: a deterministic organisation whose costs Polo shows with no credentials.

The world is a set of resources with lifecycles and a daily cost model, anchored on an end
date (exclusive: data runs through the day before). Dates are relative to the ISO week, so
the story always lands in "the last complete week" of whatever day ``make run`` is run:

- new test instances in cluster ``acme-prod-1`` (created by alice@example.com),
- a staging stack started for a load test in the previous week and never torn down,
- customer ``beta`` scaling up legitimately,
- the NAT gateway of ``acme-prod-1`` carrying four times its usual traffic.

Each platform's renderer (``polo_pipelines.sources.aws.sample`` for AWS) turns the world into
that platform's own export or API payloads, which the real collectors then read.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field

SEED = 20261122
DEFAULT_DAYS = 56

ACCOUNTS = {
    "111111111111": {"name": "prod", "role": "prod"},
    "222222222222": {"name": "staging", "role": "staging"},
    "333333333333": {"name": "testing", "role": "testing"},
}
PAYER = "111111111111"
REGION = "us-east-1"

CLUSTERS = {
    "acme-prod-1": ("acme", "111111111111", 14),
    "acme-prod-2": ("acme", "111111111111", 10),
    "beta-prod-1": ("beta", "111111111111", 10),
    "gamma-prod-1": ("gamma", "111111111111", 8),
    "delta-prod-1": ("delta", "111111111111", 6),
    "staging-1": ("internal", "222222222222", 8),
    "test-1": ("internal", "333333333333", 6),
}

# On-demand USD per hour (2026 us-east-1 list prices).
INSTANCE_PRICES = {
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "r5.xlarge": 0.252,
    "c5.2xlarge": 0.34,
}
GP3_PER_GB_MONTH = 0.08
NAT_PER_HOUR = 0.045
NAT_PER_GB = 0.045
LB_PER_HOUR = 0.0225
RDS_PRICES = {"db.r5.large": 0.25, "db.r5.xlarge": 0.50}
S3_PER_GB_MONTH = 0.023
SAVINGS_PLAN_RATE = 0.72  # covered usage costs 72% of on-demand


@dataclass(frozen=True)
class Resource:
    rid: str  # the id as the platform names it (instance id, bucket name, ...)
    kind: str  # instance, volume, natgateway, loadbalancer, rds, bucket
    account: str
    cluster: str
    customer: str
    environment: str
    size: str  # instance type, volume GB, ...
    created: int  # first day index with cost
    terminated: int | None  # first day index without cost
    tags: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    created_by: str = ""

    def alive(self, day: int) -> bool:
        return self.created <= day and (self.terminated is None or day < self.terminated)


@dataclass(frozen=True)
class LineItem:
    """A platform-neutral daily charge; renderers map it onto each export's columns."""

    day: dt.date
    account: str
    product: str
    usage_type: str
    operation: str
    resource_id: str
    line_item_type: str
    usage_amount: float
    unblended: float
    public_cost: float
    sp_effective: float | None = None
    sp_commitment: float | None = None
    sp_used: float | None = None
    instance_type: str = ""
    tags: tuple[tuple[str, str], ...] = ()


class SampleWorld:
    def __init__(self, end: dt.date, days: int = DEFAULT_DAYS, seed: int = SEED):
        self.end = end
        self.days = days
        self.start = end - dt.timedelta(days=days)
        self.seed = seed
        monday = end - dt.timedelta(days=end.weekday())
        self.last_week_start = monday - dt.timedelta(days=7)  # latest complete ISO week
        self.prev_week_start = monday - dt.timedelta(days=14)
        self.resources = self._resources()

    def day_index(self, day: dt.date) -> int:
        return (day - self.start).days

    def date_of(self, index: int) -> dt.date:
        return self.start + dt.timedelta(days=index)

    # ------------------------------------------------------------ resources

    def _resources(self) -> list[Resource]:
        rng = random.Random(self.seed)
        lw = self.day_index(self.last_week_start)
        pw = self.day_index(self.prev_week_start)
        out: list[Resource] = []
        counter = iter(range(1, 100_000))

        def hexid(prefix: str) -> str:
            return f"{prefix}-{next(counter):017x}"

        def tags(cluster: str, customer: str, env: str, team: str) -> dict[str, str]:
            return {"customer": customer, "cluster": cluster, "environment": env, "team": team}

        for cluster, (customer, account, n_instances) in CLUSTERS.items():
            env = ACCOUNTS[account]["role"]
            team = "platform" if customer == "internal" else f"{customer}-squad"
            base = tags(cluster, customer, env, team)
            for _ in range(n_instances):
                created = 0 if rng.random() < 0.8 else rng.randrange(0, self.days // 2)
                terminated = None if rng.random() < 0.9 else rng.randrange(created + 3, self.days - 10)
                itype = rng.choice(["m5.large", "m5.xlarge", "r5.xlarge", "c5.2xlarge"])
                iid = hexid("i")
                out.append(Resource(iid, "instance", account, cluster, customer, env, itype, created, terminated, dict(base)))
                out.append(
                    Resource(
                        hexid("vol"),
                        "volume",
                        account,
                        cluster,
                        customer,
                        env,
                        str(rng.choice([50, 100, 200])),
                        created,
                        terminated,
                        dict(base),
                    )
                )
            # NAT traffic (GB a day) in proportion to the cluster: about 10% of a cluster's cost, as a healthy one runs
            out.append(Resource(hexid("nat"), "natgateway", account, cluster, customer, env, str(10 * n_instances), 0, None, dict(base)))
            out.append(Resource(f"{cluster}-alb", "loadbalancer", account, cluster, customer, env, "app", 0, None, dict(base)))
            out.append(Resource(f"{cluster}-db", "rds", account, cluster, customer, env, "db.r5.large", 0, None, dict(base)))

        for customer in ("acme", "beta", "gamma", "delta"):
            for purpose in ("models", "logs", "backups"):
                base = tags("", customer, "prod", f"{customer}-squad")
                base.pop("cluster")
                out.append(
                    Resource(
                        f"{customer}-{purpose}",
                        "bucket",
                        "111111111111",
                        "",
                        customer,
                        "prod",
                        str(rng.randrange(500, 5000)),
                        0,
                        None,
                        base,
                    )
                )

        # Ephemeral test workloads in the testing account: many short-lived instances.
        for _ in range(150):
            created = rng.randrange(0, self.days - 2)
            life = rng.randrange(1, 6)
            base = tags("test-1", "internal", "testing", "qa")
            out.append(
                Resource(
                    hexid("i"),
                    "instance",
                    "333333333333",
                    "test-1",
                    "internal",
                    "testing",
                    "m5.large",
                    created,
                    min(created + life, self.days),
                    base,
                )
            )
            out.append(
                Resource(
                    hexid("vol"),
                    "volume",
                    "333333333333",
                    "test-1",
                    "internal",
                    "testing",
                    "50",
                    created,
                    min(created + life, self.days),
                    dict(base),
                )
            )

        # An instance somebody started by hand with no tags at all.
        out.append(Resource(hexid("i"), "instance", "111111111111", "", "", "prod", "m5.xlarge", 3, None, {}))

        # Story: new test instances in acme-prod-1, created by alice, the last complete week.
        acme = tags("acme-prod-1", "acme", "prod", "acme-squad")
        for _ in range(4):
            out.append(
                Resource(
                    hexid("i"),
                    "instance",
                    "111111111111",
                    "acme-prod-1",
                    "acme",
                    "prod",
                    "m5.2xlarge",
                    lw,
                    None,
                    dict(acme),
                    "alice@example.com",
                )
            )
        out.append(
            Resource(
                hexid("vol"), "volume", "111111111111", "acme-prod-1", "acme", "prod", "500", lw, None, dict(acme), "alice@example.com"
            )
        )

        # Story: a staging stack for a load test, started mid previous week, never torn down.
        stack = tags("staging-1", "internal", "staging", "platform")
        stack["stack"] = "loadtest-2026"
        for _ in range(5):
            out.append(
                Resource(
                    hexid("i"),
                    "instance",
                    "222222222222",
                    "staging-1",
                    "internal",
                    "staging",
                    "c5.2xlarge",
                    pw + 4,
                    None,
                    dict(stack),
                    "bob@example.com",
                )
            )
        out.append(
            Resource(
                "loadtest-db",
                "rds",
                "222222222222",
                "staging-1",
                "internal",
                "staging",
                "db.r5.xlarge",
                pw + 4,
                None,
                dict(stack),
                "bob@example.com",
            )
        )

        # Story: customer beta scales up for real at the start of the last complete week.
        beta = tags("beta-prod-1", "beta", "prod", "beta-squad")
        for _ in range(5):
            out.append(Resource(hexid("i"), "instance", "111111111111", "beta-prod-1", "beta", "prod", "r5.xlarge", lw, None, dict(beta)))
        return out

    # ------------------------------------------------------------ costs

    def nat_traffic_gb(self, resource: Resource, day: int) -> float:
        base = float(resource.size)
        if resource.cluster == "acme-prod-1" and day >= self.day_index(self.last_week_start):
            return base * 4
        return base

    def line_items(self) -> list[LineItem]:
        """Every daily charge of the world, in a stable order."""
        rng = random.Random(self.seed + 1)
        items: list[LineItem] = []
        for index in range(self.days):
            day = self.date_of(index)
            covered_effective = 0.0
            for r in self.resources:
                if not r.alive(index):
                    continue
                tags = tuple(sorted(r.tags.items())) + (
                    (("aws:createdBy", f"AssumedRole:AROAEXAMPLE:{r.created_by}"),) if r.created_by else ()
                )
                jitter = 1.0 + rng.uniform(-0.02, 0.02)
                if r.kind == "instance":
                    cost = INSTANCE_PRICES[r.size] * 24
                    usage = f"BoxUsage:{r.size}"
                    covered = r.account == "111111111111" and r.tags and not r.created_by and r.created == 0
                    if covered:
                        eff = round(cost * SAVINGS_PLAN_RATE, 6)
                        covered_effective += eff
                        items.append(
                            LineItem(
                                day,
                                r.account,
                                "AmazonEC2",
                                usage,
                                "RunInstances",
                                r.rid,
                                "SavingsPlanCoveredUsage",
                                24,
                                cost,
                                cost,
                                sp_effective=eff,
                                instance_type=r.size,
                                tags=tags,
                            )
                        )
                        items.append(
                            LineItem(
                                day,
                                r.account,
                                "AmazonEC2",
                                usage,
                                "RunInstances",
                                r.rid,
                                "SavingsPlanNegation",
                                0,
                                -cost,
                                0.0,
                                instance_type=r.size,
                                tags=tags,
                            )
                        )
                    else:
                        items.append(
                            LineItem(
                                day,
                                r.account,
                                "AmazonEC2",
                                usage,
                                "RunInstances",
                                r.rid,
                                "Usage",
                                24,
                                cost,
                                cost,
                                instance_type=r.size,
                                tags=tags,
                            )
                        )
                elif r.kind == "volume":
                    cost = int(r.size) * GP3_PER_GB_MONTH / 30
                    items.append(
                        LineItem(
                            day,
                            r.account,
                            "AmazonEC2",
                            "EBS:VolumeUsage.gp3",
                            "CreateVolume-Gp3",
                            r.rid,
                            "Usage",
                            int(r.size) / 30,
                            cost,
                            cost,
                            tags=tags,
                        )
                    )
                elif r.kind == "natgateway":
                    arn = f"arn:aws:ec2:{REGION}:{r.account}:natgateway/{r.rid}"
                    hours = NAT_PER_HOUR * 24
                    gb = self.nat_traffic_gb(r, index) * jitter
                    items.append(
                        LineItem(day, r.account, "AmazonEC2", "NatGateway-Hours", "NatGateway", arn, "Usage", 24, hours, hours, tags=tags)
                    )
                    items.append(
                        LineItem(
                            day,
                            r.account,
                            "AmazonEC2",
                            "NatGateway-Bytes",
                            "NatGateway",
                            arn,
                            "Usage",
                            gb,
                            gb * NAT_PER_GB,
                            gb * NAT_PER_GB,
                            tags=tags,
                        )
                    )
                elif r.kind == "loadbalancer":
                    arn = f"arn:aws:elasticloadbalancing:{REGION}:{r.account}:loadbalancer/app/{r.rid}/0f1e2d3c4b5a6978"
                    cost = LB_PER_HOUR * 24 + 2.0 * jitter
                    items.append(
                        LineItem(
                            day,
                            r.account,
                            "AWSELB",
                            "LoadBalancerUsage",
                            "LoadBalancing:Application",
                            arn,
                            "Usage",
                            24,
                            cost,
                            cost,
                            tags=tags,
                        )
                    )
                elif r.kind == "rds":
                    arn = f"arn:aws:rds:{REGION}:{r.account}:db:{r.rid}"
                    cost = RDS_PRICES[r.size] * 24
                    items.append(
                        LineItem(
                            day,
                            r.account,
                            "AmazonRDS",
                            f"InstanceUsage:{r.size}",
                            "CreateDBInstance",
                            arn,
                            "Usage",
                            24,
                            cost,
                            cost,
                            instance_type=r.size,
                            tags=tags,
                        )
                    )
                elif r.kind == "bucket":
                    cost = int(r.size) * S3_PER_GB_MONTH / 30 * jitter
                    items.append(
                        LineItem(
                            day,
                            r.account,
                            "AmazonS3",
                            "TimedStorage-ByteHrs",
                            "StandardStorage",
                            r.rid,
                            "Usage",
                            int(r.size) / 30,
                            cost,
                            cost,
                            tags=tags,
                        )
                    )
            # A savings plan's daily commitment: what covered usage did not use is amortized waste.
            commitment = round(covered_effective * 1.03, 6)
            sp_arn = "arn:aws:savingsplans::111111111111:savingsplan/3f2c1a9e-sample"
            items.append(
                LineItem(
                    day,
                    "111111111111",
                    "ComputeSavingsPlans",
                    "ComputeSP:1yrNoUpfront",
                    "",
                    sp_arn,
                    "SavingsPlanRecurringFee",
                    0,
                    commitment,
                    0.0,
                    sp_commitment=commitment,
                    sp_used=covered_effective,
                    tags=(("team", "finops"),),
                )
            )
            for account in ACCOUNTS:
                transfer = 12.0 * (1.0 + rng.uniform(-0.05, 0.05))
                items.append(
                    LineItem(
                        day, account, "AWSDataTransfer", "DataTransfer-Out-Bytes", "", "", "Usage", transfer / 0.09, transfer, transfer
                    )
                )
                cw = 4.0 * (1.0 + rng.uniform(-0.05, 0.05))
                items.append(
                    LineItem(day, account, "AmazonCloudWatch", "CW:MetricMonitorUsage", "MetricStorage", "", "Usage", cw / 0.3, cw, cw)
                )
            if day.day == 1:
                items.append(LineItem(day, PAYER, "AWSSupportBusiness", "Dollar", "", "", "Fee", 1, 100.0, 100.0))
                items.append(LineItem(day, PAYER, "AmazonEC2", "", "", "", "Credit", 0, -50.0, 0.0))
                items.append(LineItem(day, PAYER, "AmazonEC2", "", "", "", "Tax", 0, 31.5, 0.0))
        return items
