"""The sample world beyond AWS, served over HTTP in each platform's own API shape.

Which platforms it holds, and the routes each answers, come from the source registry: a
source whose spec says ``sample="server"`` is in it, through its ``sample.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from polo_pipelines.sources.sample.server import SampleServer, sample_server
from polo_pipelines.sources.sample.world import SEED


class PlatformSample:
    """Every platform's sample data for the window [start, end) of the AWS sample world."""

    def __init__(self, start: dt.date, end: dt.date, seed: int = SEED):
        self.start, self.end, self.seed = start, end, seed
        monday = end - dt.timedelta(days=end.weekday())
        self.last_week_start = monday - dt.timedelta(days=7)
        self._data: dict[str, Any] = {}

    def data(self, source: str) -> Any:
        """The sample payload builder of one source (``github``, ``datadog``, ...), made once per world."""
        if source not in self._data:
            from polo_pipelines.sources import by_name

            spec = by_name(source)
            if spec.sample != "server":
                raise KeyError(f"source {source!r} has no sample payloads")
            self._data[source] = spec.sample_data(self)
        return self._data[source]

    def serve(self) -> SampleServer:
        return sample_server(f"{self.start}:{self.end}:{self.seed}", self.add_routes)

    def add_routes(self, server: SampleServer) -> None:
        from polo_pipelines.sources import SOURCES

        for spec in SOURCES:
            spec.add_sample_routes(server, self)


def serve_sample() -> tuple[PlatformSample, SampleServer]:
    """The sample world's platforms, served by the process's local sample server (the world is written if absent)."""
    from polo_pipelines.sources import sample

    window = sample.sample_window()
    if window is None:
        sample.write_sample()
        window = sample.sample_window()
    world = PlatformSample(*window)
    return world, world.serve()
