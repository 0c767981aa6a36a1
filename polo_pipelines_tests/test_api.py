"""The shared HTTP client against a real local HTTP server: retries, rate-limit headers, pagination, GraphQL, secrets."""

from __future__ import annotations

import email.utils
import json
import logging

import pytest
from requests.structures import CaseInsensitiveDict
from werkzeug import Response

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.http import ApiClient, RetryPolicy, SourceUnavailable, header_wait, records, require

SECRET = "ghp_SECRETVALUE1234567890"


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client(**kwargs) -> ApiClient:
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("retry", RetryPolicy(attempts=4, base=0.01, cap=0.05, max_total_wait=30))
    return ApiClient("testsource", headers={"Authorization": f"Bearer {SECRET}"}, secrets=(SECRET,), partition="2026-11-03", **kwargs)


def test_429_with_retry_after_then_success(httpserver):
    httpserver.expect_ordered_request("/x").respond_with_response(Response("slow down", status=429, headers={"Retry-After": "7"}))
    httpserver.expect_ordered_request("/x").respond_with_json({"ok": True})
    c = client()
    assert c.get_json(httpserver.url_for("/x")) == {"ok": True}
    assert len(c.sleep) == 1 and 7 <= c.sleep[0] <= 7.8  # the provider's wait, plus a little jitter
    assert c.requests_made == 2


def test_5xx_storm_exhausts_retries_with_a_clear_error(httpserver, caplog):
    httpserver.expect_request("/storm").respond_with_data("down", status=503)
    c = client()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceUnavailable) as raised:
            c.get_json(httpserver.url_for("/storm"))
    message = str(raised.value)
    assert "testsource" in message and "2026-11-03" in message and "4 attempts" in message and "HTTP 503" in message
    assert c.requests_made == 4 and len(c.sleep) == 3
    assert SECRET not in caplog.text and SECRET not in message


def test_total_wait_is_bounded(httpserver):
    httpserver.expect_request("/limited").respond_with_response(Response("", status=429, headers={"Retry-After": "120"}))
    c = client(retry=RetryPolicy(attempts=5, base=0.01, cap=0.05, max_total_wait=60))
    with pytest.raises(SourceUnavailable, match="bound on waiting"):
        c.get_json(httpserver.url_for("/limited"))
    assert c.sleep == []  # it gives up rather than sleeping past the bound


def test_client_errors_are_not_retried_and_never_show_the_secret(httpserver, caplog):
    httpserver.expect_request("/auth").respond_with_json({"message": f"Bad credentials for {SECRET}"}, status=401)
    c = client()
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PoloInputError) as raised:
            c.get_json(httpserver.url_for("/auth"))
    assert "401" in str(raised.value) and "credentials were refused" in str(raised.value)
    assert SECRET not in str(raised.value) and SECRET not in caplog.text
    assert c.requests_made == 1


def test_github_primary_rate_limit_waits_until_reset(httpserver):
    now = 1_800_000_000.0
    httpserver.expect_ordered_request("/gh").respond_with_response(
        Response("{}", status=403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(now + 42))})
    )
    httpserver.expect_ordered_request("/gh").respond_with_json([1])
    c = client(clock=lambda: now, retry=RetryPolicy(attempts=3, base=0.01, cap=0.05, max_total_wait=100))
    assert c.get_json(httpserver.url_for("/gh")) == [1]
    assert 42 <= c.sleep[0] <= 47


def test_the_wait_bound_is_a_setting(monkeypatch):
    assert RetryPolicy().max_total_wait == 300
    monkeypatch.setenv("POLO_HTTP_MAX_WAIT_SECONDS", "3600")
    assert RetryPolicy().max_total_wait == 3600


