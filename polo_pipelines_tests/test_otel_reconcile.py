"""Minutes, then the bill: the spans' last 15 minutes priced every 15 minutes (the rest of the day kept), a budget on
an operation's 15 minutes firing in the evaluation that follows and calling its action webhook once, and the day
reconciled to the hosts' bills when they land (services plus idle equal each host's cost, to the cent)."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from werkzeug import Response

from polo_pipelines.defs.collection.assets import COLLECTORS
from polo_pipelines.defs.otel.assets import otel_recent_costs, recent_window
from polo_pipelines.defs.store.resources import ClickHouseResource
from polo_pipelines.sources.otel import spans
from polo_pipelines.sources.otel.source import OtelSource
from polo_pipelines.store import polo_store
from polo_pipelines.store.events import unreconciled_days

from .conftest import load_daily_costs
from .test_otel_costs import BOX, HOST_A, T0, service, span
from .test_otel_prices import entry

DAY = T0.date()
BILL = 3.456789  # the instance's cost that day, as the AWS collector holds it
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-a"


def price_list(httpserver) -> None:
    httpserver.expect_request("/", method="POST").respond_with_json(
        {"FormatVersion": "aws_v1", "PriceList": [entry("m5.xlarge", "0.1920000000")]}, content_type="application/x-amz-json-1.1"
    )


def resources(dsn, httpserver) -> dict:
    return {"clickhouse": ClickHouseResource(dsn=dsn), "otel": OtelSource(enabled=True, pricing_endpoint_url=httpserver.url_for(""))}


def export(dsn, *members) -> None:
    with polo_store(dsn) as store:
        store.insert_df("polo.otel_traces", spans.rows(ExportTraceServiceRequest(resource_spans=list(members))))


def lines(dsn) -> list[tuple]:
    with polo_store(dsn) as store:
        return store.query_rows(
            """
            SELECT resource_arn, toString(event_time), round(value, 9), properties['basis'], properties['host'],
                   toFloat64OrZero(properties['estimate_host']) + toFloat64OrZero(properties['estimate_calls'])
            FROM polo.resource_events WHERE collector = 'cost_otel' ORDER BY event_time, resource_arn
            """
        )


def test_the_window_is_whole_buckets_before_now():
    assert recent_window(dt.datetime(2026, 12, 5, 10, 31, 7, tzinfo=dt.UTC), 30) == (
        dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 5, 10, 30, tzinfo=dt.UTC),
    )
    assert recent_window(dt.datetime(2026, 12, 5, 0, 5, tzinfo=dt.UTC), 10) == (
        dt.datetime(2026, 12, 4, 23, 45, tzinfo=dt.UTC),
        dt.datetime(2026, 12, 5, 0, 0, tzinfo=dt.UTC),
    )


def test_every_15_minutes_the_last_buckets_are_priced_and_the_rest_of_the_day_kept(dsn, httpserver, aws_credentials):
    price_list(httpserver)
    export(dsn, service("search", HOST_A, span(1, 1, "GET /search", 60, 300)))  # 10:01
    as_of = lambda at: {"ops": {"otel_recent_costs": {"config": {"as_of": at.isoformat()}}}}  # noqa: E731
    assert dg.materialize(
        [otel_recent_costs], resources=resources(dsn, httpserver), run_config=as_of(T0 + dt.timedelta(minutes=16))
    ).success
    assert lines(dsn) == [
        (
            "otel:search/GET /search",
            "2026-12-05 10:00:00.000",
            pytest.approx(300 * 0.192 / 3600),
            "estimated",
            "i-a",
            pytest.approx(300 * 0.192 / 3600),
        )
    ]

    # a late span in the 10:00 bucket and a new one at 10:20: the next run prices both buckets again, the rest stays
    export(dsn, service("search", HOST_A, span(2, 2, "GET /search", 120, 60)), service("batch", BOX, span(3, 3, "job", 1200, 100)))
    assert dg.materialize(
        [otel_recent_costs], resources=resources(dsn, httpserver), run_config=as_of(T0 + dt.timedelta(minutes=31))
    ).success
    held = lines(dsn)
    assert [(arn, when) for arn, when, *_ in held] == [
        ("otel:search/GET /search", "2026-12-05 10:00:00.000"),
        ("otel:batch/job", "2026-12-05 10:15:00.000"),
    ]
    assert held[0][2] == pytest.approx(360 * 0.192 / 3600) and held[1][2] == pytest.approx(100 * 0.85 / 3600)
    # a run 2 hours later sees no spans in its window: it leaves the earlier buckets as they are
    assert dg.materialize([otel_recent_costs], resources=resources(dsn, httpserver), run_config=as_of(T0 + dt.timedelta(hours=2))).success
    assert lines(dsn) == held
    with polo_store(dsn) as store:
        assert unreconciled_days(store, "cost_otel").empty  # every load's record matches what the day holds


def test_a_day_is_reconciled_to_the_hosts_bill_when_it_lands(dsn, httpserver, aws_credentials):
    price_list(httpserver)
    export(
        dsn,
        service("checkout", HOST_A, span(1, 1, "POST /checkout", 10, 600), span(1, 2, "SELECT orders", 20, 200, parent=1)),
        service("search", HOST_A, span(2, 3, "GET /search", 3600, 900)),  # 11:00
        service("batch", BOX, span(3, 4, "job", 30, 360)),
    )
    partition = {"partition_key": str(DAY)}
    # before the bill: the day's lines are the estimates
    result = dg.materialize([COLLECTORS["otel"]], resources=resources(dsn, httpserver), **partition)
    assert result.success
    before = {arn: value for arn, _, value, basis, *_ in lines(dsn) if basis == "estimated"}
    assert len(before) == 4 and not any(arn.startswith("otel:idle/") for arn in before)

    # the bill lands: i-a cost $3.456789 that day (the build box has no bill: it stays estimated)
    with polo_store(dsn) as store:
        load_daily_costs(store, {INSTANCE: [BILL]}, [DAY])
    result = dg.materialize([COLLECTORS["otel"]], resources=resources(dsn, httpserver), **partition)
    assert result.success
    metadata = result.asset_materializations_for_node("otel_cost_events")[0].metadata
    assert metadata["hosts_reconciled"].value == 1 and metadata["buckets_priced"].value == 0  # priced already: not again
    assert metadata["hosts_billed_usd"].value == pytest.approx(BILL)
    held = lines(dsn)
    on_a = [row for row in held if row[4] == "i-a"]
    assert {row[3] for row in on_a} == {"reconciled"}
    idle = [row for row in on_a if row[0] == "otel:idle/i-a"]
    assert len(idle) == 1 and idle[0][1] == "2026-12-05 00:00:00.000"
    assert round(sum(row[2] for row in on_a), 2) == round(BILL, 2) and sum(row[2] for row in on_a) == pytest.approx(BILL, abs=1e-8)
    # the estimates' proportions kept: the bill is below 24 hours at the list price, so every share shrinks alike
    factor = BILL / (0.192 * 24)
    for arn, _, value, _, _, estimate in on_a:
        if arn != "otel:idle/i-a":
            assert value == pytest.approx(before[arn] * factor) and estimate == pytest.approx(before[arn])
    box = [row for row in held if row[4] == "box-1"]
    assert [(row[0], row[3]) for row in box] == [("otel:batch/job", "estimated")]

    # run again (a restated bill): the same figures, from the estimates kept on the lines
    assert dg.materialize([COLLECTORS["otel"]], resources=resources(dsn, httpserver), **partition).success
    assert lines(dsn) == held

    # the spans' share of the instance is not counted a second time beside the instance in the totals
    from polo_pipelines.drilldown import delta
    from polo_pipelines.drilldown.periods import Periods

    periods = Periods(DAY, DAY + dt.timedelta(days=1), DAY - dt.timedelta(days=1), DAY)
    with polo_store(dsn) as store:
        assert delta.totals(store, periods)[1] == pytest.approx(BILL)


def test_a_budget_on_an_operations_15_minutes_fires_and_calls_its_action_once(dsn, httpserver, aws_credentials, monkeypatch):
    from polo_pipelines.hierarchy import ancestry as hy
    from polo_pipelines.rules import evaluate, notify
    from polo_pipelines.rules.ruleset import parse_rule, sync
    from polo_pipelines.sources.http import RetryPolicy

    price_list(httpserver)
    # a retry loop: the same call 40 times in the 10:00 bucket
    export(dsn, service("checkout", HOST_A, *(span(10 + i, i + 1, "POST /charge", i * 20, 20) for i in range(40))))
    as_of = {"ops": {"otel_recent_costs": {"config": {"as_of": (T0 + dt.timedelta(minutes=16)).isoformat()}}}}
    assert dg.materialize([otel_recent_costs], resources=resources(dsn, httpserver), run_config=as_of).success
    token = "s3cr3t-throttle-token"
    monkeypatch.setenv("POLO_ACTION_WEBHOOK_THROTTLE", httpserver.url_for(f"/throttle/{token}"))
    rule = parse_rule(
        {
            "id": "operation-15min",
            "name": "An operation's 15 minutes",
            "type": "budget",
            "scope": {"hierarchy": "service", "node_type": "operation"},
            "condition": {"max_usd": 0.02, "period": "15min"},
            "severity": "critical",
            "action": "webhook:throttle",
        }
    )
    assert rule.cadence == "15min"
    retry = RetryPolicy(attempts=2, base=0.01, cap=0.02, max_total_wait=1)
    httpserver.expect_request(f"/throttle/{token}", method="POST").respond_with_response(Response("down", status=503))
    with polo_store(dsn) as store:
        hy.refresh(store, hy.load())
        sync(store, [rule], T0)
        found = evaluate.evaluate(store, [rule], T0 + dt.timedelta(minutes=16))
        assert found.opened == 1
        (violation,) = evaluate.violations(store, state="open").itertuples()
        assert violation.node_id == "operation:prod/checkout/POST /charge"
        assert violation.actual_value == pytest.approx(800 * 0.192 / 3600)
        failed = notify.act(store, [rule], T0 + dt.timedelta(minutes=16), retry)
        assert failed.failed == 1 and failed.sent == 0  # the throttle endpoint is down: tried again next time
        httpserver.clear()
        httpserver.expect_request(f"/throttle/{token}", method="POST").respond_with_data("throttled")
        assert notify.act(store, [rule], T0 + dt.timedelta(minutes=17), retry).sent == 1
        # the next evaluation in the same 15 minutes: the violation is the same one, and its action is not called again
        assert evaluate.evaluate(store, [rule], T0 + dt.timedelta(minutes=20)).persisting == 1
        assert notify.act(store, [rule], T0 + dt.timedelta(minutes=20), retry).sent == 0
        # the next 15 minutes hold no such cost: resolved
        assert evaluate.evaluate(store, [rule], T0 + dt.timedelta(minutes=31)).resolved == 1
        held = json.dumps(store.query_df("SELECT * FROM polo.rule_violations").astype(str).values.tolist())
        held += json.dumps(store.query_df("SELECT * FROM polo.budget_rules").astype(str).values.tolist())
    posted = [request for request, _ in httpserver.log if request.path.startswith("/throttle/")]
    assert len(posted) == 1
    body = json.loads(posted[0].data)
    assert body["violation_id"] == str(violation.violation_id) and body["period"] == "15min" and body["actual_usd"] > 0.02
    assert posted[0].headers["Idempotency-Key"] == str(violation.violation_id)
    assert token not in held and "webhook:throttle" in held  # the rule names its webhook, never its URL


def test_an_action_must_name_a_webhook():
    from polo_pipelines.rules.ruleset import parse_rule
    from polo_pipelines.rules.validate import RuleError

    with pytest.raises(RuleError, match="action must be webhook:<name>"):
        parse_rule({"id": "x", "type": "budget", "condition": {"max_usd": 1}, "action": "https://example.com/hook?token=abc"})


def lines_frame(rows: list[dict]):
    import pandas as pd

    from polo_pipelines.sources.otel.costs import LINE_COLUMNS

    base = dict(kind="usage", environment="prod", version="", host_key="aws:ec2:us-east-1:m5.xlarge", unpriced="", spans=1, flagged=0,
                seconds=1.0, input_tokens=0, output_tokens=0, call_cost=0.0, cost=0.0, basis="estimated")  # fmt: skip
    return pd.DataFrame([{**base, "bucket": pd.Timestamp("2026-12-05 10:00"), **row} for row in rows], columns=LINE_COLUMNS)


def test_a_host_busier_than_its_list_price_or_billed_nothing_still_adds_up():
    from polo_pipelines.sources.otel import reconcile

    day_lines = lines_frame(
        [
            # i-a: the spans' shares add up to more than a day at list price (overlapping spans on a busy host)
            {"service": "api", "operation": "GET /", "host": "i-a", "hourly": 0.1, "host_cost": 3.0, "call_cost": 0.5},
            {"service": "api", "operation": "POST /", "host": "i-a", "hourly": 0.1, "host_cost": 1.0},
            # i-b: a credit made its day's bill negative
            {"service": "jobs", "operation": "run", "host": "i-b", "hourly": 0.2, "host_cost": 0.4},
            # i-c: no bill yet
            {"service": "jobs", "operation": "run", "host": "i-c", "hourly": 0.2, "host_cost": 0.3},
        ]
    )
    out, hosts = reconcile.reconcile(day_lines, {"i-a": 2.0, "i-b": -0.25}, DAY)
    by = {(r.host, r.operation): r for r in out.itertuples(index=False)}
    # i-a: max(full day 2.40, estimated 4.00) is the base, so the shares shrink by 2.0 / 4.0 and nothing is left idle
    assert by[("i-a", "GET /")].cost == pytest.approx(3.0 * 0.5 + 0.5)  # the tokens stay as estimated
    assert by[("i-a", "POST /")].cost == pytest.approx(0.5)
    assert by[("i-a", "i-a")].kind == "idle" and by[("i-a", "i-a")].cost == pytest.approx(0.0)
    # i-b: nothing to share out; the whole (negative) bill is the idle line
    assert by[("i-b", "run")].cost == 0 and by[("i-b", "i-b")].cost == pytest.approx(-0.25)
    # i-c: estimated as it was, no idle line
    assert by[("i-c", "run")].basis == "estimated" and ("i-c", "i-c") not in by
    for host in hosts:
        assert host.services + host.idle == pytest.approx(host.actual)
    assert {h.host for h in hosts} == {"i-a", "i-b"}


def test_a_windowed_write_refuses_events_outside_its_window(store):
    import pandas as pd

    from polo_pipelines.errors import PoloInputError
    from polo_pipelines.store.events import cost_events, replace_days

    late = cost_events(
        resource_arn=["otel:api/GET /"], resource_type="otel:operation", resource_name=["GET /"],
        day=pd.to_datetime(["2026-12-05 10:20"]), charge_category="Usage", value=[1.0], billed_cost=[1.0], list_cost=[1.0],
        service="api", provider="OpenTelemetry", properties=[{}], collector="cost_otel",
    )  # fmt: skip
    with pytest.raises(PoloInputError, match="outside the window"):
        replace_days(store, late, collector="cost_otel", days=[DAY], source="test", within=(T0, T0 + dt.timedelta(minutes=15)))
    assert store.query_rows("SELECT count() FROM polo.resource_events")[0][0] == 0
