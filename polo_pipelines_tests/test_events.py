"""Partition replacement: atomic per (collector, day), idempotent, restatements replace, bad frames write nothing."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.events import conform, lookback_days, replace_days, unreconciled_days

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
    replace_days(store, events([{"resource_arn": "a", "event_time": D1, "value": 1.5}]), collector="cost_aws", days=[D1, D2], source="test")
    assert totals(store) == {D1: (1, 1.5)}  # b was removed from the restated export, D2 emptied
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
