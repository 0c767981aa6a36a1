"""Where the trail lies: its S3 delivery root (or a local folder of the same layout)."""

from __future__ import annotations

import datetime as dt
import os

from polo_pipelines.sources.cloudtrail import trail
from polo_pipelines.sources.locations import open_location
from polo_pipelines.sources.spec import Collected, CostSource


class CloudTrailSource(CostSource):
    """A CloudTrail trail's delivery root: ``s3://bucket/prefix`` (the folder holding ``AWSLogs/``) or a local folder."""

    trail_uri: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.trail_uri)

    def needs(self, store, start: dt.date, end: dt.date) -> trail.Routing:
        """What the days before said of routes and subnets: a launch today into a subnet routed through a NAT on an
        earlier day is linked to that NAT."""
        return trail.Routing.before(store, start)

    def collect(self, start: dt.date, end: dt.date, needs: trail.Routing | None = None) -> Collected:
        location = open_location(self.trail_uri or "")
        window = trail.collect(location, start, end, needs or trail.Routing())
        return Collected(
            trail.COLLECTOR, location.uri, window.events, window.files, {"records": window.records, "skipped_calls": window.skipped}
        )

    def check(self) -> str:
        location = open_location(self.trail_uri or "")
        tops = location.list_dirs("AWSLogs")
        if not tops:
            raise RuntimeError(f"{location.uri} holds no AWSLogs/ folder: point POLO_CLOUDTRAIL_URI at the trail's delivery root")
        return f"{location.uri}: AWSLogs/ holds {', '.join(tops[:5])}{' …' if len(tops) > 5 else ''}"


def from_env() -> CloudTrailSource:
    return CloudTrailSource(trail_uri=os.environ.get("POLO_CLOUDTRAIL_URI") or None)
