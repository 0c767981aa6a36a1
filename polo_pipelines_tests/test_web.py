"""The HTTP API and the pages on a real server (uvicorn on a free port) over the sample world in a real store:
answers equal the drill-down service's, bad parameters 400 naming them, unknown ids 404, rule changes need the token
(the API) or a signed-in session and its CSRF token (the pages), and no secret is ever in an answer."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
import uvicorn
import yaml

from polo_pipelines.drilldown.periods import Periods
from polo_pipelines.drilldown.service import DrillDown, to_json
from polo_pipelines.hierarchy import ancestry as hy
from polo_pipelines.hierarchy.rollup import rebuild_node_rollup
from polo_pipelines.rules import evaluate, ruleset
from polo_pipelines.sources import sample
from polo_pipelines.sources.aws import cur
from polo_pipelines.sources.aws import sample as aws_sample
from polo_pipelines.sources.cloudtrail import sample as trail_sample
from polo_pipelines.sources.cloudtrail import trail
from polo_pipelines.sources.locations import open_location
from polo_pipelines.store import forget_migrations, polo_store
from polo_pipelines.store.events import day_range, replace_days
from polo_pipelines.store.shared import SharedStore
from polo_pipelines.web.app import create_app

from .conftest import TODAY

TOKEN = "polo-test-token-Zq81"
PERIODS = Periods.last_complete_week(TODAY)
NOW = dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A real server on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app):
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The sample world's costs and trail in a store with its ancestry, the default rules evaluated: read-only here."""
    home = tmp_path_factory.mktemp("web")
    forget_migrations()
    root = sample.write_sample(end=TODAY, root=home / "sample")
    start, end = sample.sample_window(root)
    dsn = f"chdb://{home / 'clickhouse'}"
    rules_path = home / "rules.yaml"
    shutil.copy(ruleset.DEFAULT_FILE, rules_path)
    with polo_store(dsn) as store:
        window = cur.collect(open_location(str(aws_sample.export_root(root))), "polo-sample", start, end)
        replace_days(store, window.events, collector=cur.COLLECTOR, days=day_range(start, end), source="sample")
        activity = trail.collect(open_location(str(trail_sample.trail_root(root))), start, end)
        replace_days(store, activity.events, collector=trail.COLLECTOR, days=day_range(start, end), source="sample")
        hy.refresh(store, hy.load())
        rebuild_node_rollup(store)
        ruleset.sync(store, ruleset.load(rules_path))
        evaluate.evaluate(store, ruleset.load(rules_path), NOW)
    yield dsn, rules_path
    forget_migrations()


@pytest.fixture(scope="module")
def server(world):
    dsn, rules_path = world
    served = Served(create_app(dsn, rules_path=rules_path, token=TOKEN, today=lambda: TODAY))
    yield served
    served.stop()


def service_answer(dsn: str, fn):
    """What the drill-down service says, on a session of this thread (the server's is given up meanwhile)."""
    with polo_store(dsn, reader=True) as store:
        return to_json(fn(DrillDown(store)))


