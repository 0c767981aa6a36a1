"""Partition replacement: atomic per (collector, day), idempotent, restatements replace, bad frames write nothing."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.events import conform, empty_events, lookback_days, replace_days, unreconciled_days

D1, D2 = dt.date(2026, 11, 2), dt.date(2026, 11, 3)


def events(rows):
    base = {
        "resource_type": "ec2:instance",
        "resource_name": "",
        "event_type": "cost",
        "event_action": "usage",
        "billed_cost": 0.0,
        "list_cost": 0.0,
        "charge_category": "Usage",
        "service": "AmazonEC2",
        "provider": "AWS",
        "unit": "USD",
        "properties": {},
        "actor_name": "",
        "collector": "cost_aws",
        "aws_account_id": "1",
        "aws_region": "us-east-1",
    }
    return conform(pd.DataFrame([{**base, **r} for r in rows]))


def totals(store, collector="cost_aws"):
    frame = store.query_df(
        "SELECT toDate(event_time) AS day, count() AS n, sum(value) AS v FROM polo.resource_events "
        "WHERE collector = {c:String} GROUP BY day ORDER BY day",
        {"c": collector},
    )
    return {pd.Timestamp(r.day).date(): (int(r.n), round(float(r.v), 6)) for r in frame.itertuples()}


def test_replacing_a_window_many_times_leaves_the_same_totals(store):
    frame = events(
        [
            {"resource_arn": "a", "event_time": D1, "value": 1.25},
            {"resource_arn": "b", "event_time": D1, "value": 2.0},
            {"resource_arn": "a", "event_time": D2, "value": 4.0},
        ]
    )
    for _ in range(3):
        replace_days(store, frame, collector="cost_aws", days=[D1, D2], source="test")
    assert totals(store) == {D1: (2, 3.25), D2: (1, 4.0)}
    assert unreconciled_days(store, "cost_aws").empty


def test_restated_day_replaces_old_values_and_removed_lines_disappear(store):
    replace_days(
        store,
        events(
            [
                {"resource_arn": "a", "event_time": D1, "value": 1.0},
                {"resource_arn": "b", "event_time": D1, "value": 2.0},
                {"resource_arn": "a", "event_time": D2, "value": 3.0},
            ]
        ),
        collector="cost_aws",
        days=[D1, D2],
        source="test",
    )
    replace_days(
        store,
        events([{"resource_arn": "a", "event_time": D1, "value": 1.5}]),
        collector="cost_aws",
        days=[D1, D2],
        source="test",
        allow_empty_days=True,
    )
    assert totals(store) == {D1: (1, 1.5)}  # b was removed from the restated export, D2 emptied (as asked)
    assert unreconciled_days(store, "cost_aws").empty
    assert rollup(store) == {(D1, "a", "Usage"): 1.5}


def rollup(store):
    frame = store.query_df("SELECT day, resource_arn, charge_category, cost FROM polo.cost_resource_daily")
    return {(pd.Timestamp(r.day).date(), r.resource_arn, r.charge_category): round(r.cost, 6) for r in frame.itertuples()}


def test_the_resource_rollup_follows_every_replacement(store):
    frame = events(
        [
            {"resource_arn": "a", "event_time": D1, "value": 1.25},
            {"resource_arn": "a", "event_time": D1, "value": -0.25, "charge_category": "Credit"},
            {"resource_arn": "b", "event_time": D2, "value": 4.0},
        ]
    )
    for _ in range(2):
        replace_days(store, frame, collector="cost_aws", days=[D1, D2], source="test")
    assert rollup(store) == {(D1, "a", "Usage"): 1.25, (D1, "a", "Credit"): -0.25, (D2, "b", "Usage"): 4.0}


def test_other_collectors_and_days_are_untouched(store):
    replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.0}]), collector="cost_aws", days=[D1], source="t")
    focus = events([{"resource_arn": "f", "event_time": D1, "value": 9.0, "collector": "cost_focus"}])
    replace_days(store, focus, collector="cost_focus", days=[D1], source="t")
    replace_days(store, events([{"resource_arn": "a", "event_time": D2, "value": 5.0}]), collector="cost_aws", days=[D2], source="t")
    assert totals(store) == {D1: (1, 1.0), D2: (1, 5.0)}
    assert totals(store, "cost_focus") == {D1: (1, 9.0)}


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"value": np.nan}, "value"),
        ({"billed_cost": np.inf}, "billed_cost"),
        ({"event_time": dt.date(2026, 11, 9)}, "event_time"),
        ({"resource_arn": ""}, "resource_arn"),
        ({"collector": "cost_gcp"}, "collector"),
    ],
)
def test_a_bad_frame_writes_nothing_and_keeps_the_previous_data(store, bad, field):
    good = events([{"resource_arn": "a", "event_time": D1, "value": 1.0}])
    replace_days(store, good, collector="cost_aws", days=[D1], source="t")
    frame = events([{"resource_arn": "z", "event_time": D1, "value": 7.0}, {"resource_arn": "y", "event_time": D1, "value": 1.0, **bad}])
    with pytest.raises(PoloInputError) as info:
        replace_days(store, frame, collector="cost_aws", days=[D1], source="s3://bucket/export/file.parquet")
    assert info.value.field == field
    assert "s3://bucket/export/file.parquet" in str(info.value)
    assert info.value.partition
    assert totals(store) == {D1: (1, 1.0)}
    leftovers = store.query_df("SELECT name FROM system.tables WHERE database = 'polo' AND name LIKE '_scratch%'")
    assert leftovers.empty


def test_lookback_days_are_t_minus_1_to_t_minus_n():
    assert lookback_days(dt.date(2026, 11, 22), 3) == [dt.date(2026, 11, 19), dt.date(2026, 11, 20), dt.date(2026, 11, 21)]


def test_a_window_of_more_than_100_days_is_written_in_one_go(store):
    """ClickHouse refuses inserts into over 100 partitions by default; a long backfill must not hit that."""
    days = [D1 - dt.timedelta(days=n) for n in range(120)]
    frame = events([{"resource_arn": "a", "event_time": d, "value": 1.0} for d in days])
    replace_days(store, frame, collector="cost_aws", days=days, source="test")
    assert len(totals(store)) == 120
    assert len(rollup(store)) == 120


def test_rewriting_days_across_a_month_boundary_keeps_the_other_days(store):
    oct30, oct31, nov1, nov2 = (dt.date(2026, 10, 30), dt.date(2026, 10, 31), dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    first = events([{"resource_arn": "a", "event_time": d, "value": v} for d, v in ((oct30, 1.0), (oct31, 2.0), (nov1, 3.0), (nov2, 4.0))])
    replace_days(store, first, collector="cost_aws", days=[oct30, oct31, nov1, nov2], source="test")
    restated = events([{"resource_arn": "a", "event_time": oct31, "value": 20.0}, {"resource_arn": "b", "event_time": nov1, "value": 30.0}])
    replace_days(store, restated, collector="cost_aws", days=[oct31, nov1], source="test")
    assert totals(store) == {oct30: (1, 1.0), oct31: (1, 20.0), nov1: (1, 30.0), nov2: (1, 4.0)}
    assert rollup(store) == {(oct30, "a", "Usage"): 1.0, (oct31, "a", "Usage"): 20.0, (nov1, "b", "Usage"): 30.0, (nov2, "a", "Usage"): 4.0}
    assert unreconciled_days(store, "cost_aws").empty
    # Nov 1 alone: the month's other day and the previous month are kept
    replace_days(store, events([{"resource_arn": "c", "event_time": nov1, "value": 0.5}]), collector="cost_aws", days=[nov1], source="test")
    assert totals(store) == {oct30: (1, 1.0), oct31: (1, 20.0), nov1: (1, 0.5), nov2: (1, 4.0)}
    assert rollup(store) == {(oct30, "a", "Usage"): 1.0, (oct31, "a", "Usage"): 20.0, (nov1, "c", "Usage"): 0.5, (nov2, "a", "Usage"): 4.0}
    assert unreconciled_days(store, "cost_aws").empty


def node_rollups(store):
    per_resource = store.query_df("SELECT node_id, day, resource_arn, cost FROM polo.cost_node_resource_daily")
    per_node = store.query_df("SELECT node_id, day, cost, resources FROM polo.cost_node_daily")
    return (
        {(r.node_id, pd.Timestamp(r.day).date(), r.resource_arn): round(r.cost, 6) for r in per_resource.itertuples()},
        {(r.node_id, pd.Timestamp(r.day).date()): (round(r.cost, 6), r.resources) for r in per_node.itertuples()},
    )


def test_the_node_rollups_follow_every_replacement(store):
    from polo_pipelines.hierarchy.rollup import update_node_rollups

    store.command(
        "INSERT INTO polo.resource_ancestry (resource_arn, ancestor_id, ancestor_type, hierarchy, depth, parent_id) VALUES "
        "('a', 'team:x', 'team', 'teams', 1, ''), ('b', 'team:x', 'team', 'teams', 1, ''), ('b', 'team:y', 'team', 'other', 1, '')"
    )
    replace_days(
        store,
        events(
            [
                {"resource_arn": "a", "event_time": D1, "value": 1.0},
                {"resource_arn": "b", "event_time": D1, "value": 2.0},
                {"resource_arn": "b", "event_time": D2, "value": 5.0},
            ]
        ),
        collector="cost_aws",
        days=[D1, D2],
        source="test",
    )
    # a collector writes its events and each resource's cost; the node rollups follow downstream
    assert node_rollups(store) == ({}, {})
    update_node_rollups(store)
    per_resource, per_node = node_rollups(store)
    assert per_resource == {
        ("team:x", D1, "a"): 1.0,
        ("team:x", D1, "b"): 2.0,
        ("team:y", D1, "b"): 2.0,
        ("team:x", D2, "b"): 5.0,
        ("team:y", D2, "b"): 5.0,
    }
    assert per_node == {("team:x", D1): (3.0, 2), ("team:y", D1): (2.0, 1), ("team:x", D2): (5.0, 1), ("team:y", D2): (5.0, 1)}
    # D1 restated (b gone), D2 untouched: each node table holds the new day and keeps the other one.
    replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.5}]), collector="cost_aws", days=[D1], source="test")
    assert update_node_rollups(store)[0] == "1 loaded day(s) refreshed"
    per_resource, per_node = node_rollups(store)
    assert per_resource == {("team:x", D1, "a"): 1.5, ("team:x", D2, "b"): 5.0, ("team:y", D2, "b"): 5.0}
    assert per_node == {("team:x", D1): (1.5, 1), ("team:x", D2): (5.0, 1), ("team:y", D2): (5.0, 1)}


def test_an_unchanged_ancestry_refreshes_only_loaded_days_and_a_changed_one_rebuilds(store):
    from polo_pipelines.hierarchy.rollup import update_node_rollups

    assert update_node_rollups(store)[0] == "rebuilt"  # an empty store: the first update knows nothing earlier
    store.command(
        "INSERT INTO polo.resource_ancestry (resource_arn, ancestor_id, ancestor_type, hierarchy, depth, parent_id) "
        "VALUES ('a', 'team:x', 'team', 'teams', 1, '')"
    )
    assert update_node_rollups(store)[0] == "rebuilt"  # a changed ancestry
    # the first load after updates that saw none
    replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.0}]), collector="cost_aws", days=[D1], source="test")
    assert update_node_rollups(store)[0] == "1 loaded day(s) refreshed"
    assert node_rollups(store)[0] == {("team:x", D1, "a"): 1.0}

    # Nothing loaded and the same ancestry: nothing to do.
    assert update_node_rollups(store) == ("0 loaded day(s) refreshed", {"polo.cost_node_resource_daily": 0, "polo.cost_node_daily": 0})
    # A day the node rollups lack (an update that died half-way) is filled even so.
    store.command("ALTER TABLE polo.cost_node_daily DROP PARTITION 202611")
    assert update_node_rollups(store)[0] == "0 loaded day(s) refreshed, 1 missing day(s) filled"
    assert node_rollups(store)[1] == {("team:x", D1): (1.0, 1)}
    # A day loaded again is refreshed alone.
    replace_days(store, events([{"resource_arn": "a", "event_time": D2, "value": 4.0}]), collector="cost_aws", days=[D2], source="test")
    assert update_node_rollups(store)[0] == "1 loaded day(s) refreshed"
    assert node_rollups(store)[1] == {("team:x", D1): (1.0, 1), ("team:x", D2): (4.0, 1)}

    # A resource's attributes are copied into the rollup: a new creator rebuilds it.
    store.command("INSERT INTO polo.resources (resource_arn, resource_type, created_by) VALUES ('a', 'ec2:instance', 'alice@example.com')")
    assert update_node_rollups(store)[0] == "rebuilt"
    creators = store.query_df("SELECT DISTINCT created_by FROM polo.cost_node_resource_daily")["created_by"].tolist()
    assert creators == ["alice@example.com"]


def test_the_ancestry_is_rebuilt_only_when_its_events_loads_or_hierarchies_changed(store):
    from polo_pipelines.hierarchy import ancestry as hy

    teams = hy.parse({"hierarchies": {"teams": {"levels": [{"type": "team", "tag": "team"}]}}})
    replace_days(
        store,
        events([{"resource_arn": "a", "event_time": D1, "value": 1.0, "properties": {"tag:team": "x"}}]),
        collector="cost_aws",
        days=[D1],
        source="t",
    )
    first = hy.refresh_if_changed(store, teams)
    assert (first.action, first.resources, first.ancestry_rows) == ("rebuilt", 1, 1)
    again = hy.refresh_if_changed(store, teams)
    assert (again.action, again.resources, again.ancestry_rows) == ("unchanged", 1, 1)
    assert again.summary.to_dict(orient="records") == first.summary.to_dict(orient="records")
    # a day loaded again, even with the same events: rebuilt
    replace_days(
        store,
        events([{"resource_arn": "b", "event_time": D1, "value": 1.0, "properties": {"tag:team": "y"}}]),
        collector="cost_aws",
        days=[D1],
        source="t",
    )
    assert hy.refresh_if_changed(store, teams).action == "rebuilt"
    placed = store.query_df("SELECT resource_arn, ancestor_id FROM polo.resource_ancestry ORDER BY resource_arn")
    assert placed.values.tolist() == [["b", "team:y"]], "the resource whose day was restated away is gone from the ancestry"
    # events added without a load (the inventory's snapshots), and another hierarchy file: rebuilt
    store.insert_df(
        "polo.resource_events", events([{"resource_arn": "c", "event_time": D2, "value": 0.0, "properties": {"tag:team": "z"}}])
    )
    assert hy.refresh_if_changed(store, teams).action == "rebuilt"
    assert hy.refresh_if_changed(store, teams).action == "unchanged"
    other = hy.parse({"hierarchies": {"teams": {"levels": [{"type": "squad", "tag": "team"}]}}})
    assert hy.refresh_if_changed(store, other).action == "rebuilt"
    assert set(store.query_df("SELECT ancestor_type FROM polo.resource_ancestry")["ancestor_type"]) == {"squad"}


# ---------------------------------------------------------------- faults and hostile input (issue: nothing lost, nothing doubled)


def test_a_source_that_suddenly_holds_nothing_is_refused_and_the_days_are_kept(store):
    frame = events([{"resource_arn": "a", "event_time": D1, "value": 1.0}, {"resource_arn": "a", "event_time": D2, "value": 2.0}])
    replace_days(store, frame, collector="cost_aws", days=[D1, D2], source="test")
    for empty in (empty_events(), events([{"resource_arn": "a", "event_time": D1, "value": 1.0}])):
        with pytest.raises(PoloInputError) as info:
            replace_days(store, empty, collector="cost_aws", days=[D1, D2], source="s3://bucket/focus/")
        assert info.value.field == "events" and "s3://bucket/focus/" in str(info.value) and str(D2) in str(info.value)
        assert "allow_empty_days" in str(info.value)
        assert totals(store) == {D1: (1, 1.0), D2: (1, 2.0)}
    # a day that held nothing may stay empty; with the flag the days go to zero and the loads say so
    loads = replace_days(store, empty_events(), collector="cost_aws", days=[D1, D2], source="t", allow_empty_days=True)
    assert [(load.day, load.emptied, load.previous_rows, load.previous_total) for load in loads] == [(D1, True, 1, 1.0), (D2, True, 1, 2.0)]
    assert totals(store) == {}
    assert replace_days(store, empty_events(), collector="cost_aws", days=[D1], source="t")[0].emptied is False


@pytest.mark.parametrize("amounts", [[1e300], [-1e15], [1.7e308, 1.7e308]])
def test_amounts_beyond_the_bound_or_summing_to_infinity_are_refused_naming_the_row(store, amounts, monkeypatch):
    if len(amounts) == 2:
        monkeypatch.setenv("POLO_MAX_EVENT_AMOUNT_USD", "1.7976931348623157e308")  # the largest float: only the day's sum can overflow
    frame = events([{"resource_arn": f"r{i}", "event_time": D1, "value": v} for i, v in enumerate(amounts)])
    with pytest.raises(PoloInputError) as info:
        replace_days(store, frame, collector="cost_aws", days=[D1], source="focus.csv")
    assert info.value.field == "value" and info.value.partition == str(D1)
    assert ("r0" in str(info.value)) if len(amounts) == 1 else ("float" in str(info.value))
    assert totals(store) == {}


def test_the_amount_bound_is_a_setting(store, monkeypatch):
    monkeypatch.setenv("POLO_MAX_EVENT_AMOUNT_USD", "5")
    with pytest.raises(PoloInputError, match="beyond"):
        replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 6.0}]), collector="cost_aws", days=[D1], source="t")
    monkeypatch.setenv("POLO_MAX_EVENT_AMOUNT_USD", "lots")
    with pytest.raises(PoloInputError, match="POLO_MAX_EVENT_AMOUNT_USD"):
        replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.0}]), collector="cost_aws", days=[D1], source="t")


KILL_BETWEEN_SWAPS = """
import os, signal, sys, datetime as dt
import pandas as pd
from polo_pipelines.store import polo_store
from polo_pipelines.store import swap
from polo_pipelines_tests.test_events import events

