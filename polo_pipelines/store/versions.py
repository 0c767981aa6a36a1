"""Row versions of the ReplacingMergeTree tables (rules, violations): they must grow whatever the wall clock does.

FINAL keeps the row with the highest ``_version``. A version taken from the clock alone goes
backwards when the clock does (an NTP step, a restored VM, a host with a wrong clock), and then
a later update (a violation's resolution, a rule's edit) loses to the row it replaces. So a new
version is the clock's nanoseconds, or one more than the highest version the table holds when
that is larger.
"""

from __future__ import annotations

import time

from polo_pipelines.store.storage import Store

VERSIONED_TABLES = ("polo.budget_rules", "polo.rule_violations")


def next_version(store: Store, table: str) -> int:
    """A version above every version ``table`` holds, and the wall clock's nanoseconds when those are higher."""
    if table not in VERSIONED_TABLES:
        raise ValueError(f"{table} has no row versions")
    (held,) = store.query_rows(f"SELECT max(_version) FROM {table}")[0]
    return max(time.time_ns(), int(held or 0) + 1)
