"""Where FOCUS billing exports come from: a file or folder, local or on S3 (POLO_FOCUS_URI)."""

from __future__ import annotations

import datetime as dt
import os

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import env_flag, fx_rates
from polo_pipelines.sources.focus import export as focus
from polo_pipelines.sources.locations import describe_location, open_location
from polo_pipelines.sources.spec import Collected, CostSource


class FocusSource(CostSource):
    """A FOCUS 1.0-1.3 export of any provider: a .csv/.csv.gz/.parquet file or a folder of them; unset = not collected."""

    uri: str | None = None
    fx_rates: dict[str, float] = {}
    allow_duplicate_rows: bool = False  # POLO_FOCUS_ALLOW_DUPLICATE_ROWS=1: an export known to repeat rows on purpose

    @property
    def configured(self) -> bool:
        return bool(self.uri)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        if not self.uri:
            raise PoloInputError("no export to read: set POLO_FOCUS_URI", source="focus", field="POLO_FOCUS_URI")
        location = open_location(self.uri)
        window = focus.collect(location, start, end, fx_rates=self.fx_rates, allow_duplicate_rows=self.allow_duplicate_rows)
        counts = {"rows": window.rows, "duplicate_files_skipped": len(window.duplicate_files)}
        return Collected(focus.COLLECTOR, location.uri, window.events, window.sources, counts)

    def check(self) -> str:
        return describe_location(self.uri or "")


def from_env() -> FocusSource:
    return FocusSource(
        uri=os.environ.get("POLO_FOCUS_URI") or None, fx_rates=fx_rates(), allow_duplicate_rows=env_flag("POLO_FOCUS_ALLOW_DUPLICATE_ROWS")
    )
