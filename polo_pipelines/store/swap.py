"""Atomic loads: write into scratch copies of tables, then swap whole partitions in, all of a load's tables together.

A reader sees a partition's old rows or its new rows, never half of them and never both.

One load may rebuild several tables (a collector's events and their resource rollup; a
hierarchy's resources and ancestry). Its swaps are recorded in ``polo.write_journal`` as
*prepared* once every scratch table is full, and the load is *committed* when the last swap is
done. A run killed between the two leaves a prepared load whose scratch tables still hold
the new rows: ``repair`` replays its swaps (replacing a partition with the same rows twice is
harmless) and commits it, so the tables of one load never stay in disagreement. Scratch tables
no prepared load refers to (a run killed while filling them) are dropped by ``repair`` too.
The next session that opens the store repairs it, and so does ``polo migrate``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from polo_pipelines.store.storage import Store

log = logging.getLogger("polo.store")

SCRATCH_PREFIX = "_scratch_"
# On a server other writers run beside us: their scratch tables and prepared loads are theirs until this old.
SERVER_ORPHAN_AGE_S = 6 * 3600


@dataclass
class Load:
    """One logical write. ``scratch(table)`` makes a copy to fill; ``replace``/``append`` plan the swaps; ``commit`` does them."""

    store: Store
    what: str
    load_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    scratches: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    prepared: bool = False
    committed: bool = False

    def scratch(self, table: str) -> str:
        """An empty table shaped like ``table`` (same engine and partitioning), dropped once the load is done."""
        name = f"polo.`{SCRATCH_PREFIX}{table.rsplit('.', 1)[-1]}_{int(time.time())}_{uuid.uuid4().hex[:8]}`"
        self.store.command(f"CREATE TABLE {name} AS {table}")
        self.scratches.append(name)
        return name

    def replace(self, table: str, scratch: str, partition_sql: str, params: Mapping[str, Any], has_rows: bool) -> None:
        """Make ``table``'s partition hold what ``scratch`` holds for it (nothing: the partition is dropped)."""
        self.steps.append(
            {
                "op": "replace" if has_rows else "drop",
                "table": table,
                "scratch": scratch,
                "partition": partition_sql,
                "params": dict(params),
            }
        )

    def append(self, table: str, scratch: str) -> None:
        """Add ``scratch``'s rows to ``table`` (a log whose ReplacingMergeTree key folds a replayed append away)."""
        self.steps.append({"op": "append", "table": table, "scratch": scratch})

    def commit(self) -> None:
        ensure_journal(self.store)
        _journal(self.store, self.load_id, "prepared", self.what, self.steps)
        self.prepared = True
        _run(self.store, self.steps)
        _journal(self.store, self.load_id, "committed", self.what, [])
        self.committed = True


@contextlib.contextmanager
def atomic_load(store: Store, what: str) -> Iterator[Load]:
    """A load whose scratch tables are dropped at the end, unless it failed half-way through its swaps:
    then they stay for ``repair`` to finish it."""
    load = Load(store, what)
    try:
        yield load
    except BaseException:
        if load.prepared and not load.committed:
            log.warning("load %s (%s) stopped between its swaps; the next session repairs it", load.load_id, what)
            raise
        _drop(store, load.scratches)
        raise
    if load.prepared and not load.committed:
        return
    _drop(store, load.scratches)


def _run(store: Store, steps: list[dict[str, Any]]) -> None:
    for step in steps:
        table, scratch = step["table"], step["scratch"]
        if step["op"] == "replace":
            store.command(f"ALTER TABLE {table} REPLACE PARTITION {step['partition']} FROM {scratch}", step["params"])
        elif step["op"] == "drop":
            store.command(f"ALTER TABLE {table} DROP PARTITION {step['partition']}", step["params"])
        else:
            store.command(f"INSERT INTO {table} SELECT * FROM {scratch}")


JOURNAL_DDL = """
    CREATE TABLE IF NOT EXISTS polo.write_journal
    (
        load_id String,
        state LowCardinality(String),
        at DateTime64(3, 'UTC') DEFAULT now64(3),
        what String,
        steps String
    )
    ENGINE = MergeTree
    ORDER BY (load_id, at)
    TTL toDateTime(at) + INTERVAL 90 DAY
"""


