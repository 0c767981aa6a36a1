"""CloudTrail's ``LookupEvents``: the management events of an account with no trail delivered to S3.

The API keeps 90 days of an account's management events per region and answers 50 events a page, two requests a
second per account and region. Only calls that changed something are asked for (``ReadOnly`` = ``false``), and each
event's ``CloudTrailEvent`` (the record, as a JSON string, in the same shape a trail delivers) goes through the same
reader as a trail's files. Throttling and 5xx answers are retried by the client, with backoff, a bounded number of times.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import orjson

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.aws.calls import aws_call
from polo_pipelines.sources.cloudtrail.trail import SOURCE

HISTORY_DAYS = 90  # what LookupEvents keeps
PAGE = 50  # the most a page holds


def pages(client: Any, start: dt.datetime, end: dt.datetime, partition: str) -> Iterator[tuple[str, list[dict]]]:
    """(where, the page's records) for every page of the window's changing calls in the client's region."""
    region = client.meta.region_name
    if start.date() < dt.datetime.now(dt.UTC).date() - dt.timedelta(days=HISTORY_DAYS):
        raise PoloInputError(
            f"cloudtrail LookupEvents ({region}) keeps {HISTORY_DAYS} days of events: {partition} is older; "
            "read it from the trail's S3 delivery (POLO_CLOUDTRAIL_URI)",
            source=SOURCE,
            field="StartTime",
            partition=partition,
        )
    request: dict[str, Any] = {
        "LookupAttributes": [{"AttributeKey": "ReadOnly", "AttributeValue": "false"}],
        "StartTime": start,
        "EndTime": end,
        "MaxResults": PAGE,
    }
    n = 0
    while True:
        n += 1
        answer = aws_call(client.lookup_events, f"cloudtrail LookupEvents {region} page {n}", source=SOURCE, partition=partition, **request)
        where = f"cloudtrail LookupEvents {region} page {n}"
        events = answer.get("Events")
        if not isinstance(events, list):
            raise PoloInputError(f"{where}: no Events list", source=SOURCE, field="Events", partition=partition)
        yield where, [record(e, where, i, partition) for i, e in enumerate(events)]
        token = answer.get("NextToken")
        if not token:
            return
        request["NextToken"] = token


def record(event: Any, where: str, n: int, partition: str) -> dict:
    """The trail record inside one looked-up event (its ``CloudTrailEvent``)."""
    raw = event.get("CloudTrailEvent") if isinstance(event, dict) else None
    if not isinstance(raw, str):
        raise PoloInputError(f"{where}: event {n} has no CloudTrailEvent", source=SOURCE, field="CloudTrailEvent", partition=partition)
    try:
        found = orjson.loads(raw)
    except ValueError as exc:
        raise PoloInputError(
            f"{where}: event {n}'s CloudTrailEvent is not JSON ({exc})", source=SOURCE, field="CloudTrailEvent", partition=partition
        ) from None
    if not isinstance(found, dict):
        raise PoloInputError(
            f"{where}: event {n}'s CloudTrailEvent is not an object", source=SOURCE, field="CloudTrailEvent", partition=partition
        )
    return found
