"""Where the trail lies: its S3 delivery root (or a local folder of the same layout); or, for an account with no
trail, the regions whose LookupEvents to ask."""

from __future__ import annotations

import datetime as dt
import os

import boto3
from botocore.config import Config

from polo_pipelines.sources.cloudtrail import lookup, trail
from polo_pipelines.sources.locations import open_location
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label

# Throttling (LookupEvents answers two requests a second) and 5xx are retried by the client, with backoff (up to 20 s a
# wait), 8 requests in all
RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 8})


class CloudTrailSource(CostSource):
    """A CloudTrail trail's delivery root: ``s3://bucket/prefix`` (the folder holding ``AWSLogs/``) or a local folder;
    else the regions to ask ``LookupEvents`` (the caller's account, the last 90 days)."""

    trail_uri: str | None = None
    lookup_regions: list[str] = []
    endpoint_url: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.trail_uri or self.lookup_regions)

    def client(self, region: str):
        return boto3.client("cloudtrail", region_name=region, config=RETRIES, endpoint_url=self.endpoint_url)

    def needs(self, store, start: dt.date, end: dt.date) -> trail.Routing:
        """What the days before said of routes and subnets: a launch today into a subnet routed through a NAT on an
        earlier day is linked to that NAT."""
        return trail.Routing.before(store, start)

    def collect(self, start: dt.date, end: dt.date, needs: trail.Routing | None = None) -> Collected:
        if self.trail_uri:
            location = open_location(self.trail_uri)
            window, where = trail.collect(location, start, end, needs or trail.Routing()), location.uri
        else:
            lo, hi = (dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC) for d in (start, end))
            partition = window_label(start, end)
            batches = (page for region in self.lookup_regions for page in lookup.pages(self.client(region), lo, hi, partition))
            places = [f"cloudtrail LookupEvents {region}" for region in self.lookup_regions]
            window, where = trail.window_of(batches, start, end, needs or trail.Routing(), places), "cloudtrail LookupEvents"
        return Collected(trail.COLLECTOR, where, window.events, window.files, {"records": window.records, "skipped_calls": window.skipped})

    def check(self) -> str:
        if not self.trail_uri:
            for region in self.lookup_regions:
                self.client(region).lookup_events(MaxResults=1)
            return f"LookupEvents answers in {', '.join(self.lookup_regions)}"
        location = open_location(self.trail_uri or "")
        tops = location.list_dirs("AWSLogs")
        if not tops:
            raise RuntimeError(f"{location.uri} holds no AWSLogs/ folder: point POLO_CLOUDTRAIL_URI at the trail's delivery root")
        return f"{location.uri}: AWSLogs/ holds {', '.join(tops[:5])}{' …' if len(tops) > 5 else ''}"


def from_env() -> CloudTrailSource:
    regions = [r.strip() for r in os.environ.get("POLO_CLOUDTRAIL_LOOKUP_REGIONS", "").split(",") if r.strip()]
    return CloudTrailSource(trail_uri=os.environ.get("POLO_CLOUDTRAIL_URI") or None, lookup_regions=regions)
