"""A data engineer's first hour: a broken rule or hierarchy file, the sample world's clock, the partitions' start,
the checks' labels and the messages a newcomer meets."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from polo_pipelines.defs.rules.resources import RulesResource
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.rules.ruleset import RuleError
from polo_pipelines.sources.aws.sample_inventory import reference_time

ROOT = Path(__file__).resolve().parents[1]
BROKEN_RULES = "rules:\n- id: nat-ratio\n  type: ratioo\n  scope: {node: cluster:x}\n"

# What the definitions hold, printed by a fresh process (the rule file is read when the definitions load).
SHOW_DEFS = textwrap.dedent(
    """
    import json
    from polo_pipelines.definitions import defs
    d = defs()
    repo = d.get_repository_def()
    print(json.dumps({
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "checks": sorted(k.name for k in repo.asset_graph.asset_check_keys),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "jobs": sorted(j.name for j in repo.get_all_jobs()),
    }))
    """
)


def load_defs_in_a_new_process(env: dict[str, str]) -> dict:
    import os

    out = subprocess.run(
        [sys.executable, "-c", SHOW_DEFS], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_a_broken_rule_or_hierarchy_file_leaves_the_code_location_whole(tmp_path, polo_home):
    good = load_defs_in_a_new_process({})
    rules_file, hierarchy_file = tmp_path / "rules.yaml", tmp_path / "hierarchy.yaml"
    rules_file.write_text(BROKEN_RULES)
    hierarchy_file.write_text("hierarchies:\n  - name: [not, a, name]\n")
    broken = load_defs_in_a_new_process({"POLO_RULES_FILE": str(rules_file), "POLO_HIERARCHY_FILE": str(hierarchy_file)})
    # every collector, schedule, sensor and job is still there; only the broken file's own rule checks are gone
    assert broken["assets"] == good["assets"] and "aws_cost_events" in broken["assets"]
    assert broken["schedules"] == good["schedules"] and "daily_cost_collection_schedule" in broken["schedules"]
    assert broken["sensors"] == good["sensors"] and "weekly_cost_deltas_sensor" in broken["sensors"]
    assert broken["jobs"] == good["jobs"]
    assert "rule_file_valid" in broken["checks"] and "rule_nat_cost_ratio" in good["checks"]
    assert not [c for c in broken["checks"] if c.startswith("rule_") and c != "rule_file_valid"]


def test_a_broken_rule_file_fails_its_evaluation_loudly_with_its_check(tmp_path, dsn):
    from polo_pipelines.defs.rules.assets import rule_violations

    path = tmp_path / "rules.yaml"
    path.write_text(BROKEN_RULES)
    resources = {"clickhouse": ClickHouseResource(dsn=dsn), "rules": RulesResource(rules_file=str(path))}
    result = dg.materialize([rule_violations], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).event_specific_data.error.message
    assert "the rule file is broken, no rule was evaluated" in failure and "ratioo" in failure
    (check,) = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert check.check_name == "rule_file_valid" and not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert "ratioo" in check.metadata["error"].value and check.metadata["rule_file"].value == str(path)

    path.write_text((ROOT / "config" / "rules.yaml").read_text())  # mended: the check passes, rules are evaluated
    result = dg.materialize([rule_violations], resources=resources)
    checks = {
        e.event_specific_data.check_name: e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks["rule_file_valid"].passed and checks["rule_file_valid"].metadata["rules"].value == 6


def test_an_unquoted_time_of_day_says_to_quote_it(tmp_path):
    from polo_pipelines.rules.ruleset import load

    path = tmp_path / "rules.yaml"
    path.write_text(
        (ROOT / "config" / "rules.yaml").read_text().replace("end: '18:00'", "end: 18:00")  # as a person would type it
    )
    with pytest.raises(
        RuleError, match=r"end must be HH:MM in quotes: write end: '18:00' \(YAML reads an unquoted 18:00 as the number 1080\)"
    ):
        load(path)


def test_the_budget_check_names_a_projection_as_one():
    from polo_pipelines.defs.rules.checks import offending
    from polo_pipelines.rules.ruleset import default_rules

    rule = next(r for r in default_rules() if r.rule_id == "testing-account-budget")
    open_now = pd.DataFrame(
        {
            "resource_arn": ["", ""],
            "node_id": ["account:testing", "account:testing"],
            "actual_value": [2352.3405, 519.95],
            "threshold_value": [500.0, 500.0],
            "detected_at": pd.to_datetime(["2026-11-25 11:00", "2026-12-06 11:00"]),
            "message": [
                "projected: account:testing heads for $2,352.34 this month, over $500.00 (x)",
                "account:testing cost $519.95 over month",
            ],
        }
    )
    table = offending(rule, open_now)
    assert list(table["measure"]) == ["projected for the month", "actual"]
    assert list(table["since"]) == ["2026-11-25 11:00 UTC", "2026-12-06 11:00 UTC"]


def test_the_rule_schedules_run_on_the_sample_worlds_clock_while_it_is_all_there_is(polo_home, monkeypatch):
    from polo_pipelines.defs.rules.schedules import rules_15min_schedule, rules_hourly_schedule

    def config_of(schedule) -> tuple[dict, dict]:
        moment = dt.datetime(2026, 12, 7, 9, 15, tzinfo=dt.UTC)
        (request,) = schedule.evaluate_tick(dg.build_schedule_context(scheduled_execution_time=moment)).run_requests
        return request.run_config["ops"], request.tags

    # no sample world written yet: the wall clock
    ops, tags = config_of(rules_15min_schedule)
    assert ops["rule_violations"]["config"] == {"cadence": "15min", "as_of": ""} and tags["polo/clock"] == "wall clock"

    sample_root = polo_home / "sample"
    sample_root.mkdir(parents=True)
    (sample_root / "WORLD").write_text("end=2026-12-07\nstart=2026-10-12\n")
    evening = reference_time(dt.date(2026, 12, 7)).isoformat()
    ops, tags = config_of(rules_15min_schedule)
    assert ops["rule_violations"]["config"] == {"cadence": "15min", "as_of": evening}
    assert ops["aws_inventory_events"]["config"] == {"as_of": evening} and tags["polo/clock"] == "sample world"
    ops, _ = config_of(rules_hourly_schedule)
    assert ops == {"rule_violations": {"config": {"cadence": "hourly", "as_of": evening}}}

    # a configured source: real data, the wall clock again
    monkeypatch.setenv("POLO_FOCUS_URI", str(polo_home))
    ops, _ = config_of(rules_hourly_schedule)
    assert ops["rule_violations"]["config"]["as_of"] == ""


def test_partitions_start_with_the_sample_world_unless_set(polo_home, monkeypatch):
    from polo_pipelines.sources.sample import first_partition_day as start_date
    from polo_pipelines.sources.sample.world import SampleWorld

    monkeypatch.delenv("POLO_START_DATE")
    today = dt.datetime.now(dt.UTC).date()
    assert start_date() == SampleWorld(today).start  # nothing written yet: the world `polo run` writes today
    sample_root = polo_home / "sample"
    sample_root.mkdir(parents=True)
    (sample_root / "WORLD").write_text("end=2026-12-07\nstart=2026-10-12\n")
    assert start_date() == dt.date(2026, 10, 12)
    monkeypatch.setenv("POLO_FOCUS_URI", str(polo_home))  # real data: the documented default
    assert start_date() == dt.date(2025, 1, 1)
    monkeypatch.setenv("POLO_START_DATE", "2026-03-01")
    assert start_date() == dt.date(2026, 3, 1)


def test_the_weekly_deltas_follow_a_restated_day_within_minutes():
    from polo_pipelines.defs.delta.sensors import weekly_cost_deltas_sensor

    assert weekly_cost_deltas_sensor.minimum_interval_seconds <= 60
