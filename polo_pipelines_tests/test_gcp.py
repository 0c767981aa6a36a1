"""GCP: the real BigQuery client against a local server answering in BigQuery's REST shapes."""

from __future__ import annotations

import datetime as dt

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.gcp import client as gcp
from polo_pipelines.sources.gcp import sample as sg
from polo_pipelines.sources.http import SourceUnavailable
from polo_pipelines.sources.sample.platforms import PlatformSample
from polo_pipelines.store.events import property_dicts

END = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def world():
    return PlatformSample(END - dt.timedelta(days=56), END)


def client_for(url: str) -> bigquery.Client:
    return bigquery.Client(project=sg.PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": url})


def test_query_is_parameterized_and_the_table_name_checked():
    sql = gcp.query_sql("proj-1.billing.gcp_billing_export_resource_v1_X", detailed=True)
    assert "@start" in sql and "@end_day" in sql and "resource.global_name" in sql and "_PARTITIONTIME" in sql
    assert "resource.global_name" not in gcp.query_sql("p.d.t", detailed=False)
    for hostile in ("p.d.t`; DROP TABLE x; --", "p.d", "p.d.t WHERE 1=1"):
        with pytest.raises(ValueError, match="project.dataset.table"):
            gcp.query_sql(hostile, detailed=True)


def test_detailed_export_through_the_real_client_in_pages(world):
    server = world.serve()
    start, end = dt.date(2026, 10, 28), dt.date(2026, 11, 4)
    before = server.requests
    window = gcp.collect(client_for(f"{server.url}/gcp"), sg.TABLE, start, end, detailed=True, page_size=10)
    assert server.requests - before >= 3  # jobs.query, then further pages through getQueryResults
    events = window.events
    export = world.data("gcp").export_rows(start, end - dt.timedelta(days=1))
    gross_aud = sum(r["cost"] for r in export)
    credits_aud = sum(c["amount"] for r in export for c in r["credits"])
    assert events["value"].sum() == pytest.approx((gross_aud + credits_aud) / sg.RATE)  # net, in USD at the export's rate
    by_category = events.groupby("charge_category")["value"].sum()
    assert by_category["Tax"] == pytest.approx(48.0 / sg.RATE)
    promo = sum(c["amount"] for r in export for c in r["credits"] if c["type"] == "PROMOTION")
    assert by_category["Credit"] == pytest.approx(promo / sg.RATE)  # promotions are credits; usage discounts stay in Usage
    props = property_dicts(events)
    sud = [p for p in props if p["credit_type"] == "SUSTAINED_USAGE_DISCOUNT"]
    assert sud and all(p["tag:customer"] == "gamma" for p in sud)
    ids = set(events["resource_arn"])
    assert "//compute.googleapis.com/projects/ml-training/zones/us-central1-a/instances/trainer-1" in ids
    assert {"gcp:analytics/bigquery", "gcp:billing-account/invoice"} <= ids
    trainer = events[events["resource_arn"].str.endswith("/trainer-1")]
    assert set(trainer["resource_type"]) == {"compute"}


def test_standard_export_goes_per_project_and_service(world):
    server = world.serve()
    window = gcp.collect(client_for(f"{server.url}/gcp"), sg.TABLE, dt.date(2026, 11, 2), dt.date(2026, 11, 3), detailed=False)
    assert set(window.events["resource_arn"]) == {
        "gcp:ml-training/compute-engine",
        "gcp:ml-training/cloud-storage",
        "gcp:analytics/bigquery",
    }


def _answer(rows: list[dict], schema: dict = sg.SCHEMA) -> dict:
    return {
        "kind": "bigquery#queryResponse",
        "schema": schema,
        "jobReference": {"projectId": sg.PROJECT, "jobId": "j1", "location": "US"},
        "totalRows": str(len(rows)),
        "rows": [sg.encode_row(r, schema) for r in rows],
        "jobComplete": True,
    }


ROW = {
    "day": "2026-11-03",
    "project_id": "p",
    "service": "Compute Engine",
    "sku": "x",
    "resource_name": "",
    "region": "",
    "cost_type": "regular",
    "currency": "EUR",
    "currency_conversion_rate": None,
    "labels": "[]",
    "cost": 5.0,
    "credits": [],
}
QUERY = f"/bigquery/v2/projects/{sg.PROJECT}/queries"


def test_a_non_usd_row_without_a_rate_and_a_missing_column_name_the_field(httpserver):
    httpserver.expect_request(QUERY, method="POST").respond_with_json(_answer([ROW]))
    with pytest.raises(PoloInputError) as raised:
        gcp.collect(
            client_for(httpserver.url_for("")), sg.TABLE, dt.date(2026, 11, 3), dt.date(2026, 11, 4), detailed=True, partition="2026-11-03"
        )
    assert raised.value.field == "currency_conversion_rate" and raised.value.partition == "2026-11-03"

    httpserver.clear()
    schema = {"fields": [f for f in sg.SCHEMA["fields"] if f["name"] != "credits"]}
    httpserver.expect_request(QUERY, method="POST").respond_with_json(_answer([{**ROW, "currency": "USD"}], schema))
    with pytest.raises(PoloInputError) as raised:
        gcp.collect(
            client_for(httpserver.url_for("")), sg.TABLE, dt.date(2026, 11, 3), dt.date(2026, 11, 4), detailed=True, partition="2026-11-03"
        )
    assert raised.value.field == "credits"


def test_access_denied_is_a_clear_error(httpserver):
    httpserver.expect_request(QUERY, method="POST").respond_with_json(
        {"error": {"code": 403, "message": "Access Denied: Table billing: User does not have permission", "status": "PERMISSION_DENIED"}},
        status=403,
    )
    with pytest.raises(PoloInputError, match="403 Access Denied"):
        gcp.collect(
            client_for(httpserver.url_for("")), sg.TABLE, dt.date(2026, 11, 3), dt.date(2026, 11, 4), detailed=True, partition="2026-11-03"
        )


def test_a_5xx_storm_stops_within_the_retry_bound(httpserver):
    httpserver.expect_request(QUERY, method="POST").respond_with_json({"error": {"code": 503, "message": "backend error"}}, status=503)
    with pytest.raises(SourceUnavailable, match="BigQuery kept failing") as raised:
        gcp.collect(
            client_for(httpserver.url_for("")),
            sg.TABLE,
            dt.date(2026, 11, 3),
            dt.date(2026, 11, 4),
            detailed=True,
            partition="2026-11-03",
            retry_timeout=2.0,
        )
    assert "2026-11-03" in str(raised.value)
    assert len(httpserver.log) >= 2  # retried before giving up


def _service_account(token_uri: str) -> tuple[str, str]:
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    doc = {
        "type": "service_account",
        "project_id": "acme-billing",
        "private_key_id": "CANARYKEYID0123456789",
        "private_key": pem,
        "client_email": "polo@acme-billing.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    return json.dumps(doc), pem


@pytest.mark.parametrize("answer", ["echo", "not json", "json list"])
def test_a_hostile_token_endpoint_gets_a_clear_error_and_no_secret(httpserver, answer):
    from werkzeug import Response

    from polo_pipelines.sources.gcp.source import GcpSource

    def reply(request):
        body = request.get_data(as_text=True)
        if answer == "echo":  # a server that echoes the request: the signed assertion comes back in the error
            return Response(
                '{"error": "invalid_grant", "error_description": "bad assertion ' + body + '"}', status=400, content_type="application/json"
            )
        if answer == "not json":
            return Response("<html>proxy login</html>", status=200, content_type="text/html")
        return Response('["access_token"]', status=200, content_type="application/json")

    httpserver.expect_request("/token", method="POST").respond_with_handler(reply)
    key, pem = _service_account(httpserver.url_for("/token"))
    source = GcpSource(billing_table=sg.TABLE, credentials=key, api_endpoint=httpserver.url_for(""))
    with pytest.raises(PoloInputError) as raised:
        source.collect(dt.date(2026, 11, 3), dt.date(2026, 11, 4))
    text = str(raised.value)
    assert "token" in text and raised.value.source == "gcp"
    assertion = httpserver.log[0][0].form.get("assertion", "")
    assert assertion and assertion not in text and assertion.split(".")[2] not in text
    assert "CANARYKEYID" not in text and pem.splitlines()[1] not in text
    assert len(httpserver.log) == 1  # refused once, not retried for minutes
