"""The HTTP API and the pages for `make bench`: Level 1, 2 and 3 through HTTP at 10M cost events (<= 30, 30 and 10 ms
at the median), a page's first render (<= 300 ms), and requests while another process writes to the embedded store.

The store is the drill-down bench's (``bench.delta``: 10M cost events, 50,000 resources, 200 clusters, a year),
generated and built first (not timed). ``polo serve`` runs in a process of its own, as in production; the client
asks over keep-alive HTTP, a new node or resource each run. The pages are timed twice: the server's whole HTML
answer, and in Debian's Chromium (where installed) from navigation start to the load event. Last, a writer process
re-collects one day after another (``replace_days`` and the node rollups' refresh, one store session per day, as a
collector step does) while the client keeps asking: every request must succeed, and the longest wait is reported.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.delta import END, WARM_RUNS, build, generate
from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.store import polo_store

WRITE_S = 30.0  # how long the writer keeps writing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_ms(session: requests.Session, urls: list[str]) -> float:
    """The median of one GET per url after a warm-up with the first; every answer must be a 200."""
    session.get(urls[0], timeout=120).raise_for_status()
    samples = []
    for url in urls[1:]:
        t = time.perf_counter()
        answer = session.get(url, timeout=120)
        samples.append((time.perf_counter() - t) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:300]}")
    return round(statistics.median(samples), 2)


def browser_render_ms(urls: list[str]) -> float | None:
    """Chromium's navigation start to load event, the median over ``urls`` (None without the browser)."""
    if not Path("/usr/bin/chromedriver").exists():
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(urls[0])
        samples = []
        for url in urls[1:]:
            driver.get(url)
            timing = driver.execute_script("const t = performance.getEntriesByType('navigation')[0]; return t.loadEventEnd - t.startTime;")
            samples.append(float(timing))
        return round(statistics.median(samples), 1)
    finally:
        driver.quit()


WRITER = """
import datetime as dt, sys, time
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import day_range, replace_days
from polo_pipelines.hierarchy.rollup import update_node_rollups
dsn, until, first = sys.argv[1], time.time() + float(sys.argv[2]), dt.date.fromisoformat(sys.argv[3])
n = 0
while time.time() < until:
    day = first + dt.timedelta(days=n % 20)
    with polo_store(dsn) as store:
        frame = store.query_df(
            "SELECT * EXCEPT (_loaded_at) FROM polo.resource_events WHERE collector = 'cost_aws' AND toDate(event_time) = {d:Date}",
            {"d": day},
        )
        replace_days(store, frame, collector="cost_aws", days=day_range(day, day + dt.timedelta(days=1)), source="bench-writer")
    with polo_store(dsn) as store:
        update_node_rollups(store)
    n += 1
print(n)
"""


def under_writes(session: requests.Session, base: str, dsn: str, nodes: list[str], arns: list[str], periods: Periods) -> dict:
    """Ask Level 1, 2 and 3 in turn for WRITE_S seconds while a writer process re-collects day after day."""
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, dsn, str(WRITE_S), (END - dt.timedelta(days=40)).isoformat()],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    asked, failed, waits = 0, [], []
    p = _period_query(periods)
    while writer.poll() is None:
        i = asked % len(nodes)
        url = [
            f"{base}/api/v1/cost/delta?hierarchy=marqo_logical&{p}",
            f"{base}/api/v1/cost/delta/resources?nodeId={nodes[i]}&hierarchy=marqo_logical&{p}",
            f"{base}/api/v1/cost/delta/events?arn={arns[i]}&start={periods.compare_start}&end={periods.current_end}",
        ][asked % 3]
        t = time.perf_counter()
        try:
            answer = session.get(url, timeout=900)
            if answer.status_code != 200:
                failed.append(f"{answer.status_code}: {answer.text[:200]}")
        except requests.RequestException as exc:
            failed.append(type(exc).__name__)
        waits.append(time.perf_counter() - t)
        asked += 1
    out, err = writer.communicate()
    if writer.returncode != 0:
        raise RuntimeError(f"the writer failed: {err[-2000:]}")
    return {
        "seconds": WRITE_S,
        "days_written": int(out.strip().splitlines()[-1]),
        "requests": asked,
        "failed": len(failed),
        "failures": failed[:5],
        "longest_wait_ms": round(max(waits) * 1000, 1),
        "median_ms": round(statistics.median(waits) * 1000, 1),
        "p99_ms": round(sorted(waits)[int(len(waits) * 0.99) - 1] * 1000, 1) if waits else None,
    }


