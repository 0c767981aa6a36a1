"""The ClickHouse store resource every Polo asset writes through."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg

from polo_pipelines.settings import clickhouse_dsn
from polo_pipelines.store import polo_store
from polo_pipelines.store.storage import Store, parse_dsn


class ClickHouseResource(dg.ConfigurableResource):
    """Polo's ClickHouse: embedded chdb under .polo/ by default, a server when POLO_CLICKHOUSE_DSN says so."""

    dsn: str | None = None

    def resolved_dsn(self) -> str:
        return self.dsn or clickhouse_dsn()

    @property
    def is_embedded(self) -> bool:
        return parse_dsn(self.resolved_dsn()).scheme == "chdb"

    @property
    def description(self) -> str:
        return parse_dsn(self.resolved_dsn()).redacted

    @contextlib.contextmanager
    def session(self) -> Iterator[Store]:
        with polo_store(self.resolved_dsn()) as store:
            yield store


def clickhouse_from_env() -> ClickHouseResource:
    # Through EnvVar the DSN (which may hold a password) is never shown in the UI's resource config.
    return ClickHouseResource(dsn=dg.EnvVar("POLO_CLICKHOUSE_DSN") if os.environ.get("POLO_CLICKHOUSE_DSN") else None)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"clickhouse": clickhouse_from_env()})
