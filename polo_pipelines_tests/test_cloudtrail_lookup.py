"""CloudTrail's LookupEvents for an account with no trail: a real local server answering in the documented JSON 1.1
shape, reached by the real client with endpoint_url; pages, throttling and 5xx retried with a bound, bad events refused."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from werkzeug import Request, Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.cloudtrail import source as ct_source
from polo_pipelines.sources.cloudtrail.source import CloudTrailSource
from polo_pipelines.sources.http import SourceUnavailable

TARGET = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents"
DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=3)  # LookupEvents keeps 90 days
ACCOUNT = "555555555555"


def at(hour: int) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour), tzinfo=dt.UTC)


def looked_up(name: str, hour: int, request: dict, response: dict | None = None) -> dict:
    """One event as LookupEvents answers it: a few fields of its own, the trail record as a JSON string."""
    record = {
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "userName": "jo", "accountId": ACCOUNT, "accessKeyId": "AKIAPLANTEDLOOKUP001"},
        "eventTime": at(hour).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com",
        "eventName": name,
        "awsRegion": "eu-west-1",
        "sourceIPAddress": "198.51.100.9",
        "userAgent": "aws-cli/2",
        "requestParameters": request,
        "responseElements": response,
        "readOnly": False,
        "recipientAccountId": ACCOUNT,
    }
    return {
        "EventId": f"{name}-{hour}",
        "EventName": name,
        "ReadOnly": "false",
        "EventTime": at(hour).timestamp(),
        "EventSource": "ec2.amazonaws.com",
        "Username": "jo",
        "Resources": [],
        "CloudTrailEvent": json.dumps(record),
    }


class Api:
    """The LookupEvents endpoint: answers ``script`` in order (a status and a body each), recording each request."""

    def __init__(self, script: list[tuple[int, dict]]):
        self.script, self.asked = list(script), []

    def __call__(self, request: Request) -> Response:
        assert request.headers["X-Amz-Target"] == TARGET
        self.asked.append(json.loads(request.data))
        status, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return Response(json.dumps(body), status=status, content_type="application/x-amz-json-1.1")


@pytest.fixture
def lookup(httpserver, aws_credentials):
    def serve(script: list[tuple[int, dict]]) -> tuple[CloudTrailSource, Api]:
        api = Api(script)
        httpserver.expect_request("/", method="POST").respond_with_handler(api)
        return CloudTrailSource(lookup_regions=["eu-west-1"], endpoint_url=httpserver.url_for("")), api

    return serve


THROTTLED = (400, {"__type": "ThrottlingException", "message": "Rate exceeded"})
UNAVAILABLE = (503, {"__type": "ServiceUnavailableException", "message": "try again"})


def test_pages_of_changing_calls_through_throttling_and_a_5xx(lookup):
    launch = looked_up(
        "RunInstances",
        9,
        {"instanceType": "m5.large"},
        {"instancesSet": {"items": [{"instanceId": "i-1"}, {"instanceId": "i-2"}]}},
    )
    stop = looked_up("StopInstances", 17, {"instancesSet": {"items": [{"instanceId": "i-1"}]}})
    source, api = lookup([THROTTLED, UNAVAILABLE, (200, {"Events": [launch], "NextToken": "page-2"}), (200, {"Events": [stop]})])
    got = source.collect(DAY, DAY + dt.timedelta(days=1))

    # four requests: the first page after a throttle and a 5xx (retried by the client), then the second page
    assert len(api.asked) == 4
    first = api.asked[0]
    assert first["LookupAttributes"] == [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}]
    assert (first["StartTime"], first["EndTime"], first["MaxResults"]) == (
        at(0).timestamp(),
        (at(0) + dt.timedelta(days=1)).timestamp(),
        50,
    )
    assert api.asked[3]["NextToken"] == "page-2" and "NextToken" not in api.asked[2]

    events = got.events.sort_values(["event_time", "resource_arn"])
    arn = f"arn:aws:ec2:eu-west-1:{ACCOUNT}:instance/i-"
    assert events[["resource_arn", "event_action", "actor_name"]].values.tolist() == [
        [f"{arn}1", "created", "jo"],
        [f"{arn}2", "created", "jo"],
        [f"{arn}1", "stopped", "jo"],
    ]
    assert got.counts["records"] == 2 and got.sources == ["cloudtrail LookupEvents eu-west-1"]
    stored = got.events.astype(str).to_string()
    assert "AKIAPLANTEDLOOKUP001" not in stored and "198.51.100.9" not in stored


def test_a_lookup_that_keeps_being_throttled_stops_the_partition_after_a_bounded_number_of_attempts(lookup, monkeypatch):
    from botocore.config import Config

    monkeypatch.setattr(ct_source, "RETRIES", Config(retries={"mode": "standard", "total_max_attempts": 3}))
    source, api = lookup([THROTTLED])
    with pytest.raises(SourceUnavailable) as err:
        source.collect(DAY, DAY + dt.timedelta(days=1))
    assert len(api.asked) == 3
    assert str(err.value) == (
        f"cloudtrail LookupEvents eu-west-1 page 1: ThrottlingException after 3 attempt(s) (source cloudtrail, partition {DAY})"
    )


@pytest.mark.parametrize(
    "event, field",
    [
        ({"EventId": "x", "EventName": "RunInstances"}, "CloudTrailEvent"),
        ({"EventId": "x", "CloudTrailEvent": "{not json"}, "CloudTrailEvent"),
        ({"EventId": "x", "CloudTrailEvent": json.dumps({"eventName": "RunInstances"})}, "eventTime"),
    ],
)
def test_a_bad_event_names_the_page_and_the_field(lookup, event, field):
    source, _ = lookup([(200, {"Events": [event]})])
    with pytest.raises(PoloInputError) as err:
        source.collect(DAY, DAY + dt.timedelta(days=1))
    assert err.value.field == field and err.value.partition == DAY.isoformat()
    assert str(err.value).startswith("cloudtrail LookupEvents eu-west-1 page 1")


def test_a_day_older_than_the_lookup_history_is_refused_with_the_way_out(lookup):
    source, api = lookup([(200, {"Events": []})])
    old = DAY - dt.timedelta(days=120)
    with pytest.raises(PoloInputError, match="keeps 90 days of events.*POLO_CLOUDTRAIL_URI") as err:
        source.collect(old, old + dt.timedelta(days=1))
    assert err.value.field == "StartTime" and api.asked == []


def test_the_environment_selects_lookup_when_there_is_no_trail(monkeypatch):
    monkeypatch.delenv("POLO_CLOUDTRAIL_URI", raising=False)
    monkeypatch.setenv("POLO_CLOUDTRAIL_LOOKUP_REGIONS", "eu-west-1, us-east-1")
    found = ct_source.from_env()
    assert found.configured and found.lookup_regions == ["eu-west-1", "us-east-1"] and found.trail_uri is None
