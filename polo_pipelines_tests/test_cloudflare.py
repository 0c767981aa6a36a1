"""Cloudflare: GraphQL usage x prices, included usage applied month by month, a month's days equal to its bill."""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math

import pytest
from werkzeug import Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.cloudflare import client as cloudflare
from polo_pipelines.sources.cloudflare.sample import ACCOUNT
from polo_pipelines.sources.http import ApiClient
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.sources.sample.server import SAMPLE_TOKEN

END = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def api():
    server = PlatformSample(END - dt.timedelta(days=56), END).serve()
    client = ApiClient("cloudflare", headers={"Authorization": f"Bearer {SAMPLE_TOKEN}"}, partition="t")
    return cloudflare.CloudflareApi(client, ACCOUNT, f"{server.url}/cloudflare")


def expected_bill(api, month: dt.date) -> float:
    """The month's invoice computed directly: whole billing units beyond the allowance, plus the plan."""
    last = month.replace(day=calendar.monthrange(month.year, month.month)[1])
    usage = api.usage(month, last)
    prices = cloudflare.prices_on(month)
    bill = prices.plan_monthly
    for name, meter in prices.meters.items():
        total = usage[usage["meter"] == name]["quantity"].sum()
        bill += math.ceil(max(total - meter.included, 0) / meter.unit) * meter.price
    return bill


def test_a_months_days_add_up_to_its_bill(api):
    window = cloudflare.collect(api, dt.date(2026, 10, 1), dt.date(2026, 11, 1))
    assert window.events["value"].sum() == pytest.approx(expected_bill(api, dt.date(2026, 10, 1)))
    assert set(window.events["resource_arn"]) == {
        "cloudflare:worker/polo-api",
        "cloudflare:worker/image-resizer",
        "cloudflare:worker/edge-auth",
        "cloudflare:r2/model-storage",
        "cloudflare:r2/web-assets",
        "cloudflare:plan/workers-paid",
    }


def test_included_usage_is_spent_first_and_a_lookback_window_agrees_with_the_whole_month(api):
    month = cloudflare.collect(api, dt.date(2026, 10, 1), dt.date(2026, 11, 1)).events
    requests = month[month["resource_arn"] == "cloudflare:worker/polo-api"]
    first_day = requests[requests["event_time"] == dt.datetime(2026, 10, 1)]
    assert first_day["value"].sum() == 0  # 1.4M requests of the month's 10M included
    late = requests[requests["event_time"] == dt.datetime(2026, 10, 20)]
    assert late["value"].sum() > 0
    window = cloudflare.collect(api, dt.date(2026, 10, 19), dt.date(2026, 10, 21)).events
    key = ["resource_arn", "event_time"]
    joined = window.groupby(key)["value"].sum().to_frame("window").join(month.groupby(key)["value"].sum().to_frame("month"))
    assert joined["window"].to_numpy() == pytest.approx(joined["month"].to_numpy())


def test_operation_classes():
    assert cloudflare.operation_class("PutObject") == "class_a"
    assert cloudflare.operation_class("ListObjectsV2") == "class_a"
    assert cloudflare.operation_class("GetObject") == "class_b"
    assert cloudflare.operation_class("HeadObject") == "class_b"
    assert cloudflare.operation_class("DeleteObject") == "free"


def _client(httpserver) -> cloudflare.CloudflareApi:
    return cloudflare.CloudflareApi(ApiClient("cloudflare", partition="2026-11-03"), "acct", httpserver.url_for("").rstrip("/"))


def test_graphql_errors_in_a_200_stop_the_partition(httpserver):
    httpserver.expect_request("/graphql", method="POST").respond_with_json(
        {"data": None, "errors": [{"message": "quota exceeded for this zone", "path": ["viewer"]}]}
    )
    with pytest.raises(PoloInputError, match="quota exceeded") as raised:
        cloudflare.collect(_client(httpserver), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert "partition 2026-11-03" in str(raised.value)


def test_a_group_without_its_date_names_the_field(httpserver):
    account = {"workersInvocationsAdaptive": [{"sum": {"requests": 1, "cpuTimeUs": 5}, "dimensions": {"scriptName": "x"}}]}
    httpserver.expect_request("/graphql", method="POST").respond_with_json({"data": {"viewer": {"accounts": [account]}}})
    with pytest.raises(PoloInputError) as raised:
        cloudflare.collect(_client(httpserver), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert raised.value.field == "workersInvocationsAdaptive[].dimensions.date"


def test_a_result_at_the_limit_is_asked_again_day_by_day(httpserver):
    def handler(request):
        variables = json.loads(request.data)["variables"]
        start, end = variables["start"], variables["end"]
        if start != end:
            rows = [
                {"sum": {"requests": 1, "cpuTimeUs": 1}, "dimensions": {"scriptName": f"s{i}", "date": start}}
                for i in range(cloudflare.LIMIT)
            ]
        else:
            rows = [{"sum": {"requests": 2, "cpuTimeUs": 1000}, "dimensions": {"scriptName": "one", "date": start}}]
        return Response(
            json.dumps({"data": {"viewer": {"accounts": [{"workersInvocationsAdaptive": rows}]}}}), content_type="application/json"
        )

    httpserver.expect_request("/graphql", method="POST").respond_with_handler(handler)
    usage = _client(httpserver).usage(dt.date(2026, 11, 1), dt.date(2026, 11, 3))
    assert len(httpserver.log) == 4  # the range, then each of its three days
    assert sorted(usage["day"].unique()) == [dt.date(2026, 11, 1), dt.date(2026, 11, 2), dt.date(2026, 11, 3)]
    assert usage[usage["meter"] == "cpu_ms"]["quantity"].tolist() == [1.0, 1.0, 1.0]


def test_an_account_the_token_cannot_see(httpserver):
    httpserver.expect_request("/graphql", method="POST").respond_with_json({"data": {"viewer": {"accounts": []}}})
    with pytest.raises(PoloInputError, match="not visible"):
        cloudflare.collect(_client(httpserver), dt.date(2026, 11, 3), dt.date(2026, 11, 4))
