"""Where Polo keeps its files and which settings come from the environment (see .env.example)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def polo_home() -> Path:
    """The folder holding the embedded store, the sample world and the Dagster instance."""
    return Path(os.environ.get("POLO_HOME") or PROJECT_ROOT / ".polo").resolve()


def clickhouse_dsn() -> str:
    from polo_pipelines.storage import default_dsn

    return os.environ.get("POLO_CLICKHOUSE_DSN") or default_dsn()


def sample_dir() -> Path:
    return polo_home() / "sample"
