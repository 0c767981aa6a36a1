"""Spans priced: cost events per service and operation in 15-minute buckets (collector ``cost_otel``, basis
``estimated``), from ``polo.otel_traces``.

A span's estimate is its share of the host it ran on plus its per-call prices:

- **its share of the host**: the span's own time (its duration less its children's, so a request and the query
  inside it are not both charged for the same seconds) × the host's hourly price ÷ how many spans ran on the host at
  once. Per host (``host.id``, else its type) and bucket, the spans' own times add up to the host's busy time; when
  that exceeds the bucket (several spans at once) each span gets its share of the bucket's cost in proportion to its
  own time; when it does not, each span costs its own time at the hourly price and the rest of the bucket is the
  host's idle time (the reconciliation to the bill names it);
- **per call**: ``gen_ai.usage.input_tokens`` / ``output_tokens`` × the model's token prices (the price file).

Spans that cannot be priced (no host attributes, a host no price source knows) become explicit ``unpriced`` lines
with their span count, never dropped; a span that ends before it starts or lasts longer than the window is flagged
and not priced.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.otel.prices import Price, host_key
from polo_pipelines.store.events import EVENT_COLUMNS, build_properties, conform, properties_column

COLLECTOR = "cost_otel"
BUCKET = dt.timedelta(minutes=15)


TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def traces_table(name: str) -> str:
    """A table name as SQL may hold it: ``table`` or ``database.table``, nothing else."""
    if not TABLE.match(name or ""):
        raise PoloInputError(f"not a table name: {name!r} (database.table)", source="otel", field="POLO_OTEL_TRACES_TABLE")
    return name


def grouped(store, start: dt.datetime, end: dt.datetime, table: str = "polo.otel_traces") -> pd.DataFrame:
    """Per bucket, host, service, operation, environment, version and model: spans, own time, tokens, and the spans
    flagged (negative or longer than the window). ``table`` holds the spans in the Collector ClickHouse exporter's
    columns: Polo's own, or one an OpenTelemetry Collector writes."""
    window_ns = int((end - start).total_seconds() * 1e9)
    table = traces_table(table)
    # A span and its children meet on (a hash of the trace id, the span id as the 8 bytes it is): two integers, so the
    # children's sums and the join hold a few bytes a span, not two hex strings (a 10M-span window: 1.1 GiB, not 3)
    return store.query_df(
        f"""
        WITH children AS (
            SELECT cityHash64(TraceId) AS trace, reinterpretAsUInt64(unhex(ParentSpanId)) AS span, sum(Duration) AS child_ns
            FROM {table}
            WHERE Timestamp >= {{start:DateTime64(9)}} AND Timestamp < {{end:DateTime64(9)}} AND ParentSpanId != ''
            GROUP BY trace, span
        )
        SELECT toStartOfFifteenMinutes(s.Timestamp) AS bucket,
               ResourceAttributes['host.id'] AS host_id,
               ResourceAttributes['host.type'] AS host_type,
               ResourceAttributes['cloud.provider'] AS provider,
               ResourceAttributes['cloud.region'] AS region,
               s.ServiceName AS service, s.SpanName AS operation,
               coalesce(nullIf(ResourceAttributes['deployment.environment.name'], ''), ResourceAttributes['deployment.environment']) AS environment,
               ResourceAttributes['service.version'] AS version,
               coalesce(nullIf(SpanAttributes['gen_ai.response.model'], ''), SpanAttributes['gen_ai.request.model']) AS model,
               countIf(NOT flagged) AS spans,
               countIf(flagged) AS flagged_spans,
               sumIf(greatest(toInt64(s.Duration) - toInt64(coalesce(c.child_ns, 0)), 0), NOT flagged) / 1e9 AS own_seconds,
               sumIf(toUInt64OrZero(SpanAttributes['gen_ai.usage.input_tokens']), NOT flagged) AS input_tokens,
               sumIf(toUInt64OrZero(SpanAttributes['gen_ai.usage.output_tokens']), NOT flagged) AS output_tokens
        FROM (
            SELECT Timestamp, ServiceName, SpanName, Duration, ResourceAttributes, SpanAttributes,
                   cityHash64(TraceId) AS trace, reinterpretAsUInt64(unhex(SpanId)) AS span,
                   SpanAttributes['polo.duration'] = 'negative' OR Duration > {{window:UInt64}} AS flagged
            FROM {table}
            WHERE Timestamp >= {{start:DateTime64(9)}} AND Timestamp < {{end:DateTime64(9)}}
        ) AS s
        LEFT JOIN children AS c ON c.trace = s.trace AND c.span = s.span
        GROUP BY bucket, host_id, host_type, provider, region, service, operation, environment, version, model
        ORDER BY bucket, service, operation
        """,
        {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None), "window": window_ns},
    )


