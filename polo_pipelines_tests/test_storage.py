"""The store's behaviour, the same on every backend this machine can reach; unreachable servers are skipped."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from polo_pipelines.store.storage import StoreError, open_store, parse_dsn

SERVER_DSNS = {
    "native": os.environ.get("POLO_TEST_CLICKHOUSE_DSN", ""),
    "http": os.environ.get("POLO_TEST_CLICKHOUSE_HTTP_DSN", ""),
}


def _server_or_skip(kind: str) -> str:
    dsn = SERVER_DSNS[kind]
    if not dsn:
        var = "POLO_TEST_CLICKHOUSE_DSN" if kind == "native" else "POLO_TEST_CLICKHOUSE_HTTP_DSN"
        pytest.skip(f"{kind} ClickHouse server not configured: set {var} to run the store suite against it")
    try:
        with open_store(dsn) as s:
            s.query_df("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is a reason to skip, said aloud
        pytest.skip(f"{kind} ClickHouse server at {parse_dsn(dsn).redacted} not reachable: {type(exc).__name__}")
    return dsn


@pytest.fixture(params=["chdb", "native", "http"])
def any_dsn(request, dsn):
    if request.param == "chdb":
        return dsn
    return _server_or_skip(request.param)


@pytest.fixture
def scratch(any_dsn):
    name = f"polo_test.t_{os.getpid()}_{time.monotonic_ns()}"
    with open_store(any_dsn) as s:
        s.command("CREATE DATABASE IF NOT EXISTS polo_test")
        s.command(
            f"CREATE TABLE {name} (k String, t DateTime64(3, 'UTC'), d Date, v Float64, n UInt64, "
            "m Map(String, String), a Array(String)) ENGINE = MergeTree ORDER BY k"
        )
    yield any_dsn, name
    with open_store(any_dsn) as s:
        s.command(f"DROP TABLE IF EXISTS {name}")


def test_insert_and_query_round_trip(scratch):
    dsn, table = scratch
    frame = pd.DataFrame(
        {
            "k": ["a", "b"],
            "t": pd.to_datetime(["2026-11-01 10:00:00.123", "2026-11-02 00:00:00.000"]).astype("datetime64[ms]"),
            "d": [dt.date(2026, 11, 1), dt.date(2026, 11, 2)],
            "v": [1.5, -2.25],
            "n": [1, 2],
            "m": [{"tag:team": "core"}, {}],
            "a": [["x"], []],
        }
    )
    with open_store(dsn) as s:
        s.insert_df(table, frame)
        got = s.query_df(f"SELECT k, t, d, v, n, m, a FROM {table} ORDER BY k")
    assert got["k"].tolist() == ["a", "b"]
    assert got["v"].tolist() == [1.5, -2.25]
    assert got["m"].tolist() == [{"tag:team": "core"}, {}]
    assert got["a"].tolist() == [["x"], []]
    assert pd.Timestamp(got["t"][0]).tz_localize(None) == pd.Timestamp("2026-11-01 10:00:00.123")
    assert pd.Timestamp(got["d"][1]).date() == dt.date(2026, 11, 2)


def test_parameters_carry_hostile_values_as_data(scratch):
    dsn, table = scratch
    hostile = "x'); DROP TABLE polo.resource_events; --"
    with open_store(dsn) as s:
        s.insert_df(
            table,
            pd.DataFrame(
                {"k": [hostile], "t": [pd.Timestamp("2026-01-01")], "d": [dt.date(2026, 1, 1)], "v": [1.0], "n": [1], "m": [{}], "a": [[]]}
            ),
        )
        got = s.query_df(f"SELECT count() AS c FROM {table} WHERE k = {{k:String}}", {"k": hostile})
        none = s.query_df(f"SELECT count() AS c FROM {table} WHERE k = {{k:String}}", {"k": "x"})
    assert int(got["c"][0]) == 1
    assert int(none["c"][0]) == 0


def test_empty_result_keeps_its_columns(scratch):
    dsn, table = scratch
    with open_store(dsn) as s:
        got = s.query_df(f"SELECT k, v FROM {table} WHERE k = {{k:String}}", {"k": "nothing"})
    assert list(got.columns) == ["k", "v"]
    assert got.empty


def test_query_settings_apply_and_unknown_ones_are_left_out(scratch):
    dsn, table = scratch
    rows = pd.DataFrame(
        {
            "k": ["a", "b"],
            "t": [pd.Timestamp("2026-01-01")] * 2,
            "d": [dt.date(2026, 1, 1)] * 2,
            "v": [1.0, 2.0],
            "n": [1, 2],
            "m": [{}, {}],
            "a": [[], []],
        }
    )
    with open_store(dsn) as s:
        s.insert_df(table, rows)
        limited = {"max_result_rows": 1, "result_overflow_mode": "throw"}
        with pytest.raises(Exception, match="(?i)limit for result exceeded"):
            s.query_df(f"SELECT k FROM {table}", settings=limited)
        with pytest.raises(Exception, match="(?i)limit for result exceeded"):
            s.query_rows(f"SELECT k FROM {table}", settings=limited)
        hints = {"polo_no_such_setting": 1, "max_threads": 1}
        frame = s.query_df(f"SELECT k FROM {table} ORDER BY k", settings=hints)
        rows = s.query_rows(f"SELECT k, v, m FROM {table} WHERE k = {{k:String}}", {"k": "b"}, settings=hints)
    assert frame["k"].tolist() == ["a", "b"]
    assert rows == [("b", 2.0, {})]


def test_insert_of_nothing_is_a_no_op(scratch):
    dsn, table = scratch
    with open_store(dsn) as s:
        s.insert_df(table, pd.DataFrame({"k": []}))
        assert int(s.query_df(f"SELECT count() AS c FROM {table}")["c"][0]) == 0


def test_dsn_parsing_and_redaction():
    native = parse_dsn("clickhouses://polo:s3cr%40t@ch.example.com:9440/analytics")
    assert (native.scheme, native.host, native.port, native.user, native.password, native.database) == (
        "clickhouses",
        "ch.example.com",
        9440,
        "polo",
        "s3cr@t",
        "analytics",
    )
    assert "s3cr" not in native.redacted
    assert parse_dsn("https://u:p@host/db").redacted == "https://u@host/db"
    assert parse_dsn("chdb:///srv/polo/ch").path == "/srv/polo/ch"
    for bad in ("postgres://x/y", "chdb://relative/path", "http:///nohost"):
        with pytest.raises(StoreError):
            parse_dsn(bad)


def test_unreachable_server_error_names_no_password():
    with pytest.raises(Exception) as info:
        with open_store("http://polo:hunter2@127.0.0.1:9/polo") as s:
            s.query_df("SELECT 1")
    assert "hunter2" not in str(info.value)


def _hold_and_write(dsn: str, tag: str, hold_s: float, out) -> None:
    try:
        with open_store(dsn) as s:
            started = time.monotonic()
            s.command("CREATE TABLE IF NOT EXISTS default.lock_probe (tag String, at Float64) ENGINE = MergeTree ORDER BY tag")
            time.sleep(hold_s)
            s.insert_df("default.lock_probe", pd.DataFrame({"tag": [tag], "at": [started]}))
        out.put((tag, "ok", started, time.monotonic()))
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        out.put((tag, f"error: {exc}", 0.0, 0.0))


def test_embedded_store_serialises_processes(dsn):
    """Two processes using one data directory at once both succeed: one waits for the other."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_hold_and_write, args=(dsn, tag, 1.0, out)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert [r[1] for r in results] == ["ok", "ok"]
    (_, _, s1, e1), (_, _, s2, e2) = sorted(results, key=lambda r: r[2])
    assert s2 >= e1 - 0.05, "the second process must not have had the store while the first held it"
    with open_store(dsn) as s:
        assert sorted(s.query_df("SELECT tag FROM default.lock_probe")["tag"]) == ["a", "b"]


