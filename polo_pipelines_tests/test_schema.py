"""Migrations: idempotent, versioned, and an older store is upgraded in place without losing rows."""

from __future__ import annotations

import pandas as pd

from polo_pipelines.store.schema import LATEST_VERSION, MIGRATIONS, migrate, schema_version
from polo_pipelines.store.storage import open_store

CONTRACT = {
    "resource_events": [
        "resource_arn",
        "resource_type",
        "resource_name",
        "event_time",
        "event_type",
        "event_action",
        "value",
        "unit",
        "properties",
        "actor_name",
        "collector",
        "aws_account_id",
        "aws_region",
    ],
    "resource_ancestry": ["resource_arn", "ancestor_id", "ancestor_type", "hierarchy"],
    "budget_rules": [
        "rule_id",
        "rule_name",
        "rule_type",
        "scope_hierarchy",
        "scope_node_id",
        "scope_filters",
        "condition",
        "severity",
        "notification_channel",
        "enabled",
        "created_by",
        "created_at",
        "updated_at",
        "_version",
    ],
    "rule_violations": [
        "violation_id",
        "rule_id",
        "rule_name",
        "rule_type",
        "severity",
        "detected_at",
        "resolved_at",
        "resource_arn",
        "node_id",
        "actual_value",
        "threshold_value",
        "message",
        "notified",
        "notified_at",
        "_version",
    ],
}


def _columns(store, table: str) -> list[str]:
    return store.query_df("SELECT name FROM system.columns WHERE database = 'polo' AND table = {t:String} ORDER BY position", {"t": table})[
        "name"
    ].tolist()


def test_fresh_store_has_the_contract_columns(dsn):
    with open_store(dsn) as s:
        assert migrate(s) == [m.version for m in MIGRATIONS]
        for table, columns in CONTRACT.items():
            assert set(columns) <= set(_columns(s, table)), table
        assert {"billed_cost", "list_cost", "charge_category"} <= set(_columns(s, "resource_events"))
        assert schema_version(s) == LATEST_VERSION


def test_running_migrations_twice_changes_nothing(dsn):
    with open_store(dsn) as s:
        migrate(s)
        before = s.query_df("SELECT table, name, type FROM system.columns WHERE database = 'polo' ORDER BY table, name")
        assert migrate(s) == []
        after = s.query_df("SELECT table, name, type FROM system.columns WHERE database = 'polo' ORDER BY table, name")
        log = s.query_df("SELECT version, count() AS n FROM polo.schema_migrations FINAL GROUP BY version")
    pd.testing.assert_frame_equal(before, after)
    assert log["n"].tolist() == [1] * len(MIGRATIONS)


def test_older_store_is_upgraded_in_place_without_losing_rows(dsn):
    with open_store(dsn) as s:
        assert migrate(s, MIGRATIONS[:1]) == [1]
        old = pd.DataFrame(
            {
                "resource_arn": ["arn:aws:ec2:us-east-1:1:instance/i-1", "arn:aws:s3:::b"],
                "resource_type": ["ec2:instance", "s3"],
                "resource_name": ["i-1", "b"],
                "event_time": pd.to_datetime(["2026-10-01", "2026-10-02"]).astype("datetime64[ms]"),
                "event_type": ["cost", "cost"],
                "event_action": ["usage", "usage"],
                "value": [10.0, 2.5],
                "unit": ["USD", "USD"],
                "properties": [{"tag:team": "a"}, {}],
                "actor_name": ["", ""],
                "collector": ["cost_aws", "cost_aws"],
                "aws_account_id": ["1", "1"],
                "aws_region": ["us-east-1", ""],
            }
        )
        s.insert_df("polo.resource_events", old)
        assert migrate(s) == [m.version for m in MIGRATIONS[1:]]
        got = s.query_df("SELECT resource_arn, value, billed_cost, properties FROM polo.resource_events ORDER BY resource_arn")
    assert got["resource_arn"].tolist() == ["arn:aws:ec2:us-east-1:1:instance/i-1", "arn:aws:s3:::b"]
    assert got["value"].tolist() == [10.0, 2.5]
    assert got["billed_cost"].tolist() == [0.0, 0.0]
    assert {"tag:team": "a"} in got["properties"].tolist()
    with open_store(dsn) as s:
        rolled = s.query_df("SELECT resource_arn, cost FROM polo.cost_resource_daily ORDER BY resource_arn")
        assert migrate(s) == []
        again = s.query_df("SELECT count() AS n FROM polo.cost_resource_daily")
    assert rolled["cost"].tolist() == [10.0, 2.5]  # the rollup was filled from the events already held, once
    assert int(again["n"][0]) == 2


