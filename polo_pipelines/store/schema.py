"""Polo's ClickHouse schema as versioned, idempotent migrations (database ``polo``).

Each migration is a list of statements that are safe to run again (IF NOT EXISTS), so a
migration interrupted half-way is finished by the next run; ``polo.schema_migrations``
records what has been applied. New columns are added in new migrations, never by editing
an applied one, so an older store is upgraded in place without losing rows.

Layout choices, for the drill-down queries:

- ``resource_events`` is partitioned by (collector, month): a collector's day is rewritten by
  rebuilding its month in a scratch table (the month's other days copied inside ClickHouse,
  the new day added) and swapping the month in with ``REPLACE PARTITION``, atomically. Monthly
  rather than daily partitions keep the part count low (ClickHouse advises well under 10,000
  partitions; daily ones per collector pass that in a few years) and point reads fast. Rows are
  ordered by (resource_arn, event_time, event_type, event_action) so one resource's timeline
  is a narrow range read, newest first by reading the key backwards, in compact parts of
  1,024-row granules (migration 7) so that read is one small block.
- ``resource_ancestry`` is partitioned by hierarchy (one hierarchy is rebuilt at a time)
  and ordered by (hierarchy, ancestor_id, resource_arn): "everything under node X" is a
  prefix read.
- ``cost_resource_daily`` is ordered by (day, resource_arn): the drill-down reads a few weeks
  of many scattered resources, which a day-first order keeps to a narrow range.
- ``cost_node_resource_daily`` holds each resource's daily cost once per ancestor, with the
  resource's type, name, detail and creator, ordered by (hierarchy, node_id, day): "the
  resources under node X over two weeks" is one narrow prefix read, not a scan of every
  resource's days and a lookup in ``resources``. It is several times the resource rollup's
  rows, so it keeps only the cost Level 2 shows, and its strings are ZSTD-compressed (the
  table is 2.5 times smaller so, and reads no slower).
- ``budget_rules`` and ``rule_violations`` are ReplacingMergeTree(_version): an update is
  an insert with a higher version; readers use FINAL.
"""

from __future__ import annotations

from dataclasses import dataclass

from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import ensure_journal

