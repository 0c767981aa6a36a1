"""The polo command: the make-run path end to end, and the summary checked against the world's own charges."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from pathlib import Path

import dagster as dg
import pytest

from polo_pipelines.cli import main as cli
from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.sources import sample
from polo_pipelines.sources.sample.world import SampleWorld
from polo_pipelines.store import forget_migrations

from .conftest import TODAY


def effective(item) -> float:
    if item.line_item_type == "SavingsPlanCoveredUsage":
        return item.sp_effective
    if item.line_item_type == "SavingsPlanNegation":
        return 0.0
    if item.line_item_type == "SavingsPlanRecurringFee":
        return item.sp_commitment - item.sp_used
    return item.unblended


@pytest.mark.e2e
def test_summary_matches_the_worlds_charges(polo_home, capsys, monkeypatch):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    sample.write_sample(end=TODAY)
    start, end = sample.sample_window()
    assert cli.run_collection(start, end).success
    assert cli.main(["summary", "--today", TODAY.isoformat(), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    week = Periods.last_complete_week(TODAY)
    (a0, a1), (b0, b1) = (week.compare_start, week.compare_end), (week.current_start, week.current_end)
    want = defaultdict(lambda: [0.0, 0.0])
    for item in SampleWorld(TODAY).line_items():
        if a0 <= item.day < a1:
            want[item.account][0] += effective(item)
        elif b0 <= item.day < b1:
            want[item.account][1] += effective(item)
    got = {row["account"]: (row["previous_week"], row["last_week"]) for row in report["accounts"]}
    # AWS rows by account; every other platform's costs under its provider
    assert set(got) == set(want) | {"GitHub", "Google Cloud", "Microsoft", "Cloudflare", "Datadog"}
    assert set(want) == {"111111111111", "222222222222", "333333333333"}
    for account, (prev, last) in want.items():
        assert got[account][0] == pytest.approx(prev, abs=1e-6)
        assert got[account][1] == pytest.approx(last, abs=1e-6)
    services = {row["service"] for row in report["services"]}
    assert {"AmazonEC2", "AmazonRDS", "AmazonS3", "AWSDataTransfer"} <= services


@pytest.mark.e2e
def test_run_prints_the_summary_and_where_data_lives(polo_home, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    assert cli.main(["run"]) == 0
    out = capsys.readouterr().out
    # a fresh store's compliance counts the inventory's resources too: the staging stack sits under its nodes
    compliance = out[out.index("Compliance (") :]
    for node in ("cluster:staging-1", "account:staging", "customer:internal", "cluster:acme-prod-1", "account:testing"):
        assert f"  {node}: " in compliance, node
    assert "cluster:staging-1: 83.9% compliant, 5 open violation(s)" in compliance
    # every past week of the sample world has its weekly deltas, as the UI shows them
    from polo_pipelines.defs.partitions import weekly_partitions

    instance = dg.DagsterInstance.get()
    world_start, world_end = sample.sample_window()
    weeks = [
        w
        for w in weekly_partitions.get_partition_keys()
        if world_start.isoformat() <= w and dt.date.fromisoformat(w) + dt.timedelta(days=7) <= world_end
    ]
    assert len(weeks) >= 7
    for asset in ("cost_delta_nodes_weekly", "cost_delta_resources_weekly"):
        assert set(weeks) <= instance.get_materialized_partitions(dg.AssetKey(asset)), asset
    instance.dispose()
    assert "Per account" in out and "Per service" in out
    assert "111111111111" in out and "AmazonEC2" in out
    assert f"chdb://{polo_home / 'clickhouse'}" in out
    assert "cost_aws" in out
    assert "newest first" in out and "usage" in out  # the drill-down's last step: one resource's events
    # the sample services: spans over OTLP/HTTP, the retry loop's operation first among the 15 minutes' movers, caught
    # by the 15-minute budget whose action called the throttle once, and the day reconciled to the hosts' bill
    spans = out[out.index("OpenTelemetry: ") :]
    movers = spans[spans.index("Which operation moved") :].splitlines()
    assert movers[3].startswith("otel:assistant/chat gpt-4o ")
    assert "caught by operation-15min-budget at 08:15:30 UTC: [critical] operation:prod/assistant/chat gpt-4o" in spans
    assert spans.count("its action called the throttle endpoint once") == 1
    reconciled = spans[spans.index("reconciled to it:") :].splitlines()[3:5]
    for line in reconciled:
        _, _, billed, estimated, reconciled, idle, total = line.split()
        assert total == billed and estimated != reconciled, line  # services + idle = the host's bill, to the cent
    # the spans' costs are a collector of their own
    assert cli.main(["status", "--json"]) == 0
    assert "cost_otel" in {c["collector"] for c in json.loads(capsys.readouterr().out)["collectors"]}
    assert cli.main(["status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["collectors"][0]["collector"] == "cost_aws" and status["collectors"][0]["days"] == 56
    # the inventory's events cost nothing: listed as activity, never inside the cost table
    assert "inventory_aws" not in {c["collector"] for c in status["collectors"]}
    assert [a["collector"] for a in status["activity"]] == ["activity_aws", "inventory_aws", "metrics_aws"]
    assert cli.main(["status"]) == 0
    text = capsys.readouterr().out
    assert text.index("cost_github") < text.index("Activity (") < text.index("inventory_aws")


def test_bad_dates_are_refused_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["summary", "--today", "22/11/2026"])
    assert info.value.code == 2
    assert "not a date" in capsys.readouterr().err


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    """A store after make run's steps: the sample world collected and the hierarchy built through Dagster (read-only here)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("POLO_HOME", str(tmp_path_factory.mktemp("cli") / "polo"))
        mp.delenv("DAGSTER_HOME", raising=False)
        mp.delenv("POLO_CLICKHOUSE_DSN", raising=False)
        forget_migrations()
        sample.write_sample(end=TODAY)
        assert cli.run_collection(*sample.sample_window()).success
        assert cli.run_hierarchy_refresh().success
        yield
    forget_migrations()


