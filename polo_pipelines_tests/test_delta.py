"""Hierarchy and delta decomposition, checked against an independent computation over the raw events."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pandas as pd
import pytest

from polo_pipelines.drilldown import delta
from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup
from polo_pipelines.sources import sample
from polo_pipelines.sources.aws import cur
from polo_pipelines.sources.aws import sample as aws_sample
from polo_pipelines.sources.locations import open_location
from polo_pipelines.store import forget_migrations, polo_store
from polo_pipelines.store.events import day_range, replace_days

from .conftest import TODAY

PERIODS = delta.Periods.last_complete_week(TODAY)
EXCLUDED = {"Tax", "Credit", "Adjustment"}


@pytest.fixture(scope="module")
def world_store(tmp_path_factory):
    """The sample world collected, its ancestry built: the store as make run leaves it (read-only here)."""
    home = tmp_path_factory.mktemp("delta")
    forget_migrations()
    root = sample.write_sample(end=TODAY, root=home / "sample")
    start, end = sample.sample_window(root)
    with polo_store(f"chdb://{home / 'clickhouse'}") as store:
        window = cur.collect(open_location(str(aws_sample.export_root(root))), "polo-sample", start, end)
        replace_days(store, window.events, collector=cur.COLLECTOR, days=day_range(start, end), source="sample")
        hy.refresh(store, hy.load())
        rebuild_node_rollup(store)
        yield store
    forget_migrations()


def raw_costs(store) -> pd.DataFrame:
    """Every cost event with its tags and account, straight from resource_events."""
    frame = store.query_df(
        "SELECT resource_arn, toDate(event_time) AS day, value, charge_category, aws_account_id, properties "
        "FROM polo.resource_events WHERE event_type = 'cost'"
    )
    frame["day"] = pd.to_datetime(frame["day"]).dt.date
    frame["cluster"] = [p.get("tag:cluster", "") for p in frame["properties"]]
    frame["customer"] = [p.get("tag:customer", "") for p in frame["properties"]]
    return frame[~frame["charge_category"].isin(EXCLUDED)]


def period_deltas(frame: pd.DataFrame, key) -> dict:
    out = defaultdict(float)
    for row in frame.itertuples():
        k = key(row)
        if k is None:
            continue
        if PERIODS.current_start <= row.day < PERIODS.current_end:
            out[k] += row.value
        elif PERIODS.compare_start <= row.day < PERIODS.compare_end:
            out[k] -= row.value
    return out


def test_level_1_matches_the_raw_events_in_every_hierarchy(world_store):
    raw = raw_costs(world_store)
    names = {"111111111111": "prod", "222222222222": "staging", "333333333333": "testing"}
    expected = {
        "aws_account": period_deltas(raw, lambda r: f"account:{names[r.aws_account_id]}"),
        "platform": period_deltas(raw, lambda r: "platform:aws"),
        "marqo_logical": {
            **period_deltas(raw, lambda r: f"cluster:{r.cluster}" if r.cluster else None),
            **period_deltas(raw, lambda r: f"customer:{r.customer}" if r.customer else "customer:untagged"),
        },
    }
    settings = delta.Settings(node_threshold=0.0)
    for h, want in expected.items():
        got = delta.node_deltas(world_store, h, PERIODS, settings=settings, limit=None).set_index("node_id")["delta"]
        assert set(got.index) == {k for k, v in want.items() if abs(v) > 0}, h
        for node, value in want.items():
            assert got[node] == pytest.approx(value, abs=1e-6), (h, node)
        assert list(got.abs()) == sorted(got.abs(), reverse=True)


def test_level_1_thresholds_children_and_pct(world_store):
    top = delta.node_deltas(world_store, "marqo_logical", PERIODS)
    assert (top["delta"].abs() > 1.0).all()
    children = delta.node_deltas(world_store, "marqo_logical", PERIODS, parent="customer:acme", settings=delta.Settings(node_threshold=0))
    assert set(children["node_id"]) <= {"cluster:acme-prod-1", "cluster:acme-prod-2"}
    assert (children["parent_id"] == "customer:acme").all()
    acme = delta.node_deltas(world_store, "marqo_logical", PERIODS, settings=delta.Settings(node_threshold=0), limit=None).set_index(
        "node_id"
    )
    # A customer's delta is its clusters' plus that of the resources tagged with no cluster (its buckets).
    raw = raw_costs(world_store)
    direct = period_deltas(raw[(raw["customer"] == "acme") & (raw["cluster"] == "")], lambda r: "direct")["direct"]
    assert children["delta"].sum() + direct == pytest.approx(acme.loc["customer:acme", "delta"], abs=1e-6)
    assert delta.pct_change(0.0, 12.0) is None
    assert delta.pct_change(10.0, 15.0) == pytest.approx(50.0)


@pytest.mark.parametrize("node", ["cluster:acme-prod-1", "account:staging", "customer:beta", "customer:untagged", "platform:aws"])
def test_level_2_lines_plus_other_add_up_to_the_node(world_store, node):
    level2 = delta.resource_deltas(world_store, node, PERIODS)
    level1 = delta.node_deltas(world_store, level2.hierarchy, PERIODS, settings=delta.Settings(node_threshold=0), limit=None)
    node_delta = float(level1.set_index("node_id").loc[node, "delta"])
    assert level2.lines["delta"].sum() + level2.other == pytest.approx(node_delta, abs=1e-9)
    assert level2.node_delta == pytest.approx(node_delta, abs=1e-9)
    assert (level2.lines["delta"].abs() > 0.5).all()
    assert list(level2.lines["delta"].abs()) == sorted(level2.lines["delta"].abs(), reverse=True)


@pytest.mark.parametrize("cluster", ["acme-prod-1", "staging-1", "test-1"])
def test_level_2_matches_the_raw_events_resource_by_resource(world_store, cluster):
    raw = raw_costs(world_store)
    want = period_deltas(raw[raw["cluster"] == cluster], lambda r: r.resource_arn)
    result = delta.resource_deltas(world_store, f"cluster:{cluster}", PERIODS, settings=delta.Settings(resource_threshold=1e-6))
    got = result.lines.set_index("resource_arn")["delta"]
    assert set(got.index) == {arn for arn, value in want.items() if abs(value) > 1e-6}
    for arn, value in got.items():
        assert value == pytest.approx(want[arn], abs=1e-6), arn
    assert result.other == pytest.approx(0.0, abs=1e-6) and result.hierarchy == "marqo_logical"


def test_level_2_change_types_and_details(world_store):
    acme = delta.resource_deltas(world_store, "cluster:acme-prod-1", PERIODS).lines.set_index("resource_type", append=True)
    new = acme[acme["change_type"] == "new_resource"]
    assert len(new) == 5 and set(new["created_by"]) == {"alice@example.com"}
    assert (new["compare_cost"] == 0).all()
    nat = acme.xs("ec2:natgateway", level="resource_type")
    assert nat["change_type"].tolist() == ["cost_changed"]
    # The NAT gateway carried four times its traffic: its data charges quadrupled.
    assert nat["current_cost"].iloc[0] > 3 * nat["compare_cost"].iloc[0]
    terminated = delta.resource_deltas(world_store, "cluster:test-1", PERIODS).lines
    assert "terminated" in set(terminated["change_type"])
    assert (terminated.loc[terminated["change_type"] == "terminated", "current_cost"] == 0).all()


def test_causes_name_the_most_concrete_node_and_count_each_resource_once(world_store):
    found = delta.causes(world_store, PERIODS, catch_all={"customer:untagged"}, limit=50)
    assert found["node_id"].iloc[0] == "cluster:acme-prod-1"
    ids = set(found["node_id"])
    assert {"cluster:staging-1", "cluster:beta-prod-1"} <= ids
    # their parents (and the accounts and platform over the same resources) are explained by them, not listed again
    assert not ids & {"customer:acme", "customer:beta", "account:prod", "account:staging", "platform:aws"}
    # each resource once: the causes' resources are disjoint, so their deltas add up to no more than all the moves
    frame = delta.resource_frame(world_store, PERIODS)
    assert found["delta"].abs().sum() <= frame["delta"].abs().sum() + 1e-6
    assert (found["delta"].abs() <= found["node_delta"].abs() + 1e-6).all()
    acme = found.iloc[0]
    assert acme["delta"] == pytest.approx(acme["node_delta"]) and "natgateway" in acme["top_resource"]


def test_credits_and_tax_are_left_out_unless_asked(world_store):
    month_start = TODAY.replace(day=1)
    periods = delta.Periods.preceding(month_start, month_start + dt.timedelta(days=7))
    usage = delta.totals(world_store, periods)
    everything = delta.totals(world_store, periods, delta.Settings(include_non_usage=True))
    # The sample world bills $31.50 tax and a $50 credit on the first of each month.
    assert everything[1] - usage[1] == pytest.approx(31.5 - 50.0)


def test_level_3_is_newest_first_within_the_window(world_store):
    arn = delta.resource_deltas(world_store, "cluster:acme-prod-1", PERIODS).lines["resource_arn"][0]
    events = delta.resource_timeline(world_store, arn, PERIODS.compare_start, PERIODS.current_end)
    times = [e.event_time for e in events]
    assert times == sorted(times, reverse=True)
    assert all(t.tzinfo == dt.UTC for t in times)
    assert min(times).date() >= PERIODS.compare_start and max(times).date() < PERIODS.current_end
    assert len(events) == 14


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: delta.resource_deltas(s, "cluster:nope", PERIODS), "unknown node"),
        (lambda s: delta.node_deltas(s, "marqo_logical", PERIODS, parent="customer:nobody"), "unknown node"),
        (lambda s: delta.node_deltas(s, "org_chart", PERIODS), "unknown hierarchy"),
        (
            lambda s: delta.resource_timeline(s, "arn:aws:ec2:us-east-1:1:instance/i-missing", TODAY - dt.timedelta(days=7), TODAY),
            "unknown resource",
        ),
    ],
)
def test_unknown_names_are_refused(world_store, call, message):
    with pytest.raises(delta.DeltaError, match=message):
        call(world_store)


def test_bad_periods_are_refused():
    d = dt.date(2026, 11, 9)
    with pytest.raises(delta.DeltaError, match="inverted"):
        delta.Periods(d, d, d - dt.timedelta(days=7), d - dt.timedelta(days=1))
    with pytest.raises(delta.DeltaError, match="overlap"):
        delta.Periods(d, d + dt.timedelta(days=7), d - dt.timedelta(days=3), d + dt.timedelta(days=1))
    week = delta.Periods.last_complete_week(dt.date(2026, 11, 18))
    assert (week.current_start, week.current_end, week.compare_start) == (dt.date(2026, 11, 9), dt.date(2026, 11, 16), dt.date(2026, 11, 2))


# ------------------------------------------------------------ the hierarchy file


@pytest.mark.parametrize(
    "text, message",
    [
        ("hierarchies:\n  a:\n    levels:\n      - {type: x, tag: t}\n  a:\n    levels:\n      - {type: y, tag: t}\n", "duplicate key 'a'"),
        (
            "hierarchies:\n  a:\n    levels:\n      - {type: x, tag: t}\n    parents: {'x:1': 'y:1', 'y:1': 'x:1'}\n",
            "cycle: x:1 -> y:1 -> x:1",
        ),
        (
            "hierarchies:\n  a:\n    levels:\n      - type: account\n        field: aws_account_id\n        names: {'1': {name: prod}, '2': {name: prod}}\n",
            "duplicate node account:prod",
        ),
        ("hierarchies:\n  a:\n    levels:\n      - {type: x, tag: t}\n      - {type: x, tag: u}\n", "duplicate node type 'x'"),
        ("hierarchies:\n  a:\n    levels:\n      - {type: x}\n", "exactly one of 'tag', 'field' or 'property'"),
        ("hierarchies:\n  a:\n    levels:\n      - {type: x, field: colour}\n", "field 'colour' is not one of"),
        ("hierarchies:\n  a:\n    levels: []\n", "non-empty list of levels"),
        (
            "hierarchies:\n  a:\n    levls:\n      - {type: x, tag: t}\n",
            "unknown key(s) levls; allowed: description, levels, parents, unassigned",
        ),
        ("hierarchies: [\n", "not valid YAML"),
        ("hierarchies:\n  2026:\n    levels:\n      - {type: x, tag: t}\n", "name must be text (got int 2026"),
        ("hierarchies:\n  a:\n    levels:\n      - {type: x, tag: 7}\n", "'tag' must be text"),
    ],
)
def test_a_bad_hierarchy_file_is_refused_with_its_place(tmp_path, text, message):
    path = tmp_path / "hierarchy.yaml"
    path.write_text(text)
    with pytest.raises(hy.HierarchyError) as info:
        hy.load(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_the_shipped_hierarchy_file_is_valid():
    loaded = hy.load()
    assert set(loaded) == {"marqo_logical", "aws_account", "platform"}
    assert loaded["marqo_logical"].node_types == ("customer", "cluster")


def test_ancestry_rows_at_every_depth_with_majority_parents_and_pins():
    hierarchies = hy.parse(
        {
            "hierarchies": {
                "logical": {
                    "levels": [{"type": "customer", "tag": "customer"}, {"type": "cluster", "tag": "cluster"}],
                    "unassigned": "customer:untagged",
                    "parents": {"customer:acme": "segment:enterprise"},
                }
            }
        }
    )
    resources = pd.DataFrame(
        {
            "resource_arn": ["r1", "r2", "r3", "r4", "r5"],
            "tag:customer": ["acme", "acme", "beta", "", ""],
            "tag:cluster": ["c1", "c1", "c1", "c2", ""],
        }
    )
    result = hy.build_ancestry(hierarchies, resources)
    rows = {(r.resource_arn, r.ancestor_id): (r.depth, r.parent_id) for r in result.rows.itertuples()}
    # c1's resources say acme twice and beta once: acme wins, and the disagreement is reported.
    assert rows[("r3", "cluster:c1")] == (3, "customer:acme")
    assert rows[("r3", "customer:acme")] == (2, "segment:enterprise")
    assert rows[("r3", "segment:enterprise")] == (1, "")
    assert ("r3", "customer:beta") not in rows
    assert result.conflicts["logical"] == ["cluster:c1"]
    assert rows[("r4", "cluster:c2")] == (1, "")  # a cluster nobody places under a customer stands at the top
    assert rows[("r5", "customer:untagged")] == (1, "")
    assert result.unplaced["logical"] == 0


# ------------------------------------------------------------ the weekly deltas

from polo_pipelines.drilldown import weekly  # noqa: E402


def test_weekly_tables_hold_the_week_and_rewriting_changes_nothing(world_store):
    week = PERIODS.current_start
    for _ in range(2):
        weekly.write_week(world_store, "polo.cost_delta_nodes_weekly", week, weekly.node_deltas(world_store, week))
        weekly.write_week(world_store, "polo.cost_delta_resources_weekly", week, weekly.resource_deltas(world_store, week))
    nodes = world_store.query_df(
        "SELECT hierarchy, node_id, delta, pct_change FROM polo.cost_delta_nodes_weekly WHERE week_start = {w:Date}", {"w": week}
    )
    level1 = delta.node_deltas(world_store, "marqo_logical", PERIODS, limit=None).set_index("node_id")["delta"]
    stored = nodes[nodes["hierarchy"] == "marqo_logical"].set_index("node_id")["delta"]
    assert stored.sort_index().round(6).to_dict() == level1.sort_index().round(6).to_dict()
    resources = world_store.query_df(
        "SELECT resource_arn, change_type, created_by FROM polo.cost_delta_resources_weekly WHERE week_start = {w:Date}", {"w": week}
    )
    assert not resources["resource_arn"].duplicated().any()
    assert (resources[resources["created_by"] == "alice@example.com"]["change_type"] == "new_resource").all()
    with pytest.raises(delta.DeltaError, match="not a Monday"):
        delta.Periods.week(week + dt.timedelta(days=1))


def test_a_week_is_ready_when_every_active_collector_has_its_seven_days():
    week = dt.date(2026, 11, 9)
    days = {d.isoformat() for d in weekly.week_days(week)}
    assert weekly.week_ready({"aws": days, "focus": set()}, week)
    assert not weekly.week_ready({"aws": days - {"2026-11-15"}, "focus": set()}, week)
    assert not weekly.week_ready({"aws": days, "focus": {"2026-11-09"}}, week)
    assert not weekly.week_ready({"aws": set(), "focus": set()}, week)
