"""The sample world's live AWS resources, in moto, for the inventory collector's real boto3 code.

Each of the world's three accounts is reached by assuming ``polo-inventory`` in it (moto
keeps accounts apart by the assumed credentials). Seeded, so ids are the same every time:

- the forgotten load-test stack (5 × c5.2xlarge in staging, tagged ``environment=staging``),
  still running: after hours it breaks ``staging-off-hours``;
- alice's four new m5.2xlarge test instances in prod;
- a stopped instance in testing;
- a SageMaker notebook InService in testing since the start of the world's last day (it
  breaks ``sagemaker-notebook-limit`` 8 hours later).

moto stamps launch times with the wall clock; the sample overlays the world's own times on
what the real ``observe`` read, so snapshots of the sample are repeatable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator

from polo_pipelines.sources.aws.inventory import Observed, Target, observe
from polo_pipelines.sources.sample.world import ACCOUNTS, REGION, SampleWorld

ROLE = "arn:aws:iam::{account}:role/polo-inventory"
SEED = 20261122


def reference_time(end: dt.date) -> dt.datetime:
    """The sample's 'now' for rules: 22:00 in Melbourne on the world's last day (after business hours)."""
    from zoneinfo import ZoneInfo

    local = dt.datetime.combine(end - dt.timedelta(days=1), dt.time(22, 0), tzinfo=ZoneInfo("Australia/Melbourne"))
    return local.astimezone(dt.UTC)


def targets() -> list[Target]:
    return [Target(account, ROLE.format(account=account), (REGION,)) for account in ACCOUNTS]


@contextlib.contextmanager
def sample_aws(end: dt.date) -> Iterator[tuple[list[Target], object]]:
    """moto with the world's live resources; yields (targets, an observe function carrying the world's times)."""
    import boto3
    import requests
    from moto import mock_aws

    with sample_credentials(), mock_aws():
        requests.post("http://motoapi.amazonaws.com/moto-api/seed", params={"a": SEED}, timeout=5)
        since: dict[str, str] = {}
        world = SampleWorld(end)
        base = boto3.Session(region_name=REGION)
        for target in targets():
            creds = base.client("sts").assume_role(RoleArn=target.role_arn, RoleSessionName="polo-sample-seed")["Credentials"]
            session = boto3.Session(
                aws_access_key_id=creds["AccessKeyId"],
                aws_secret_access_key=creds["SecretAccessKey"],
                aws_session_token=creds["SessionToken"],
                region_name=REGION,
            )
            _seed(session, target.account_id, world, since)

        def observe_with_world_times(session, target, region, *, endpoint_url=None) -> list[Observed]:
            found = observe(session, target, region, endpoint_url=endpoint_url)
            for o in found:
                if o.resource_name in since and o.props.get("state_since"):
                    o.props["state_since"] = since[o.resource_name]
            return found

        yield targets(), observe_with_world_times


@contextlib.contextmanager
def sample_credentials() -> Iterator[None]:
    """moto's stand-in credentials for the sample world's AWS, the caller's own put back after (never sent anywhere:
    moto answers in-process)."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    os.environ.update(AWS_ACCESS_KEY_ID="sample", AWS_SECRET_ACCESS_KEY="sample")
    os.environ.pop("AWS_SESSION_TOKEN", None)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _seed(session, account: str, world: SampleWorld, since: dict[str, str]) -> None:
    ec2 = session.client("ec2", region_name=REGION)
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    groups: dict[tuple, list] = {}
    for r in world.resources:
        if r.kind != "instance" or r.account != account or not r.alive(world.days - 1) or not r.created_by:
            continue
        groups.setdefault((r.size, tuple(sorted(r.tags.items())), r.created), []).append(r)
    for (size, tags, created), members in sorted(groups.items()):
        started = dt.datetime.combine(world.date_of(created), dt.time(9, 30), tzinfo=dt.UTC)
        answer = ec2.run_instances(
            ImageId=ami,
            MinCount=len(members),
            MaxCount=len(members),
            InstanceType=size,
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags]}],
        )
        for inst in answer["Instances"]:
            since[inst["InstanceId"]] = started.strftime("%Y-%m-%dT%H:%M:%SZ")
    if ACCOUNTS[account]["role"] == "testing":
        answer = ec2.run_instances(
            ImageId=ami,
            MinCount=1,
            MaxCount=1,
            InstanceType="m5.large",
            TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "environment", "Value": "testing"}]}],
        )
        ec2.stop_instances(InstanceIds=[answer["Instances"][0]["InstanceId"]])
        sagemaker = session.client("sagemaker", region_name=REGION)
        sagemaker.create_notebook_instance(
            NotebookInstanceName="churn-exploration",
            InstanceType="ml.p2.xlarge",
            RoleArn=f"arn:aws:iam::{account}:role/sagemaker",
            Tags=[{"Key": "environment", "Value": "testing"}, {"Key": "team", "Value": "data"}],
        )
        since["churn-exploration"] = dt.datetime.combine(world.end - dt.timedelta(days=1), dt.time(0, 0), tzinfo=dt.UTC).strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        )