HOLD_THE_STORE = """
import sys, time
from polo_pipelines.store.storage import open_store
with open_store(sys.argv[1]) as store:
    store.command("SELECT 1")
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_reader_behind_a_long_write_stops_in_bounded_time_naming_the_holder(tmp_path, monkeypatch):
    import subprocess
    import sys

    from polo_pipelines.store.storage import StoreBusy, open_store

    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    script = tmp_path / "hold.py"
    script.write_text(HOLD_THE_STORE)
    holder = subprocess.Popen([sys.executable, str(script), dsn], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        monkeypatch.setenv("POLO_READ_WAIT_SECONDS", "1")
        with pytest.raises(StoreBusy) as info:  # not after the holder's 120 s: the read gave up first
            with open_store(dsn, reader=True):
                pass
        assert f"process {holder.pid}" in str(info.value) and "POLO_READ_WAIT_SECONDS" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    with open_store(dsn, reader=True) as store:  # free again once the holder is gone
        assert store.query_rows("SELECT 1") == [(1,)]


def test_a_server_that_is_down_is_named_not_a_driver_traceback():
    from polo_pipelines.store.storage import StoreUnreachable

    for dsn in ("clickhouse://polo:pw-canary@127.0.0.1:1/polo", "http://polo:pw-canary@127.0.0.1:1/polo"):
        with pytest.raises(StoreError) as info:
            with open_store(dsn) as store:
                store.query_rows("SELECT 1")
        assert "127.0.0.1" in str(info.value) and "pw-canary" not in str(info.value)
    assert isinstance(info.value, StoreError)
    with pytest.raises(StoreUnreachable):
        with open_store("clickhouse://polo@127.0.0.1:1/polo") as store:
            store.command("SELECT 1")


def test_a_full_disk_is_named_as_such():
    from polo_pipelines.store.storage import StoreFull, classify

    error = RuntimeError("Code: 243. DB::Exception: Cannot reserve 1.00 MiB, not enough space. (NOT_ENOUGH_SPACE)")
    mapped = classify(error, "chdb:///srv/polo/clickhouse")
    assert isinstance(mapped, StoreFull) and "disk space" in str(mapped) and "chdb:///srv/polo/clickhouse" in str(mapped)
    assert classify(ValueError("something else"), "x").__class__ is ValueError


WAIT_FOR_A_TURN = """
import sys, time
from polo_pipelines.store.storage import open_store
with open_store(sys.argv[1]) as store:
    print(time.time(), flush=True)
"""


def test_a_waiting_process_goes_before_one_that_lets_go_and_asks_again(tmp_path):
    """The lock is first come first served: a process that closes its session and opens another at once (a backfill's
    steps, one after another) does not take the store back from a process already waiting for it."""
    import subprocess
    import sys
    import time

    from polo_pipelines.store.storage import open_store

    dsn = f"chdb://{tmp_path / 'clickhouse'}"
    with open_store(dsn) as store:
        store.command("SELECT 1")
        script = tmp_path / "turn.py"
        script.write_text(WAIT_FOR_A_TURN)
        waiting = subprocess.Popen([sys.executable, str(script), dsn], stdout=subprocess.PIPE, text=True)
        lock = Path(str(tmp_path / "clickhouse") + ".lock")
        for _ in range(600):  # until it says it waits
            if list(lock.parent.glob(lock.name + ".waiting.*")):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the second process never waited")
    took = []
    for _ in range(5):  # let go and ask again at once, five times
        with open_store(dsn) as store:
            took.append(time.time())
            time.sleep(0.2)
    out, _ = waiting.communicate(timeout=60)
    assert waiting.returncode == 0
    assert float(out.strip()) < took[1], "the waiting process had its turn before this one's second session"
