"""Where FOCUS billing exports come from: a file or folder, local or on S3 (POLO_FOCUS_URI)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines import focus
from polo_pipelines.collect import Collected
from polo_pipelines.locations import open_location
from polo_pipelines.settings import fx_rates


class FocusSource(dg.ConfigurableResource):
    """A FOCUS 1.0-1.3 export of any provider: a .csv/.csv.gz/.parquet file or a folder of them; unset = not collected."""

    uri: str | None = None
    fx_rates: dict[str, float] = {}

    @property
    def configured(self) -> bool:
        return bool(self.uri)

    def collect(self, start: dt.date, end: dt.date, s3_client=None) -> Collected:
        location = open_location(self.uri or "", s3_client=s3_client if (self.uri or "").startswith("s3://") else None)
        window = focus.collect(location, start, end, fx_rates=self.fx_rates)
        return Collected(focus.COLLECTOR, location.uri, window.events, window.sources, {"rows": window.rows})


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"focus_source": FocusSource(uri=os.environ.get("POLO_FOCUS_URI") or None, fx_rates=fx_rates())})
