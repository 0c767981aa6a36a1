"""The Dagster layer: assets, backfills, failures, schedule, checks, parallel steps, and the whole Definitions."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from polo_pipelines.defs.collection.assets import COLLECTORS
from polo_pipelines.defs.collection.checks import stored_days_checks
from polo_pipelines.defs.collection.schedules import daily_cost_collection_schedule, month_close_collection_schedule
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources import sample
from polo_pipelines.sources.aws import sample as aws_sample
from polo_pipelines.sources.aws.source import AwsCostSource
from polo_pipelines.sources.focus.source import FocusSource
from polo_pipelines.store import polo_store

from .conftest import TODAY

aws_cost_events = COLLECTORS["aws"]
focus_cost_events = COLLECTORS["focus"]

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-10"


@pytest.fixture
def world(polo_home):
    sample.write_sample(end=TODAY)
    return sample.sample_window()


def resources(dsn, **over):
    base = {
        "clickhouse": ClickHouseResource(dsn=dsn),
        "aws": AwsCostSource(),
        "focus": FocusSource(),
    }
    return {**base, **over}


def day_totals(dsn, collector="cost_aws"):
    with polo_store(dsn) as s:
        frame = s.query_df(
            "SELECT toDate(event_time) AS day, count() AS n, round(sum(value), 6) AS v FROM polo.resource_events "
            "WHERE collector = {c:String} GROUP BY day ORDER BY day",
            {"c": collector},
        )
    return {str(pd.Timestamp(r.day).date()): (int(r.n), float(r.v)) for r in frame.itertuples()}


def test_definitions_load_with_every_asset_job_schedule_and_check():
    from polo_pipelines.definitions import defs

    d = defs()
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    collectors = {f"{p}_cost_events" for p in ("aws", "focus", "github", "cloudflare", "datadog", "gcp", "azure", "otel")}
    assert collectors <= keys
    job = d.resolve_job_def("daily_cost_collection")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} >= collectors
    assert d.resolve_schedule_def("daily_cost_collection_schedule")
    assert {"clickhouse", "aws", "focus", "github", "cloudflare", "datadog", "gcp", "azure"} <= set(d.resources)
    assert "cloudtrail_activity_events" in keys and "cloudtrail" in d.resources
    from polo_pipelines.defs.delta.sensors import COST_COLLECTOR_ASSETS

    assert set(COST_COLLECTOR_ASSETS) == collectors  # a week waits for its costs, not for the activity that explains them


@pytest.mark.e2e
def test_dg_check_defs_passes(tmp_path):
    dg_bin = Path(sys.executable).with_name("dg")
    # as make dev runs dg: in the project's own environment, its Dagster home holding config/dagster.yaml
    shutil.copy(ROOT / "config" / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1]), "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run([str(dg_bin), "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    said = out.stdout + out.stderr
    assert out.returncode == 0, said
    assert "The active virtual environment does not match" not in said, said
    assert "dagster.yaml" not in said, said  # neither "found in the current folder" nor "no dagster.yaml found"
    assert "VIRTUAL_ENV=$(CURDIR)/$(VENV)" in (ROOT / "Makefile").read_text()
    # the code location is polo_pipelines in dg dev and in a webserver deployment, whatever the clone's folder is called
    import tomllib

    import yaml

    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dg"]["project"]["code_location_name"] == "polo_pipelines"
    (location,) = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert location["python_module"]["location_name"] == "polo_pipelines"
    assert not (ROOT / "dagster.yaml").exists(), "a dagster.yaml beside the project is ignored, with a warning"


def test_partition_materializes_and_rematerializing_changes_nothing(dsn, world):
    for _ in range(3):
        result = dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn))
        assert result.success
    totals = day_totals(dsn)
    assert list(totals) == [DAY]
    n, value = totals[DAY]
    mat = result.asset_materializations_for_node("aws_cost_events")[0]
    assert mat.metadata["dagster/row_count"].value == n
    assert mat.metadata["cost_usd"].value == pytest.approx(value, abs=0.005)  # plottable, to the cent
    assert mat.metadata["cost"].value == f"${value:,.2f}"
    assert mat.metadata["day"].value == DAY
    top = mat.metadata["top_costs"].value  # a table the UI shows inline, money as money
    assert any("111111111111" in str(r.data.values()) for r in top.records)
    assert all(r.data["cost"].startswith("$") for r in top.records)
    with polo_store(dsn) as s:
        props = s.query_df("SELECT properties['source'] AS src FROM polo.resource_events LIMIT 1")
    assert props["src"][0] == "sample"


@pytest.mark.e2e
def test_single_run_backfill_covers_the_range_in_one_run(dsn, world):
    from polo_pipelines.definitions import defs

    job = defs().resolve_job_def("daily_cost_collection")
    tags = {"dagster/asset_partition_range_start": "2026-11-02", "dagster/asset_partition_range_end": "2026-11-08"}
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(tags=tags, resources=resources(dsn), instance=instance)
    assert result.success
    mats = result.asset_materializations_for_node("aws_cost_events")
    days = [f"2026-11-0{d}" for d in range(2, 9)]
    # One step read and wrote the whole range; Dagster records each of its 7 partitions as materialized.
    assert sorted(m.partition for m in mats) == days
    assert len([e for e in result.all_events if e.event_type_value == "STEP_START" and e.step_key == "aws_cost_events"]) == 1
    totals = day_totals(dsn)
    assert list(totals) == days
    # Each partition, as the instance holds it (what a partition's page and the Plots view read), carries its own
    # day's figures; the run's range totals sit beside them, named as such.
    for day in days:
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("aws_cost_events"), asset_partitions=[day]), limit=1
        )
        meta = record.records[0].asset_materialization.metadata
        events, cost = totals[day]
        assert meta["day"].value == day and meta["dagster/row_count"].value == events
        assert meta["cost_usd"].value == pytest.approx(cost, abs=0.005) and meta["cost"].value == f"${cost:,.2f}"
        assert meta["run_window"].value == "2026-11-02..2026-11-08"
        assert meta["run_events"].value == sum(n for n, _ in totals.values())
    assert len({m.metadata["cost_usd"].value for m in mats}) == len(days), "one flat line across the range is the bug"
    assert not result.asset_materializations_for_node("focus_cost_events"), "an unconfigured FOCUS source materializes nothing"


def test_bad_input_fails_the_partition_without_retries_and_keeps_its_data(dsn, world):
    assert dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn)).success
    before = day_totals(dsn)
    for data in aws_sample.export_root().glob("data/BILLING_PERIOD=2026-11/*/*.parquet"):
        data.write_bytes(b"not parquet at all")
    result = dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "polo-sample-00001.snappy.parquet" in message and f"partition {DAY}" in message and "field file" in message
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert day_totals(dsn) == before


def test_sample_data_is_not_written_to_a_server_unless_asked(dsn, world, monkeypatch):
    server = ClickHouseResource(dsn="https://u:pw@ch.example.com/polo")  # never reached: nothing is written
    result = dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn, clickhouse=server))
    assert result.success and result.asset_materializations_for_node("aws_cost_events") == []
    # POLO_SAMPLE=0 turns the sample world off on the embedded store too
    monkeypatch.setenv("POLO_SAMPLE", "0")
    result = dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn))
    assert result.success and result.asset_materializations_for_node("aws_cost_events") == []
    assert day_totals(dsn, "cost_aws") == {}


def test_focus_asset_collects_a_configured_export(dsn, tmp_path):
    path = tmp_path / "focus.csv"
    pd.DataFrame(
        {
            "BilledCost": [2.0, 3.0],
            "EffectiveCost": [1.5, 3.0],
            "ListCost": [2.0, 3.0],
            "BillingCurrency": ["USD"] * 2,
            "ChargePeriodStart": ["2026-11-10T01:00:00Z", "2026-11-11T01:00:00Z"],
            "ChargeCategory": ["Usage", "Usage"],
            "ProviderName": ["Oracle", "Oracle"],
            "ResourceId": ["ocid1.instance.a", "ocid1.instance.a"],
        }
    ).to_csv(path, index=False)
    result = dg.materialize([focus_cost_events], partition_key=DAY, resources=resources(dsn, focus=FocusSource(uri=str(path))))
    assert result.success
    assert day_totals(dsn, "cost_focus") == {DAY: (1, 1.5)}


def test_schedule_requests_the_lookback_days_as_one_run():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 22, 6, tzinfo=dt.UTC))
    request = daily_cost_collection_schedule(context)
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-19"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-21"
    assert request.run_key == "2026-11-22:2026-11-19..2026-11-21"
    early = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2024, 1, 1, 6, tzinfo=dt.UTC))
    assert isinstance(daily_cost_collection_schedule(early), dg.SkipReason)


def test_month_close_requests_the_whole_previous_month_once(monkeypatch):
    def tick(day: dt.date):
        return month_close_collection_schedule(
            dg.build_schedule_context(scheduled_execution_time=dt.datetime(day.year, day.month, day.day, 7, tzinfo=dt.UTC))
        )

    request = tick(dt.date(2026, 12, 5))
    assert request.tags["dagster/asset_partition_range_start"] == "2026-11-01"
    assert request.tags["dagster/asset_partition_range_end"] == "2026-11-30"
    assert request.run_key == "close:2026-11"
    assert isinstance(tick(dt.date(2026, 12, 6)), dg.SkipReason)
    monkeypatch.setenv("POLO_MONTH_CLOSE_DAY", "2")
    assert tick(dt.date(2027, 3, 2)).tags["dagster/asset_partition_range_end"] == "2027-02-28"
    assert isinstance(tick(dt.date(2024, 2, 2)), dg.SkipReason)  # before the first partition
    monkeypatch.setenv("POLO_MONTH_CLOSE_DAY", "31")
    with pytest.raises(ValueError, match="POLO_MONTH_CLOSE_DAY must be between 1 and 28"):
        tick(dt.date(2027, 3, 2))


def test_integrity_check_passes_then_catches_a_double_count(dsn, world):
    assert dg.materialize([aws_cost_events], partition_key=DAY, resources=resources(dsn)).success
    check = stored_days_checks[0]
    ok = dg.materialize([aws_cost_events, check], partition_key=DAY, resources=resources(dsn))
    assert all(r.passed for r in ok.get_asset_check_evaluations())
    with polo_store(dsn) as s:
        s.command("INSERT INTO polo.resource_events SELECT * FROM polo.resource_events WHERE collector = 'cost_aws' LIMIT 1")
    bad = check(clickhouse=ClickHouseResource(dsn=dsn))
    assert not bad.passed
    assert bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["mismatched_days"].value == 1
    assert [r.data["day"] for r in bad.metadata["details"].value.records] == [DAY]


@pytest.mark.e2e
def test_collectors_of_different_platforms_write_in_parallel_under_the_multiprocess_executor(dsn, world, tmp_path, monkeypatch):
    focus_file = tmp_path / "focus.csv"
    pd.DataFrame(
        {
            "BilledCost": [4.0],
            "EffectiveCost": [4.0],
            "BillingCurrency": ["USD"],
            "ChargePeriodStart": [f"{DAY}T03:00:00Z"],
            "ChargeCategory": ["Usage"],
            "ProviderName": ["Microsoft"],
            "ResourceId": ["/subscriptions/S/vm/A"],
        }
    ).to_csv(focus_file, index=False)
    monkeypatch.setenv("POLO_FOCUS_URI", str(focus_file))
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    monkeypatch.setenv("POLO_TEST_BARRIER", str(barrier))
    from .parallel_job import parallel_collection_job

    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(parallel_collection_job), instance=instance, tags={"dagster/partition": DAY})
        assert result.success
        records = instance.all_logs(result.run_id)
    spans = {}
    for record in records:
        event = record.dagster_event
        if event and event.step_key and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            spans.setdefault(event.step_key, {})[event.event_type_value] = record.timestamp
    windows = [(v["STEP_START"], v["STEP_SUCCESS"]) for v in spans.values()]
    assert len(windows) == 3
    assert max(start for start, _ in windows) < min(end for _, end in windows), "the three steps must have run at the same time"
    assert len(list(barrier.iterdir())) == 3, "all steps came to write at once (each waited for the others)"
    assert DAY in day_totals(dsn, "cost_aws") and DAY in day_totals(dsn, "cost_github")
    assert day_totals(dsn, "cost_focus") == {DAY: (1, 4.0)}


@pytest.mark.e2e
def test_weekly_delta_assets_and_their_sensor(dsn, world, tmp_path):
    from polo_pipelines.defs.delta.assets import cost_delta_nodes_weekly, cost_delta_resources_weekly
    from polo_pipelines.defs.delta.sensors import weekly_request
    from polo_pipelines.defs.hierarchy.assets import cost_node_rollups, resource_ancestry

    week, today = "2026-11-09", dt.date(2026, 11, 18)
    with dg.instance_for_test() as instance:
        assert isinstance(weekly_request(instance, today), dg.SkipReason)
        for day in ("2026-11-09", "2026-11-10", "2026-11-11", "2026-11-12", "2026-11-13", "2026-11-14"):
            assert dg.materialize([aws_cost_events], partition_key=day, resources=resources(dsn), instance=instance).success
        assert isinstance(weekly_request(instance, today), dg.SkipReason)
        assert dg.materialize([aws_cost_events], partition_key="2026-11-15", resources=resources(dsn), instance=instance).success
        waiting = weekly_request(instance, today)
        assert isinstance(waiting, dg.SkipReason) and "node rollups" in waiting.skip_message  # Level 1 not yet up to date
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="cost_node_daily"))
        first = weekly_request(instance, today)
        assert isinstance(first, dg.RunRequest) and first.partition_key == week
        assert dg.materialize([aws_cost_events], partition_key="2026-11-15", resources=resources(dsn), instance=instance).success
        assert isinstance(weekly_request(instance, today), dg.SkipReason)
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="cost_node_daily"))
        again = weekly_request(instance, today)
        assert again.partition_key == week and again.run_key != first.run_key  # a restated day computes the week again

    for day in ("2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06", "2026-11-07", "2026-11-08"):
        assert dg.materialize([aws_cost_events], partition_key=day, resources=resources(dsn)).success
    assert dg.materialize([resource_ancestry, cost_node_rollups], resources=resources(dsn)).success
    result = dg.materialize([cost_delta_nodes_weekly, cost_delta_resources_weekly], partition_key=week, resources=resources(dsn))
    assert result.success
    nodes = result.asset_materializations_for_node("cost_delta_nodes_weekly")[0].metadata
    assert nodes["week_total_usd"].value > nodes["previous_week_usd"].value > 0
    # the week's newest days are the source's last: not final yet, and the metadata says so
    assert nodes["complete"].value is False and "cost_aws: 2026-11-13..15 unsettled" in nodes["completeness"].value
    movers = [r.data for r in nodes["top_movers"].value.records]  # a table, money as the CLI writes it
    assert "cluster:acme-prod-1" in {m["node_id"] for m in movers}
    assert all(m["delta"][0] in "+-" and "$-" not in m["delta"] for m in movers)
    assert any(m["delta"].startswith("-$") for m in movers) or all(m["delta"].startswith("+$") for m in movers)
    assert nodes["causes"].value.records[0].data["node_id"] == "cluster:acme-prod-1"  # the first cause
    first = nodes["explanations"].value.records[0].data  # and what moved its largest resource, from the data
    assert first["cause"] == "cluster:acme-prod-1" and first["explanation"].startswith("cost ")
    # the week against the week before, a line per weekday and week, bars scaled to the largest day
    chart = nodes["week_against_week_before"].value.strip("`\n").splitlines()
    assert len(chart) == 14 and chart[0].startswith("Mon 09") and "this week" in chart[0] and "before" in chart[1]
    assert nodes["week_total"].value == f"${nodes['week_total_usd'].value:,.2f}"
    res = result.asset_materializations_for_node("cost_delta_resources_weekly")[0].metadata
    assert res["new_resource_resources"].value >= 10  # alice's instances, the staging stack, beta's scale-up
    assert "alice@example.com" in {r.data["created_by"] for r in res["top_resources"].value.records}


def test_ancestry_follows_any_source_even_with_partitions_never_collected():
    """Dagster's own automation evaluation: a GitHub-only day, then the inventory, each trigger one rebuild."""
    from polo_pipelines.definitions import defs

    definitions, ancestry = defs(), dg.AssetSelection.assets("resource_ancestry")
    sensors = {s.name: s for s in definitions.get_repository_def().sensor_defs}
    assert sensors["resource_ancestry_automation"].default_status == dg.DefaultSensorStatus.RUNNING  # no toggle in the UI needed
    with dg.instance_for_test() as instance:
        cursor, requested = None, []

        def after(key: str | None, partition: str | None = None) -> None:
            nonlocal cursor
            if key:
                instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))
            result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, asset_selection=ancestry, cursor=cursor)
            cursor = result.cursor
            requested.append(result.total_requested)

        after(None)  # nothing collected yet
        after("github_cost_events", "2026-11-19")  # one platform, one day; every other partition and platform missing
        after("resource_ancestry")  # the rebuild it asked for
        after(None)  # nothing new
        after("aws_inventory_events")  # an instance launched, not yet billed
    assert requested == [0, 1, 0, 0, 1]


