"""The one narrow interface to ClickHouse that every Polo module uses: command, query to frame, insert frame.

A DSN picks the backend:

- ``chdb:///abs/dir`` (default): embedded ClickHouse in this process. chdb lets one process at a
  time open a data directory, so every session takes an inter-process file lock around
  open -> work -> close; parallel Dagster steps wait for each other instead of failing.
- ``clickhouse://`` / ``clickhouses://``: a server over the native protocol (clickhouse-driver).
- ``http://`` / ``https://``: a server or ClickHouse Cloud over HTTP (clickhouse-connect).

All SQL takes values as server-side ``{name:Type}`` parameters on every backend.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
from filelock import FileLock, Timeout

Parameters = Mapping[str, Any] | None
QuerySettings = Mapping[str, Any] | None
INSERT_BLOCK_ROWS = 50_000


class StoreError(RuntimeError):
    """A store could not be opened or reached; the message never carries a password."""


class StoreFull(StoreError):
    """The store's disk is full: the write was refused before anything was swapped in."""


class StoreUnreachable(StoreError):
    """The ClickHouse server did not answer (down, or the network between)."""


def classify(exc: BaseException, description: str) -> BaseException:
    """A driver's error as a StoreError that says what happened to which store (never its password), or the error itself."""
    text = str(exc)
    if "NOT_ENOUGH_SPACE" in text or "No space left on device" in text or getattr(exc, "code", None) == 243:
        return StoreFull(
            f"the store {description} ran out of disk space; free some (or point POLO_HOME / POLO_CLICKHOUSE_DSN elsewhere) "
            "and run again: nothing of this write was swapped in"
        )
    name = type(exc).__name__
    if name in {"NetworkError", "SocketTimeoutError", "UnexpectedPacketFromServerError"} or isinstance(
        exc, (ConnectionError, TimeoutError)
    ):
        return StoreUnreachable(f"could not reach ClickHouse at {description}: {name} (is the server up?)")
    if name == "OperationalError" and "connect" in text.lower():
        return StoreUnreachable(f"could not reach ClickHouse at {description}: {name} (is the server up?)")
    return exc


@contextlib.contextmanager
def _classified(description: str) -> Iterator[None]:
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        mapped = classify(exc, description)
        if mapped is exc:
            raise
        raise mapped from None


class Store(Protocol):
    backend: str
    description: str

    def command(self, sql: str, parameters: Parameters = None) -> None: ...

    def query_df(
        self, sql: str, parameters: Parameters = None, columns: Sequence[str] | None = None, settings: QuerySettings = None
    ) -> pd.DataFrame:
        """Rows as a frame; ``columns`` names them when the caller knows them (it spares a query on an empty result).

        ``settings`` tune this one query. A setting the engine does not know is left out, so a hint
        written for a newer ClickHouse never breaks the query on an older server."""

    def query_rows(self, sql: str, parameters: Parameters = None, settings: QuerySettings = None) -> list[tuple]:
        """Rows as tuples in the SELECT's column order, for a short answer where building a frame would cost
        more than the query; ``settings`` as for ``query_df``."""

    def insert_df(self, table: str, df: pd.DataFrame) -> None: ...


@dataclass(frozen=True)
class Dsn:
    scheme: str
    host: str = ""
    port: int | None = None
    user: str = "default"
    password: str = ""
    database: str = "default"
    path: str = ""
    options: Mapping[str, str] | None = None

    @property
    def redacted(self) -> str:
        """The DSN as it may be shown to a person: never the password."""
        if self.scheme == "chdb":
            return f"chdb://{self.path}"
        port = f":{self.port}" if self.port else ""
        return f"{self.scheme}://{self.user}@{self.host}{port}/{self.database}"


def parse_dsn(dsn: str) -> Dsn:
    parts = urlsplit(dsn)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        path = unquote(parts.netloc + parts.path)
        if not path or not Path(path).is_absolute():
            raise StoreError(f"chdb DSN needs an absolute data directory, e.g. chdb:///srv/polo/clickhouse (got {path!r})")
        return Dsn(scheme="chdb", path=path)
    if scheme not in {"clickhouse", "clickhouses", "http", "https"}:
        raise StoreError(f"unsupported ClickHouse DSN scheme {scheme!r}: use chdb://, clickhouse://, clickhouses://, http:// or https://")
    if not parts.hostname:
        raise StoreError(f"{scheme} DSN needs a host")
    database = parts.path.strip("/") or "default"
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    return Dsn(
        scheme=scheme,
        host=parts.hostname,
        port=parts.port,
        user=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password) if parts.password else "",
        database=database,
        options=options,
    )


