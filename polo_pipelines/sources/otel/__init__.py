"""OpenTelemetry traces: spans received over OTLP/HTTP (``receiver``) into ``polo.otel_traces``, the OpenTelemetry
Collector ClickHouse exporter's table, keeping only what cost attribution needs (``spans``)."""
