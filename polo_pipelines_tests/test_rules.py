"""Budget rules: validation, compilation that never puts a value into SQL, each rule type and the violation lifecycle
against the real store."""

from __future__ import annotations

import datetime as dt
import uuid

import pandas as pd
import pytest

from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup
from polo_pipelines.rules import evaluate
from polo_pipelines.rules import ruleset as rules
from polo_pipelines.sources.aws.inventory import Observed, changes
from polo_pipelines.store.events import cost_events, day_range, replace_days

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)  # Friday 23:00 in Melbourne
START, END = dt.date(2026, 11, 1), dt.date(2026, 11, 21)
HIERARCHIES = hy.parse(
    {
        "hierarchies": {
            "marqo_logical": {"levels": [{"type": "customer", "tag": "customer"}, {"type": "cluster", "tag": "cluster"}]},
            "aws_account": {"levels": [{"type": "account", "field": "aws_account_id", "names": {"333333333333": {"name": "testing"}}}]},
        }
    }
)
ACCOUNT = "333333333333"


def arn(kind: str, rid: str) -> str:
    return f"arn:aws:ec2:us-east-1:{ACCOUNT}:{kind}/{rid}"


# resource -> (type, USD a day, tags)
RESOURCES = {
    arn("instance", "i-a"): ("ec2:instance", 30.0, {"customer": "x", "cluster": "c1", "environment": "testing"}),
    arn("natgateway", "nat-1"): ("ec2:natgateway", 10.0, {"customer": "x", "cluster": "c1"}),
    arn("instance", "i-b"): ("ec2:instance", 50.0, {"customer": "x", "cluster": "c2"}),
    arn("natgateway", "nat-2"): ("ec2:natgateway", 2.0, {"customer": "x", "cluster": "c2"}),
    arn("instance", "i-bare"): ("ec2:instance", 5.0, {}),
}


def write_costs(store, resources=RESOURCES) -> None:
    days = day_range(START, END)
    rows = [(a, t, c, tags, d) for a, (t, c, tags) in resources.items() for d in days]
    frame = cost_events(
        resource_arn=[r[0] for r in rows],
        resource_type=[r[1] for r in rows],
        resource_name=[r[0].rsplit("/", 1)[1] for r in rows],
        day=pd.to_datetime([r[4] for r in rows]),
        charge_category="Usage",
        value=[r[2] for r in rows],
        billed_cost=[r[2] for r in rows],
        list_cost=[r[2] for r in rows],
        service="AmazonEC2",
        provider="AWS",
        properties=[{f"tag:{k}": v for k, v in r[3].items()} for r in rows],
        collector="cost_aws",
        aws_account_id=ACCOUNT,
        aws_region="us-east-1",
    )
    replace_days(store, frame, collector="cost_aws", days=days, source="test")


def write_state(store, observed: list[Observed], at: dt.datetime = NOW) -> None:
    previous = {}
    frame, _, _ = changes(observed, previous, at, set())
    store.insert_df("polo.resource_events", frame)


@pytest.fixture
def costs(store):
    write_costs(store)
    hy.refresh(store, HIERARCHIES)
    rebuild_node_rollup(store)
    return store


def rule(doc: dict) -> rules.Rule:
    return rules.parse_rule({"severity": "warning", **doc})