class _Session:
    """What both clients share: every call's driver error classified (a full disk, a server down) before it leaves."""

    description: str

    def command(self, sql: str, parameters: Parameters = None) -> None:
        with _classified(self.description):
            self._command(sql, parameters)

    def query_df(
        self, sql: str, parameters: Parameters = None, columns: Sequence[str] | None = None, settings: QuerySettings = None
    ) -> pd.DataFrame:
        with _classified(self.description):
            return self._query_df(sql, parameters, columns, settings)

    def query_rows(self, sql: str, parameters: Parameters = None, settings: QuerySettings = None) -> list[tuple]:
        with _classified(self.description):
            return self._query_rows(sql, parameters, settings)

    def insert_df(self, table: str, df: pd.DataFrame) -> None:
        with _classified(self.description):
            self._insert_df(table, df)


class _ConnectStore(_Session):
    """clickhouse-connect client: embedded chdb or a server over HTTP(S)."""

    def __init__(self, client: Any, backend: str, description: str):
        self._client = client
        self.backend = backend
        self.description = description

    def _command(self, sql: str, parameters: Parameters = None) -> None:
        self._client.command(sql, parameters=dict(parameters or {}))

    def _query_df(
        self, sql: str, parameters: Parameters = None, columns: Sequence[str] | None = None, settings: QuerySettings = None
    ) -> pd.DataFrame:
        result = self._client.query(sql, parameters=dict(parameters or {}), settings=self._known(settings))
        columns = list(result.column_names) or list(columns or [])
        if not columns:
            # chdb names no columns when a query returns no rows; ask ClickHouse for them.
            described = self._client.query(f"DESCRIBE ({sql})", parameters=dict(parameters or {}))
            columns = [row[0] for row in described.result_rows]
        return pd.DataFrame(result.result_rows, columns=columns)

    def _query_rows(self, sql: str, parameters: Parameters = None, settings: QuerySettings = None) -> list[tuple]:
        return self._client.query(sql, parameters=dict(parameters or {}), settings=self._known(settings)).result_rows

    def _known(self, settings: QuerySettings) -> dict[str, Any]:
        # The client read the engine's settings when it connected.
        return {k: v for k, v in (settings or {}).items() if k in self._client.server_settings}

    def _insert_df(self, table: str, df: pd.DataFrame) -> None:
        # Blocks bound the memory the engine needs to parse one insert (an embedded engine shares our RSS).
        for start in range(0, len(df), INSERT_BLOCK_ROWS):
            self._client.insert_arrow(table, to_arrow(df.iloc[start : start + INSERT_BLOCK_ROWS]))

    def close(self) -> None:
        self._client.close()


class _NativeStore(_Session):
    """clickhouse-driver client over the native protocol."""

    def __init__(self, client: Any, description: str):
        self._client = client
        self.backend = "native"
        self.description = description
        self._setting_names: frozenset[str] | None = None

    def _command(self, sql: str, parameters: Parameters = None) -> None:
        self._client.execute(sql, dict(parameters or {}))

    def _query_df(
        self, sql: str, parameters: Parameters = None, columns: Sequence[str] | None = None, settings: QuerySettings = None
    ) -> pd.DataFrame:
        rows, columns = self._client.execute(sql, dict(parameters or {}), with_column_types=True, settings=self._known(settings))
        return pd.DataFrame(rows, columns=[name for name, _ in columns])

    def _query_rows(self, sql: str, parameters: Parameters = None, settings: QuerySettings = None) -> list[tuple]:
        return [tuple(row) for row in self._client.execute(sql, dict(parameters or {}), settings=self._known(settings))]

    def _known(self, settings: QuerySettings) -> dict[str, Any] | None:
        if not settings:
            return None
        if self._setting_names is None:
            self._setting_names = frozenset(name for (name,) in self._client.execute("SELECT name FROM system.settings"))
        return {k: v for k, v in settings.items() if k in self._setting_names}

    def _insert_df(self, table: str, df: pd.DataFrame) -> None:
        if not len(df):
            return
        columns = ", ".join(f"`{c}`" for c in df.columns)
        data = [_python_column(df[c]) for c in df.columns]
        self._client.execute(f"INSERT INTO {table} ({columns}) VALUES", data, columnar=True)

    def close(self) -> None:
        self._client.disconnect()


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """A frame as Arrow for a columnar insert; columns of dicts become maps of strings."""
    columns = {}
    for name in df.columns:
        series = df[name]
        first = next((v for v in series if v is not None), None) if series.dtype == object else None
        if isinstance(first, dict):
            columns[name] = pa.array([list(v.items()) if v else [] for v in series], type=pa.map_(pa.string(), pa.string()))
        else:
            columns[name] = pa.Array.from_pandas(series) if not isinstance(series.dtype, pd.ArrowDtype) else series.array._pa_array
    return pa.table(columns)