def test_half_applied_migration_is_finished_by_the_next_run(dsn):
    with open_store(dsn) as s:
        migrate(s, MIGRATIONS[:1])
        s.command(MIGRATIONS[1].statements[0])  # the first statement ran, then the process died
        assert migrate(s) == [m.version for m in MIGRATIONS[1:]]
        assert "list_cost" in _columns(s, "resource_events")


def test_a_version_5_store_gets_the_node_resource_rollup(dsn):
    """Migration 6 on a store that already holds costs, resources and ancestry: nothing to re-materialize by hand."""
    with open_store(dsn) as s:
        migrate(s, MIGRATIONS[:5])
        s.command(
            "INSERT INTO polo.cost_resource_daily (day, collector, resource_arn, charge_category, cost, billed_cost, list_cost, events) VALUES "
            "('2026-10-01', 'cost_aws', 'i-1', 'Usage', 10, 10, 12, 2), ('2026-10-01', 'cost_aws', 'i-2', 'Usage', 3, 3, 3, 1)"
        )
        s.command(
            "INSERT INTO polo.resources (resource_arn, resource_type, resource_name, detail, created_by) VALUES "
            "('i-1', 'ec2:instance', 'web-1', 'm5.large', 'alice@example.com')"
        )
        s.command(
            "INSERT INTO polo.resource_ancestry (resource_arn, ancestor_id, ancestor_type, hierarchy, depth, parent_id) VALUES "
            "('i-1', 'customer:acme', 'customer', 'marqo_logical', 1, ''), ('i-1', 'cluster:web', 'cluster', 'marqo_logical', 2, 'customer:acme'), "
            "('i-2', 'customer:acme', 'customer', 'marqo_logical', 1, '')"
        )
        assert migrate(s) == [m.version for m in MIGRATIONS[5:]]
        rollup = s.query_df(
            "SELECT node_id, resource_arn, cost, resource_type, resource_name, detail, created_by "
            "FROM polo.cost_node_resource_daily ORDER BY node_id, resource_arn"
        )
    web_1 = {"resource_type": "ec2:instance", "resource_name": "web-1", "detail": "m5.large", "created_by": "alice@example.com"}
    unknown = {"resource_type": "", "resource_name": "", "detail": "", "created_by": ""}
    assert rollup.to_dict("records") == [
        {"node_id": "cluster:web", "resource_arn": "i-1", "cost": 10.0, **web_1},
        {"node_id": "customer:acme", "resource_arn": "i-1", "cost": 10.0, **web_1},
        {"node_id": "customer:acme", "resource_arn": "i-2", "cost": 3.0, **unknown},
    ]


class _WritesDuringTheCopy:
    """A store whose first bulk copy of the events is followed by a collector's write to the original table."""

    def __init__(self, store):
        self._store, self.wrote = store, False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def command(self, sql, parameters=None):
        self._store.command(sql, parameters)
        if not self.wrote and "INSERT INTO polo.resource_events_rebuild SELECT * FROM polo.resource_events SETTINGS" in sql:
            self.wrote = True
            self._store.command(
                "INSERT INTO polo.resource_events (resource_arn, event_time, event_type, value, collector) "
                "VALUES ('i-late', '2026-10-03', 'cost', 7.5, 'cost_aws')"
            )


def test_the_events_are_rebuilt_with_fine_granules_and_a_write_during_the_copy_is_kept(dsn):
    from polo_pipelines.store.schema import _rebuild_events

    with open_store(dsn) as s:
        migrate(s, MIGRATIONS[:6])
        s.command(
            "INSERT INTO polo.resource_events (resource_arn, event_time, event_type, value, collector) VALUES "
            "('i-1', '2026-09-30', 'cost', 1.0, 'cost_aws'), ('i-2', '2026-10-01', 'cost', 2.0, 'cost_aws')"
        )
        writer = _WritesDuringTheCopy(s)
        _rebuild_events(writer)
        assert writer.wrote
        rows = s.query_df("SELECT resource_arn, value FROM polo.resource_events ORDER BY resource_arn")
        ddl = s.query_df("SELECT create_table_query FROM system.tables WHERE database = 'polo' AND name = 'resource_events'")
        leftovers = s.query_df("SELECT name FROM system.tables WHERE database = 'polo' AND name LIKE '%rebuild%'")
        _rebuild_events(s)  # a second run finds the table made already and changes nothing
        again = s.query_df("SELECT count() AS n FROM polo.resource_events")
    assert rows.to_dict("records") == [
        {"resource_arn": "i-1", "value": 1.0},
        {"resource_arn": "i-2", "value": 2.0},
        {"resource_arn": "i-late", "value": 7.5},
    ]
    assert "index_granularity = 1024" in ddl["create_table_query"][0] and leftovers.empty
    assert int(again["n"][0]) == 3
