"""The sample world and its renderers into each platform's own payload shapes."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
from pathlib import Path

from polo_pipelines.settings import sample_dir


def write_sample(end: dt.date | None = None, root: Path | None = None) -> Path:
    """Render the world ending yesterday (data through ``end - 1``) into ``root``, replacing what was there."""
    from polo_pipelines.sources import SOURCES
    from polo_pipelines.sources.sample.world import SampleWorld

    root = root or sample_dir()
    end = end or dt.datetime.now(dt.UTC).date()
    if root.exists():
        shutil.rmtree(root)
    world = SampleWorld(end)
    for spec in SOURCES:
        if spec.sample == "files":
            spec.module("sample").write_files(world, root)
    (root / "WORLD").write_text(f"end={end.isoformat()}\nstart={world.start.isoformat()}\n")
    return root


def sample_window(root: Path | None = None) -> tuple[dt.date, dt.date] | None:
    """[start, end) of the sample world on disk, or None when there is none."""
    marker = (root or sample_dir()) / "WORLD"
    if not marker.exists():
        return None
    values = dict(line.split("=", 1) for line in marker.read_text().split())
    return dt.date.fromisoformat(values["start"]), dt.date.fromisoformat(values["end"])


def sample_start() -> dt.date:
    """The sample world's first day: the one on disk, else the one `polo run` writes today."""
    from polo_pipelines.sources.sample.world import SampleWorld

    window = sample_window()
    return window[0] if window else SampleWorld(dt.datetime.now(dt.UTC).date()).start


def first_partition_day() -> dt.date:
    """The first day the collectors' partitions hold: POLO_START_DATE; unset, the sample world's first day while Polo
    collects the sample world alone (so its partitions are all there is, none "missing"), else 2025-01-01."""
    from polo_pipelines.settings import DEFAULT_START_DATE, start_date_setting

    chosen = start_date_setting()
    if chosen is not None:
        return chosen
    return sample_start() if only_sample_world() else dt.date.fromisoformat(DEFAULT_START_DATE)


def only_sample_world() -> bool:
    """True while Polo collects the sample world alone: no source is configured and POLO_SAMPLE is not 0. The sample's
    own configuration (its customer and cluster tags, its account names) applies then, and only then. Sources are
    configured by the environment alone, so the answer is kept for as long as the environment is the same (building
    every source's resource costs 14 ms, and the web API asks on every request)."""
    return _only_sample_world(frozenset(os.environ.items()))


@functools.lru_cache(maxsize=8)
def _only_sample_world(environment: frozenset) -> bool:
    from polo_pipelines.settings import env_flag
    from polo_pipelines.sources import SOURCES

    return env_flag("POLO_SAMPLE", default=True) and not any(spec.from_env().configured for spec in SOURCES)
