"""The sample world's organisation trail: the calls behind its story, delivered as CloudTrail writes them to S3.

alice's deployment on the last complete week's Monday adds a subnet's route through acme-prod-1's NAT gateway and
launches four instances into it (the NAT then carries four times its traffic); bob starts the staging load-test stack
mid-week before and never tears it down; beta's autoscaling group is raised and AWS launches its instances; carol
starts the churn notebook on the last day. Around them, what a real trail holds besides: reads, a refused call, and
the identity, source address and user agent of every caller, which Polo must not keep.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import random
from collections import defaultdict
from pathlib import Path

ORG = "o-sample0001"
REGION = "us-east-1"
SSO_ROLE = "AWSReservedSSO_Engineer_5f2a9c"


def trail_root(root: Path | None = None) -> Path:
    from polo_pipelines.settings import sample_dir

    return (root or sample_dir()) / "aws" / "cloudtrail"


def person(account: str, email: str) -> dict:
    """An engineer signed in through IAM Identity Center: an assumed role whose session is their e-mail."""
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLESSO:{email}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{SSO_ROLE}/{email}",
        "accountId": account,
        "accessKeyId": "ASIAEXAMPLESAMPLEKEY",
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "userName": SSO_ROLE, "arn": f"arn:aws:iam::{account}:role/aws-reserved/{SSO_ROLE}"},
            "attributes": {"creationDate": "2026-01-01T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }


def role_session(account: str, role: str, session: str) -> dict:
    return {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLEROLE:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "accessKeyId": "ASIAEXAMPLEROLEKEY00",
        "sessionContext": {"sessionIssuer": {"type": "Role", "userName": role, "arn": f"arn:aws:iam::{account}:role/{role}"}},
    }


def service(name: str) -> dict:
    return {"type": "AWSService", "invokedBy": name}


def record(at: dt.datetime, account: str, who: dict, name: str, request: dict, response: dict | None = None, **more) -> dict:
    source = {"Notebook": "sagemaker", "DBInstance": "rds", "AutoScaling": "autoscaling"}
    event_source = next((f"{v}.amazonaws.com" for k, v in source.items() if k in name), "ec2.amazonaws.com")
    return {
        "eventVersion": "1.09",
        "userIdentity": who,
        "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": event_source,
        "eventName": name,
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.24",
        "userAgent": "aws-cli/2.17.0 Python/3.11 Linux/6.1 exe/x86_64.amzn.2023",
        "requestParameters": request,
        "responseElements": response,
        "requestID": f"{random.Random(at.isoformat() + name).getrandbits(64):016x}",
        "eventID": f"{random.Random(name + at.isoformat()).getrandbits(128):032x}",
        "readOnly": name.startswith(("Describe", "Get", "List")),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
        **more,
    }


def instances_set(ids: list[str], itype: str = "", subnet: str = "") -> dict:
    return {
        "items": [{"instanceId": i, **({"instanceType": itype} if itype else {}), **({"subnetId": subnet} if subnet else {})} for i in ids]
    }


def story_records(world) -> list[dict]:
    """Every call of the story, as (account, record)."""
    out: list[dict] = []
    at = lambda index, hh, mm: dt.datetime.combine(world.date_of(index), dt.time(hh, mm), tzinfo=dt.UTC)  # noqa: E731
    lw = world.day_index(world.last_week_start)
    resources = world.resources
    nat = next(r for r in resources if r.kind == "natgateway" and r.cluster == "acme-prod-1")

    # alice's deployment: a new subnet routed through the cluster's NAT gateway (no S3 endpoint), four instances in it
    alice = [r for r in resources if r.created_by == "alice@example.com"]
    who = person("111111111111", "alice@example.com")
    out.append(
        record(
            at(lw, 9, 10),
            "111111111111",
            who,
            "AssociateRouteTable",
            {"routeTableId": "rtb-0acme7e57", "subnetId": "subnet-0acme7e57"},
            {"associationId": "rtbassoc-0acme7e57"},
        )
    )
    out.append(
        record(
            at(lw, 9, 11),
            "111111111111",
            who,
            "CreateRoute",
            {"routeTableId": "rtb-0acme7e57", "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": nat.rid},
            {"_return": True},
        )
    )
    launched = [r.rid for r in alice if r.kind == "instance"]
    out.append(
        record(
            at(lw, 9, 14),
            "111111111111",
            who,
            "RunInstances",
            {
                "instancesSet": {"items": [{"imageId": "ami-0example", "minCount": 4, "maxCount": 4}]},
                "instanceType": "m5.2xlarge",
                "subnetId": "subnet-0acme7e57",
            },
            {"instancesSet": instances_set(launched, "m5.2xlarge", "subnet-0acme7e57")},
        )
    )
    for volume in (r for r in alice if r.kind == "volume"):
        out.append(
            record(
                at(lw, 9, 16),
                "111111111111",
                who,
                "CreateVolume",
                {"size": int(volume.size), "volumeType": "gp3", "availabilityZone": "us-east-1a"},
                {"volumeId": volume.rid},
            )
        )

    # bob's load-test stack, never torn down
    bob = [r for r in resources if r.created_by == "bob@example.com"]
    who = person("222222222222", "bob@example.com")
    day = bob[0].created
    instances = [r for r in bob if r.kind == "instance"]
    out.append(
        record(
            at(day, 14, 2),
            "222222222222",
            who,
            "RunInstances",
            {"instanceType": instances[0].size, "subnetId": "subnet-0stage0001"},
            {"instancesSet": instances_set([r.rid for r in instances], instances[0].size, "subnet-0stage0001")},
        )
    )
    for db in (r for r in bob if r.kind == "rds"):
        out.append(
            record(
                at(day, 14, 5),
                "222222222222",
                who,
                "CreateDBInstance",
                {
                    "dBInstanceIdentifier": db.rid,
                    "dBInstanceClass": db.size,
                    "allocatedStorage": 500,
                    "engine": "postgres",
                    "masterUsername": "loadtest",
                    "masterUserPassword": "HIDDEN_DUE_TO_SECURITY_REASONS",
                },
                {"dBInstanceIdentifier": db.rid, "dBInstanceStatus": "creating"},
            )
        )

    # beta's autoscaling group raised by the deploy pipeline; AWS launches the instances
    beta = [r for r in resources if r.cluster == "beta-prod-1" and r.created == lw and r.kind == "instance"]
    if beta:
        deploy = role_session("111111111111", "github-deploy", "deploy-beta-1187")
        out.append(
            record(
                at(lw, 7, 30),
                "111111111111",
                deploy,
                "UpdateAutoScalingGroup",
                {"autoScalingGroupName": "beta-prod-1-workers", "desiredCapacity": 10, "maxSize": 12},
                None,
            )
        )
        out.append(
            record(
                at(lw, 7, 31),
                "111111111111",
                service("autoscaling.amazonaws.com"),
                "RunInstances",
                {"instanceType": beta[0].size, "subnetId": "subnet-0beta00001"},
                {"instancesSet": instances_set([r.rid for r in beta], beta[0].size, "subnet-0beta00001")},
            )
        )

    # carol's notebook, started at midnight on the world's last day and left InService
    out.append(
        record(
            at(world.days - 1, 0, 0),
            "333333333333",
            person("333333333333", "carol@example.com"),
            "StartNotebookInstance",
            {"notebookInstanceName": "churn-exploration"},
            None,
        )
    )

    # what a trail holds besides: reads and a refused call, every day
    reader = role_session("111111111111", "polo-inventory", "polo")
    for index in range(world.days):
        out.append(record(at(index, 6, 0), "111111111111", reader, "DescribeInstances", {"instancesSet": {}}, None))
        out.append(
            record(
                at(index, 6, 1),
                "111111111111",
                reader,
                "TerminateInstances",
                {"instancesSet": instances_set([launched[0]])},
                None,
                errorCode="Client.UnauthorizedOperation",
                errorMessage="You are not authorized to perform this operation.",
            )
        )
    return out


def write_files(world, root: Path) -> None:
    """The story's calls as an organisation trail's delivery: per account and 5-minute delivery, gzip JSON."""
    files: dict[tuple[str, dt.datetime], list[dict]] = defaultdict(list)
    for r in story_records(world):
        at = dt.datetime.strptime(r["eventTime"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
        delivered = at + dt.timedelta(minutes=7)  # CloudTrail delivers every few minutes
        delivered = delivered.replace(minute=delivered.minute - delivered.minute % 5, second=0)
        files[(r["recipientAccountId"], delivered)].append(r)
    base = trail_root(root) / "AWSLogs" / ORG
    for (account, delivered), records in sorted(files.items()):
        folder = base / account / "CloudTrail" / REGION / f"{delivered:%Y/%m/%d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = (
            f"{account}_CloudTrail_{REGION}_{delivered:%Y%m%dT%H%M}Z_{random.Random(str(delivered) + account).getrandbits(64):016x}.json.gz"
        )
        (folder / name).write_bytes(gzip.compress(json.dumps({"Records": records}).encode(), mtime=0))


def sample_source():
    """The CloudTrail source reading the sample world's trail (written first if absent)."""
    from polo_pipelines.sources import sample
    from polo_pipelines.sources.cloudtrail.source import CloudTrailSource

    if sample.sample_window() is None:
        sample.write_sample()
    return CloudTrailSource(trail_uri=str(trail_root()))
