"""CloudTrail: a trail's S3 delivery (moto) read into config and lifecycle events with their actor; bad files refused;
nothing of a caller's credentials, address or request kept."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path

import boto3
import dagster as dg
import pandas as pd
import pytest
from moto import mock_aws

from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.cloudtrail import sample, trail
from polo_pipelines.sources.cloudtrail.source import CloudTrailSource
from polo_pipelines.sources.cloudtrail.trail import Routing
from polo_pipelines.sources.locations import open_location
from polo_pipelines.sources.sample.world import SampleWorld
from polo_pipelines.store import polo_store

from .conftest import TODAY

BUCKET = "org-trail"
SECRETS = ("ASIASECRETPLANTED0001", "planted/session+token==", "Sup3r-Secret-Pa55word", "198.51.100.77", "PlantedAgent/9.9")


@pytest.fixture
def aws(aws_credentials):
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


def upload(s3, root: Path, prefix: str = "trail") -> str:
    s3.create_bucket(Bucket=BUCKET)
    for path in root.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(root)}", Body=path.read_bytes())
    return f"s3://{BUCKET}/{prefix}"


def deliver(s3, key: str, records) -> None:
    body = records if isinstance(records, bytes) else gzip.compress(json.dumps({"Records": records}).encode())
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def call(name: str, at: str, identity: dict, request: dict | None = None, response: dict | None = None, **more) -> dict:
    return {
        "eventTime": at,
        "eventName": name,
        "awsRegion": "eu-west-1",
        "recipientAccountId": "444444444444",
        "userIdentity": identity,
        "sourceIPAddress": SECRETS[3],
        "userAgent": SECRETS[4],
        "requestParameters": request or {},
        "responseElements": response,
        **more,
    }


def test_the_sample_trail_in_s3_tells_who_changed_what(aws, tmp_path):
    world = SampleWorld(TODAY)
    sample.write_files(world, tmp_path)
    uri = upload(aws, sample.trail_root(tmp_path))
    monday = world.last_week_start
    window = CloudTrailSource(trail_uri=uri).collect(monday, monday + dt.timedelta(days=1))
    events = window.events
    assert window.collector == "activity_aws" and all(f.startswith(f"{uri}/AWSLogs/{sample.ORG}/") for f in window.sources)
    assert window.counts["skipped_calls"] == 2  # the day's read and its refused call
    by_action = events.groupby(["resource_type", "event_action"]).size().to_dict()
    assert by_action[("ec2:instance", "created")] == 4 + 5  # alice's four, and the five AWS launched for beta's group
    props = events["properties"].map(dict)
    nat = events[events["resource_type"] == "ec2:natgateway"]
    summaries = {p["summary"]: who for p, who in zip(props[nat.index], nat["actor_name"])}
    assert summaries == {
        "route 0.0.0.0/0 in rtb-0acme7e57 now via this NAT": "alice@example.com",
        "4 new instance(s) routing via this NAT": "alice@example.com",
    }
    alice = events[(events["actor_name"] == "alice@example.com") & (events["resource_type"] == "ec2:instance")]
    assert {p["summary"] for p in props[alice.index]} == {"launched m5.2xlarge in subnet-0acme7e57, one of 4 in one call"}
    assert {p["role"] for p in props[alice.index]} == {sample.SSO_ROLE}
    beta = events[events["actor_name"] == "autoscaling.amazonaws.com"]
    assert len(beta) == 5 and set(events.loc[events["event_action"] == "UpdateAutoScalingGroup", "actor_name"]) == {"deploy-beta-1187"}
    assert (events["event_time"].dt.date == monday).all()


def test_a_call_near_midnight_belongs_to_its_own_day_though_delivered_the_next(aws):
    person = {"type": "IAMUser", "userName": "dave", "arn": "arn:aws:iam::444444444444:user/dave", "accountId": "444444444444"}
    base = "trail/AWSLogs/444444444444/CloudTrail/eu-west-1"
    aws.create_bucket(Bucket=BUCKET)
    late = call("StopInstances", "2026-11-10T23:58:00Z", person, {"instancesSet": {"items": [{"instanceId": "i-late"}]}})
    early = call("StartInstances", "2026-11-11T00:02:00Z", person, {"instancesSet": {"items": [{"instanceId": "i-late"}]}})
    deliver(aws, f"{base}/2026/11/11/444444444444_CloudTrail_eu-west-1_20261111T0005Z_a.json.gz", [late, early])
    location = open_location(f"s3://{BUCKET}/trail")
    tenth = trail.collect(location, dt.date(2026, 11, 10), dt.date(2026, 11, 11)).events
    eleventh = trail.collect(location, dt.date(2026, 11, 11), dt.date(2026, 11, 12)).events
    assert list(tenth["event_action"]) == ["stopped"] and list(eleventh["event_action"]) == ["started"]
    assert tenth["resource_arn"][0] == "arn:aws:ec2:eu-west-1:444444444444:instance/i-late" and tenth["actor_name"][0] == "dave"


@pytest.mark.parametrize(
    "identity, who, role",
    [
        ({"type": "IAMUser", "userName": "erin", "arn": "arn:aws:iam::1:user/erin"}, "erin", ""),
        (
            {
                "type": "AssumedRole",
                "arn": "arn:aws:sts::1:assumed-role/AWSReservedSSO_Admin_1/frank@example.com",
                "sessionContext": {"sessionIssuer": {"userName": "AWSReservedSSO_Admin_1"}},
            },
            "frank@example.com",
            "AWSReservedSSO_Admin_1",
        ),
        ({"type": "FederatedUser", "arn": "arn:aws:sts::1:federated-user/gina"}, "gina", ""),
        ({"type": "Root", "arn": "arn:aws:iam::1:root", "accountId": "1"}, "root (account 1)", ""),
        ({"type": "AWSService", "invokedBy": "ecs.amazonaws.com"}, "ecs.amazonaws.com", ""),
    ],
)
def test_the_actor_is_the_person_or_service_behind_the_call(identity, who, role):
    assert trail.actor(identity) == (who, role)


@pytest.mark.parametrize(
    "name, request_, response, arn, event_type, action, summary",
    [
        ("CreateNatGateway", {"subnetId": "subnet-1"}, {"CreateNatGatewayResponse": {"natGateway": {"natGatewayId": "nat-9"}}},
         "arn:aws:ec2:eu-west-1:444444444444:natgateway/nat-9", "lifecycle", "created", "NAT gateway created in subnet-1"),
        ("CreateVpcEndpoint", {"CreateVpcEndpointRequest": {"ServiceName": "com.amazonaws.eu-west-1.s3", "RouteTableId": ["rtb-1"]}},
         {"CreateVpcEndpointResponse": {"vpcEndpoint": {"vpcEndpointId": "vpce-1"}}},
         "arn:aws:ec2:eu-west-1:444444444444:vpc-endpoint/vpce-1", "lifecycle", "created", "VPC endpoint created for com.amazonaws.eu-west-1.s3"),
        ("ModifyVolume", {"ModifyVolumeRequest": {"VolumeId": "vol-1", "Size": 800, "VolumeType": "io2", "Iops": 6000}}, None,
         "arn:aws:ec2:eu-west-1:444444444444:volume/vol-1", "config", "ModifyVolume", "volume changed to 800 GiB io2 6000 IOPS"),
        ("AttachVolume", {"volumeId": "vol-1", "instanceId": "i-1"}, None,
         "arn:aws:ec2:eu-west-1:444444444444:volume/vol-1", "config", "AttachVolume", "attached to i-1"),
        ("ModifyInstanceAttribute", {"instanceId": "i-1", "instanceType": {"value": "m5.4xlarge"}}, None,
         "arn:aws:ec2:eu-west-1:444444444444:instance/i-1", "config", "ModifyInstanceAttribute", "instance type set to m5.4xlarge"),
        ("ModifyDBInstance", {"dBInstanceIdentifier": "orders", "dBInstanceClass": "db.r6g.4xlarge", "applyImmediately": True}, None,
         "arn:aws:rds:eu-west-1:444444444444:db:orders", "config", "ModifyDBInstance", "database modified: db.r6g.4xlarge"),
        ("UpdateService", {"cluster": "arn:aws:ecs:eu-west-1:444444444444:cluster/web", "service": "api", "desiredCount": 12}, None,
         "arn:aws:ecs:eu-west-1:444444444444:service/web/api", "config", "UpdateService", "desired count 12"),
        ("PutBucketPolicy", {"bucketName": "b"}, None, None, None, None, None),
    ],
)  # fmt: skip
def test_each_call_lands_on_the_resource_it_touches(name, request_, response, arn, event_type, action, summary):
    person = {"type": "IAMUser", "userName": "hal", "arn": "arn:aws:iam::444444444444:user/hal"}
    rows, skipped = trail.records_to_rows(
        [("k", [call(name, "2026-11-10T10:00:00Z", person, request_, response)])],
        dt.datetime(2026, 11, 10, tzinfo=dt.UTC),
        dt.datetime(2026, 11, 11, tzinfo=dt.UTC),
        "2026-11-10",
    )
    if arn is None:  # a call this reader does not map, naming no resource: skipped, counted
        assert rows == [] and skipped == 1
        return
    (row,) = rows
    assert (row["resource_arn"], row["event_type"], row["event_action"], row["summary"], row["actor_name"]) == (
        arn,
        event_type,
        action,
        summary,
        "hal",
    )


@pytest.mark.parametrize(
    "body, field, said",
    [
        (gzip.compress(json.dumps({"Records": []}).encode())[:-9], "file", "not a whole gzip file"),
        (gzip.compress(b"<html>not json</html>"), "file", "not JSON"),
        (gzip.compress(json.dumps({"records": []}).encode()), "Records", 'no "Records" list'),
        (
            gzip.compress(json.dumps({"Records": [{"eventTime": "2026-11-10T10:00:00Z"}]}).encode()),
            "eventName",
            "record 0 has no eventName",
        ),
        (gzip.compress(json.dumps({"Records": [{"eventName": "RunInstances"}]}).encode()), "eventTime", "record 0 has no eventTime"),
        (gzip.compress(json.dumps({"Records": [{"eventName": "X", "eventTime": "10/11/2026"}]}).encode()), "eventTime", "is not YYYY"),
    ],
)
def test_a_broken_file_fails_the_partition_naming_the_key_and_the_field_and_writes_nothing(aws, dsn, body, field, said):
    from polo_pipelines.defs.collection.assets import COLLECTORS

    aws.create_bucket(Bucket=BUCKET)
    key = "trail/AWSLogs/444444444444/CloudTrail/eu-west-1/2026/11/10/444444444444_CloudTrail_eu-west-1_20261110T1005Z_b.json.gz"
    good = call(
        "StopInstances",
        "2026-11-10T09:00:00Z",
        {"type": "IAMUser", "userName": "ivy"},
        {"instancesSet": {"items": [{"instanceId": "i-1"}]}},
    )
    deliver(aws, key.replace("_b.json", "_a.json"), [good])
    source = CloudTrailSource(trail_uri=f"s3://{BUCKET}/trail")
    with pytest.raises(PoloInputError) as err:
        deliver(aws, key, body)
        source.collect(dt.date(2026, 11, 10), dt.date(2026, 11, 11))
    assert err.value.field == field and err.value.partition == "2026-11-10" and said in str(err.value)
    assert str(err.value).startswith(f"s3://{BUCKET}/{key}")

    asset = COLLECTORS["cloudtrail"]
    result = dg.materialize(
        [asset],
        partition_key="2026-11-10",
        resources={"clickhouse": ClickHouseResource(dsn=dsn), "cloudtrail": source},
        raise_on_error=False,
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    with polo_store(dsn) as store:
        assert store.query_df("SELECT count() AS n FROM polo.resource_events WHERE collector = 'activity_aws'")["n"][0] == 0


def test_nothing_of_a_callers_credentials_address_or_request_is_kept(aws, dsn):
    from polo_pipelines.defs.collection.assets import COLLECTORS

    aws.create_bucket(Bucket=BUCKET)
    identity = {
        "type": "AssumedRole",
        "arn": "arn:aws:sts::444444444444:assumed-role/deployer/jo@example.com",
        "accessKeyId": SECRETS[0],
        "sessionContext": {"sessionIssuer": {"userName": "deployer"}, "sessionToken": SECRETS[1]},
    }
    records = [
        call("CreateDBInstance", "2026-11-10T10:00:00Z", identity,
             {"dBInstanceIdentifier": "orders", "dBInstanceClass": "db.r6g.large", "masterUserPassword": SECRETS[2],
              "tags": [{"key": "token", "value": SECRETS[1]}]},
             {"dBInstanceIdentifier": "orders", "endpoint": {"address": SECRETS[3]}}),
        call("RunInstances", "2026-11-10T10:01:00Z", identity, {"instanceType": "t3.micro", "userData": SECRETS[2]},
             {"instancesSet": {"items": [{"instanceId": "i-7", "privateIpAddress": SECRETS[3]}]}}, requestID=SECRETS[0]),
    ]  # fmt: skip
    deliver(
        aws,
        "trail/AWSLogs/444444444444/CloudTrail/eu-west-1/2026/11/10/444444444444_CloudTrail_eu-west-1_20261110T1010Z_c.json.gz",
        records,
    )
    source = CloudTrailSource(trail_uri=f"s3://{BUCKET}/trail")
    result = dg.materialize(
        [COLLECTORS["cloudtrail"]], partition_key="2026-11-10", resources={"clickhouse": ClickHouseResource(dsn=dsn), "cloudtrail": source}
    )
    assert result.success
    with polo_store(dsn) as store:
        stored = store.query_df("SELECT * FROM polo.resource_events WHERE collector = 'activity_aws'")
    assert len(stored) == 2 and set(stored["actor_name"]) == {"jo@example.com"}  # it was read and written
    text = stored.astype(str).to_csv() + repr(result.all_events)  # the rows, the metadata and the logs of the run
    for secret in SECRETS:
        assert secret not in text, secret


def test_level_2_names_the_creator_from_the_trail_when_no_tag_does(dsn):
    from polo_pipelines.hierarchy import ancestry as hy
    from polo_pipelines.store.events import cost_events, replace_days

    arn = "arn:aws:ec2:eu-west-1:444444444444:instance/i-untagged"
    tagged = "arn:aws:ec2:eu-west-1:444444444444:instance/i-tagged"
    with polo_store(dsn) as store:
        costs = cost_events(
            resource_arn=[arn, tagged],
            resource_type="ec2:instance",
            resource_name=["i-untagged", "i-tagged"],
            day=pd.to_datetime(["2026-11-10", "2026-11-10"]),
            charge_category="Usage",
            value=5.0,
            billed_cost=5.0,
            list_cost=5.0,
            service="AmazonEC2",
            provider="AWS",
            properties=[{}, {}],
            collector="cost_aws",
            actor_name=["", "tag-owner@example.com"],
        )
        replace_days(store, costs, collector="cost_aws", days=[dt.date(2026, 11, 10)], source="test")
        person = {"type": "IAMUser", "userName": "kim"}
        launch = call(
            "RunInstances",
            "2026-11-10T08:00:00Z",
            person,
            {},
            {"instancesSet": {"items": [{"instanceId": "i-untagged"}, {"instanceId": "i-tagged"}]}},
        )
        rows, _ = trail.records_to_rows(
            [("k", [launch])], dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 11, tzinfo=dt.UTC), "p"
        )
        replace_days(store, trail.to_events(rows), collector="activity_aws", days=[dt.date(2026, 11, 10)], source="test")
        resources, _ = hy.refresh(store, hy.load(hy.DEFAULT_FILE))
    creators = dict(zip(resources["resource_arn"], resources["created_by"]))
    assert creators == {arn: "kim", tagged: "tag-owner@example.com"}  # the tag first, the trail where there is none


def test_a_launch_is_linked_to_the_nat_a_route_made_on_an_earlier_day(aws, dsn):
    """The route through the NAT and the subnet's route table were set up on the 3rd; instances launched into that
    subnet on the 10th still land on the NAT as "routed" (what the store holds from earlier days is read first)."""
    from polo_pipelines.defs.collection.assets import COLLECTORS

    aws.create_bucket(Bucket=BUCKET)
    base = "trail/AWSLogs/444444444444/CloudTrail/eu-west-1"
    ops = {"type": "IAMUser", "userName": "net-admin"}
    dev = {"type": "IAMUser", "userName": "alice"}
    setup = [
        call(
            "CreateRoute",
            "2026-11-03T09:00:00Z",
            ops,
            {"routeTableId": "rtb-1", "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": "nat-1"},
        ),
        call("AssociateRouteTable", "2026-11-03T09:01:00Z", ops, {"routeTableId": "rtb-1", "subnetId": "subnet-a"}, {"associationId": "a"}),
    ]
    launch = call(
        "RunInstances",
        "2026-11-10T09:14:00Z",
        dev,
        {"instanceType": "m5.large", "subnetId": "subnet-a"},
        {"instancesSet": {"items": [{"instanceId": f"i-{n}", "subnetId": "subnet-a"} for n in range(3)]}},
    )
    deliver(aws, f"{base}/2026/11/03/444444444444_CloudTrail_eu-west-1_20261103T0905Z_a.json.gz", setup)
    deliver(aws, f"{base}/2026/11/10/444444444444_CloudTrail_eu-west-1_20261110T0920Z_b.json.gz", [launch])
    source = CloudTrailSource(trail_uri=f"s3://{BUCKET}/trail")
    resources = {"clickhouse": ClickHouseResource(dsn=dsn), "cloudtrail": source}
    for day in ("2026-11-03", "2026-11-10"):
        assert dg.materialize([COLLECTORS["cloudtrail"]], partition_key=day, resources=resources).success
    with polo_store(dsn) as store:
        found = store.query_df(
            "SELECT resource_arn, toDate(event_time) AS day, event_action, properties['summary'] AS said, actor_name, properties['related'] AS rel "
            "FROM polo.resource_events WHERE collector = 'activity_aws' AND resource_type != 'ec2:instance' ORDER BY event_time"
        )
    nat = "arn:aws:ec2:eu-west-1:444444444444:natgateway/nat-1"
    assert found.values.tolist() == [
        [nat, dt.date(2026, 11, 3), "route", "route 0.0.0.0/0 in rtb-1 now via this NAT", "net-admin", "rtb-1"],
        [
            "arn:aws:ec2:eu-west-1:444444444444:route-table/rtb-1",
            dt.date(2026, 11, 3),
            "AssociateRouteTable",
            "associated with subnet-a",
            "net-admin",
            "subnet-a",
        ],
        [nat, dt.date(2026, 11, 10), "routed", "3 new instance(s) routing via this NAT", "alice", "i-0,i-1,i-2"],
    ]
    # the day's own calls win over what earlier days said: a route replaced on the 10th sends the launch to the new NAT
    later = Routing(nat_of_table={"rtb-1": nat}, table_of_subnet={"subnet-a": "rtb-1"})
    replace = call(
        "ReplaceRoute", "2026-11-10T08:00:00Z", ops, {"routeTableId": "rtb-1", "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": "nat-2"}
    )
    rows, _ = trail.records_to_rows(
        [("k", [replace, launch])], dt.datetime(2026, 11, 10, tzinfo=dt.UTC), dt.datetime(2026, 11, 11, tzinfo=dt.UTC), "p"
    )
    (routed,) = trail.routed_instances(rows, later)
    assert routed["resource_arn"].endswith("natgateway/nat-2")