def priced(groups: pd.DataFrame, host_price: Mapping[str, Price], call_price: Mapping[str, Price]) -> pd.DataFrame:
    """Each group's estimate: its share of its host's bucket, plus its tokens; ``why`` says what could not be priced."""
    out = groups.copy()
    keys = [
        host_key({"host.type": t, "cloud.region": r, "cloud.provider": p})
        for t, r, p in zip(out["host_type"], out["region"], out["provider"])
    ]
    out["host_key"] = [k or "" for k in keys]
    out["host"] = [h or k or "" for h, k in zip(out["host_id"], out["host_key"])]
    busy = out.groupby(["bucket", "host"])["own_seconds"].transform("sum")
    bucket_s = BUCKET.total_seconds()
    hourly = out["host_key"].map(lambda k: host_price[k].usd if k in host_price else float("nan"))
    share = out["own_seconds"] / busy.clip(lower=bucket_s)
    out["host_cost"] = (share * hourly * bucket_s / 3600).fillna(0.0)
    out["hourly"] = hourly.fillna(0.0)
    token = lambda m, side: call_price[f"file:gen_ai:{m}:{side}"].usd if f"file:gen_ai:{m}:{side}" in call_price else float("nan")  # noqa: E731
    tokens_in = out["input_tokens"] * out["model"].map(lambda m: token(m, "input"))
    tokens_out = out["output_tokens"] * out["model"].map(lambda m: token(m, "output"))
    out["call_cost"] = tokens_in.fillna(0.0) + tokens_out.fillna(0.0)
    out["cost"] = out["host_cost"] + out["call_cost"]
    why = []
    for key, host_ok, tokens, model_ok in zip(
        out["host_key"], hourly.notna(), out["input_tokens"] + out["output_tokens"], tokens_in.notna() | tokens_out.notna()
    ):
        reasons = []
        if not key:
            reasons.append("no host attributes (host.type, cloud.region)")
        elif not host_ok:
            reasons.append(f"no price for host {key}")
        if tokens and not model_ok:
            reasons.append("no token price for its model")
        why.append("; ".join(reasons))
    out["unpriced"] = why
    return out


# One line per bucket, service, operation, environment, version and host: what the events carry, and what is read back
# from the store to reconcile a day (``reconcile``). ``kind``: usage, unpriced or idle (a host's unattributed cost).
LINE_COLUMNS = [
    "bucket", "kind", "service", "operation", "environment", "version", "host", "host_key", "unpriced",
    "spans", "flagged", "seconds", "input_tokens", "output_tokens", "hourly", "host_cost", "call_cost", "cost", "basis",
]  # fmt: skip
IDLE = "idle"  # the service of a host's idle lines: otel:idle/{host}


def lines(frame: pd.DataFrame) -> pd.DataFrame:
    """The priced groups as lines: a group's model is summed away, an unpriced group stays a line of its own."""
    if frame.empty:
        return pd.DataFrame(columns=LINE_COLUMNS)
    keys = ["bucket", "service", "operation", "environment", "version", "host", "host_key", "unpriced"]
    agg = frame.groupby(keys, as_index=False, dropna=False).agg(
        cost=("cost", "sum"),
        host_cost=("host_cost", "sum"),
        call_cost=("call_cost", "sum"),
        hourly=("hourly", "max"),
        spans=("spans", "sum"),
        flagged=("flagged_spans", "sum"),
        seconds=("own_seconds", "sum"),
        input_tokens=("input_tokens", "sum"),
        output_tokens=("output_tokens", "sum"),
    )
    agg["kind"] = ["unpriced" if u else "usage" for u in agg["unpriced"]]
    agg["basis"] = "estimated"
    return agg[LINE_COLUMNS]