def ensure_journal(store: Store) -> None:
    """The journal table (migration 9 makes it; a migration before 9 that rebuilds a table needs it already)."""
    store.command(JOURNAL_DDL)


def _journal(store: Store, load_id: str, state: str, what: str, steps: list[dict[str, Any]]) -> None:
    store.command(
        "INSERT INTO polo.write_journal (load_id, state, what, steps) VALUES ({id:String}, {state:String}, {what:String}, {steps:String})",
        {"id": load_id, "state": state, "what": what, "steps": json.dumps(steps, default=str)},  # dates as ISO text
    )


def _drop(store: Store, tables: list[str]) -> None:
    for name in tables:
        try:
            store.command(f"DROP TABLE IF EXISTS {name}")
        except Exception as exc:  # the load's outcome stands; repair drops what is left
            log.warning("could not drop scratch table %s: %s", name, type(exc).__name__)


@dataclass
class Repair:
    finished: list[str] = field(default_factory=list)  # loads whose swaps were replayed and committed
    abandoned: list[str] = field(default_factory=list)  # prepared loads whose scratch tables were gone
    dropped: list[str] = field(default_factory=list)  # orphaned scratch tables

    def __bool__(self) -> bool:
        return bool(self.finished or self.abandoned or self.dropped)


def interrupted(store: Store, min_age_s: float = 0.0) -> list[tuple[str, str, list[dict[str, Any]]]]:
    """Loads prepared and never committed, at least ``min_age_s`` old: (load id, what, steps)."""
    rows = store.query_rows(
        """
        SELECT load_id, any(what), argMaxIf(steps, at, state = 'prepared')
        FROM polo.write_journal
        GROUP BY load_id
        HAVING countIf(state = 'committed') = 0 AND countIf(state = 'abandoned') = 0
           AND minIf(at, state = 'prepared') <= now64(3) - toIntervalSecond({age:UInt32})
        ORDER BY minIf(at, state = 'prepared')
        """,
        {"age": int(min_age_s)},
    )
    return [(load_id, what, json.loads(steps)) for load_id, what, steps in rows]


def scratch_tables(store: Store) -> list[str]:
    rows = store.query_rows(
        "SELECT name FROM system.tables WHERE database = 'polo' AND startsWith(name, {p:String}) ORDER BY name", {"p": SCRATCH_PREFIX}
    )
    return [f"polo.`{name}`" for (name,) in rows]


def repair(store: Store, *, exclusive: bool) -> Repair:
    """Finish every load a killed run left between its swaps, and drop the scratch tables nobody will use.

    ``exclusive``: no other writer can be at work (the embedded store's lock is ours), so every
    prepared load and every scratch table is a dead run's; on a server only those older than
    six hours are taken to be."""
    age = 0.0 if exclusive else SERVER_ORPHAN_AGE_S
    done = Repair()
    ensure_journal(store)
    held = set(scratch_tables(store))
    for load_id, what, steps in interrupted(store, age):
        needed = {s["scratch"] for s in steps if s["op"] != "drop"}
        if needed <= held:
            _run(store, steps)
            _journal(store, load_id, "committed", what, [])
            done.finished.append(what)
        else:
            _journal(store, load_id, "abandoned", what, [])
            done.abandoned.append(what)
        for name in {s["scratch"] for s in steps} & held:
            _drop(store, [name])
            held.discard(name)
            done.dropped.append(name)
    cutoff = time.time() - age
    for name in sorted(held):
        if exclusive or _made_at(name) < cutoff:
            _drop(store, [name])
            done.dropped.append(name)
    if done.finished:
        log.warning("finished %d load(s) a stopped run left half-swapped: %s", len(done.finished), "; ".join(done.finished))
    if done.abandoned:
        log.warning(
            "%d interrupted load(s) could not be finished (scratch tables gone): %s", len(done.abandoned), "; ".join(done.abandoned)
        )
    return done


def _made_at(name: str) -> float:
    """The creation time a scratch table's name carries (0 for a name without one: an old run's, drop it)."""
    parts = name.strip("`").rsplit("_", 2)
    try:
        return float(parts[-2])
    except (IndexError, ValueError):
        return 0.0
