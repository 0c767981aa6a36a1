"""Fixtures: every test gets its own Polo home (embedded store, sample world) under a temp folder."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from polo_pipelines.store import forget_migrations, polo_store

# A fixed "today" so the sample world and its weeks are the same on every run.
TODAY = dt.date(2026, 11, 18)

# Tests never see the developer's own settings or credentials.
for _name in list(os.environ):
    if _name.startswith("POLO_") and not _name.startswith("POLO_TEST_"):  # POLO_TEST_*: the tests' own settings
        os.environ.pop(_name, None)
# The partitions are part of the graph, made once per process from POLO_START_DATE; unset, it follows the sample world
# written on disk, and the tests write worlds ending on many days. One fixed start covers them all (test_defs tests
# the default's own behaviour in a process of its own).
os.environ["POLO_START_DATE"] = "2025-01-01"


@pytest.fixture
def polo_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "polo"
    monkeypatch.setenv("POLO_HOME", str(home))
    monkeypatch.delenv("POLO_CLICKHOUSE_DSN", raising=False)
    forget_migrations()
    yield home
    forget_migrations()


@pytest.fixture
def dsn(polo_home: Path) -> str:
    return f"chdb://{polo_home / 'clickhouse'}"


@pytest.fixture
def store(dsn: str):
    """A migrated embedded store, open for the whole test (nested sessions share it)."""
    with polo_store(dsn) as s:
        yield s


@pytest.fixture(scope="session")
def world_items():
    from polo_pipelines.sources.sample.world import SampleWorld

    world = SampleWorld(TODAY)
    return world, world.line_items()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's stand-in credentials, for the tests that call AWS through moto."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def load_daily_costs(store, costs: dict[str, list[float]], days: list[dt.date], resource_type: str = "ec2:instance") -> None:
    """Each AWS resource's usage cost on each of ``days`` (one value a day), loaded as the AWS collector loads it."""
    import pandas as pd

    from polo_pipelines.store.events import cost_events, replace_days

    arns = [arn for arn in costs for _ in days]
    values = [v for arn in costs for v in costs[arn]]
    frame = cost_events(
        resource_arn=arns,
        resource_type=resource_type,
        resource_name=[a.rsplit("/", 1)[-1] for a in arns],
        day=pd.to_datetime(list(days) * len(costs)),
        charge_category="Usage",
        value=values,
        billed_cost=values,
        list_cost=values,
        service="AmazonEC2",
        provider="AWS",
        properties=[{}] * len(arns),
        collector="cost_aws",
    )
    replace_days(store, frame, collector="cost_aws", days=days, source="test")