@pytest.mark.e2e
def test_delta_levels_in_the_terminal_and_as_json(collected, capsys):
    today = ["--today", TODAY.isoformat()]
    assert cli.main(["delta", *today]) == 0
    text = capsys.readouterr().out
    assert "Total cost 2026-11-09..2026-11-15" in text
    assert text.index("Top movers in marqo_logical") < text.index("Top movers in aws_account") < text.index("Top movers in platform")

    assert cli.main(["delta", *today, "--causes", "--json"]) == 0
    causes = {c["node_id"]: c for c in json.loads(capsys.readouterr().out)["causes"]}
    assert list(causes)[0] == "cluster:acme-prod-1"
    assert causes["platform:github"]["top_resource"].endswith("/actions/workflow/search/e2e.yml")  # the CI spike
    # the same workflow carries the same name among the causes and at Level 2
    name = causes["platform:github"]["top_resource_name"]
    assert cli.main(["delta", *today, "--json", "--node", "platform:github"]) == 0
    github = {r["resource_arn"]: r["resource_name"] for r in json.loads(capsys.readouterr().out)["resources"]}
    assert name and name == github[causes["platform:github"]["top_resource"]]
    assert cli.main(["delta", *today]) == 0
    assert f"{name} +$" in capsys.readouterr().out

    assert cli.main(["delta", *today, "--json", "--hierarchy", "marqo_logical", "--parent", "customer:acme"]) == 0
    level1 = json.loads(capsys.readouterr().out)
    assert {n["parent_id"] for n in level1["nodes"]["marqo_logical"]} == {"customer:acme"}

    assert cli.main(["delta", *today, "--json", "--node", "cluster:acme-prod-1"]) == 0
    level2 = json.loads(capsys.readouterr().out)
    total = sum(r["delta"] for r in level2["resources"]) + level2["other"]["delta"]
    assert total == pytest.approx(level2["node_delta"], abs=1e-9)
    assert {"new_resource", "cost_changed"} <= {r["change_type"] for r in level2["resources"]}

    arn = level2["resources"][0]["resource_arn"]
    assert cli.main(["delta", *today, "--json", "--resource", arn, "--limit", "100"]) == 0
    level3 = json.loads(capsys.readouterr().out)
    times = [e["event_time"] for e in level3["events"]]
    kinds = [e["event_type"] for e in level3["events"]]
    assert times == sorted(times, reverse=True) and kinds.count("cost") == 14 and kinds.count("metric") == 14
    assert level3["explanation"]["metric"]["name"] == "bytes processed"  # the NAT's traffic, four times the week before's
    # the trail's calls on the NAT sit among its costs, and the explanation names them
    assert {e["actor_name"] for e in level3["events"] if e["event_type"] == "config"} == {"alice@example.com"}
    assert "at the change: route 0.0.0.0/0 in rtb-0acme7e57 now via this NAT (alice@example.com)" in level3["explanation"]["text"]
    assert times[0].endswith("+00:00") and {"event_type", "value", "unit", "properties", "actor_name"} <= set(level3["events"][0])
    assert cli.main(["delta", *today, "--resource", arn]) == 0
    text = capsys.readouterr().out
    assert " USD" not in text and "$" in text and "alice@example.com" in text  # dollars as everywhere; who changed it
    assert "Explanation: bytes processed 4.0× (" in text and "; cost 3.6× from 2026-11-09" in text
    assert cli.main(["delta", *today, "--json", "--node", "platform:datadog"]) == 0
    quiet = json.loads(capsys.readouterr().out)["resources"][0]["resource_arn"]  # no one's name on it
    assert cli.main(["delta", *today, "--resource", quiet]) == 0
    assert "actor" not in capsys.readouterr().out  # no empty actor column

    assert (
        cli.main(
            [
                "delta",
                *today,
                "--since",
                "2026-11-01",
                "--until",
                "2026-11-14",
                "--compare-since",
                "2026-10-04",
                "--compare-until",
                "2026-10-17",
                "--json",
            ]
        )
        == 0
    )
    custom = json.loads(capsys.readouterr().out)
    assert custom["periods"] == {
        "current_start": "2026-11-01",
        "current_end": "2026-11-15",
        "compare_start": "2026-10-04",
        "compare_end": "2026-10-18",
    }