def run_then_die(store, steps):
    for n, step in enumerate(steps):
        if n == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
        swap.__dict__["_real_run"](store, [step])

swap._real_run = swap._run
swap._run = run_then_die
days = [dt.date(2026, 10, 31), dt.date(2026, 11, 2)]
frame = events([{"resource_arn": "a", "event_time": d, "value": 10.0} for d in days])
with polo_store(sys.argv[1]) as store:
    from polo_pipelines.store.events import replace_days
    replace_days(store, frame, collector="cost_aws", days=days, source="t")
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_run_killed_between_swaps_is_finished_by_the_next_session(dsn, tmp_path, kill_at):
    import subprocess
    import sys

    from polo_pipelines.store import forget_migrations, polo_store

    days = [dt.date(2026, 10, 31), dt.date(2026, 11, 2)]
    with polo_store(dsn) as store:
        replace_days(
            store, events([{"resource_arn": "a", "event_time": d, "value": 1.0} for d in days]), collector="cost_aws", days=days, source="t"
        )
    script = tmp_path / "die.py"
    script.write_text(KILL_BETWEEN_SWAPS)
    # steps: events Oct, rollup Oct, events Nov, rollup Nov, the load log; killed before step kill_at
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root}
    done = subprocess.run([sys.executable, str(script), dsn, str(kill_at)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == -9, done.stderr[-2000:]
    forget_migrations()  # a new process: its first session repairs
    with polo_store(dsn) as store:
        assert totals(store) == {days[0]: (1, 10.0), days[1]: (1, 10.0)}
        assert rollup(store) == {(days[0], "a", "Usage"): 10.0, (days[1], "a", "Usage"): 10.0}
        assert unreconciled_days(store, "cost_aws").empty
        leftovers = store.query_df("SELECT name FROM system.tables WHERE database = 'polo' AND name LIKE '_scratch%'")
        assert leftovers.empty


def test_scratch_tables_of_a_run_killed_while_filling_them_are_dropped(dsn):
    from polo_pipelines.store import forget_migrations, polo_store

    with polo_store(dsn) as store:
        store.command("CREATE TABLE polo.`_scratch_resource_events_1700000000_deadbeef` AS polo.resource_events")
        store.command("CREATE TABLE polo.`_scratch_resource_events_0123456789ab` AS polo.resource_events")  # an older run's name
    forget_migrations()
    with polo_store(dsn) as store:
        assert store.query_df("SELECT name FROM system.tables WHERE database = 'polo' AND name LIKE '_scratch%'").empty


def test_a_python_error_between_swaps_leaves_the_load_for_repair_not_half_done(dsn, monkeypatch):
    from polo_pipelines.store import forget_migrations, polo_store, swap

    real = swap._run
    calls = []

    def fail_after_first(store, steps):
        for step in steps:
            if calls:
                raise OSError("disk went away")
            calls.append(step)
            real(store, [step])

    with polo_store(dsn) as store:
        replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.0}]), collector="cost_aws", days=[D1], source="t")
        monkeypatch.setattr(swap, "_run", fail_after_first)
        with pytest.raises(OSError):
            replace_days(
                store, events([{"resource_arn": "a", "event_time": D1, "value": 3.0}]), collector="cost_aws", days=[D1], source="t"
            )
        monkeypatch.setattr(swap, "_run", real)
        assert totals(store) == {D1: (1, 3.0)} and rollup(store) == {(D1, "a", "Usage"): 1.0}  # the half a reader would see
    forget_migrations()
    with polo_store(dsn) as store:
        assert totals(store) == {D1: (1, 3.0)} and rollup(store) == {(D1, "a", "Usage"): 3.0}


