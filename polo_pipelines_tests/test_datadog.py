"""Datadog: month-to-date estimates differenced into days, totals never added to parts, final bills replacing estimates."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from werkzeug import Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.datadog import client as datadog
from polo_pipelines.sources.datadog.sample import DATADOG_API_KEY, DATADOG_APP_KEY, TRUE_UP
from polo_pipelines.sources.datadog.source import DatadogSource
from polo_pipelines.sources.http import ApiClient, RetryPolicy
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.store.events import property_dicts

END = dt.date(2026, 11, 23)
START = END - dt.timedelta(days=56)


@pytest.fixture(scope="module")
def world():
    return PlatformSample(START, END)


def sample_api(world) -> datadog.DatadogApi:
    headers = {"DD-API-KEY": DATADOG_API_KEY, "DD-APPLICATION-KEY": DATADOG_APP_KEY}
    return datadog.DatadogApi(ApiClient("datadog", headers=headers, partition="t"), f"{world.serve().url}/datadog")


def test_sites():
    assert datadog.api_url("datadoghq.com") == "https://api.datadoghq.com"
    assert datadog.api_url("us5.datadoghq.com") == "https://api.us5.datadoghq.com"
    assert datadog.api_url("https://app.datadoghq.eu") == "https://api.datadoghq.eu"
    assert datadog.api_url("ap1.datadoghq.com") == "https://api.ap1.datadoghq.com"
    with pytest.raises(ValueError, match="unknown Datadog site"):
        datadog.api_url("datadog.example.com")


def test_month_to_date_is_differenced_and_a_missing_day_costs_nothing():
    d = dt.date
    mtd = pd.DataFrame(
        [
            (d(2026, 11, 1), "o", "logs", "on_demand", 10.0),
            (d(2026, 11, 2), "o", "logs", "on_demand", 25.0),
            (d(2026, 11, 4), "o", "logs", "on_demand", 31.0),
        ],
        columns=datadog.COLUMNS,
    )
    daily = datadog.daily_from_month_to_date(mtd, d(2026, 11, 1), d(2026, 11, 4))
    assert daily.set_index("day")["cost"].to_dict() == {
        d(2026, 11, 1): 10.0,
        d(2026, 11, 2): 15.0,
        d(2026, 11, 3): 0.0,
        d(2026, 11, 4): 6.0,
    }


def test_total_is_used_only_without_parts():
    d = dt.date(2026, 11, 1)
    frame = pd.DataFrame(
        [
            (d, "o", "infra", "committed", 5.0),
            (d, "o", "infra", "on_demand", 1.0),
            (d, "o", "infra", "total", 6.0),
            (d, "o", "rum", "total", 2.0),
        ],
        columns=datadog.COLUMNS,
    )
    kept = datadog.parts_only(frame)
    assert sorted(zip(kept["product"], kept["charge_type"])) == [("infra", "committed"), ("infra", "on_demand"), ("rum", "total")]
    assert kept["cost"].sum() == 8.0


def test_final_months_replace_estimates_and_open_months_stay_estimated(world):
    window = datadog.collect(sample_api(world), START, END, today=END)
    events = window.events
    assert window.final_months == ["2026-09", "2026-10"] and window.estimated_months == ["2026-11"]
    month = events["event_time"].dt.strftime("%Y-%m")
    october = sum(v for i in range(31) for v in world.data("datadog").daily(dt.date(2026, 10, 1) + dt.timedelta(days=i)).values())
    november = sum(
        v
        for i in range((END - dt.date(2026, 11, 1)).days)
        for v in world.data("datadog").daily(dt.date(2026, 11, 1) + dt.timedelta(days=i)).values()
    )
    assert events[month == "2026-10"]["value"].sum() == pytest.approx(october * TRUE_UP)
    assert events[month == "2026-11"]["value"].sum() == pytest.approx(november)
    # September: only its last days are in the window, each 1/30 of the final month
    september_days = (dt.date(2026, 10, 1) - START).days
    september = sum(v for i in range(30) for v in world.data("datadog").daily(dt.date(2026, 9, 1) + dt.timedelta(days=i)).values())
    assert events[month == "2026-09"]["event_time"].dt.date.nunique() == september_days
    assert events[month == "2026-09"]["value"].sum() == pytest.approx(september * TRUE_UP * september_days / 30)
    bases = {p["basis"] for p in property_dicts(events)}
    assert bases == {"final", "estimated"}
    assert set(events["resource_arn"]) >= {"datadog:infra_hosts", "datadog:logs_indexed_15day"}
    # before October closes, the same days are estimates that differ from the final bill
    earlier = PlatformSample(dt.date(2026, 9, 1), dt.date(2026, 11, 3))
    early = datadog.collect(sample_api(earlier), dt.date(2026, 10, 10), dt.date(2026, 10, 12), today=dt.date(2026, 11, 3))
    assert {p["basis"] for p in property_dicts(early.events)} == {"estimated"}


def test_rate_limit_then_success_and_missing_cost_field(httpserver):
    payload = {
        "data": [
            {
                "type": "cost_by_org",
                "id": "x",
                "attributes": {
                    "org_name": "o",
                    "date": "2026-11-01",
                    "charges": [{"product_name": "logs", "charge_type": "on_demand", "cost": 3.0}],
                },
            }
        ]
    }
    httpserver.expect_ordered_request("/api/v2/usage/historical_cost").respond_with_json({"data": []})
    httpserver.expect_ordered_request("/api/v2/usage/estimated_cost").respond_with_response(
        Response("{}", status=429, headers={"X-RateLimit-Reset": "2", "X-RateLimit-Remaining": "0"})
    )
    httpserver.expect_ordered_request("/api/v2/usage/estimated_cost").respond_with_json(payload)
    sleeps: list[float] = []
    api = datadog.DatadogApi(
        ApiClient("datadog", partition="2026-11-01", sleep=sleeps.append, retry=RetryPolicy(base=0.01)), httpserver.url_for("")
    )
    window = datadog.collect(api, dt.date(2026, 11, 1), dt.date(2026, 11, 2), today=dt.date(2026, 11, 5))
    assert window.events["value"].tolist() == [3.0] and 2 <= sleeps[0] <= 2.5
    assert httpserver.log[1][0].args["view"] == "sub-org"

    httpserver.clear()
    del payload["data"][0]["attributes"]["charges"][0]["cost"]
    httpserver.expect_request("/api/v2/usage/historical_cost").respond_with_json({"data": []})
    httpserver.expect_request("/api/v2/usage/estimated_cost").respond_with_json(payload)
    with pytest.raises(PoloInputError) as raised:
        datadog.collect(api, dt.date(2026, 11, 1), dt.date(2026, 11, 2), today=dt.date(2026, 11, 5))
    assert raised.value.field == "data[].attributes.charges[].cost" and raised.value.partition == "2026-11-01"


def test_keys_travel_in_headers_and_never_in_errors(httpserver):
    httpserver.expect_request("/api/v2/usage/historical_cost").respond_with_json({"errors": ["Forbidden"]}, status=403)
    source = DatadogSource(
        site="datadoghq.com", api_url=httpserver.url_for("").rstrip("/"), api_key="APIKEY-S3CRET", app_key="APPKEY-S3CRET"
    )
    with pytest.raises(PoloInputError) as raised:
        source.collect(dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    assert "403" in str(raised.value) and "S3CRET" not in str(raised.value)
    sent = httpserver.log[0][0].headers
    assert sent["DD-API-KEY"] == "APIKEY-S3CRET" and sent["DD-APPLICATION-KEY"] == "APPKEY-S3CRET"
    assert "S3CRET" not in httpserver.log[0][0].url