# ------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"id": "Bad Id", "type": "budget"}, "id must be"),
        ({"id": "r", "type": "forecast"}, "type must be one of"),
        ({"id": "r", "type": "budget", "condition": {"max_usd": 1}, "severity": "urgent"}, "severity must be one of"),
        ({"id": "r", "type": "budget", "condition": {"max_usd": 1}, "colour": "red"}, "unknown key(s) colour"),
        ({"id": "r", "type": "budget", "condition": {}}, "needs condition.max_usd"),
        ({"id": "r", "type": "budget", "condition": {"max_usd": -3}}, "max_usd must be >= 0"),
        ({"id": "r", "type": "budget", "condition": {"max_usd": 1, "period": "year"}}, "period must be one of"),
        ({"id": "r", "type": "budget", "scope": {"node": "account:testing"}, "condition": {"max_usd": 1}}, "needs its hierarchy"),
        (
            {"id": "r", "type": "budget", "scope": {"hierarchy": "h", "node": "x", "node_type": "y"}, "condition": {"max_usd": 1}},
            "not both",
        ),
        ({"id": "r", "type": "budget", "scope": {"filters": {"colour": ["red"]}}, "condition": {"max_usd": 1}}, "unknown key(s) colour"),
        ({"id": "r", "type": "config", "condition": {"property": "volume_type", "in": ["gp3"], "not_in": ["io1"]}}, "exactly one of"),
        ({"id": "r", "type": "ratio", "condition": {"numerator": {"service": "x"}, "max_ratio": 15}}, "fraction"),
        (
            {"id": "r", "type": "existence", "condition": {"state": "running", "outside_business_hours": {"timezone": "Mars/Olympus"}}},
            "unknown time zone",
        ),
        (
            {"id": "r", "type": "existence", "condition": {"state": "running", "outside_business_hours": {"days": "weekdays"}}},
            "days must look like",
        ),
        ({"id": "r", "type": "budget", "condition": {"max_usd": 1}, "channel": "pager"}, "channel must be"),
    ],
)
def test_bad_rules_are_refused_with_where_and_why(doc, message):
    with pytest.raises(rules.RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        rules.parse_rule(doc)


def test_rule_file_round_trip_and_duplicates(tmp_path):
    defaults = rules.default_rules()
    assert [r.rule_id for r in defaults] == [
        "staging-off-hours",
        "sagemaker-notebook-limit",
        "untagged-resource-cost",
        "testing-account-budget",
        "nat-cost-ratio",
        "operation-15min-budget",
    ]
    path = tmp_path / "rules.yaml"
    rules.save(defaults, path)
    assert rules.load(path) == defaults
    with pytest.raises(rules.RuleError, match="duplicate rule id"):
        rules.parse({"rules": [rules.default_rules()[0].to_doc()] * 2})
    path.write_text("rules:\n  - id: a\n    id: b\n")
    with pytest.raises(rules.RuleError, match="duplicate key"):
        rules.load(path)


def test_business_hours_follow_melbourne_daylight_saving():
    hours = rules.BusinessHours()
    # Monday 08:30 local: AEST (UTC+10) before 2026-10-04, AEDT (UTC+11) after
    assert hours.contains(dt.datetime(2026, 9, 27, 22, 30, tzinfo=dt.UTC))
    assert hours.contains(dt.datetime(2026, 10, 4, 21, 30, tzinfo=dt.UTC))
    # the same UTC clock time is 07:30 local before the change: outside
    assert not hours.contains(dt.datetime(2026, 9, 27, 21, 30, tzinfo=dt.UTC))
    assert not hours.contains(dt.datetime(2026, 10, 3, 1, 0, tzinfo=dt.UTC))  # Saturday
    # back to AEST on 2027-04-04: Monday 17:30 local is 07:30 UTC, 18:30 local is outside
    assert hours.contains(dt.datetime(2027, 4, 5, 7, 30, tzinfo=dt.UTC))
    assert not hours.contains(dt.datetime(2027, 4, 5, 8, 30, tzinfo=dt.UTC))


# ------------------------------------------------------------ no value becomes SQL


HOSTILE = "x'; DROP TABLE polo.resource_events; --"


def test_hostile_names_and_values_stay_parameters(costs):
    hostile = [
        rule(
            {
                "id": "h1",
                "type": "budget",
                "scope": {"hierarchy": HOSTILE, "node": f"account:{HOSTILE}", "filters": {"tags": {HOSTILE: [HOSTILE]}}},
                "condition": {"max_usd": 0},
            }
        ),
        rule(
            {
                "id": "h2",
                "type": "ratio",
                "scope": {"hierarchy": "marqo_logical", "node_type": HOSTILE, "filters": {"environment": [HOSTILE]}},
                "condition": {"numerator": {"service": [HOSTILE], "resource_type": ["`"]}, "max_ratio": 0},
            }
        ),
        rule(
            {
                "id": "h3",
                "type": "config",
                "scope": {"filters": {"resource_type": [HOSTILE]}},
                "condition": {"property": HOSTILE, "not_in": [HOSTILE, "')"]},
            }
        ),
        rule({"id": "h4", "type": "existence", "condition": {"state": [HOSTILE], "max_count": 0}}),
        rule(
            {
                "id": "h5",
                "type": "lifecycle",
                "scope": {"filters": {"aws_account_id": ["1' OR '1'='1"]}},
                "condition": {"state": [HOSTILE], "max_hours": 0},
            }
        ),
    ]
    for r in hostile:
        compiled = rules.compile_rule(r, NOW)
        assert HOSTILE not in compiled.sql and "1'='1" not in compiled.sql and "`" not in compiled.sql.replace("``", "")
        assert evaluate.breaches(costs, r, NOW).empty
    assert costs.query_df("SELECT count() AS n FROM polo.resource_events")["n"][0] > 0


# ------------------------------------------------------------ each type against the store


def test_budget_per_node_and_the_projected_warning(costs):
    over = rule(
        {
            "id": "b",
            "type": "budget",
            "scope": {"hierarchy": "aws_account", "node": "account:testing"},
            "condition": {"max_usd": 1500, "period": "month"},
        }
    )
    found = evaluate.breaches(costs, over, NOW)
    # Nov 1..20 (data through the 20th): 97 USD a day x 20 days
    assert found.to_dict("records") == [
        {
            "resource_arn": "",
            "node_id": "account:testing",
            "actual_value": pytest.approx(1940.0),
            "threshold_value": 1500.0,
            "kind": "breach",
        }
    ]
    heading = rule(
        {
            "id": "p",
            "type": "budget",
            "scope": {"hierarchy": "aws_account", "node": "account:testing"},
            "condition": {"max_usd": 2500, "period": "month"},
        }
    )
    found = evaluate.breaches(costs, heading, NOW)
    assert list(found["kind"]) == ["projected"]  # 1,940 after 19 complete days heads for ~3,063 in November
    assert found["actual_value"][0] == pytest.approx(1940.0 / 19 * 30)
    quiet = rule(
        {
            "id": "q",
            "type": "budget",
            "scope": {"hierarchy": "aws_account", "node": "account:testing"},
            "condition": {"max_usd": 5000, "period": "month"},
        }
    )
    assert evaluate.breaches(costs, quiet, NOW).empty


def test_budget_per_resource_for_untagged_resources(costs):
    untagged = rule(
        {
            "id": "u",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
        }
    )
    found = evaluate.breaches(costs, untagged, NOW)
    assert found[["resource_arn", "actual_value"]].to_dict("records") == [{"resource_arn": arn("instance", "i-bare"), "actual_value": 5.0}]


def test_an_evaluation_where_nothing_breaches_and_nothing_is_open(store):
    """No breach and no open violation (a fresh store whose rules all hold): the two empty frames were merged on keys
    of different types and the evaluation failed."""
    write_costs(store)
    untagged = rule(
        {
            "id": "u",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
        }
    )
    result = evaluate.evaluate(store, [untagged], NOW)  # no hierarchy built: no resource is known to be untagged
    assert (result.rules, result.opened, result.resolved) == (1, 0, 0)


def test_ratio_per_cluster(costs):
    nat = rule(
        {
            "id": "n",
            "type": "ratio",
            "scope": {"hierarchy": "marqo_logical", "node_type": "cluster"},
            "condition": {"numerator": {"resource_type": ["ec2:natgateway"]}, "max_ratio": 0.15, "period": "week"},
        }
    )
    found = evaluate.breaches(costs, nat, NOW)
    assert found[["node_id", "actual_value"]].to_dict("records") == [{"node_id": "cluster:c1", "actual_value": pytest.approx(10 / 40)}]


def observed(rid: str, kind: str, props: dict) -> Observed:
    return Observed(arn(kind.split(":")[1], rid), kind, rid, ACCOUNT, "us-east-1", props)


def test_existence_outside_business_hours_only(costs):
    write_state(
        costs,
        [
            observed("i-s1", "ec2:instance", {"state": "running", "tag:environment": "staging"}),
            observed("i-s2", "ec2:instance", {"state": "stopped", "tag:environment": "staging"}),
            observed("i-p1", "ec2:instance", {"state": "running", "tag:environment": "prod"}),
        ],
    )
    off_hours = rules.default_rules()[0]
    assert set(evaluate.breaches(costs, off_hours, NOW)["resource_arn"]) == {arn("instance", "i-s1")}
    monday_morning = dt.datetime(2026, 11, 22, 22, 0, tzinfo=dt.UTC)  # Monday 09:00 in Melbourne
    assert evaluate.breaches(costs, off_hours, monday_morning).empty


def test_config_and_lifecycle_rules(costs):
    write_state(
        costs,
        [
            observed("vol-1", "ec2:volume", {"state": "in-use", "volume_type": "io1", "tag:environment": "staging"}),
            observed("vol-2", "ec2:volume", {"state": "in-use", "volume_type": "gp3", "tag:environment": "staging"}),
            observed("vol-3", "ec2:volume", {"state": "in-use", "volume_type": "io2", "tag:environment": "prod"}),
            Observed(
                "arn:aws:sagemaker:us-east-1:3:notebook-instance/old",
                "sagemaker:notebook-instance",
                "old",
                ACCOUNT,
                "us-east-1",
                {"state": "InService", "state_since": "2026-11-20T02:00:00Z"},
            ),
            Observed(
                "arn:aws:sagemaker:us-east-1:3:notebook-instance/new",
                "sagemaker:notebook-instance",
                "new",
                ACCOUNT,
                "us-east-1",
                {"state": "InService", "state_since": "2026-11-20T09:00:00Z"},
            ),
        ],
    )
    no_io = rule(
        {
            "id": "io",
            "type": "config",
            "scope": {"filters": {"environment": ["staging"]}},
            "condition": {"property": "volume_type", "not_in": ["io1", "io2"]},
        }
    )
    assert list(evaluate.breaches(costs, no_io, NOW)["resource_arn"]) == [arn("volume", "vol-1")]
    only_gp3 = rule(
        {
            "id": "gp3",
            "type": "config",
            "scope": {"filters": {"resource_type": ["ec2:volume"]}},
            "condition": {"property": "volume_type", "in": ["gp3"]},
        }
    )
    assert set(evaluate.breaches(costs, only_gp3, NOW)["resource_arn"]) == {arn("volume", "vol-1"), arn("volume", "vol-3")}
    notebooks = rules.default_rules()[1]
    found = evaluate.breaches(costs, notebooks, NOW)
    assert found[["resource_arn", "actual_value"]].to_dict("records") == [
        {"resource_arn": "arn:aws:sagemaker:us-east-1:3:notebook-instance/old", "actual_value": pytest.approx(10.0)}
    ]


# ------------------------------------------------------------ the violation lifecycle


def test_violations_open_persist_resolve_and_reopen(costs):
    budget = rule(
        {
            "id": "life",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
        }
    )
    first = evaluate.evaluate(costs, [budget], NOW)
    assert (first.opened, first.resolved, first.persisting) == (1, 0, 0)
    again = evaluate.evaluate(costs, [budget], NOW + dt.timedelta(hours=1))
    assert (again.opened, again.resolved, again.persisting) == (0, 0, 1)
    all_rows = evaluate.violations(costs, state="all")
    assert len(all_rows) == 1  # no duplicate across evaluations
    opened_id = all_rows["violation_id"][0]
    assert uuid.UUID(str(opened_id))

    # the resource gets its tag: the breach ends, the violation is resolved
    tagged = {**RESOURCES, arn("instance", "i-bare"): ("ec2:instance", 5.0, {"team": "ops"})}
    write_costs(costs, tagged)
    hy.refresh(costs, HIERARCHIES)
    resolved = evaluate.evaluate(costs, [budget], NOW + dt.timedelta(hours=2))
    assert (resolved.opened, resolved.resolved) == (0, 1)
    closed = evaluate.violations(costs, state="resolved")
    assert list(closed["violation_id"]) == [opened_id] and closed["resolved_at"].notna().all()

    # the tag is removed again: a new violation, with its own id
    write_costs(costs)
    hy.refresh(costs, HIERARCHIES)
    back = evaluate.evaluate(costs, [budget], NOW + dt.timedelta(hours=3))
    assert back.opened == 1
    every = evaluate.violations(costs, state="all")
    assert len(every) == 2 and len(set(every["violation_id"])) == 2
    assert list(evaluate.violations(costs, state="open")["violation_id"]) != [opened_id]


def test_a_clock_that_goes_backwards_does_not_lose_a_resolution(costs, monkeypatch):
    import time

    budget = rule(
        {
            "id": "clock",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
        }
    )
    assert evaluate.evaluate(costs, [budget], NOW).opened == 1
    # the host's clock is set back a day (an NTP step, a restored VM) before the breach ends
    wall = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: wall - 86_400 * 10**9)
    write_costs(costs, {**RESOURCES, arn("instance", "i-bare"): ("ec2:instance", 5.0, {"team": "ops"})})
    hy.refresh(costs, HIERARCHIES)
    assert evaluate.evaluate(costs, [budget], NOW + dt.timedelta(hours=2)).resolved == 1
    assert evaluate.violations(costs, state="open").empty
    assert len(evaluate.violations(costs, state="resolved")) == 1