def rounded(value):
    """A JSON value with every number to the millionth (the engine may add floats in another order)."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def get(server, path: str, **params) -> requests.Response:
    return requests.get(server.url + path, params=params, timeout=60)


# ------------------------------------------------------------------ the drill-down


def test_level_1_is_the_services_answer_with_its_periods_settings_and_completeness(server, world):
    got = get(server, "/api/v1/cost/delta")
    assert got.status_code == 200
    doc = got.json()
    assert doc["periods"] == PERIODS.as_json() and doc["end_is_exclusive"] is True
    assert set(doc["completeness"]) == {"current", "compare"} and "words" in doc["completeness"]["current"]
    expected = service_answer(world[0], lambda s: s.overview(PERIODS, limit=20, causes=8).as_json())
    for part in ("nodes", "causes", "total"):
        assert rounded(doc[part]) == rounded(expected[part])

    top = doc["causes"][0]["node_id"]
    children = get(server, "/api/v1/cost/delta", parentNodeId="customer:acme").json()
    assert list(children["nodes"]) == ["marqo_logical"] and "causes" not in children
    assert {n["parent_id"] for n in children["nodes"]["marqo_logical"]} == {"customer:acme"}
    assert top


def test_level_2_and_3_and_unknown_ids(server, world):
    level2 = get(server, "/api/v1/cost/delta/resources", nodeId="cluster:acme-prod-1")
    assert level2.status_code == 200
    doc = level2.json()
    expected = service_answer(world[0], lambda s: s.resources("cluster:acme-prod-1", PERIODS, hierarchy="marqo_logical").as_json())
    assert rounded(doc["resources"]) == rounded(expected["resources"]) and doc["node_delta"] == pytest.approx(expected["node_delta"])
    nat = next(r for r in doc["resources"] if r["resource_type"] == "ec2:natgateway")

    level3 = get(
        server, "/api/v1/cost/delta/events", arn=nat["resource_arn"], start=str(PERIODS.compare_start), end=str(PERIODS.current_end)
    ).json()
    assert level3["resource"] == nat["resource_arn"] and level3["events"]
    times = [e["event_time"] for e in level3["events"]]
    assert times == sorted(times, reverse=True)
    kinds = {e["event_type"] for e in level3["events"]}
    assert "cost" in kinds and kinds & {"config", "lifecycle"}  # the trail's route and routed instances
    assert "alice@example.com" in level3["explanation"]["text"]
    assert level3["completeness"]["current"]["start"] == str(PERIODS.current_start)

    assert get(server, "/api/v1/cost/delta/resources", nodeId="cluster:nowhere").status_code == 404
    missing = get(server, "/api/v1/cost/delta/events", arn="arn:aws:ec2:us-east-1:1:instance/i-none")
    assert missing.status_code == 404 and "unknown resource" in missing.json()["error"]


@pytest.mark.parametrize(
    "path, params, parameter",
    [
        ("/api/v1/cost/delta", {"currentStart": "2026-13-01", "currentEnd": "2026-11-20"}, "currentStart"),
        ("/api/v1/cost/delta", {"currentStart": "2026-11-09"}, "currentEnd"),
        ("/api/v1/cost/delta", {"currentStart": "2026-11-16", "currentEnd": "2026-11-09"}, "currentStart"),
        ("/api/v1/cost/delta", {"hierarchy": "nope"}, "hierarchy"),
        ("/api/v1/cost/delta", {"nodeThreshold": "-1"}, "nodeThreshold"),
        ("/api/v1/cost/delta", {"nodeThreshold": "nan"}, "nodeThreshold"),
        ("/api/v1/cost/delta", {"limit": "0"}, "limit"),
        ("/api/v1/cost/delta", {"includeCredits": "maybe"}, "includeCredits"),
        ("/api/v1/cost/delta", {"node": "cluster:acme-prod-1"}, "node"),
        ("/api/v1/cost/delta/resources", {}, "nodeId"),
        ("/api/v1/cost/delta/events", {"arn": "x", "start": "2026-11-09"}, "end"),
        ("/api/v1/violations", {"severity": "urgent"}, "severity"),
        ("/api/v1/violations", {"state": "closed"}, "state"),
        ("/api/v1/compliance", {"hierarchy": "nope"}, "hierarchy"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(server, path, params, parameter):
    got = get(server, path, **params)
    assert got.status_code == 400, got.text
    assert got.json()["parameter"] == parameter and got.json()["error"].startswith(f"{parameter}: ")


def test_summary_status_violations_and_compliance(server):
    summary = get(server, "/api/v1/cost/summary").json()
    assert summary["total"]["current_cost"] > 0 and len(summary["daily"]["current"]) == 7
    assert [a["node_id"] for a in summary["accounts"]] and summary["top_nodes"]["hierarchy"] == "marqo_logical"
    assert {n["depth"] for n in summary["top_nodes"]["nodes"]} == {1} or len({n["depth"] for n in summary["top_nodes"]["nodes"]}) == 1
    status = get(server, "/api/v1/status").json()
    assert {c["collector"] for c in status["collectors"]} >= {"cost_aws"}
    everything = get(server, "/api/v1/violations", state="all").json()["violations"]
    assert everything, "the default rules found something in the sample world"
    warnings = get(server, "/api/v1/violations", severity="warning").json()["violations"]
    assert warnings and {v["severity"] for v in warnings} == {"warning"}
    scoped = get(server, "/api/v1/violations", scope="cluster:staging-1", state="all").json()["violations"]
    assert {v["rule_id"] for v in scoped} <= {v["rule_id"] for v in everything}
    assert get(server, "/api/v1/violations", scope="cluster:nowhere").status_code == 404
    scores = get(server, "/api/v1/compliance", hierarchy="aws_account").json()["compliance"]
    assert scores and all(0 <= s["compliance_pct"] <= 100 for s in scores) and {s["hierarchy"] for s in scores} == {"aws_account"}


def test_openapi_describes_every_endpoint_and_its_parameters(server):
    spec = get(server, "/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    delta = spec["paths"]["/api/v1/cost/delta"]["get"]
    assert {p["name"] for p in delta["parameters"]} >= {
        "currentStart",
        "currentEnd",
        "compareStart",
        "compareEnd",
        "hierarchy",
        "parentNodeId",
    }
    assert spec["paths"]["/api/v1/rules"]["post"]["security"] == [{"token": []}]
    page = get(server, "/docs")
    assert page.status_code == 200 and "/api/v1/cost/delta/events" in page.text


# ------------------------------------------------------------------ the rules


NEW_RULE = {
    "id": "acme-weekly",
    "name": "Acme under $2,000 a week",
    "type": "budget",
    "scope": {"hierarchy": "marqo_logical", "node": "customer:acme"},
    "condition": {"max_usd": 2000, "period": "week"},
    "severity": "warning",
}


def test_rule_changes_need_the_token_and_keep_the_file_valid_and_synced(server, world):
    dsn, rules_path = world
    before = rules_path.read_text()
    url = server.url + "/api/v1/rules"
    assert requests.post(url, json=NEW_RULE, timeout=30).status_code == 401
    assert requests.post(url, json=NEW_RULE, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert rules_path.read_text() == before
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        made = requests.post(url, json=NEW_RULE, headers=auth, timeout=30)
        assert made.status_code == 200, made.text
        assert made.json()["rule"]["scope_label"] == "customer:acme" and made.json()["synced"]["added"] == 1
        on_disk = yaml.safe_load(rules_path.read_text())["rules"]
        assert on_disk[-1]["id"] == "acme-weekly" and on_disk[-1]["condition"]["max_usd"] == 2000
        assert ruleset.load(rules_path)[-1].rule_id == "acme-weekly"  # still a valid rule file

        assert requests.post(url, json=NEW_RULE, headers=auth, timeout=30).status_code == 409
        bad = requests.post(url, json={**NEW_RULE, "id": "x2", "severity": "urgent"}, headers=auth, timeout=30)
        assert bad.status_code == 400 and "severity must be one of info, warning, critical" in bad.json()["error"]
        assert requests.post(url, data=b"{not json", headers=auth, timeout=30).status_code == 400

        changed = requests.put(
            f"{url}/acme-weekly", json={**NEW_RULE, "condition": {"max_usd": 2500, "period": "week"}}, headers=auth, timeout=30
        )
        assert changed.status_code == 200 and changed.json()["rule"]["condition"]["max_usd"] == 2500
        off = requests.post(f"{url}/acme-weekly/disable", headers=auth, timeout=30).json()
        assert off["rule"]["enabled"] is False and yaml.safe_load(rules_path.read_text())["rules"][-1]["enabled"] is False
        assert requests.post(f"{url}/acme-weekly/enable", headers=auth, timeout=30).json()["rule"]["enabled"] is True
        assert requests.post(f"{url}/no-such-rule/disable", headers=auth, timeout=30).status_code == 404
        assert get(server, "/api/v1/rules/acme-weekly").json()["condition"]["max_usd"] == 2500
        with polo_store(dsn, reader=True) as store:
            assert ruleset.stored(store)["acme-weekly"].condition["max_usd"] == 2500
    finally:
        rules_path.write_text(before)


def test_without_a_token_rule_changes_are_off(world):
    dsn, rules_path = world
    served = Served(create_app(dsn, rules_path=rules_path, token="", today=lambda: TODAY))
    try:
        got = requests.post(served.url + "/api/v1/rules", json=NEW_RULE, headers={"Authorization": "Bearer "}, timeout=30)
        assert got.status_code == 403 and "POLO_API_TOKEN" in got.json()["error"]
    finally:
        served.stop()


def test_the_pages_forms_need_a_session_and_its_csrf_token(server, world):
    _, rules_path = world
    before = rules_path.read_text()
    form = {"id": "from-a-page", "type": "budget", "condition_max_usd": "10", "condition_period": "day", "severity": "info"}
    assert requests.post(server.url + "/policies/new", data=form, timeout=30, allow_redirects=False).status_code == 401
    browser = requests.Session()
    assert browser.post(server.url + "/login", data={"token": "wrong"}, timeout=30).status_code == 401
    signed = browser.post(server.url + "/login", data={"token": TOKEN}, timeout=30, allow_redirects=False)
    assert signed.status_code == 303
    cookie = next(c for c in browser.cookies if c.name == "polo_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and TOKEN not in cookie.value
    assert browser.post(server.url + "/policies/new", data=form, timeout=30).status_code == 403  # no CSRF token
    page = browser.get(server.url + "/policies/new", timeout=30).text
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    elsewhere = browser.post(
        server.url + "/policies/new", data={**form, "csrf": csrf}, headers={"Origin": "https://evil.example"}, timeout=30
    )
    assert elsewhere.status_code == 403 and "another site" in elsewhere.text
    assert rules_path.read_text() == before
    try:
        saved = browser.post(server.url + "/policies/new", data={**form, "csrf": csrf}, timeout=30, allow_redirects=False)
        assert saved.status_code == 303, saved.text
        assert ruleset.load(rules_path)[-1].rule_id == "from-a-page"
        invalid = browser.post(server.url + "/policies/new", data={**form, "id": "Bad Id", "csrf": csrf}, timeout=30)
        assert invalid.status_code == 400 and "id must be lower-case letters" in invalid.text
    finally:
        rules_path.write_text(before)


def test_no_secret_is_in_any_answer_or_page(world, monkeypatch):
    dsn, rules_path = world
    monkeypatch.setenv("POLO_CLICKHOUSE_DSN", "clickhouse://polo:Sup3rSecretDSN@db.internal:9000/polo")
    monkeypatch.setenv("POLO_NOTIFY_WEBHOOK_URLS", "ops=https://hooks.example/T0/B0/SECRETHOOKPATH")
    served = Served(create_app(dsn, rules_path=rules_path, token=TOKEN, today=lambda: TODAY))
    try:
        bodies = [requests.get(served.url + p, timeout=60).text for p in (
            "/api/v1/status", "/api/v1/rules", "/api/v1/cost/delta", "/api/v1/violations?state=all", "/openapi.json",
            "/", "/delta", "/policies", "/violations", "/compliance", "/docs", "/login", "/policies/new",
        )]  # fmt: skip
        bodies.append(requests.post(served.url + "/login", data={"token": "nope"}, timeout=30).text)
        bodies.append(requests.post(served.url + "/api/v1/rules", json={}, headers={"Authorization": "Bearer x"}, timeout=30).text)
    finally:
        served.stop()
    for body in bodies:
        for secret in (TOKEN, "Sup3rSecretDSN", "SECRETHOOKPATH"):
            assert secret not in body


# ------------------------------------------------------------------ the store, shared with writers


def test_a_writer_in_another_process_gets_the_store_the_server_holds(world):
    """The shared session is given up as soon as another process waits, not when it idles out (a minute here)."""
    dsn, _ = world
    with SharedStore(dsn, idle_s=60, wait_s=60) as shared:
        assert shared.run(lambda s: s.query_rows("SELECT 1")) == [(1,)]
        writer = subprocess.run(
            [sys.executable, "-c", f"from polo_pipelines.store import polo_store\nwith polo_store({dsn!r}, wait_s=20) as s: s.query_rows('SELECT 1')\nprint('in')"],
            capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent,
        )  # fmt: skip
        assert writer.returncode == 0 and writer.stdout.strip() == "in", writer.stderr[-2000:]
        assert shared.run(lambda s: s.query_rows("SELECT 2")) == [(2,)]  # opened again for the next request
        assert shared.opened == 2


def test_a_loopback_server_without_a_token_makes_its_own_readable_by_its_owner_only(tmp_path, world):
    from polo_pipelines.web.security import local_token

    path = local_token(tmp_path / "home")
    token = path.read_text().strip()
    assert len(token) >= 24 and (path.stat().st_mode & 0o777) == 0o600
    assert local_token(tmp_path / "home").read_text().strip() == token  # made once
    dsn, rules_path = world
    served = Served(create_app(dsn, rules_path=rules_path, token=token, token_file=path, today=lambda: TODAY))
    try:
        page = requests.get(served.url + "/login", timeout=30).text
        assert str(path) in page and token not in page
        browser = requests.Session()
        assert browser.post(served.url + "/login", data={"token": token}, timeout=30, allow_redirects=False).status_code == 303
    finally:
        served.stop()
