"""Prices for spans: the AWS Price List API on a real local server answering GetProducts in the documented shape
(moto has no pricing service), reached by the real client with endpoint_url; the cache and its TTL; the price file."""

from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from werkzeug import Request, Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.otel import prices
from polo_pipelines.sources.otel.sample import price_list_entry

TARGET = "AWSPriceListService.GetProducts"


def entry(instance_type: str, usd: str, version: str = "20261201000000") -> str:
    """One PriceList item as GetProducts returns it: a JSON document as a string (the sample server's own)."""
    return price_list_entry(instance_type, "us-east-1", float(usd), version)


class PriceList:
    def __init__(self, pages: list[dict]):
        self.pages, self.asked = list(pages), []

    def __call__(self, request: Request) -> Response:
        assert request.headers["X-Amz-Target"] == TARGET
        body = json.loads(request.data)
        self.asked.append(body)
        page = self.pages[min(len(self.asked) - 1, len(self.pages) - 1)]
        return Response(json.dumps(page), content_type="application/x-amz-json-1.1")


@pytest.fixture
def price_list(httpserver, aws_credentials):
    def serve(pages):
        api = PriceList(pages)
        httpserver.clear()
        httpserver.expect_request("/", method="POST").respond_with_handler(api)
        return boto3.client("pricing", region_name="us-east-1", endpoint_url=httpserver.url_for("")), api

    return serve


def test_an_instance_is_priced_from_the_price_list_then_from_the_cache_until_the_ttl(price_list, store):
    client, api = price_list([{"FormatVersion": "aws_v1", "PriceList": [entry("m5.xlarge", "0.1920000000")]}])
    key = prices.host_key({"cloud.provider": "aws", "cloud.region": "us-east-1", "host.type": "m5.xlarge"})
    assert key == "aws:ec2:us-east-1:m5.xlarge"
    now = dt.datetime(2026, 12, 7, 9, tzinfo=dt.UTC)
    got = prices.host_prices(store, [key], client, now=now, file={})[key]
    assert (got.usd, got.unit, got.source, got.version) == (0.192, "hour", "price-list", "20261201000000")
    filters = {f["Field"]: f["Value"] for f in api.asked[0]["Filters"]}
    assert api.asked[0]["ServiceCode"] == "AmazonEC2" and filters == {
        "instanceType": "m5.xlarge",
        "regionCode": "us-east-1",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    again = prices.host_prices(store, [key], client, now=now + dt.timedelta(hours=3), file={})[key]
    assert again.usd == 0.192 and len(api.asked) == 1  # from the store: no request
    later = prices.host_prices(store, [key], client, now=now + dt.timedelta(hours=25), file={})[key]
    assert later.fetched_at == now + dt.timedelta(hours=25) and len(api.asked) == 2  # older than the TTL: asked again
    assert len(store.query_rows("SELECT * FROM polo.prices")) == 2  # each answer kept, with its version


def test_pages_are_followed_and_a_malformed_entry_names_the_field(price_list, store):
    client, api = price_list(
        [
            {"FormatVersion": "aws_v1", "PriceList": [entry("c5.large", "0.0850000000")], "NextToken": "p2"},
            {"FormatVersion": "aws_v1", "PriceList": [entry("c5.large", "0.0000000000")]},
        ]
    )
    assert prices.ec2_hourly(client, "us-east-1", "c5.large") == (0.085, "20261201000000")
    assert api.asked[1]["NextToken"] == "p2"
    broken, _ = price_list([{"FormatVersion": "aws_v1", "PriceList": [json.dumps({"terms": {"OnDemand": "nope"}})]}])
    with pytest.raises(PoloInputError) as err:
        prices.ec2_hourly(broken, "us-east-1", "c5.large")
    assert err.value.field == "PriceList" and "documented shape" in str(err.value)


def test_the_price_file_prices_hosts_and_tokens_and_is_validated(tmp_path, store):
    path = tmp_path / "prices.yaml"
    path.write_text("hosts:\n  build-box: 0.85\nper_call:\n  gen_ai:\n    gpt-4o: {input_per_million: 2.5, output_per_million: 10}\n")
    found = prices.load_file(path)
    assert found["file:host:build-box"].usd == 0.85
    assert found["file:gen_ai:gpt-4o:input"].usd == pytest.approx(2.5e-6) and found["file:gen_ai:gpt-4o:output"].unit == "token"
    assert prices.host_key({"host.type": "build-box"}) == "file:host:build-box" and prices.host_key({}) is None
    got = prices.host_prices(store, ["file:host:build-box", "file:host:unknown"], None, file=found)
    assert list(got) == ["file:host:build-box"]  # the unknown host is left out: its spans are unpriced
    path.write_text("hosts:\n  build-box: -1\n")
    with pytest.raises(PoloInputError, match="hosts.build-box must be a non-negative amount"):
        prices.load_file(path)
    assert prices.load_file(prices.DEFAULT_FILE)["file:gen_ai:gpt-4o-mini:output"].usd == pytest.approx(0.6e-6)
