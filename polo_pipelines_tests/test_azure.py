"""Azure: Cost Management queries (actual and amortized), nextLink paging, columns by name, service grouping."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from werkzeug import Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.azure import client as azure
from polo_pipelines.sources.azure import sample as az
from polo_pipelines.sources.azure.source import AzureSource
from polo_pipelines.sources.http import RetryPolicy
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.store.events import property_dicts

END = dt.date(2026, 11, 23)
SECRET = "azure-client-secret-NEVERSHOWN"


@pytest.fixture(scope="module")
def sample_source():
    server = PlatformSample(END - dt.timedelta(days=56), END).serve()
    return AzureSource(
        scopes=[f"subscriptions/{az.SUBSCRIPTION}"],
        tenant_id=az.TENANT,
        client_id=az.CLIENT_ID,
        client_secret=az.CLIENT_SECRET,
        management_url=f"{server.url}/azure/management",
        authority_url=f"{server.url}/azure/login",
    )


def test_service_groups():
    assert azure.service_group("Azure OpenAI") == "Azure OpenAI"
    assert azure.service_group("Cognitive Services - Azure OpenAI GPT-4o") == "Azure OpenAI"
    assert azure.service_group("Speech to Text") == "Azure AI Speech"
    assert azure.service_group("Text to Speech") == "Azure AI Speech"
    assert azure.service_group("Virtual Machines") == "Virtual Machines"


def test_pages_amortized_and_actual_per_resource(sample_source):
    start, end = dt.date(2026, 10, 25), dt.date(2026, 11, 8)
    window = azure.collect(sample_source.api("t"), start, end)
    assert window.requests > 3  # 14 days x 8 rows: several pages per query, followed through nextLink
    events = window.events
    assert (events["resource_arn"] == events["resource_arn"].str.lower()).all()
    reserved = events[events["resource_arn"].str.endswith("/vm-reserved")]
    purchase = events[events["resource_arn"] == f"azure:subscriptions/{az.SUBSCRIPTION}/reservations"]
    assert reserved["billed_cost"].sum() == 0 and reserved["value"].sum() > 0
    assert purchase["billed_cost"].sum() == pytest.approx(az.RESERVATION_MONTHLY) and purchase["value"].sum() == 0
    expected_actual = sum(
        r[0] for r in az.AzureSample(END - dt.timedelta(days=56), END, 20261122).rows("ActualCost", start, end - dt.timedelta(days=1))
    )
    assert events["billed_cost"].sum() == pytest.approx(expected_actual)
    groups = {p["service_group"] for p in property_dicts(events)}
    assert {"Azure OpenAI", "Azure AI Speech", "Virtual Machines"} <= groups
    assert {p["resource_group"] for p in property_dicts(events)} >= {"rg-ai", "rg-inference"}


def _token(httpserver):
    httpserver.expect_request("/login/t/oauth2/v2.0/token", method="POST").respond_with_json({"access_token": "AT-123", "expires_in": 3600})


def _source(httpserver, **kwargs) -> AzureSource:
    base = httpserver.url_for("").rstrip("/")
    return AzureSource(
        scopes=["subscriptions/s1"],
        tenant_id="t",
        client_id="c",
        client_secret=SECRET,
        management_url=base,
        authority_url=f"{base}/login",
        **kwargs,
    )


QUERY_PATH = "/subscriptions/s1/providers/Microsoft.CostManagement/query"


def test_columns_are_read_by_name_and_a_429_waits_for_the_largest_window(httpserver):
    _token(httpserver)
    limited = Response(
        "{}",
        status=429,
        headers={
            "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "3",
            "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "9",
        },
    )
    shuffled = {
        "properties": {
            "nextLink": None,
            "columns": [
                {"name": "ServiceName"},
                {"name": "Currency"},
                {"name": "PreTaxCost"},
                {"name": "ResourceId"},
                {"name": "UsageDate"},
            ],
            "rows": [
                ["Storage", "EUR", 10.0, "/SUBSCRIPTIONS/S1/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.STORAGE/STORAGEACCOUNTS/ST1", 20261103]
            ],
        }
    }
    httpserver.expect_oneshot_request(QUERY_PATH, method="POST").respond_with_response(limited)
    httpserver.expect_oneshot_request(QUERY_PATH, method="POST").respond_with_json(shuffled)
    httpserver.expect_oneshot_request(QUERY_PATH, method="POST").respond_with_json(shuffled)
    api = _source(httpserver).api("2026-11-03")
    sleeps: list[float] = []
    api.client.sleep, api.client.retry = sleeps.append, RetryPolicy(base=0.01)
    window = azure.collect(api, dt.date(2026, 11, 3), dt.date(2026, 11, 4), fx_rates={"EUR": 1.1})
    assert 9 <= sleeps[0] <= 10
    row = window.events.iloc[0]
    assert row["resource_arn"] == "/subscriptions/s1/resourcegroups/rg/providers/microsoft.storage/storageaccounts/st1"
    assert row["value"] == pytest.approx(11.0) and row["resource_type"] == "microsoft.storage/storageaccounts"
    body = httpserver.log[1][0].get_json()
    assert body["type"] in ("ActualCost", "AmortizedCost") and body["dataset"]["granularity"] == "Daily"
    assert httpserver.log[1][0].headers["Authorization"] == "Bearer AT-123"


def test_a_missing_column_and_an_unknown_currency_name_the_field(httpserver):
    _token(httpserver)
    httpserver.expect_request(QUERY_PATH, method="POST").respond_with_json(
        {"properties": {"columns": [{"name": "Cost"}, {"name": "ResourceId"}, {"name": "ServiceName"}], "rows": []}}
    )
    with pytest.raises(PoloInputError) as raised:
        _source(httpserver).collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert raised.value.field == "properties.columns[UsageDate]" and raised.value.partition == "2026-11-03"

    httpserver.clear()
    _token(httpserver)
    httpserver.expect_request(QUERY_PATH, method="POST").respond_with_json(
        {
            "properties": {
                "columns": [{"name": "Cost"}, {"name": "UsageDate"}, {"name": "ResourceId"}, {"name": "ServiceName"}, {"name": "Currency"}],
                "rows": [[1.0, 20261103, "", "X", "JPY"]],
            }
        }
    )
    with pytest.raises(PoloInputError, match="JPY need POLO_FX_RATES"):
        _source(httpserver).collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))


def test_a_refused_client_secret_is_never_shown(httpserver, caplog):
    httpserver.expect_request("/login/t/oauth2/v2.0/token", method="POST").respond_with_json(
        {"error": "invalid_client", "error_description": f"bad secret {SECRET}"}, status=401
    )
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PoloInputError, match="401") as raised:
            _source(httpserver).collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert SECRET not in str(raised.value) and SECRET not in caplog.text
    assert "client_secret" in httpserver.log[0][0].get_data(as_text=True)  # it travels in the form body, nowhere else
    assert SECRET not in httpserver.log[0][0].url


def test_a_client_secret_with_form_characters_never_comes_back_from_an_echoing_server(httpserver, caplog):
    """Form-encoded, a secret holding + / = no longer matched the scrubber's exact string; an echoed body leaked it."""
    import logging

    from werkzeug import Response

    secret = "Zx8Q~a+b/c=d+CANARY/e=="
    httpserver.expect_request("/login/t/oauth2/v2.0/token", method="POST").respond_with_handler(
        lambda request: Response(f"AADSTS7000215: invalid secret in request {request.get_data(as_text=True)}", status=401)
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(PoloInputError) as raised:
        base = httpserver.url_for("").rstrip("/")
        AzureSource(
            scopes=["subscriptions/s1"],
            tenant_id="t",
            client_id="c",
            client_secret=secret,
            management_url=base,
            authority_url=f"{base}/login",
        ).collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    assert "CANARY" in httpserver.log[0][0].get_data(as_text=True).replace("%2F", "/")  # the server did get it, encoded
    logged = " ".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    for text in (str(raised.value), logged):
        assert "CANARY" not in text and "AADSTS7000215" in str(raised.value)