def test_disabled_rules_are_not_evaluated_and_compliance_counts_nodes(costs):
    nat = rule(
        {
            "id": "n",
            "type": "ratio",
            "scope": {"hierarchy": "marqo_logical", "node_type": "cluster"},
            "condition": {"numerator": {"resource_type": ["ec2:natgateway"]}, "max_ratio": 0.15},
        }
    )
    untagged = rule(
        {
            "id": "u",
            "type": "budget",
            "scope": {"filters": {"untagged": True}},
            "condition": {"max_usd": 1, "period": "day", "per": "resource"},
            "enabled": False,
        }
    )
    result = evaluate.evaluate(costs, [nat, untagged], NOW)
    assert result.rules == 1 and result.opened == 1
    scores = evaluate.compliance(costs, "marqo_logical").set_index("node_id")
    assert scores.loc["cluster:c1", "open_violations"] == 1 and scores.loc["cluster:c1", "compliance_pct"] == pytest.approx(
        100 * 2 / 3, abs=0.1
    )
    assert scores.loc["cluster:c2", "compliance_pct"] == 100.0
    by_scope = evaluate.violations(costs, scope="cluster:c1")
    assert list(by_scope["node_id"]) == ["cluster:c1"]
    assert evaluate.violations(costs, severity=["critical"]).empty and len(evaluate.violations(costs, rule_type=["ratio"])) == 1


