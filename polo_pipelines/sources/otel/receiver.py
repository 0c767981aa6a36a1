"""OTLP/HTTP for traces, received by Polo itself: ``POST /v1/traces`` with an ``ExportTraceServiceRequest`` in
protobuf (``application/x-protobuf``) or JSON (``application/json``), gzip or not, as the OpenTelemetry SDKs' OTLP
exporters send it, so a service instrumented with the standard SDK exports to Polo unchanged.

A request is written whole or not at all: a malformed payload gets HTTP 400 with the reason and nothing of it is
stored, one over the size limit 413, a wrong content type 415. Bound to 127.0.0.1 unless told otherwise; exposed,
it takes ``Authorization: Bearer <POLO_OTLP_TOKEN>``. Writes go through one shared store session, given up whenever
a Dagster step waits for the embedded store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hmac
import io
import logging
import os
import zlib

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from polo_pipelines.sources.otel import spans
from polo_pipelines.store.shared import SharedStore
from polo_pipelines.store.storage import StoreError

log = logging.getLogger("polo.otlp")
MAX_BODY = 8 * 2**20  # compressed or not; and the same bound once unpacked
PROTOBUF, JSON = "application/x-protobuf", "application/json"


def token_setting() -> str:
    return os.environ.get("POLO_OTLP_TOKEN", "")


def _status(kind: str, status: int, message: str) -> Response:
    """An OTLP error answer: a ``google.rpc.Status`` in the request's own encoding."""
    if kind == PROTOBUF:
        from google.rpc import status_pb2  # noqa: PLC0415  (googleapis-common-protos, with opentelemetry-proto)

        return Response(status_pb2.Status(code=3 if status == 400 else 8, message=message).SerializeToString(), status, media_type=PROTOBUF)
    import orjson

    return Response(orjson.dumps({"code": 3 if status == 400 else 8, "message": message}), status, media_type=JSON)


def _unpacked(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding != "gzip":
        raise spans.BadPayload(f"Content-Encoding {encoding!r} is not supported (gzip or none)")
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as stream:
            out = stream.read(MAX_BODY + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise spans.BadPayload(f"not a whole gzip body: {exc}") from None
    if len(out) > MAX_BODY:
        raise OverflowError
    return out


def create_app(dsn: str | None = None, *, token: str | None = None, shared: SharedStore | None = None) -> Starlette:
    store = shared or SharedStore(dsn, wait_s=float(os.environ.get("POLO_WRITE_WAIT_SECONDS") or 600))
    expected = token_setting() if token is None else token

    async def traces(request: Request) -> Response:
        kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if kind not in (PROTOBUF, JSON):
            return Response(f"Content-Type must be {PROTOBUF} or {JSON}", 415)
        if expected:
            given = request.headers.get("authorization", "")
            if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), expected.encode()):
                return _status(kind, 401, "this receiver takes Authorization: Bearer <POLO_OTLP_TOKEN>")
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _status(kind, 413, f"the body is over {MAX_BODY} bytes: send smaller batches")
        body = await request.body()
        if len(body) > MAX_BODY:
            return _status(kind, 413, f"the body is over {MAX_BODY} bytes: send smaller batches")
        try:
            raw = _unpacked(body, (request.headers.get("content-encoding") or "").strip().lower())
            payload = spans.from_protobuf(raw) if kind == PROTOBUF else spans.from_json(raw)
            frame = spans.rows(payload)
        except OverflowError:
            return _status(kind, 413, f"the body is over {MAX_BODY} bytes unpacked: send smaller batches")
        except spans.BadPayload as exc:
            return _status(kind, 400, str(exc))
        if len(frame):
            try:
                await asyncio.wrap_future(store.submit(lambda s: s.insert_df("polo.otel_traces", frame)))
            except StoreError as exc:
                return _status(kind, 503, str(exc))
        empty = b"" if kind == PROTOBUF else b"{}"
        return Response(empty, 200, media_type=kind)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        store.close()

    return Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])], lifespan=lifespan)