def test_header_waits_per_provider():
    now = 1_800_000_000.0
    h = CaseInsensitiveDict
    assert header_wait(429, h({"Retry-After": "3"}), now) == 3
    http_date = email.utils.formatdate(now + 30, usegmt=True)
    assert header_wait(429, h({"Retry-After": http_date}), now) == pytest.approx(30, abs=1)
    assert header_wait(429, h({"X-RateLimit-Reset": "12", "X-RateLimit-Remaining": "0"}), now) == 12  # Datadog: seconds
    assert header_wait(403, h({"x-ratelimit-reset": str(int(now) + 90), "x-ratelimit-remaining": "0"}), now) == 90  # GitHub: epoch
    azure = h(
        {
            "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after": "10",
            "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after": "25",
        }
    )
    assert header_wait(429, azure, now) == 25  # the largest window
    assert header_wait(403, h({}), now, "You have exceeded a secondary rate limit") == 60
    assert header_wait(503, h({}), now) is None


def test_link_pagination_followed_to_the_end(httpserver):
    base = httpserver.url_for("/items")
    httpserver.expect_request("/items", query_string="page=1").respond_with_json([1, 2], headers={"Link": f'<{base}?page=2>; rel="next"'})
    httpserver.expect_request("/items", query_string="page=2").respond_with_json(
        [3], headers={"Link": f'<{base}?page=3>; rel="next", <{base}?page=1>; rel="first"'}
    )
    httpserver.expect_request("/items", query_string="page=3").respond_with_json([4])
    pages = list(client().pages_by_link(base, params={"page": 1}))
    assert pages == [[1, 2], [3], [4]]


def test_graphql_errors_in_a_200_are_failures(httpserver):
    httpserver.expect_request("/graphql", method="POST").respond_with_json({"data": None, "errors": [{"message": "quota exceeded"}]})
    with pytest.raises(PoloInputError, match="quota exceeded") as raised:
        client().graphql(httpserver.url_for("/graphql"), "query { x }", {})
    assert raised.value.field == "errors"


def test_non_json_answer_is_an_input_error(httpserver):
    httpserver.expect_request("/html").respond_with_data("<html>proxy</html>", status=200)
    with pytest.raises(PoloInputError, match="not JSON"):
        client().get_json(httpserver.url_for("/html"))


def test_connection_refused_is_retried_then_unavailable():
    c = client()
    with pytest.raises(SourceUnavailable, match="ConnectionError"):
        c.get_json("http://127.0.0.1:9/nothing")
    assert c.requests_made == 4


def test_require_and_records_name_the_missing_field():
    with pytest.raises(PoloInputError) as raised:
        require({"a": {}}, "a.b", source="s", partition="p")
    assert raised.value.field == "a.b" and "partition p" in str(raised.value)
    with pytest.raises(PoloInputError) as raised:
        records([{"x": 1}, {"y": 2}], ["x"], source="s", what="items", partition=None)
    assert raised.value.field == "items[].x"
    assert json.dumps(records([{"x": 1}], ["x"], source="s", what="items", partition=None)) == '[{"x": 1}]'


def test_scrub_covers_every_encoding_a_secret_travels_in():
    import base64
    import json
    from urllib.parse import quote, quote_plus

    from polo_pipelines.sources.http import scrub

    secret = "Zx8Q~a+b/c=d+SECRET/e=="
    encoded_length = len(base64.b64encode(secret.encode()))
    for prefix in (b"", b"u", b"us"):  # base64 of a longer value, the secret at each of the three alignments
        for alphabet in (base64.b64encode, base64.urlsafe_b64encode):
            blob = alphabet(prefix + secret.encode() + b"\0tail").decode()
            left = scrub(blob, [secret]).replace("***", "")
            assert len(blob) - len(left) >= encoded_length - 4  # at most the two characters it shares at each end remain
    for shown in (secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]):
        assert scrub(f"error: {shown} refused", [secret]) == "error: *** refused"
    # a webhook URL is its own secret, and a server that names only the path it got gives it away as well
    hook = "https://hooks.example.com/services/T000/B000/XXXXsecretXXXX"
    assert scrub("no route for /services/T000/B000/XXXXsecretXXXX", [hook]) == "no route for ***"
    # credentials with a shape are scrubbed even when no one said they were secret
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJwb2xvQHAifQ.c2lnbmF0dXJlc2lnbmF0dXJl"
    assert scrub(f"assertion={jwt} token ya29.a0AfB_byCanaryToken Bearer abcdefgh12345678", []) == "assertion=*** token *** Bearer ***"
