"""What every cost source declares once: its spec (names, settings, secrets, sample world) and its reader's shape.

The registry (``polo_pipelines.sources.SOURCES``) is a tuple of these specs, and every place
that lists sources reads it: the collection job and its assets, the platform hierarchy,
``polo check-connections``, the secrets, the sample server's routes, the CLI help and the
settings table in the docs.
"""

from __future__ import annotations

import datetime as dt
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
import pandas as pd

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample
    from polo_pipelines.sources.sample.server import SampleServer


@dataclass
class Collected:
    """What one read of a source gave: its events for the window and where they came from."""

    collector: str
    source: str
    events: pd.DataFrame
    sources: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


class CostSource(dg.ConfigurableResource):
    """A configured cost source: it knows whether it is configured, reads a window of days and checks its credentials.

    The sample world is not a mode of the source: it is the same source configured to read the
    sample world's files or the local sample server (``SourceSpec.sample``)."""

    @property
    def configured(self) -> bool:
        raise NotImplementedError

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        """The window [start, end) as cost events; bad input raises PoloInputError, an API that keeps failing SourceUnavailable."""
        raise NotImplementedError

    def check(self) -> str:
        """One cheap authenticated call; returns what it saw (never a credential), raises when refused."""
        raise NotImplementedError

    def holds(self) -> tuple[dt.date, dt.date] | None:
        """The first and last day the source holds, where it can tell without reading its data (None otherwise)."""
        return None


@dataclass(frozen=True)
class Setting:
    """One environment variable a source reads; ``secret`` names its AWS Secrets Manager fallback."""

    env: str
    help: str
    secret: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One cost source as the rest of Polo sees it. Its folder ``polo_pipelines/sources/<name>/`` holds, by convention:

    - ``source.py``: the source's resource (a ``CostSource``) and ``from_env()``, which builds it from the
      environment when the definitions load;
    - ``sample.py`` (where ``sample`` is set): ``sample_source()``, the same resource pointed at the sample
      world; with ``sample == "server"`` also ``sample_data(world)`` and ``add_routes(server, world)``, the
      source's payloads in the provider's own API shape for the local sample server.
    """

    name: str  # what a user names: the asset group, check-connections, the resource key
    platform: str  # its node in the platform hierarchy (platform:<platform>); "": each event's provider names it
    collector: str
    description: str
    kinds: tuple[str, ...]
    configured_by: str
    settings: tuple[Setting, ...]
    sample: str = ""  # "": no sample world (skipped when not configured); "files", "server", or "moto" (AWS in-process)
    top_costs_by: tuple[str, str] = ("provider", "service")
    activity_collectors: tuple[str, ...] = ()  # other collectors writing this platform's resources (inventory, ...)
    # "cost": the source's events are costs; "activity": config, lifecycle and metric events that explain them (no cost:
    # never in the cost totals' completeness, the weekly deltas' readiness or the summary)
    kind: str = "cost"
    after: tuple[str, ...] = ()  # sources whose same partitions are collected first in a run (CloudWatch reads AWS costs)

    @property
    def asset_name(self) -> str:
        return f"{self.name}_{self.kind}_events"

    @property
    def resource_key(self) -> str:
        return self.name

    @property
    def pool(self) -> str:
        # one write of a collector at a time (a day's write rebuilds its month); different sources in parallel
        return self.collector

    @property
    def secrets(self) -> dict[str, str]:
        """Secrets Manager name -> the environment variable that overrides it."""
        return {s.secret: s.env for s in self.settings if s.secret}

    def module(self, name: str):
        return importlib.import_module(f"polo_pipelines.sources.{self.name}.{name}")

    def from_env(self) -> CostSource:
        return self.module("source").from_env()

    def sample_source(self) -> CostSource | None:
        return self.module("sample").sample_source() if self.sample else None

    def sample_data(self, world: PlatformSample) -> object:
        return self.module("sample").sample_data(world)

    def add_sample_routes(self, server: SampleServer, world: PlatformSample) -> None:
        if self.sample == "server":
            self.module("sample").add_routes(server, world)