def _python_column(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_map(series.dtype.pyarrow_dtype):
        return [dict(v) if v is not None else {} for v in series.tolist()]
    if pd.api.types.is_datetime64_any_dtype(series):
        values = series.dt.tz_localize(None) if series.dt.tz is not None else series
        return [v.to_pydatetime() for v in values]
    if series.dtype == object:
        return series.tolist()
    return np.asarray(series).tolist()


_process_lock = threading.RLock()
_open_sessions = threading.local()

# How long a session waits for another process's session on the embedded store. A writer (a collector step)
# waits its turn behind the others; a reader (the CLI, a weekly asset, a page) should not sit behind a long write.
READ_WAIT_S = 30.0
WRITE_WAIT_S = 600.0


class StoreBusy(StoreError):
    """Another process held the embedded store longer than this session would wait."""


def _lock_path(data_dir: str) -> str:
    return str(Path(data_dir).with_name(Path(data_dir).name + ".lock"))


def _wait_setting(reader: bool) -> float:
    name, default = ("POLO_READ_WAIT_SECONDS", READ_WAIT_S) if reader else ("POLO_WRITE_WAIT_SECONDS", WRITE_WAIT_S)
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise StoreError(f"{name} must be a number of seconds, got {raw!r}") from None


def _waiting_path(data_dir: str) -> Path:
    return Path(f"{_lock_path(data_dir)}.waiting.{os.getpid()}.{threading.get_ident()}")


def _queue(data_dir: str) -> list[tuple[float, str]]:
    """(since, marker name) of the other live processes waiting for the embedded store; a dead one's marker is removed."""
    lock = Path(_lock_path(data_dir))
    mine = f"{lock.name}.waiting.{os.getpid()}."
    out = []
    for marker in lock.parent.glob(f"{lock.name}.waiting.*"):
        if marker.name.startswith(mine):
            continue
        try:
            doc = json.loads(marker.read_text())
            os.kill(int(doc["pid"]), 0)
            out.append((float(doc["since"]), marker.name))
        except ProcessLookupError:
            marker.unlink(missing_ok=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being written or removed right now
    return out


def others_waiting(dsn: str) -> bool:
    """Whether another process waits for the embedded store at ``dsn`` (never, for a server)."""
    parsed = parse_dsn(dsn)
    return parsed.scheme == "chdb" and bool(_queue(parsed.path))


def _take_turn(lock: FileLock, data_dir: str, reader: bool, wait: float, started: float) -> None:
    """Take the store's lock, first come first served among processes. The lock itself is not fair (a process that
    lets go and asks again at once may take it straight back), so a process that cannot have it at once, or finds
    others already waiting, writes down since when it waits and takes the lock only when no one waits from earlier;
    the marker also tells a long-lived holder (the web API's shared session) to give the store up."""
    if not _queue(data_dir):
        try:
            lock.acquire(timeout=0)
            return
        except Timeout:
            pass
    marker = _waiting_path(data_dir)
    since = time.time()
    marker.write_text(json.dumps({"pid": os.getpid(), "since": since}))
    try:
        while True:
            if not [q for q in _queue(data_dir) if q < (since, marker.name)]:
                try:
                    lock.acquire(timeout=0.02)
                    return
                except Timeout:
                    pass
            else:
                time.sleep(0.01)
            if time.monotonic() - started > wait:
                raise _busy(data_dir, reader, wait, _holder(data_dir))
    finally:
        marker.unlink(missing_ok=True)


def _holder_path(data_dir: str) -> Path:
    return Path(_lock_path(data_dir) + ".holder")


def _holder(data_dir: str) -> str:
    """Who holds the store, as the holder wrote it down: 'process 123 (polo delta) since 07:12:03 UTC'."""
    try:
        doc = json.loads(_holder_path(data_dir).read_text())
        since = dt.datetime.fromtimestamp(float(doc["since"]), dt.UTC)
        return f"process {int(doc['pid'])} ({doc.get('what') or 'unknown'}) since {since:%H:%M:%S} UTC"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _busy(path: str, reader: bool, wait: float, holder: str) -> StoreBusy:
    setting = "POLO_READ_WAIT_SECONDS" if reader else "POLO_WRITE_WAIT_SECONDS"
    return StoreBusy(
        f"the embedded store {path} is busy: {holder} holds it, and this {'read' if reader else 'session'} waited "
        f"{wait:.0f} s. Try again when it is done, or set {setting} to wait longer"
    )


@contextlib.contextmanager
def open_store(dsn: str, lock_timeout_s: float | None = None, *, reader: bool = False) -> Iterator[Store]:
    """Open a session on the store; everything done inside it happens under one connection.

    On the embedded store a session waits for another process's session at most ``lock_timeout_s``
    (default POLO_READ_WAIT_SECONDS, 30, for a ``reader``; POLO_WRITE_WAIT_SECONDS, 600, otherwise)
    and then raises StoreBusy naming who holds it."""
    parsed = parse_dsn(dsn)
    if parsed.scheme == "chdb":
        active = getattr(_open_sessions, "stores", {})
        if parsed.path in active:
            # A session inside a session of the same thread shares it (the lock is already ours).
            yield active[parsed.path]
            return
        import clickhouse_connect

        Path(parsed.path).parent.mkdir(parents=True, exist_ok=True)
        wait = _wait_setting(reader) if lock_timeout_s is None else lock_timeout_s
        # Threads of one process share the engine, so they queue on a process lock too.
        lock = FileLock(_lock_path(parsed.path))
        started = time.monotonic()
        if not _process_lock.acquire(timeout=wait):
            raise _busy(parsed.path, reader, wait, "another thread of this process")
        try:
            _take_turn(lock, parsed.path, reader, wait, started)
            try:
                _holder_path(parsed.path).write_text(
                    json.dumps({"pid": os.getpid(), "what": " ".join(Path(a).name[:40] for a in sys.argv[:2]), "since": time.time()})
                )
                try:
                    client = clickhouse_connect.get_client(dsn=f"chdb://{parsed.path}")
                except Exception as exc:  # chdb raises plain RuntimeErrors
                    raise StoreError(f"could not open embedded ClickHouse at {parsed.path}: {exc}") from exc
                store = _ConnectStore(client, "chdb", parsed.redacted)
                _open_sessions.stores = {**active, parsed.path: store}
                try:
                    yield store
                finally:
                    _open_sessions.stores = active
                    store.close()
            finally:
                lock.release()
        finally:
            _process_lock.release()
        return

    if parsed.scheme in {"http", "https"}:
        import clickhouse_connect

        try:
            client = clickhouse_connect.get_client(
                host=parsed.host,
                port=parsed.port or (8443 if parsed.scheme == "https" else 8123),
                username=parsed.user,
                password=parsed.password,
                database=parsed.database,
                secure=parsed.scheme == "https",
                connect_timeout=10,
                send_receive_timeout=300,
            )
        except Exception as exc:
            raise StoreError(f"could not reach ClickHouse at {parsed.redacted}: {type(exc).__name__}") from None
        store = _ConnectStore(client, "http", parsed.redacted)
    else:
        from clickhouse_driver import Client

        client = Client(
            host=parsed.host,
            port=parsed.port or (9440 if parsed.scheme == "clickhouses" else 9000),
            user=parsed.user,
            password=parsed.password,
            database=parsed.database,
            secure=parsed.scheme == "clickhouses",
            connect_timeout=10,
            send_receive_timeout=300,
            settings={"server_side_params": True},
        )
        store = _NativeStore(client, parsed.redacted)
    try:
        yield store
    finally:
        store.close()