def _period_query(periods: Periods) -> str:
    return (
        f"currentStart={periods.current_start}&currentEnd={periods.current_end}"
        f"&compareStart={periods.compare_start}&compareEnd={periods.compare_end}"
    )


def run(folder: str, events: int) -> dict:
    dsn = f"chdb://{Path(folder) / 'clickhouse'}"
    periods = Periods.last_complete_week(END)
    with polo_store(dsn) as store:
        t = time.perf_counter()
        generate(store, events)
        build(store)
        setup_s = time.perf_counter() - t
        nodes = [f"cluster:clu-{n}" for n in range(WARM_RUNS + 1)]
        arns = store.query_df(
            "SELECT resource_arn FROM polo.resource_ancestry WHERE hierarchy = 'marqo_logical' AND ancestor_id LIKE 'cluster:%' "
            "ORDER BY cityHash64(resource_arn) LIMIT {k:UInt32}",
            {"k": WARM_RUNS + 1},
        )["resource_arn"].tolist()
    hierarchy_file = Path(folder) / "hierarchy.yaml"
    hierarchy_file.write_text(
        "hierarchies:\n  marqo_logical:\n    levels:\n      - {type: customer, tag: customer}\n      - {type: cluster, tag: cluster}\n"
    )
    port = free_port()
    env = {**os.environ, "POLO_CLICKHOUSE_DSN": dsn, "POLO_HIERARCHY_FILE": str(hierarchy_file), "POLO_HOME": folder}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "polo"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                requests.get(f"{base}/openapi.json", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        session = requests.Session()
        p = _period_query(periods)
        window = f"start={periods.compare_start}&end={periods.current_end}"  # the data's last weeks, not today's
        shown = f"from={periods.current_start}&to={periods.current_end - dt.timedelta(days=1)}"  # the pages' period
        level = {
            "level1_ms": median_ms(session, [f"{base}/api/v1/cost/delta?hierarchy=marqo_logical&{p}"] * (WARM_RUNS + 1)),
            "level2_ms": median_ms(session, [f"{base}/api/v1/cost/delta/resources?nodeId={n}&hierarchy=marqo_logical&{p}" for n in nodes]),
            "level3_ms": median_ms(session, [f"{base}/api/v1/cost/delta/events?arn={a}&{window}" for a in arns]),
            "openapi_ms": median_ms(session, [f"{base}/openapi.json"] * 51),  # the server's own floor: no store
        }
        some = nodes[:21]
        pages = {
            "dashboard_ms": median_ms(session, [f"{base}/?{shown}"] * 21),
            "delta_ms": median_ms(session, [f"{base}/delta?hierarchy=marqo_logical&{shown}"] * 21),
            "resources_ms": median_ms(session, [f"{base}/delta?node={n}&hierarchy=marqo_logical&{shown}" for n in some]),
            "resource_ms": median_ms(session, [f"{base}/resource?arn={a}&{shown}" for a in arns[:21]]),
        }
        browser = {
            "delta_ms": browser_render_ms([f"{base}/delta?hierarchy=marqo_logical&{shown}"] * 11),
            "resources_ms": browser_render_ms([f"{base}/delta?node={n}&hierarchy=marqo_logical&{shown}" for n in some[:11]]),
        }
        writes = under_writes(session, base, dsn, nodes, arns, periods)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "events": events,
        "setup_s": round(setup_s, 1),
        "http": level,
        "pages_html": pages,
        "pages_browser": browser,
        "under_writes": writes,
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="polo-bench-web-") as tmp:
        print(json.dumps(run(tmp, int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)))