def test_the_node_rollups_follow_the_ancestry():
    """Writes flow one way: a collector day triggers the ancestry, and the ancestry the node rollups."""
    from polo_pipelines.definitions import defs

    definitions = defs()
    rollups = dg.AssetSelection.assets("cost_node_daily", "cost_node_resource_daily")
    with dg.instance_for_test() as instance:
        cursor, requested = None, []
        for key in (None, "resource_ancestry", None):
            if key:
                for done in ("resource_ancestry", "resources"):
                    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=done))
            result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, asset_selection=rollups, cursor=cursor)
            cursor = result.cursor
            requested.append(result.total_requested)
    assert requested == [0, 2, 0], requested  # both node tables once after the ancestry, then nothing new


def test_rule_schedules_request_their_cadence():
    from polo_pipelines.definitions import defs
    from polo_pipelines.defs.rules import jobs
    from polo_pipelines.defs.rules.checks import RULES, check_name
    from polo_pipelines.defs.rules.schedules import rules_15min_schedule, rules_hourly_schedule

    d = defs()
    moment = dt.datetime(2026, 11, 20, 10, 15, tzinfo=dt.UTC)
    for schedule, unresolved, cadence, cron in (
        (rules_hourly_schedule, jobs.rules_hourly, "hourly", "5 * * * *"),
        (rules_15min_schedule, jobs.rules_15min, "15min", "*/15 * * * *"),
    ):
        assert schedule.cron_schedule == cron and schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        tick = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=moment))
        assert len(tick.run_requests) == 1 and schedule.job_name == f"rules_{cadence}"
        assert unresolved.config["ops"]["rule_violations"]["config"]["cadence"] == cadence
        job = d.resolve_job_def(schedule.job_name)
        selected = {key.name for key in job.asset_layer.asset_graph.asset_check_keys if key.name.startswith("rule_")}
        wanted = {check_name(r) for r in RULES if r.enabled and r.cadence == cadence}
        assert wanted and wanted <= selected


def test_the_instance_monitors_runs_and_frees_the_slots_of_dead_ones(tmp_path):
    """A killed run must not hold its pool slot forever (every later run of its collector would wait)."""
    from dagster import DagsterInstance

    shutil.copy(Path(__file__).resolve().parents[1] / "config" / "dagster.yaml", tmp_path / "dagster.yaml")
    instance = DagsterInstance.from_config(str(tmp_path))
    settings = instance.run_monitoring_settings
    assert instance.run_monitoring_enabled and settings["free_slots_after_run_end_seconds"] <= 60
    assert 0 < instance.run_monitoring_max_runtime_seconds <= 6 * 3600
