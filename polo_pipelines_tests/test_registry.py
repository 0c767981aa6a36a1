"""The source registry is the one list: every registered source is in the job, the hierarchy, check-connections,
the secrets, the sample world and the docs, and nothing lists a source the registry does not hold."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from polo_pipelines.defs.collection.assets import COLLECTORS
from polo_pipelines.defs.collection.checks import COLLECTORS as CHECKED
from polo_pipelines.defs.collection.jobs import COLLECTOR_ASSETS
from polo_pipelines.hierarchy.ancestry import platform_of
from polo_pipelines.sources import SOURCES, by_name, names, platform_of_collector
from polo_pipelines.sources.connections import check_connections
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.sources.secrets import secret_env
from polo_pipelines.sources.spec import CostSource

ROOT = Path(__file__).resolve().parents[1]


def test_names_collectors_and_assets_are_unique():
    assert len(set(names())) == len(SOURCES)
    assert len({s.collector for s in SOURCES}) == len(SOURCES)
    # a cost collector is cost_<platform>; an activity collector is named for what it tells (activity_aws, metrics_aws)
    assert all(s.collector.startswith("cost_") == (s.kind == "cost") for s in SOURCES)
    assert {s.kind for s in SOURCES} == {"cost", "activity"}
    assert len({s.asset_name for s in SOURCES}) == len(SOURCES)


def test_every_source_is_in_the_collection_job_its_asset_and_its_check():
    assert set(COLLECTOR_ASSETS) == {s.asset_name for s in SOURCES}
    assert set(COLLECTORS) == set(names())
    assert CHECKED == {s.asset_name: s.collector for s in SOURCES}


def test_every_source_is_in_the_whole_definitions_with_its_resource():
    from polo_pipelines.definitions import defs

    d = defs()
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    job = d.resolve_job_def("daily_cost_collection")
    executable = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    for spec in SOURCES:
        assert spec.asset_name in keys and spec.asset_name in executable
        assert isinstance(d.resources[spec.resource_key], CostSource)


def test_every_source_has_a_platform_in_the_hierarchy():
    by_collector = platform_of_collector()
    for spec in SOURCES:
        if spec.platform:
            assert platform_of(spec.collector, "anything", by_collector) == spec.platform
        else:  # a source of many providers: each event's provider names its platform
            assert platform_of(spec.collector, "Amazon Web Services", by_collector) == "aws"
            assert platform_of(spec.collector, "Microsoft", by_collector) == "azure"


def test_check_connections_covers_every_source(monkeypatch):
    for spec in SOURCES:
        for setting in spec.settings:
            monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("POLO_AWS_MODE", raising=False)
    results = check_connections()
    assert [r.platform for r in results] == names()
    for result, spec in zip(results, SOURCES):
        assert result.status == "skipped" and spec.configured_by in result.detail
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        check_connections(["nope"])


def test_every_secret_of_a_source_is_known_with_its_variable():
    known = secret_env()
    for spec in SOURCES:
        for setting in spec.settings:
            if setting.secret:
                assert known[setting.secret] == setting.env


def test_every_source_is_in_the_sample_world_or_says_it_has_none():
    world = PlatformSample(dt.date(2026, 10, 1), dt.date(2026, 11, 1))
    server = world.serve()
    served = {pattern.pattern.split("/")[1] for _, pattern, _ in server.routes}
    for spec in SOURCES:
        assert spec.sample in ("", "files", "server", "moto")
        if spec.sample == "server":
            assert world.data(spec.name) is not None
            assert spec.name in served
        if spec.sample:
            source = spec.sample_source()
            assert isinstance(source, CostSource) and source.configured
    assert served <= set(names())
    with pytest.raises(KeyError):
        world.data("focus")
    with pytest.raises(ValueError):
        by_name("nope")


def test_every_setting_is_in_env_example():
    example = (ROOT / ".env.example").read_text()
    for spec in SOURCES:
        for setting in spec.settings:
            assert re.search(rf"^# {setting.env}=", example, flags=re.M), setting.env


def test_the_sources_page_is_the_registry_rendered():
    from polo_pipelines.sources.docs import sources_page

    page = sources_page()
    for spec in SOURCES:
        assert f"## {spec.name}" in page and spec.collector in page
        assert all(f"`{setting.env}`" in page for setting in spec.settings)
    assert (ROOT / "docs" / "sources.md").read_text() == page, "docs/sources.md is stale: run python -m polo_pipelines.sources.docs"


def test_the_cli_help_lists_every_source(capsys):
    from polo_pipelines.cli.main import parser

    with pytest.raises(SystemExit):
        parser().parse_args(["check-connections", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ", ".join(names()) in out
