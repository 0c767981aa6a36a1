"""The store as the rest of Polo opens it: the configured DSN, schema brought up to date once per process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from polo_pipelines.settings import clickhouse_dsn
from polo_pipelines.store.schema import migrate
from polo_pipelines.store.storage import Store, open_store

_migrated: set[str] = set()


@contextlib.contextmanager
def polo_store(dsn: str | None = None) -> Iterator[Store]:
    dsn = dsn or clickhouse_dsn()
    with open_store(dsn) as store:
        if dsn not in _migrated:
            migrate(store)
            _migrated.add(dsn)
        yield store


def forget_migrations() -> None:
    """Tests that delete a store must let the next open migrate again."""
    _migrated.clear()