@pytest.mark.e2e
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--node", "cluster:nope"], "unknown node 'cluster:nope'"),
        (["--resource", "arn:aws:ec2:us-east-1:1:instance/i-nope"], "unknown resource"),
        (["--hierarchy", "org_chart"], "unknown hierarchy"),
        (["--since", "2026-11-10", "--until", "2026-11-09"], "--until 2026-11-09 is before --since 2026-11-10"),
        (["--since", "2026-11-09", "--until", "2026-11-15", "--compare-since", "2026-11-12", "--compare-until", "2026-11-20"], "overlap"),
        (["--since", "2026-11-09"], "go together"),
    ],
)
def test_delta_refuses_bad_requests_with_a_message_and_exit_2(collected, capsys, argv, message):
    assert cli.main(["delta", "--today", TODAY.isoformat(), *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.fixture(scope="module")
def evaluated(collected):
    """The sample world's rules evaluated through the inventory and rule jobs, at the sample's evening."""
    from polo_pipelines.sources.aws.sample_inventory import reference_time

    at = reference_time(TODAY)
    results = cli.run_rule_jobs(at)
    assert all(r.success for r in results)
    return at, results


def violations_metadata(result):
    """The rule_violations materialization of an evaluation step (the step also materializes budget_rules)."""
    (found,) = [m for m in result.asset_materializations_for_node("rule_violations") if m.asset_key == dg.AssetKey("rule_violations")]
    return found.metadata


@pytest.mark.e2e
def test_the_sample_breaks_each_default_rule_as_planted(evaluated, capsys):
    at, results = evaluated
    assert cli.main(["violations", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    per_rule = defaultdict(list)
    for row in rows:
        per_rule[row["rule_id"]].append(row["resource_arn"] or row["node_id"])
    assert len(per_rule["staging-off-hours"]) == 5 and all(":222222222222:instance/" in e for e in per_rule["staging-off-hours"])
    assert per_rule["sagemaker-notebook-limit"] == ["arn:aws:sagemaker:us-east-1:333333333333:notebook-instance/churn-exploration"]
    assert len(per_rule["untagged-resource-cost"]) == 1 and ":111111111111:instance/" in per_rule["untagged-resource-cost"][0]
    assert per_rule["testing-account-budget"] == ["account:testing"]
    assert per_rule["nat-cost-ratio"] == ["cluster:acme-prod-1"]

    checks = {}
    for result in results:
        for event in result.all_events:
            if event.event_type_value == "ASSET_CHECK_EVALUATION":
                data = event.event_specific_data
                checks[data.check_name] = (data.asset_key.to_user_string(), data.passed, data.severity.value)
    assert checks == {
        "rule_staging_off_hours": ("aws_inventory_events", False, "WARN"),
        "rule_sagemaker_notebook_limit": ("aws_inventory_events", False, "WARN"),
        "rule_untagged_resource_cost": ("resource_ancestry", False, "WARN"),
        "rule_testing_account_budget": ("aws_cost_events", False, "ERROR"),
        "rule_nat_cost_ratio": ("resource_ancestry", False, "WARN"),
        "rule_operation_15min_budget": ("resource_ancestry", True, "ERROR"),  # no spans in this world: nothing over
        "notifications_delivered": ("rule_violations", True, "WARN"),  # no channel configured: nothing failed
        "rule_file_valid": ("budget_rules", True, "ERROR"),
    }
    summary = violations_metadata(results[1])
    assert summary["open_critical"].value == 1 and "cluster:acme-prod-1" in {r.data["node_id"] for r in summary["compliance"].value.records}

    # the same evaluation again: nothing new is opened, nothing resolved
    again = cli.run_rule_jobs(at)
    metadata = violations_metadata(again[1])
    assert metadata["opened"].value == 0 and metadata["resolved"].value == 0

    assert cli.main(["compliance", "--node", "cluster:acme-prod-1"]) == 0
    line = capsys.readouterr().out  # the cluster's own NAT-ratio violation: one of (resources + the node itself) fails
    resources = int(line.split(" of ")[1].split()[0])
    assert line.startswith(f"cluster:acme-prod-1: {round(100 * resources / (resources + 1), 1):g}% compliant, 1 open violation(s)")
    assert cli.main(["violations", "--severity", "critical", "--scope", "account:testing"]) == 0
    out = capsys.readouterr().out
    assert "1 open violation(s)" in out and "testing-account-budget" in out

    # the table reads as text: no Python values, the state said in words
    assert cli.main(["violations", "--state", "all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("9 violation(s), open and resolved\n")
    assert not {"None", "False", "True", "NaT", "nan"} & set(out.split()) and " open " in out
    # a filter that cannot match anything is refused, naming the option and what it accepts
    for argv, message in (
        (["violations", "--severity", "urgent"], "--severity: 'urgent' is not one of info, warning, critical"),
        (["violations", "--type", "budgetz"], "--type: 'budgetz' is not one of budget, config, existence, lifecycle, ratio"),
        (["violations", "--scope", "customer:nobody"], "unknown node 'customer:nobody'"),
        (["compliance", "--node", "customer:nobody"], "unknown node 'customer:nobody'"),
        (["compliance", "--hierarchy", "nope"], "--hierarchy: unknown hierarchy 'nope'"),
    ):
        assert cli.main(argv) == 2, argv
        captured = capsys.readouterr()
        assert message in captured.err and not captured.out
    assert cli.main(["rules", "show", "testing-account-budget"]) == 0
    shown = capsys.readouterr().out
    assert "datetime" not in shown and 'start="' in shown


@pytest.mark.e2e
def test_rules_commands_edit_the_file_and_the_table(collected, tmp_path, capsys):
    path = tmp_path / "rules.yaml"
    path.write_text((Path(__file__).parents[1] / "config" / "rules.yaml").read_text())
    base = ["rules", "--file", str(path)]
    assert (
        cli.main(
            [
                *base[:1],
                "add",
                "no-io1-in-staging",
                *base[1:],
                "--type",
                "config",
                "--filter",
                "environment=staging",
                "--condition",
                "property=volume_type",
                "--condition",
                'not_in=["io1","io2"]',
                "--severity",
                "info",
            ]
        )
        == 0
    )
    assert "1 added" in capsys.readouterr().out
    assert cli.main([*base[:1], "list", *base[1:], "--json"]) == 0
    listed = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["no-io1-in-staging"]["cadence"] == "15min"
    assert cli.main([*base[:1], "disable", "nat-cost-ratio", *base[1:]]) == 0
    assert "1 changed" in capsys.readouterr().out
    assert cli.main([*base[:1], "show", "nat-cost-ratio", *base[1:], "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["enabled"] is False and "{max:Float64}" in shown["sql"]
    assert cli.main([*base[:1], "add", "bad", *base[1:], "--type", "budget", "--condition", "max_usd=lots"]) == 2
    assert "max_usd must be a number" in capsys.readouterr().err
    assert cli.main([*base[:1], "add", "nat-cost-ratio", *base[1:], "--type", "budget", "--condition", "max_usd=1"]) == 2
    assert "already in" in capsys.readouterr().err
    from polo_pipelines.rules import ruleset as rules

    assert [r.rule_id for r in rules.load(path)][-1] == "no-io1-in-staging"


@pytest.mark.parametrize(
    "compare, current, label",
    [
        (100.0, 150.0, "+50.0%"),
        (-2.9e-8, -1.9e-8, "—"),
        (0.0, 12.5, "new"),
        (0.004, 3.0, "new"),
        (40.0, 1e-9, "gone"),
        (-10.0, -5.0, "+50.0%"),
        (47.68, 47.68 - 1e-12, "0.0%"),  # noise, never "-0.0%"
    ],
)
def test_a_percentage_needs_a_base_of_at_least_a_cent(compare, current, label):
    from polo_pipelines.drilldown.delta import change_label

    assert change_label(compare, current) == label


def test_the_summary_prints_clean_figures_says_what_credits_offset_and_hides_zero_rows(polo_home, capsys):
    """Float noise printed as figures ($-0.00, +33.1% of -2.9e-8), usage fully offset by credits unsaid, every $0.00
    account listed: the summary of a real export read badly."""
    import datetime as dt

    import pandas as pd

    from polo_pipelines.store import polo_store
    from polo_pipelines.store.events import cost_events, day_range, replace_days

    days = day_range(dt.date(2026, 11, 2), dt.date(2026, 11, 16))  # the two weeks before Monday 2026-11-16
    rows = [("111111111111", "i-a", "Usage", 47.68 / 7, 47.68 / 7 + 1.0), ("111111111111", "i-a", "Credit", -47.68 / 7, -47.68 / 7)]
    rows += [(f"2222222222{n:02d}", f"i-z{n}", "Usage", 1e-9 * (n % 3 - 1), 0.0) for n in range(12)]  # noise and zeros
    events = [(a, r, c, v, b, d) for a, r, c, v, b in rows for d in days]
    frame = cost_events(
        resource_arn=[f"arn:aws:ec2:us-east-1:{e[0]}:instance/{e[1]}" for e in events],
        resource_type="ec2:instance",
        resource_name=[e[1] for e in events],
        day=pd.to_datetime([e[5] for e in events]),
        charge_category=[e[2] for e in events],
        value=[e[3] for e in events],
        billed_cost=[e[4] for e in events],
        list_cost=[e[4] for e in events],
        service="AmazonEC2",
        provider="AWS",
        properties=[{}] * len(events),
        collector="cost_aws",
        aws_account_id=[e[0] for e in events],
        aws_region="us-east-1",
    )
    with polo_store() as store:
        replace_days(store, frame, collector="cost_aws", days=days, source="test")
    assert cli.main(["summary", "--today", "2026-11-18"]) == 0
    out = capsys.readouterr().out
    assert "-0.00" not in out and "$-" not in out
    assert "Total: $0.00 last week, $0.00 vs the week before" in out
    assert "last week is $47.68 usage, -$47.68 credits" in out
    assert "$7.00 billed last week" in out  # the billed view differs: both are shown
    assert "(and 12 more with $0.00 in both weeks)" in out
    account_rows = out.split("Per account")[1].split("Per service")[0]
    assert "2222222222" not in account_rows and "111111111111" in account_rows and "billed_last_week" in account_rows
    assert "credits_last_week" in account_rows and "-$47.68" in account_rows  # what the credits offset, per account
    from polo_pipelines.hierarchy import ancestry
    from polo_pipelines.hierarchy.rollup import rebuild_node_rollup

    with polo_store() as store:
        ancestry.refresh(store, ancestry.load(ancestry.DEFAULT_FILE))
        rebuild_node_rollup(store)
    assert cli.main(["delta", "--today", "2026-11-18"]) == 0
    head = capsys.readouterr().out.splitlines()[:2]
    assert head[0] == "Total cost 2026-11-09..2026-11-15: $47.68 ($0.00, 0.0% vs 2026-11-02..2026-11-08)"  # not -0.0%
    assert head[1] == "  billed $54.68 ($54.68 the period before): commitments on the day they were billed"


def test_summary_accounts_are_named_from_the_organization():
    import pandas as pd

    from polo_pipelines.cli.report import account_names

    org = pd.DataFrame({"account_id": ["111111111111"], "account_name": ["shop"]})
    assert account_names(pd.Series(["111111111111", "222222222222", "Microsoft"]), org) == ["shop", "", ""]
    assert account_names(pd.Series(["111111111111"]), org.iloc[0:0]) == [""]


def test_service_level_lines_say_their_account():
    """Two accounts' service-level lines (no resource id) read alike as "us-east-1" in the causes."""
    from polo_pipelines.cli.report import short_name

    assert short_name("aws:111111111111/AmazonEC2/us-east-1") == "AmazonEC2/us-east-1 in 111111111111"
    assert short_name("aws:222222222222/AmazonEC2/us-east-1") == "AmazonEC2/us-east-1 in 222222222222"
    assert short_name("arn:aws:ec2:us-east-1:1:instance/i-1") == "i-1"
    assert short_name("arn:aws:rds:us-east-1:1:db:main") == "main"