DATABASE = "polo"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple  # SQL text, or a function of the store for a step that needs values (never formatted into SQL)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "product design tables",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.resource_events
            (
                resource_arn String,
                resource_type LowCardinality(String),
                resource_name String,
                event_time DateTime64(3, 'UTC'),
                event_type LowCardinality(String),
                event_action LowCardinality(String),
                value Float64,
                unit LowCardinality(String),
                properties Map(String, String),
                actor_name String,
                collector LowCardinality(String),
                aws_account_id LowCardinality(String),
                aws_region LowCardinality(String)
            )
            ENGINE = MergeTree
            PARTITION BY (collector, toYYYYMM(event_time))
            ORDER BY (resource_arn, event_time, event_type)
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.resource_ancestry
            (
                resource_arn String,
                ancestor_id String,
                ancestor_type LowCardinality(String),
                hierarchy LowCardinality(String)
            )
            ENGINE = MergeTree
            PARTITION BY hierarchy
            ORDER BY (hierarchy, ancestor_id, resource_arn)
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.budget_rules
            (
                rule_id String,
                rule_name String,
                rule_type LowCardinality(String),
                scope_hierarchy LowCardinality(String),
                scope_node_id String,
                scope_filters Map(String, String),
                condition Map(String, String),
                severity LowCardinality(String),
                notification_channel String,
                enabled Bool,
                created_by String,
                created_at DateTime64(3, 'UTC'),
                updated_at DateTime64(3, 'UTC'),
                _version UInt64
            )
            ENGINE = ReplacingMergeTree(_version)
            ORDER BY rule_id
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.rule_violations
            (
                violation_id UUID,
                rule_id String,
                rule_name String,
                rule_type LowCardinality(String),
                severity LowCardinality(String),
                detected_at DateTime64(3, 'UTC'),
                resolved_at Nullable(DateTime64(3, 'UTC')),
                resource_arn String,
                node_id String,
                actual_value Float64,
                threshold_value Float64,
                message String,
                notified Bool,
                notified_at Nullable(DateTime64(3, 'UTC')),
                _version UInt64
            )
            ENGINE = ReplacingMergeTree(_version)
            ORDER BY (rule_id, violation_id)
            """,
        ),
    ),
    Migration(
        2,
        "cost columns and partition load log",
        (
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS billed_cost Float64 AFTER value",
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS list_cost Float64 AFTER billed_cost",
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS charge_category LowCardinality(String) AFTER list_cost",
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS service LowCardinality(String) AFTER charge_category",
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS provider LowCardinality(String) AFTER service",
            "ALTER TABLE polo.resource_events ADD COLUMN IF NOT EXISTS _loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)",
            """
            CREATE TABLE IF NOT EXISTS polo.partition_loads
            (
                collector LowCardinality(String),
                partition_date Date,
                row_count UInt64,
                value_total Float64,
                billed_total Float64,
                sources Array(String),
                run_id String,
                loaded_at DateTime64(3, 'UTC')
            )
            ENGINE = ReplacingMergeTree(loaded_at)
            ORDER BY (collector, partition_date)
            """,
        ),
    ),
    Migration(
        3,
        "hierarchy depth and the cost rollups",
        (
            "ALTER TABLE polo.resource_ancestry ADD COLUMN IF NOT EXISTS depth UInt8",
            "ALTER TABLE polo.resource_ancestry ADD COLUMN IF NOT EXISTS parent_id String",
            """
            CREATE TABLE IF NOT EXISTS polo.cost_resource_daily
            (
                day Date,
                collector LowCardinality(String),
                resource_arn String,
                charge_category LowCardinality(String),
                cost Float64,
                billed_cost Float64,
                list_cost Float64,
                events UInt32
            )
            ENGINE = MergeTree
            PARTITION BY (collector, toYYYYMM(day))
            ORDER BY (day, resource_arn, charge_category)
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.cost_node_daily
            (
                hierarchy LowCardinality(String),
                node_id String,
                node_type LowCardinality(String),
                parent_id String,
                depth UInt8,
                day Date,
                charge_category LowCardinality(String),
                cost Float64,
                billed_cost Float64,
                resources UInt32
            )
            ENGINE = MergeTree
            PARTITION BY toYYYYMM(day)
            ORDER BY (hierarchy, day, node_id, charge_category)
            """,
            # A store from before the rollups gets them filled from the events it holds (once: the guard
            # keeps a re-run after a crash from counting twice).
            """
            INSERT INTO polo.cost_resource_daily
            SELECT toDate(event_time), collector, resource_arn, charge_category, sum(value), sum(billed_cost), sum(list_cost), count()
            FROM polo.resource_events
            WHERE event_type = 'cost' AND (SELECT count() FROM polo.cost_resource_daily) = 0
            GROUP BY toDate(event_time), collector, resource_arn, charge_category
            SETTINGS max_partitions_per_insert_block = 0
            """,
        ),
    ),
    Migration(
        4,
        "weekly cost deltas and the resource dimension",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.resources
            (
                resource_arn String,
                resource_type LowCardinality(String),
                resource_name String,
                detail String,
                created_by String,
                collector LowCardinality(String),
                provider LowCardinality(String),
                aws_account_id LowCardinality(String),
                service LowCardinality(String),
                first_seen DateTime64(3, 'UTC'),
                last_seen DateTime64(3, 'UTC')
            )
            ENGINE = MergeTree
            ORDER BY resource_arn
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.cost_delta_nodes_weekly
            (
                week_start Date,
                hierarchy LowCardinality(String),
                node_id String,
                node_type LowCardinality(String),
                parent_id String,
                depth UInt8,
                compare_cost Float64,
                current_cost Float64,
                delta Float64,
                pct_change Nullable(Float64)
            )
            ENGINE = MergeTree
            PARTITION BY week_start
            ORDER BY (hierarchy, week_start, node_id)
            """,
            """
            CREATE TABLE IF NOT EXISTS polo.cost_delta_resources_weekly
            (
                week_start Date,
                resource_arn String,
                resource_type LowCardinality(String),
                resource_name String,
                detail String,
                created_by String,
                compare_cost Float64,
                current_cost Float64,
                delta Float64,
                change_type LowCardinality(String)
            )
            ENGINE = MergeTree
            PARTITION BY week_start
            ORDER BY (week_start, resource_arn)
            """,
        ),
    ),
    Migration(
        5,
        "resource tags and the default budget rules",
        (
            "ALTER TABLE polo.resources ADD COLUMN IF NOT EXISTS tags Map(String, String)",
            lambda store: _seed_default_rules(store),
        ),
    ),
    Migration(
        6,
        "per-node resource rollup",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.cost_node_resource_daily
            (
                hierarchy LowCardinality(String),
                node_id String,
                day Date,
                resource_arn String CODEC(ZSTD(1)),
                charge_category LowCardinality(String),
                cost Float64,
                resource_type LowCardinality(String),
                resource_name String CODEC(ZSTD(1)),
                detail String CODEC(ZSTD(1)),
                created_by String CODEC(ZSTD(1))
            )
            ENGINE = MergeTree
            PARTITION BY toYYYYMM(day)
            ORDER BY (hierarchy, node_id, day, resource_arn, charge_category)
            """,
            # A store from before gets the new rollup's history (a whole rewrite: a re-run after a crash is harmless).
            lambda store: _rebuild_node_rollups(store),
        ),
    ),
    Migration(
        7,
        "resource events in compact parts of 1,024-row granules, ordered down to the action",
        (lambda store: _rebuild_events(store),),
    ),
    Migration(
        8,
        "what the node rollups were last computed from: the node-rollup asset follows the ancestry and the loads since",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.node_rollup_state
            (
                computed_at DateTime64(3, 'UTC'),
                ancestry_rows UInt64,
                ancestry_hash UInt64,
                resource_rows UInt64,
                resource_hash UInt64,
                loads_through Nullable(DateTime64(3, 'UTC'))
            )
            ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY tuple()
            """,
        ),
    ),
    Migration(
        9,
        "the write journal: a load's swaps are prepared, then committed; a stopped run's are finished by the next session",
        (lambda store: ensure_journal(store),),
    ),
    Migration(
        10,
        "the AWS Organization: each account's name, tags and organizational-unit path, read whole on each refresh",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.aws_organization
            (
                account_id String,
                account_name String,
                account_status LowCardinality(String),
                root_id String,
                root_name String,
                ou_ids Array(String),
                ou_names Array(String),
                tags Map(String, String),
                observed_at DateTime64(3, 'UTC')
            )
            ENGINE = MergeTree
            ORDER BY account_id
            """,
        ),
    ),
    Migration(
        11,
        "every load of every day kept (partition_loads keeps the last): a restated day shows its old and new figures",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.partition_load_history AS polo.partition_loads
            ENGINE = ReplacingMergeTree(loaded_at)
            ORDER BY (collector, partition_date, loaded_at)
            """,
            # the loads a store holds already are each day's first known figures
            """
            INSERT INTO polo.partition_load_history
            SELECT * FROM polo.partition_loads FINAL
            WHERE (collector, partition_date, loaded_at) NOT IN (SELECT collector, partition_date, loaded_at FROM polo.partition_load_history)
            """,
        ),
    ),
    Migration(
        12,
        "spans received over OTLP/HTTP, in the OpenTelemetry Collector ClickHouse exporter's otel_traces schema",
        (
            # The exporter's documented table (Map attributes), so a team that already ships traces to ClickHouse reads
            # the same columns from either. Polo's own receiver keeps only the attributes attribution needs.
            """
            CREATE TABLE IF NOT EXISTS polo.otel_traces
            (
                Timestamp DateTime64(9) CODEC(Delta, ZSTD(1)),
                TraceId String CODEC(ZSTD(1)),
                SpanId String CODEC(ZSTD(1)),
                ParentSpanId String CODEC(ZSTD(1)),
                TraceState String CODEC(ZSTD(1)),
                SpanName LowCardinality(String) CODEC(ZSTD(1)),
                SpanKind LowCardinality(String) CODEC(ZSTD(1)),
                ServiceName LowCardinality(String) CODEC(ZSTD(1)),
                ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
                ScopeName String CODEC(ZSTD(1)),
                ScopeVersion String CODEC(ZSTD(1)),
                SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
                Duration UInt64 CODEC(ZSTD(1)),
                StatusCode LowCardinality(String) CODEC(ZSTD(1)),
                StatusMessage String CODEC(ZSTD(1)),
                Events Nested (Timestamp DateTime64(9), Name LowCardinality(String), Attributes Map(LowCardinality(String), String))
                    CODEC(ZSTD(1)),
                Links Nested (TraceId String, SpanId String, TraceState String, Attributes Map(LowCardinality(String), String))
                    CODEC(ZSTD(1))
            )
            ENGINE = MergeTree
            PARTITION BY toDate(Timestamp)
            ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))
            """,
        ),
    ),
    Migration(
        13,
        "prices of hosts and calls, each with where it came from and its version (the Price List's cache)",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.prices
            (
                key String,
                usd Float64,
                unit LowCardinality(String),
                source LowCardinality(String),
                version String,
                fetched_at DateTime64(3, 'UTC')
            )
            ENGINE = MergeTree
            ORDER BY (key, fetched_at)
            """,
        ),
    ),
    Migration(
        14,
        "a violation's action (a rule's webhook, such as a throttle endpoint) called once, like its notification",
        (
            "ALTER TABLE polo.rule_violations ADD COLUMN IF NOT EXISTS acted Bool DEFAULT false AFTER notified_at",
            "ALTER TABLE polo.rule_violations ADD COLUMN IF NOT EXISTS acted_at Nullable(DateTime64(3, 'UTC')) AFTER acted",
        ),
    ),
    Migration(
        15,
        "what the ancestry was last built from: the hierarchy asset rebuilds it only when the events or the hierarchies changed",
        (
            """
            CREATE TABLE IF NOT EXISTS polo.ancestry_state
            (
                computed_at DateTime64(3, 'UTC'),
                events UInt64,
                loads_through Nullable(DateTime64(3, 'UTC')),
                definitions UInt64,
                summary String
            )
            ENGINE = ReplacingMergeTree(computed_at)
            ORDER BY tuple()
            """,
        ),
    ),
)

# One resource's timeline (Level 3) reads one granule of every column it shows. In compact parts a
# granule's columns lie together, and a 1,024-row granule is an eighth of the default: a point read
# costs about a millisecond less, a scan about the same. The setting is fixed when a table is made,
# so migration 7 copies the events into a table made with it and exchanges the two.
EVENTS_SETTINGS = {"index_granularity": 1024, "min_bytes_for_wide_part": 1 << 40}
# The timeline is newest first with ties in (type, action) order: the key, read backwards, with no sort.
EVENTS_ORDER = "resource_arn, event_time, event_type, event_action"


def _seed_default_rules(store: Store) -> None:
    """The default rules of config/rules.yaml, inserted once (a store that already holds a rule id keeps its own version)."""
    from polo_pipelines.rules.ruleset import default_rules, sync

    held = set(store.query_df("SELECT DISTINCT rule_id FROM polo.budget_rules")["rule_id"])
    missing = [r for r in default_rules() if r.rule_id not in held]
    if missing:
        from polo_pipelines.rules.ruleset import stored

        sync(store, [*stored(store).values(), *missing])


def _rebuild_events(store: Store) -> None:
    """Copy resource_events into a table with EVENTS_SETTINGS and EVENTS_ORDER and exchange them, losing no write made meanwhile.

    Safe to re-run after a crash at any point: a table already made with the settings is kept,
    and a half-made copy is dropped and made again. Partitions written while the copy ran are
    copied again (their row count or content hash moved) until the two tables agree, then the
    tables are exchanged in one atomic step."""
    copy = "polo.resource_events_rebuild"
    settings = ", ".join(f"{k} = {v}" for k, v in EVENTS_SETTINGS.items())
    store.command(f"DROP TABLE IF EXISTS {copy}")
    table = store.query_df(
        "SELECT create_table_query, partition_key, sorting_key FROM system.tables WHERE database = 'polo' AND name = 'resource_events'"
    )
    made = f"index_granularity = {EVENTS_SETTINGS['index_granularity']}" in table["create_table_query"][0]
    if made and table["sorting_key"][0] == EVENTS_ORDER:
        return
    store.command(
        f"""
        CREATE TABLE {copy} AS polo.resource_events
        ENGINE = MergeTree PARTITION BY ({table["partition_key"][0]}) ORDER BY ({EVENTS_ORDER})
        SETTINGS {settings}
        """
    )
    store.command(f"INSERT INTO {copy} SELECT * FROM polo.resource_events SETTINGS max_partitions_per_insert_block = 0")
    for _ in range(10):
        differ = _partitions_that_differ(store, "polo.resource_events", copy)
        if not differ:
            break
        for partition_id in differ:
            store.command(f"ALTER TABLE {copy} DROP PARTITION ID {{p:String}}", {"p": partition_id})
            store.command(f"INSERT INTO {copy} SELECT * FROM polo.resource_events WHERE _partition_id = {{p:String}}", {"p": partition_id})
    else:
        raise RuntimeError("resource_events kept changing while it was copied: run `polo migrate` again with the collectors paused")
    store.command(f"EXCHANGE TABLES polo.resource_events AND {copy}")
    store.command(f"DROP TABLE IF EXISTS {copy}")


def _partitions_that_differ(store: Store, table: str, other: str) -> list[str]:
    # _loaded_at is left out: rows from before it existed compute its default afresh on every read.
    digest = "SELECT _partition_id AS p, count() AS n, groupBitXor(cityHash64(* EXCEPT (_loaded_at))) AS h FROM {t} GROUP BY p"
    frames = [store.query_df(digest.format(t=t), columns=["p", "n", "h"]) for t in (table, other)]
    held = [{r.p: (int(r.n), int(r.h)) for r in f.itertuples()} for f in frames]
    return sorted(p for p in set(held[0]) | set(held[1]) if held[0].get(p) != held[1].get(p))


def _rebuild_node_rollups(store: Store) -> None:
    from polo_pipelines.hierarchy.rollup import rebuild_node_rollup

    rebuild_node_rollup(store)


LATEST_VERSION = MIGRATIONS[-1].version


def applied_versions(store: Store) -> set[int]:
    store.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
    store.command(
        """
        CREATE TABLE IF NOT EXISTS polo.schema_migrations
        (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
        ENGINE = ReplacingMergeTree(applied_at) ORDER BY version
        """
    )
    frame = store.query_df("SELECT DISTINCT version FROM polo.schema_migrations")
    return {int(v) for v in frame["version"]}


def migrate(store: Store, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the migrations the store lacks, in order; return the versions applied now."""
    done = applied_versions(store)
    applied = []
    for migration in migrations:
        if migration.version in done:
            continue
        for statement in migration.statements:
            if callable(statement):
                statement(store)
            else:
                store.command(statement)
        store.command(
            "INSERT INTO polo.schema_migrations (version, name) VALUES ({v:UInt32}, {n:String})",
            {"v": migration.version, "n": migration.name},
        )
        applied.append(migration.version)
    return applied


def schema_version(store: Store) -> int:
    return max(applied_versions(store), default=0)
