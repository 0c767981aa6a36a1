"""Atomic partition replacement: write into a scratch copy of a table, then swap whole partitions in.

A reader sees a partition's old rows or its new rows, never half of them and never both.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from polo_pipelines.store.storage import Store


@contextlib.contextmanager
def scratch_copy(store: Store, table: str) -> Iterator[str]:
    """An empty table shaped like ``table`` (same engine and partitioning), dropped afterwards."""
    name = f"polo.`_scratch_{table.rsplit('.', 1)[-1]}_{uuid.uuid4().hex[:12]}`"
    store.command(f"CREATE TABLE {name} AS {table}")
    try:
        yield name
    finally:
        store.command(f"DROP TABLE IF EXISTS {name}")


def swap_in(store: Store, table: str, scratch: str, partition_sql: str, params: Mapping[str, Any], has_rows: bool) -> None:
    """Make ``table``'s partition hold what ``scratch`` holds for it (nothing: the partition is dropped)."""
    if has_rows:
        store.command(f"ALTER TABLE {table} REPLACE PARTITION {partition_sql} FROM {scratch}", params)
    else:
        store.command(f"ALTER TABLE {table} DROP PARTITION {partition_sql}", params)
