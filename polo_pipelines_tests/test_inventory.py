"""The AWS inventory collector through boto3 and moto: assumed roles, changes only, deletions, idempotent snapshots."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from moto import mock_aws

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws import inventory

AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def aws(aws_credentials):
    with mock_aws():
        yield


def session_in(account: str) -> boto3.Session:
    creds = boto3.client("sts").assume_role(RoleArn=f"arn:aws:iam::{account}:role/polo-inventory", RoleSessionName="test-seed")[
        "Credentials"
    ]
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"]
    )


def events(store):
    return store.query_df(
        "SELECT aws_account_id, resource_type, event_type, event_action, properties['state'] AS state FROM polo.resource_events "
        "WHERE collector = 'inventory_aws' ORDER BY event_time, resource_arn, event_type"
    )


def test_snapshots_write_changes_only_across_assumed_role_accounts(aws, store):
    staging, testing = session_in("222222222222"), session_in("333333333333")
    ec2 = staging.client("ec2", region_name="us-east-1")
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    started = ec2.run_instances(
        ImageId=ami,
        MinCount=2,
        MaxCount=2,
        InstanceType="c5.2xlarge",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "environment", "Value": "staging"}]}],
    )
    ids = [i["InstanceId"] for i in started["Instances"]]
    testing.client("ec2", region_name="us-east-1").create_volume(AvailabilityZone="us-east-1a", Size=500, VolumeType="io1", Iops=3000)
    testing.client("sagemaker", region_name="us-east-1").create_notebook_instance(
        NotebookInstanceName="nb", InstanceType="ml.t3.medium", RoleArn="arn:aws:iam::333333333333:role/sm"
    )
    targets = [inventory.Target(a, f"arn:aws:iam::{a}:role/polo-inventory") for a in ("222222222222", "333333333333")]

    first = inventory.snapshot(store, targets, AT)
    # 2 instances + their 2 root volumes in staging; the io1 volume and the notebook in testing
    assert (first.observed, first.changed, first.deleted) == (6, 6, 0)
    held = events(store)
    assert set(held["aws_account_id"]) == {"222222222222", "333333333333"}
    assert (held["event_type"] == "config").sum() == 6 and (held["event_type"] == "lifecycle").sum() == 6
    props = store.query_df(
        "SELECT properties FROM polo.resource_events WHERE resource_type = 'ec2:volume' AND properties['volume_type'] = 'io1'"
    )
    assert dict(props["properties"][0])["size_gb"] == "500"

    again = inventory.snapshot(store, targets, AT + dt.timedelta(minutes=15))
    assert (again.observed, again.changed, len(again.events)) == (6, 0, 0)  # nothing changed: nothing written

    ec2.stop_instances(InstanceIds=[ids[0]])
    ec2.terminate_instances(InstanceIds=[ids[1]])
    later = inventory.snapshot(store, targets, AT + dt.timedelta(minutes=30))
    actions = sorted(zip(later.events["event_type"], later.events["event_action"]))
    assert ("lifecycle", "stopped") in actions and ("lifecycle", "terminated") in actions
    assert later.deleted == 1  # the terminated instance's root volume went with it
    state = store.query_df(
        "SELECT resource_arn, argMax(properties['state'], event_time) AS state FROM polo.resource_events WHERE collector = 'inventory_aws' GROUP BY resource_arn"
    ).set_index("resource_arn")["state"]
    assert state[f"arn:aws:ec2:us-east-1:222222222222:instance/{ids[0]}"] == "stopped"


def test_an_account_not_scanned_keeps_its_resources(aws, store):
    staging = session_in("222222222222")
    ec2 = staging.client("ec2", region_name="us-east-1")
    ec2.run_instances(ImageId=ec2.describe_images()["Images"][0]["ImageId"], MinCount=1, MaxCount=1)
    both = [inventory.Target(a, f"arn:aws:iam::{a}:role/polo-inventory") for a in ("222222222222", "333333333333")]
    inventory.snapshot(store, both, AT)
    only_testing = inventory.snapshot(store, both[1:], AT + dt.timedelta(minutes=15))
    assert only_testing.deleted == 0  # staging was not listed this time: its resources are not gone


def test_bad_targets_and_a_role_that_cannot_be_assumed(aws, store):
    with pytest.raises(PoloInputError, match="POLO_AWS_INVENTORY_TARGETS"):
        inventory.parse_targets('{"account_id": 1}')
    assert inventory.parse_targets('[{"account_id": "1", "regions": ["eu-west-1"]}]') == [inventory.Target("1", "", ("eu-west-1",))]
    with pytest.raises(PoloInputError, match="cannot assume not-an-arn"):
        inventory.snapshot(store, [inventory.Target("1", "not-an-arn")], AT)
