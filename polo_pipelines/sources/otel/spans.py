"""OTLP trace payloads (``ExportTraceServiceRequest``, protobuf or the OTLP/JSON encoding) as rows of the
OpenTelemetry Collector ClickHouse exporter's ``otel_traces`` table.

Only what cost attribution needs is kept: the service, operation, environment, version and the compute a span ran on
(resource attributes ``service.*``, ``deployment.environment``, ``host.*``, ``cloud.*``, ``k8s.*``, ``faas.*``), its
times, duration and status, and per-call usage (``gen_ai.usage.*`` token counts, the model). Request bodies,
headers, database statements, URLs and every other attribute are dropped before anything is stored, as are events
and links (their attributes are arbitrary). A payload that is not a well-formed request is refused as a whole.
"""

from __future__ import annotations

import base64
import binascii
import functools

import numpy as np
import pandas as pd
import pyarrow as pa
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from polo_pipelines.store.events import PROPERTIES_TYPE, properties_column

SOURCE = "otel"

# The resource attributes a span's price and place depend on (exact names, and prefixes ending in ".")
RESOURCE_KEPT = (
    "service.name",
    "service.namespace",
    "service.version",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "host.",
    "cloud.",
    "k8s.",
    "faas.",
    "container.id",
)
# The span attributes that carry per-call usage and price
SPAN_KEPT = (
    "gen_ai.usage.",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.system",
    "gen_ai.provider.name",
    "process.cpu.time",
)
KINDS = {0: "Unspecified", 1: "Internal", 2: "Server", 3: "Client", 4: "Producer", 5: "Consumer"}
STATUSES = {0: "Unset", 1: "Ok", 2: "Error"}
MAX_SPANS = 50_000  # one request's spans at most (one insert: all or nothing)
COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
)


class BadPayload(ValueError):
    """An OTLP payload refused as a whole: the message says what is wrong (HTTP 400)."""


@functools.lru_cache(maxsize=4096)
def kept(key: str, allowed: tuple[str, ...]) -> bool:
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in allowed)


def _value(any_value) -> str:
    """An AnyValue as text (attributes are a string map in the table)."""
    which = any_value.WhichOneof("value")
    if which is None:
        return ""
    value = getattr(any_value, which)
    if which in ("string_value", "int_value"):
        return str(value)
    if which == "bool_value":
        return "true" if value else "false"
    if which == "double_value":
        return repr(value)
    if which == "array_value":
        return "[" + ", ".join(_value(v) for v in value.values) + "]"
    return ""  # kvlist and bytes values: never needed for a price


def _attributes(pairs, allowed: tuple[str, ...]) -> dict[str, str]:
    return {kv.key: _value(kv.value) for kv in pairs if kept(kv.key, allowed)}


def _hex(raw: bytes, size: int, what: str, where: str, empty_ok: bool = False) -> str:
    if not raw and empty_ok:
        return ""
    if len(raw) != size or not any(raw):
        raise BadPayload(f"{where}: {what} must be {size} bytes, not all zero (got {len(raw)})")
    return raw.hex()


def rows(request: ExportTraceServiceRequest) -> pd.DataFrame:
    """The request's spans as otel_traces rows (attributes filtered); a malformed span refuses the whole request."""
    out: list[tuple] = []
    resources: list[tuple[dict[str, str], int]] = []  # each resource's attributes and how many spans it has
    for r, resource_spans in enumerate(request.resource_spans):
        resource = _attributes(resource_spans.resource.attributes, RESOURCE_KEPT)
        service = resource.get("service.name", "")
        before = len(out)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope, version = scope_spans.scope.name, scope_spans.scope.version
            for n, span in enumerate(scope_spans.spans):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                if len(out) >= MAX_SPANS:
                    raise BadPayload(f"more than {MAX_SPANS} spans in one request: send smaller batches")
                attributes = _attributes(span.attributes, SPAN_KEPT)
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if not start:
                    raise BadPayload(f"{where}: startTimeUnixNano is missing")
                if end < start:
                    attributes["polo.duration"] = "negative"  # flagged, never priced
                out.append(
                    (
                        start,
                        _hex(span.trace_id, 16, "traceId", where),
                        _hex(span.span_id, 8, "spanId", where),
                        _hex(span.parent_span_id, 8, "parentSpanId", where, empty_ok=True),
                        span.trace_state,
                        span.name,
                        KINDS.get(span.kind, "Unspecified"),
                        service,
                        None,  # ResourceAttributes: built once per resource below
                        scope,
                        version,
                        attributes,
                        max(end - start, 0),
                        STATUSES.get(span.status.code, "Unset"),
                        span.status.message[:1000],
                    )
                )
        resources.append((resource, len(out) - before))
    frame = pd.DataFrame(out, columns=list(COLUMNS))
    frame["ResourceAttributes"] = properties_column(_repeated_maps(resources), index=frame.index)
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"].astype("int64"), unit="ns")
    frame["Duration"] = frame["Duration"].astype("uint64")
    return frame


def _repeated_maps(resources: list[tuple[dict[str, str], int]]) -> pa.MapArray:
    """One map per span, each resource's attributes repeated for its spans, built in Arrow (not a dict per span)."""
    keys, values, lengths = [], [], []
    for attributes, spans in resources:
        if spans:
            keys.append(np.tile(np.array(list(attributes), dtype=object), spans))
            values.append(np.tile(np.array(list(attributes.values()), dtype=object), spans))
            lengths.append(np.full(spans, len(attributes), dtype=np.int32))
    if not lengths:
        return pa.array([], type=PROPERTIES_TYPE)
    offsets = np.zeros(sum(len(x) for x in lengths) + 1, dtype=np.int32)
    np.cumsum(np.concatenate(lengths), out=offsets[1:])
    flat_keys = pa.array(np.concatenate(keys), type=pa.string()) if keys else pa.array([], type=pa.string())
    flat_values = pa.array(np.concatenate(values), type=pa.string()) if values else pa.array([], type=pa.string())
    return pa.MapArray.from_arrays(pa.array(offsets), flat_keys, flat_values)


def from_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except (DecodeError, ValueError) as exc:
        raise BadPayload(f"not an OTLP ExportTraceServiceRequest in protobuf: {exc}") from None
    return request


def from_json(body: bytes) -> ExportTraceServiceRequest:
    """The OTLP/JSON encoding: protobuf's JSON mapping but for trace and span ids, which are hex, not base64."""
    import orjson

    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadPayload("not an OTLP ExportTraceServiceRequest: the body must be a JSON object")
    try:
        for resource_spans in doc.get("resourceSpans") or []:
            for scope_spans in resource_spans.get("scopeSpans") or []:
                for span in scope_spans.get("spans") or []:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if span.get(key):
                            span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        request = ExportTraceServiceRequest()
        json_format.ParseDict(doc, request)
    except (ValueError, TypeError, AttributeError, binascii.Error, json_format.ParseError) as exc:
        raise BadPayload(f"not an OTLP ExportTraceServiceRequest in JSON: {exc}") from None
    return request