@pytest.mark.e2e
def test_causes_when_more_than_a_million_resources_moved(store):
    """The causes query once sent every moved resource back as an array parameter: TOO_LARGE_ARRAY_SIZE past 1M."""
    from polo_pipelines.drilldown import delta
    from polo_pipelines.drilldown.periods import Periods

    n = 1_100_000
    week = Periods.week(dt.date(2026, 11, 9))
    store.command(
        f"""
        INSERT INTO polo.cost_resource_daily (day, collector, resource_arn, charge_category, cost, billed_cost, list_cost, events)
        SELECT if(number % 2 = 0, toDate('2026-11-03'), toDate('2026-11-10')), 'cost_aws', concat('r', toString(intDiv(number, 2))),
               'Usage', if(number % 2 = 0, 1.0, 2.0), 0, 0, 1
        FROM numbers({2 * n})
        """
    )
    store.command(
        f"""
        INSERT INTO polo.resource_ancestry (resource_arn, ancestor_id, ancestor_type, hierarchy, depth, parent_id)
        SELECT concat('r', toString(number)), if(number < 1000, 'team:small', 'team:big'), 'team', 'teams', 1, '' FROM numbers({n})
        """
    )
    found = delta.causes(store, week)
    assert list(found["node_id"]) == ["team:big", "team:small"]
    assert found["delta"].sum() == pytest.approx(n * 1.0)
    assert int(found["resources"].sum()) == n