def events(frame: pd.DataFrame) -> pd.DataFrame:
    """The priced groups as cost events (``lines`` turned to events)."""
    return to_events(lines(frame))


def to_events(agg: pd.DataFrame) -> pd.DataFrame:
    """Lines as cost events: ids ``otel:{service}/{operation}`` (``otel:idle/{host}`` for a host's idle line). Each
    keeps its host, the host's hourly price and the estimate's two parts (``estimate_host``, ``estimate_calls``): what
    the reconciliation to the host's bill rescales, and how far the bill moved the estimate."""
    if agg.empty:
        return conform(pd.DataFrame(columns=list(EVENT_COLUMNS)))
    agg = agg.reset_index(drop=True)
    idle = agg["kind"] == "idle"
    ids = ("otel:" + agg["service"] + "/" + agg["operation"]).where(~idle, "otel:" + IDLE + "/" + agg["host"])
    out = pd.DataFrame(
        {
            "resource_arn": ids,
            "resource_type": pd.Series("otel:operation", index=agg.index).where(~idle, "otel:idle"),
            "resource_name": agg["operation"],
            "event_time": pd.to_datetime(agg["bucket"]),
            "event_type": "cost",
            "event_action": agg["kind"],
            "value": agg["cost"].round(9),
            "billed_cost": agg["cost"].round(9),
            "list_cost": agg["cost"].round(9),
            "charge_category": "Usage",
            "service": agg["service"],
            "provider": "OpenTelemetry",
            "unit": "USD",
            "actor_name": "",
            "collector": COLLECTOR,
            "aws_account_id": "",
            "aws_region": "",
        }
    )
    text = lambda s: s.astype(str).where(s.astype(str) != "0", "")  # noqa: E731
    number = lambda s: s.astype("float64").round(9).astype(str)  # noqa: E731
    out["properties"] = properties_column(
        build_properties(
            len(out),
            columns={
                "basis": agg["basis"],
                "tag:service": agg["service"],
                "tag:operation": agg["operation"],
                "tag:environment": agg["environment"],
                "service.version": agg["version"],
                "spans": text(agg["spans"]),
                "flagged_spans": text(agg["flagged"]),
                "own_seconds": agg["seconds"].astype("float64").round(3).astype(str),
                "input_tokens": text(agg["input_tokens"]),
                "output_tokens": text(agg["output_tokens"]),
                "host": agg["host"],
                "host.type": agg["host_key"],
                "host_hourly": text(agg["hourly"].astype("float64").round(9)),
                "estimate_host": number(agg["host_cost"]),
                "estimate_calls": number(agg["call_cost"]),
                "unpriced": agg["unpriced"],
            },
        ),
        index=out.index,
    )
    return conform(out)


