"""The store as the rest of Polo opens it: the configured DSN, schema brought up to date and stopped loads finished once per process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from polo_pipelines.settings import clickhouse_dsn
from polo_pipelines.store.schema import migrate
from polo_pipelines.store.storage import Store, open_store, parse_dsn
from polo_pipelines.store.swap import repair

_migrated: set[str] = set()


@contextlib.contextmanager
def polo_store(dsn: str | None = None, *, reader: bool = False, wait_s: float | None = None) -> Iterator[Store]:
    """A session on the store: migrated, and loads a stopped run left half-swapped finished, once per process.

    ``reader``: the session only reads, so it waits for a writer's lock only POLO_READ_WAIT_SECONDS (``wait_s``
    says how long instead)."""
    dsn = dsn or clickhouse_dsn()
    with open_store(dsn, wait_s, reader=reader) as store:
        if dsn not in _migrated:
            migrate(store)
            repair(store, exclusive=parse_dsn(dsn).scheme == "chdb")
            _migrated.add(dsn)
        yield store


def forget_migrations() -> None:
    """Tests that delete a store must let the next open migrate again."""
    _migrated.clear()
