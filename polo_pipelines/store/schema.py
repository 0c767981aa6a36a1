"""Polo's ClickHouse schema as versioned, idempotent migrations (database ``polo``).

Each migration is a list of statements that are safe to run again (IF NOT EXISTS), so a
migration interrupted half-way is finished by the next run; ``polo.schema_migrations``
records what has been applied. New columns are added in new migrations, never by editing
an applied one, so an older store is upgraded in place without losing rows.

Layout choices, for the drill-down queries:

- ``resource_events`` is partitioned by (collector, week) (migration 16; by month before): a collector's day is
  rewritten by rebuilding its week in a scratch table (the week's other days copied inside ClickHouse, the new day
  added) and swapping the week in with ``REPLACE PARTITION``, atomically. A week copies at most six other days where a
  month copied up to thirty, and the copy is most of a collector day's cost at scale (100M events: a day 1.5-1.6 s
  against 3.3 s on monthly partitions, paired runs). The price is paid by reads that span weeks, each partition a
  read touches costing the engine a granule to open and decompress (10M events, one resource's timeline, paired:
  two weeks from a Monday +9%, thirteen weeks +48%; the timeline reads on one thread for it, ``TIMELINE_SETTINGS``),
  and by the disk: a resource's key repeats less within a week (events +24% at 100M). The partitions stay few
  (ClickHouse advises well under 10,000: ten collectors make 520 a year; daily
  ones would pass that in two years). ``cost_resource_daily``, which Level 2 reads over many resources, stays
  partitioned by (collector, month) and is swapped with the events: its copy is narrow. Rows are
  ordered by (resource_arn, event_time, event_type, event_action) so one resource's timeline
  is a narrow range read of each week it spans, in compact parts of 1,024-row granules (migration 7) so that
  read is one small block.
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
    Migration(
        16,
        "events partitioned by (collector, week): a day re-collected copies its week, not its month",
        (lambda store: _rebuild_table(store, "resource_events", partition=EVENTS_PARTITION, settings=EVENTS_SETTINGS),),
    ),
)

# One resource's timeline (Level 3) reads one granule of every column it shows. In compact parts a
# granule's columns lie together, and a 1,024-row granule is an eighth of the default: a point read
# costs about a millisecond less, a scan about the same. The setting is fixed when a table is made,
# so migration 7 copies the events into a table made with it and exchanges the two.
EVENTS_SETTINGS = {"index_granularity": 1024, "min_bytes_for_wide_part": 1 << 40}
# A resource's events lie together in each partition, in time order with ties in (type, action) order.
EVENTS_ORDER = "resource_arn, event_time, event_type, event_action"
# A collector's day is swapped in with its week (migration 16): toMonday, as store.events.week_of gives it.
EVENTS_PARTITION = "collector, toMonday(event_time)"


def _seed_default_rules(store: Store) -> None:
    """The default rules of config/rules.yaml, inserted once (a store that already holds a rule id keeps its own version)."""
    from polo_pipelines.rules.ruleset import default_rules, sync

    held = set(store.query_df("SELECT DISTINCT rule_id FROM polo.budget_rules")["rule_id"])
    missing = [r for r in default_rules() if r.rule_id not in held]
    if missing:
        from polo_pipelines.rules.ruleset import stored

        sync(store, [*stored(store).values(), *missing])


def _rebuild_events(store: Store) -> None:
    """Copy resource_events into a table with EVENTS_SETTINGS and EVENTS_ORDER and exchange them (migration 7)."""
    _rebuild_table(store, "resource_events", order=EVENTS_ORDER, settings=EVENTS_SETTINGS)


def _rebuild_table(
    store: Store, name: str, *, partition: str | None = None, order: str | None = None, settings: dict | None = None
) -> None:
    """Copy ``polo.<name>`` into a table partitioned, ordered and set as asked (what is not asked is kept) and exchange
    them, losing no write made meanwhile.

    Safe to re-run after a crash at any point: a table already made so is kept, and a half-made copy is dropped and
    made again. Partitions written while the copy ran are copied again (their row count or content hash moved) until
    the two tables agree, then the tables are exchanged in one atomic step."""
    copy = f"polo.{name}_rebuild"
    store.command(f"DROP TABLE IF EXISTS {copy}")
    table = store.query_df(
        "SELECT create_table_query, partition_key, sorting_key FROM system.tables WHERE database = 'polo' AND name = {n:String}",
        {"n": name},
    )
    held_partition, held_order, ddl = table["partition_key"][0], table["sorting_key"][0], table["create_table_query"][0]
    partition, order = partition or held_partition, order or held_order
    made = all(f"{k} = {v}" in ddl for k, v in (settings or {}).items())
    if made and held_order == order and _bare(held_partition) == _bare(partition):
        return
    with_settings = f"SETTINGS {', '.join(f'{k} = {v}' for k, v in settings.items())}" if settings else ""
    store.command(f"CREATE TABLE {copy} AS polo.{name} ENGINE = MergeTree PARTITION BY ({partition}) ORDER BY ({order}) {with_settings}")
    store.command(f"INSERT INTO {copy} SELECT * FROM polo.{name} SETTINGS max_partitions_per_insert_block = 0")
    key = f"toString(tuple({partition}))"  # a partition's value, the same in both tables whatever their partitioning
    for _ in range(10):
        differ = _partitions_that_differ(store, f"polo.{name}", copy, key)
        if not differ:
            break
        for value in differ:
            ids = store.query_df(f"SELECT DISTINCT _partition_id AS p FROM {copy} WHERE {key} = {{v:String}}", {"v": value})["p"]
            for partition_id in ids:
                store.command(f"ALTER TABLE {copy} DROP PARTITION ID {{p:String}}", {"p": partition_id})
            store.command(
                f"INSERT INTO {copy} SELECT * FROM polo.{name} WHERE {key} = {{v:String}} SETTINGS max_partitions_per_insert_block = 0",
                {"v": value},
            )
    else:
        raise RuntimeError(f"{name} kept changing while it was copied: run `polo migrate` again with the collectors paused")
    store.command(f"EXCHANGE TABLES polo.{name} AND {copy}")
    store.command(f"DROP TABLE IF EXISTS {copy}")


def _bare(key: str) -> str:
    return key.replace(" ", "").strip("()")


def _partitions_that_differ(store: Store, table: str, other: str, key: str) -> list[str]:
    # _loaded_at is left out: rows from before it existed compute its default afresh on every read.
    columns = set(
        store.query_df("SELECT name FROM system.columns WHERE database = 'polo' AND table = {t:String}", {"t": table.split(".")[1]})["name"]
    )
    rows = "* EXCEPT (_loaded_at)" if "_loaded_at" in columns else "*"
    digest = f"SELECT {key} AS p, count() AS n, groupBitXor(cityHash64({rows})) AS h FROM {{t}} GROUP BY p"
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