def stored_lines(store, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """The lines held for [start, end) (idle lines left out: a reconciliation makes them again), their estimates
    as they were priced whatever a reconciliation did to their cost since."""
    return store.query_df(
        """
        SELECT event_time AS bucket, event_action AS kind, properties['tag:service'] AS service,
               properties['tag:operation'] AS operation, properties['tag:environment'] AS environment,
               properties['service.version'] AS version, properties['host'] AS host, properties['host.type'] AS host_key,
               properties['unpriced'] AS unpriced, toUInt64OrZero(properties['spans']) AS spans,
               toUInt64OrZero(properties['flagged_spans']) AS flagged, toFloat64OrZero(properties['own_seconds']) AS seconds,
               toUInt64OrZero(properties['input_tokens']) AS input_tokens, toUInt64OrZero(properties['output_tokens']) AS output_tokens,
               toFloat64OrZero(properties['host_hourly']) AS hourly, toFloat64OrZero(properties['estimate_host']) AS host_cost,
               toFloat64OrZero(properties['estimate_calls']) AS call_cost, host_cost + call_cost AS cost, 'estimated' AS basis
        FROM polo.resource_events
        WHERE collector = {collector:String} AND event_time >= {start:DateTime64(3)} AND event_time < {end:DateTime64(3)}
          AND event_type = 'cost' AND event_action != 'idle'
        ORDER BY bucket, service, operation, host
        """,
        {"collector": COLLECTOR, "start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)},
        columns=LINE_COLUMNS,
    )[LINE_COLUMNS]


def window_lines(
    store,
    start: dt.datetime,
    end: dt.datetime,
    host_prices: Callable[[list[str]], Mapping[str, Price]],
    call_prices: Mapping[str, Price],
    table: str = "polo.otel_traces",
) -> pd.DataFrame:
    """The lines of [start, end): spans grouped, their hosts priced (``host_prices(keys)``)."""
    groups = grouped(store, start, end, table)
    if groups.empty:
        return lines(groups)
    keys = {
        host_key({"host.type": t, "cloud.region": r, "cloud.provider": p})
        for t, r, p in zip(groups["host_type"], groups["region"], groups["provider"])
    }
    return lines(priced(groups, host_prices(sorted(k for k in keys if k)), call_prices))


def window(store, start: dt.datetime, end: dt.datetime, host_prices, call_prices, table: str = "polo.otel_traces") -> pd.DataFrame:
    """The cost events of [start, end) (``window_lines`` as events)."""
    return to_events(window_lines(store, start, end, host_prices, call_prices, table))


def span_counts(store, start: dt.datetime, end: dt.datetime, table: str = "polo.otel_traces") -> pd.DataFrame:
    """Spans per bucket of [start, end): what a day's run compares with the spans its stored lines were priced from."""
    return store.query_df(
        f"""
        SELECT toStartOfFifteenMinutes(Timestamp) AS bucket, count() AS spans FROM {traces_table(table)}
        WHERE Timestamp >= {{start:DateTime64(9)}} AND Timestamp < {{end:DateTime64(9)}}
        GROUP BY bucket ORDER BY bucket
        """,
        {"start": start.replace(tzinfo=None), "end": end.replace(tzinfo=None)},
        columns=["bucket", "spans"],
    )


def to_price(counts: pd.DataFrame, held: pd.DataFrame, most_spans: int) -> list[tuple[dt.datetime, dt.datetime]]:
    """The windows to price again: buckets whose spans differ from what their stored lines were priced from (late
    spans, or none priced yet), consecutive ones together while they hold at most ``most_spans`` spans."""
    priced_from = (held["spans"] + held["flagged"]).groupby(pd.to_datetime(held["bucket"])).sum() if len(held) else pd.Series(dtype="int64")
    runs: list[list] = []
    for bucket, n in zip(pd.to_datetime(counts["bucket"]), counts["spans"]):
        if int(priced_from.get(bucket, 0)) == int(n):
            continue
        lo = bucket.to_pydatetime().replace(tzinfo=dt.UTC)
        if runs and runs[-1][1] == lo and runs[-1][2] + int(n) <= most_spans:
            runs[-1][1], runs[-1][2] = lo + BUCKET, runs[-1][2] + int(n)
        else:
            runs.append([lo, lo + BUCKET, int(n)])
    return [(lo, hi) for lo, hi, _ in runs]


def movers(store, start: dt.datetime) -> pd.DataFrame:
    """Each operation's cost in the 15 minutes from ``start`` beside the 15 minutes before, the largest change first:
    which operation moved within a window, minutes after it ran."""
    return store.query_df(
        """
        SELECT resource_arn, sumIf(value, event_time >= {start:DateTime64(3)}) AS now,
               sumIf(value, event_time < {start:DateTime64(3)}) AS before, now - before AS change,
               sumIf(toUInt64OrZero(properties['spans']), event_time >= {start:DateTime64(3)}) AS spans
        FROM polo.resource_events
        WHERE collector = {collector:String} AND event_type = 'cost'
          AND event_time >= {start:DateTime64(3)} - INTERVAL 15 MINUTE AND event_time < {start:DateTime64(3)} + INTERVAL 15 MINUTE
        GROUP BY resource_arn
        ORDER BY abs(change) DESC, resource_arn
        """,
        {"collector": COLLECTOR, "start": start.astimezone(dt.UTC).replace(tzinfo=None)},
        columns=["resource_arn", "now", "before", "change", "spans"],
    )
