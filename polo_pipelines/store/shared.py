"""One store session held open across many short reads (the web API's requests), given up whenever another process
waits for the store.

Opening the embedded store costs about 180 ms, a Level 1 answer about 10: a server that opened a session per request
would spend nearly all its time opening. So one thread owns a session and runs every request's reads on it, one at a
time (the embedded engine serves one session anyway). It closes the session as soon as another process says it waits
(a Dagster step that writes, ``polo delta`` in a terminal; see ``storage.others_waiting``) or after a short idle, and
before opening again it lets a waiting process go first: requests then wait for the writer instead of failing, and
the writer waits for at most the one read in flight.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from polo_pipelines.settings import clickhouse_dsn
from polo_pipelines.store import polo_store
from polo_pipelines.store.storage import Store, StoreError, others_waiting, parse_dsn

T = TypeVar("T")
log = logging.getLogger("polo.store")

IDLE_S = 2.0  # a session nobody used for this long is closed
POLL_S = 0.02  # how often an idle holder looks for a waiting process
YIELD_S = 10.0  # how long to let a waiting process go first before opening again anyway


def wait_setting() -> float:
    """POLO_API_STORE_WAIT_SECONDS: how long one request may wait for the store while others write (default 600)."""
    raw = os.environ.get("POLO_API_STORE_WAIT_SECONDS", "")
    try:
        return float(raw) if raw else 600.0
    except ValueError:
        raise StoreError(f"POLO_API_STORE_WAIT_SECONDS must be a number of seconds, got {raw!r}") from None


class SharedStore:
    """Runs ``fn(store)`` for any thread on one session owned by one thread; see the module's docstring."""

    def __init__(self, dsn: str | None = None, *, idle_s: float = IDLE_S, wait_s: float | None = None):
        self.dsn = dsn or clickhouse_dsn()
        self.idle_s = idle_s
        self.wait_s = wait_setting() if wait_s is None else wait_s
        self.opened = 0  # sessions opened so far: the store's "generation" (see ``remembered``)
        # Only the embedded store is held exclusively: nothing else can write while this session is open.
        self._exclusive = parse_dsn(self.dsn).scheme == "chdb"
        self._memo: dict[Any, Any] = {}
        self._memo_generation = -1
        self.longest_wait_s = 0.0  # the longest a request waited for the store (opening included)
        self._jobs: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="polo-store", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[[Store], T]) -> T:
        """``fn(store)`` on the held session; its exception, if any, raised here."""
        return self.submit(fn).result()

    def submit(self, fn: Callable[[Store], T]) -> concurrent.futures.Future:
        """``fn(store)`` on the held session, later: its future (an event loop awaits it without a thread of its own)."""
        if self._stop.is_set():
            raise StoreError("the shared store session is closed")
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((fn, done, time.monotonic()))
        return done

    def remembered(self, store: Store, key: Any, compute: Callable[[Store], T]) -> T:
        """``compute(store)``, kept for as long as this session stays open on the embedded store: no other process
        can write meanwhile, so what depends only on the store's contents (how complete the periods are, the
        hierarchies it holds) is the same until the session is given up. On a server, computed each time. Call it
        from inside ``run``."""
        if not self._exclusive:
            return compute(store)
        if self._memo_generation != self.opened:
            self._memo, self._memo_generation = {}, self.opened
        if key not in self._memo:
            self._memo[key] = compute(store)
        return self._memo[key]

    def close(self) -> None:
        self._stop.set()
        self._jobs.put(None)
        self._thread.join(timeout=30)

    def __enter__(self) -> SharedStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------ the owning thread

    def _serve(self) -> None:
        session: contextlib.ExitStack | None = None
        store: Store | None = None
        last = time.monotonic()
        while True:
            try:
                job = self._jobs.get(timeout=POLL_S)
            except queue.Empty:
                if session is not None and (time.monotonic() - last > self.idle_s or others_waiting(self.dsn)):
                    session.close()
                    session, store = None, None
                continue
            if job is None:
                break
            fn, done, asked = job
            if not done.set_running_or_notify_cancel():
                continue
            try:
                if store is None:
                    self._let_waiting_go_first()
                    session = contextlib.ExitStack()
                    store = session.enter_context(polo_store(self.dsn, reader=True, wait_s=self.wait_s))
                    self.opened += 1
                self.longest_wait_s = max(self.longest_wait_s, time.monotonic() - asked)
                done.set_result(fn(store))
            except BaseException as exc:  # noqa: BLE001  (handed to the caller)
                done.set_exception(exc)
                if isinstance(exc, StoreError) and session is not None:  # a broken session is not kept
                    session.close()
                    session, store = None, None
            last = time.monotonic()
            if session is not None and others_waiting(self.dsn):
                session.close()
                session, store = None, None
        if session is not None:
            session.close()

    def _let_waiting_go_first(self) -> None:
        until = time.monotonic() + YIELD_S
        while others_waiting(self.dsn) and time.monotonic() < until:
            time.sleep(POLL_S)
