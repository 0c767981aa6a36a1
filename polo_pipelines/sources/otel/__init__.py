"""OpenTelemetry traces: spans received over OTLP/HTTP (``receiver``) into ``polo.otel_traces``, the OpenTelemetry
Collector ClickHouse exporter's table, keeping only what cost attribution needs (``spans``); priced per service and
operation in 15-minute buckets (``prices``, ``costs``) as the cost events of collector ``cost_otel``."""

from polo_pipelines.sources.spec import Setting, SourceSpec

SPEC = SourceSpec(
    name="otel",
    platform="otel",
    collector="cost_otel",
    description="Estimated cost per service and operation in 15-minute buckets, from OpenTelemetry spans in polo.otel_traces "
    "(received by `polo otlp`, or written there by an OpenTelemetry Collector): each span's share of the host it ran on, "
    "priced from the AWS Price List or the price file, plus its LLM tokens (collector cost_otel, basis estimated).",
    kinds=("opentelemetry",),
    configured_by="POLO_OTEL=1",
    settings=(
        Setting("POLO_OTEL", "`1` prices the spans in polo.otel_traces into cost events each day"),
        Setting(
            "POLO_PRICES_FILE", "the price file for hosts the AWS Price List does not price and for LLM tokens (default config/prices.yaml)"
        ),
        Setting("POLO_PRICE_TTL_HOURS", "how long a Price List price is used before it is asked again (default 24)"),
        Setting("POLO_OTLP_HOST", "where `polo otlp` listens (default 127.0.0.1)"),
        Setting("POLO_OTLP_PORT", "its port (default 4318, the OTLP/HTTP default)"),
        Setting("POLO_OTLP_TOKEN", "the bearer token `polo otlp` requires; it refuses to listen beyond loopback without one"),
        Setting(
            "POLO_OTEL_TRACES_TABLE",
            "the spans' table, e.g. an OpenTelemetry Collector's otel.otel_traces, read in place (default polo.otel_traces)",
        ),
        Setting("POLO_OTEL_TRACES_DSN", "the ClickHouse server holding that table, when it is not Polo's store"),
    ),
    sample="server",  # the sample server's Price List; the spans come from the sample services (``sample.py``)
    top_costs_by=("service", "resource_name"),
    # a day's estimates are reconciled to the hosts' bills: the billing collectors' same days first
    after=("aws", "gcp", "azure"),
)