def test_rules_sync_versions_and_disables_removed_rules(store):
    defaults = rules.default_rules()
    assert set(rules.stored(store)) == {r.rule_id for r in defaults}  # seeded by the migration
    assert rules.sync(store, defaults) == {"added": 0, "changed": 0, "disabled": 0}
    changed = [rules.Rule(**{**defaults[3].__dict__, "condition": {**defaults[3].condition, "max_usd": 750.0}})]
    assert rules.sync(store, changed) == {"added": 0, "changed": 1, "disabled": 5}
    held = rules.stored(store)
    assert held["testing-account-budget"].condition["max_usd"] == 750.0
    assert not held["nat-cost-ratio"].enabled


def test_shared_snapshots_give_the_same_breaches_as_each_rule_alone(costs):
    """evaluate() reads per-evaluation snapshots (window costs, node costs, inventory state): same answers."""
    write_state(costs, [observed("i-s1", "ec2:instance", {"state": "running", "tag:environment": "staging"})])
    mixed = [
        rule(
            {
                "id": "m1",
                "type": "budget",
                "scope": {"hierarchy": "marqo_logical", "node_type": "cluster", "filters": {"resource_type": ["ec2:natgateway"]}},
                "condition": {"max_usd": 10, "period": "week"},
            }
        ),
        rule(
            {
                "id": "m2",
                "type": "budget",
                "scope": {"hierarchy": "marqo_logical", "node": "customer:x", "filters": {"tags": {"cluster": ["c2"]}}},
                "condition": {"max_usd": 100, "period": "month"},
            }
        ),
        rule(
            {
                "id": "m3",
                "type": "budget",
                "scope": {"hierarchy": "marqo_logical", "node": "cluster:c1"},
                "condition": {"max_usd": 5, "period": "day", "per": "resource"},
            }
        ),
        rule(
            {
                "id": "m4",
                "type": "ratio",
                "scope": {"hierarchy": "marqo_logical", "node_type": "customer"},
                "condition": {"numerator": {"tags": {"cluster": ["c1"]}}, "max_ratio": 0.2, "period": "month"},
            }
        ),
        rule(
            {
                "id": "m5",
                "type": "budget",
                "scope": {"hierarchy": "marqo_logical", "node_type": "cluster"},
                "condition": {"max_usd": 100, "period": "week"},
            }
        ),
        rules.default_rules()[0],
    ]
    alone = {r.rule_id: evaluate.breaches(costs, r, NOW) for r in mixed}
    assert all(not frame.empty for frame in alone.values())
    result = evaluate.evaluate(costs, mixed, NOW)
    shared = result.breaches
    for r in mixed:
        mine = shared[shared["rule_id"] == r.rule_id].drop(columns="rule_id")
        key = ["resource_arn", "node_id", "kind"]
        expected = alone[r.rule_id].sort_values(key).reset_index(drop=True)
        got = mine.sort_values(key).reset_index(drop=True)
        assert got[key].equals(expected[key]), r.rule_id
        assert got["actual_value"].to_numpy() == pytest.approx(expected["actual_value"].to_numpy()), r.rule_id
