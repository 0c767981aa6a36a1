"""The one HTTP client every platform collector uses.

Timeouts on every request; retries with exponential backoff and full jitter on 429, 5xx and
dropped connections, honouring each provider's rate-limit headers (``Retry-After``,
GitHub's ``x-ratelimit-reset`` epoch, Datadog's ``X-RateLimit-Reset`` seconds, Azure's
``x-ms-ratelimit-*-retry-after``); a bound on the total time spent waiting; pagination
helpers; GraphQL ``errors`` in a 200 response treated as a failure.

Secrets travel only in request headers. Log lines and errors name the method, host and path
(never headers, never the query string), and anything the client was told is secret is
scrubbed from any text it raises.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from polo_pipelines.errors import PoloInputError

log = logging.getLogger("polo.api")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_MS_RETRY_AFTER = re.compile(r"^x-ms-ratelimit-.*retry-after$", re.IGNORECASE)
_EPOCH_FLOOR = 1_000_000_000  # a reset header above this is an epoch time, below it a number of seconds


class SourceUnavailable(RuntimeError):
    """A platform API kept failing (or asked us to wait longer than allowed): nothing of the partition is written."""

    def __init__(self, message: str, *, source: str, partition: str | None = None):
        self.source = source
        self.partition = partition
        where = f"source {source}" + (f", partition {partition}" if partition else "")
        super().__init__(f"{message} ({where})")


def _max_wait_setting() -> float:
    """POLO_HTTP_MAX_WAIT_SECONDS: how long one request may wait on rate limits and retries (default 300)."""
    import os

    return float(os.environ.get("POLO_HTTP_MAX_WAIT_SECONDS") or 300.0)


@dataclass
class RetryPolicy:
    attempts: int = 6  # requests in all, the first included
    base: float = 1.0  # seconds; the n-th retry waits up to base * 2**n, full jitter
    cap: float = 60.0  # one backoff wait at most (a provider's own reset header may ask for more)
    max_total_wait: float = field(default_factory=_max_wait_setting)  # all waits of one request together


# A connection check asks once more at most and never waits long.
CHECK_RETRY = RetryPolicy(attempts=2, base=0.5, cap=2.0, max_total_wait=10.0)


def header_wait(status: int, headers: requests.structures.CaseInsensitiveDict, now: float, body: str = "") -> float | None:
    """Seconds the provider asks us to wait before retrying, or None when it does not say."""
    waits: list[float] = []
    for name, value in headers.items():
        if _MS_RETRY_AFTER.match(name):
            number = _number(value)
            if number is not None:
                waits.append(number)
    if waits:
        return max(waits)  # Azure: several windows may be exhausted; the largest wait clears them all
    retry_after = headers.get("Retry-After")
    if retry_after:
        number = _number(retry_after)
        if number is not None:
            return max(number, 0.0)
        parsed = email.utils.parsedate_to_datetime(retry_after) if retry_after.strip() else None
        if parsed is not None:
            return max(parsed.timestamp() - now, 0.0)
    reset = _number(headers.get("X-RateLimit-Reset") or "")
    remaining = headers.get("X-RateLimit-Remaining")
    if reset is not None and (status == 429 or remaining == "0"):
        return max(reset - now, 0.0) if reset > _EPOCH_FLOOR else reset
    if status == 403 and "secondary rate limit" in body.lower():
        return 60.0  # GitHub: no header means wait at least a minute
    return None


def _number(value: str) -> float | None:
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _is_rate_limited(response: requests.Response) -> bool:
    if response.status_code in RETRY_STATUSES:
        return True
    if response.status_code == 403:  # GitHub signals its primary and secondary limits with 403 too
        text = response.text[:2000].lower() if response.content else ""
        return response.headers.get("X-RateLimit-Remaining") == "0" or "rate limit" in text
    return False


# Credentials with a recognisable shape, scrubbed wherever they appear even when nobody said they were secret:
# a JWT (a signed token request's assertion, an id token), a Google OAuth access token, a bearer header's value.
_TOKEN_SHAPES = re.compile(
    r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|ya29\.[A-Za-z0-9_.\-]{10,}"
    r"|(?<=Bearer )[A-Za-z0-9_.~+/=\-]{8,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)",
    re.DOTALL,
)


def encodings(secret: str) -> set[str]:
    """Every way a secret travels as text: raw, URL-encoded (form and path), JSON-escaped, and base64 (plain and URL-safe,
    padded or not, at each of the three alignments it may sit at inside a longer encoded value). A secret URL (a webhook)
    is given away by its path alone, which is all a server sees of it, so its path is a secret too."""
    import base64
    import json as _json
    from urllib.parse import quote, quote_plus

    parts = urlsplit(secret)
    forms = [secret]
    if parts.scheme in ("http", "https") and parts.netloc:
        tail = parts.path + (f"?{parts.query}" if parts.query else "")
        if len(tail) >= 8:
            forms.append(tail)
    out: set[str] = set()
    for form in forms:
        out.update({form, quote_plus(form), quote(form, safe=""), quote(form), _json.dumps(form)[1:-1]})
        for shift in range(3):
            encoded = base64.b64encode(b"\0" * shift + form.encode()).decode()
            # drop the characters the prefix and the unknown next bytes touch: what remains is fixed by the secret alone
            head = (4 * shift + 2) // 3 if shift else 0
            body = encoded[head:].rstrip("=")
            tail_chars = len(body) % 4
            core = body[: len(body) - (1 if tail_chars else 0)]
            if len(core) >= 8:
                out.update({core, core.replace("+", "-").replace("/", "_")})
    return {e for e in out if len(e) >= 4}


def scrub(text: str, secrets) -> str:
    """The text with every non-empty secret, in every encoding it travels in, and every credential-shaped token replaced by ***."""
    variants = sorted({v for secret in secrets if secret and len(secret) >= 4 for v in encodings(secret)}, key=len, reverse=True)
    for variant in variants:
        text = text.replace(variant, "***")
    return _TOKEN_SHAPES.sub("***", text)


@dataclass
class ApiClient:
    """HTTP for one platform: ``source`` names it in every message; ``secrets`` are scrubbed from any text raised."""

    source: str
    headers: dict[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    timeout: tuple[float, float] = (10.0, 120.0)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    partition: str | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    session: requests.Session = field(default_factory=requests.Session)
    requests_made: int = 0
    waited: float = 0.0

    def scrub(self, text: str) -> str:
        return scrub(text, self.secrets)

    def where(self, method: str, url: str) -> str:
        parts = urlsplit(url)
        return self.scrub(f"{method} {parts.netloc}{parts.path}")

    def request(self, method: str, url: str, *, params=None, json=None, data=None, headers=None) -> requests.Response:
        """One logical request, retried as the provider allows; a non-retryable error status raises at once."""
        policy = self.retry
        waited = 0.0
        last = ""
        for attempt in range(1, policy.attempts + 1):
            wait: float | None = None
            try:
                self.requests_made += 1
                response = self.session.request(
                    method, url, params=params, json=json, data=data, headers={**self.headers, **(headers or {})}, timeout=self.timeout
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}"
            else:
                if response.status_code < 400:
                    return response
                if not _is_rate_limited(response):
                    raise self._status_error(method, url, response)
                last = f"HTTP {response.status_code}"
                wait = header_wait(response.status_code, response.headers, self.clock(), response.text[:2000])
            if attempt == policy.attempts:
                break
            backoff = random.uniform(0, min(policy.cap, policy.base * 2 ** (attempt - 1)))
            wait = backoff if wait is None else wait + random.uniform(0, max(policy.base, wait * 0.1))
            if waited + wait > policy.max_total_wait:
                raise SourceUnavailable(
                    f"{self.where(method, url)}: {last}, and the next wait ({wait:.0f} s) would pass the "
                    f"{policy.max_total_wait:.0f} s bound on waiting",
                    source=self.source,
                    partition=self.partition,
                )
            log.warning(
                "%s: %s from %s, retry %d/%d in %.1f s", self.source, last, self.where(method, url), attempt, policy.attempts - 1, wait
            )
            self.sleep(wait)
            waited += wait
            self.waited += wait
        raise SourceUnavailable(
            f"{self.where(method, url)}: still failing after {policy.attempts} attempts (last: {last})",
            source=self.source,
            partition=self.partition,
        )

    def _status_error(self, method: str, url: str, response: requests.Response) -> Exception:
        detail = self.scrub(" ".join(response.text[:300].split())) if response.content else ""
        hint = {401: "the credentials were refused", 403: "the credentials lack a permission", 404: "not found"}.get(
            response.status_code, ""
        )
        message = (
            f"{self.where(method, url)}: HTTP {response.status_code}" + (f" ({hint})" if hint else "") + (f": {detail}" if detail else "")
        )
        return PoloInputError(message, source=self.source, partition=self.partition)

    def get_json(self, url: str, *, params=None, headers=None) -> Any:
        return self.decode(self.request("GET", url, params=params, headers=headers), url)

    def post_json(self, url: str, body: Any, *, params=None, headers=None) -> Any:
        return self.decode(self.request("POST", url, json=body, params=params, headers=headers), url)

    def decode(self, response: requests.Response, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise PoloInputError(
                f"{self.where(response.request.method or 'GET', url)} answered with something that is not JSON",
                source=self.source,
                partition=self.partition,
            ) from None

    def pages_by_link(self, url: str, *, params=None) -> Iterator[Any]:
        """GitHub-style pagination: follow the ``Link: <...>; rel="next"`` header to the end."""
        next_url: str | None = url
        next_params = params
        while next_url:
            response = self.request("GET", next_url, params=next_params)
            yield self.decode(response, next_url)
            next_url = response.links.get("next", {}).get("url")
            next_params = None  # the next link carries the query

    def graphql(self, url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """A GraphQL request: errors reported in a 200 response are failures, not data."""
        doc = self.post_json(url, {"query": query, "variables": variables})
        errors = doc.get("errors") if isinstance(doc, dict) else None
        if errors:
            messages = "; ".join(self.scrub(str(e.get("message", e)) if isinstance(e, dict) else str(e)) for e in errors)
            raise PoloInputError(f"GraphQL query failed: {messages}", source=self.source, field="errors", partition=self.partition)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict):
            raise PoloInputError("GraphQL response has no data", source=self.source, field="data", partition=self.partition)
        return data


def require(doc: Any, path: str, *, source: str, partition: str | None, kind: type | tuple[type, ...] | None = None) -> Any:
    """``doc[a][b]...`` for a dotted path, or a PoloInputError naming the missing field."""
    value = doc
    walked: list[str] = []
    for key in path.split("."):
        walked.append(key)
        if not isinstance(value, dict) or key not in value:
            raise PoloInputError("payload is missing a field", source=source, field=".".join(walked), partition=partition)
        value = value[key]
    if kind is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise PoloInputError(f"field should be {names}, got {type(value).__name__}", source=source, field=path, partition=partition)
    return value


def records(items: Iterable[Any], fields: Iterable[str], *, source: str, what: str, partition: str | None) -> list[dict[str, Any]]:
    """Each item as a dict holding every named field; the first item lacking one raises, naming it."""
    needed = tuple(fields)
    out = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise PoloInputError(f"{what}[{index}] is not an object", source=source, field=what, partition=partition)
        for name in needed:
            if name not in item:
                raise PoloInputError(f"{what}[{index}] is missing a field", source=source, field=f"{what}[].{name}", partition=partition)
        out.append(item)
    return out
