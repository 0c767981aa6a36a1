"""The registry of cost sources: the one list that the collection job, the platform hierarchy, check-connections,
the secrets, the sample server, the CLI help and the docs' settings table read.

Adding a source is one folder, ``polo_pipelines/sources/<name>/`` (see ``SourceSpec``), and its line here.
"""

from __future__ import annotations

from polo_pipelines.sources import aws, azure, cloudflare, cloudtrail, cloudwatch, datadog, focus, gcp, github, otel
from polo_pipelines.sources.spec import SourceSpec

SOURCES: tuple[SourceSpec, ...] = (
    aws.SPEC,
    focus.SPEC,
    github.SPEC,
    cloudflare.SPEC,
    datadog.SPEC,
    gcp.SPEC,
    azure.SPEC,
    cloudtrail.SPEC,
    cloudwatch.SPEC,
    otel.SPEC,
)


def names() -> list[str]:
    return [spec.name for spec in SOURCES]


def by_name(name: str) -> SourceSpec:
    for spec in SOURCES:
        if spec.name == name:
            return spec
    raise ValueError(f"unknown source {name!r}: one of {', '.join(names())}")


def cost_collectors() -> set[str]:
    """The collectors whose events are costs (not activity)."""
    return {spec.collector for spec in SOURCES if spec.kind == "cost"}


def activity_collectors() -> set[str]:
    """The collectors of activity (config, lifecycle and metric events that explain costs)."""
    return {spec.collector for spec in SOURCES if spec.kind == "activity"}


def platform_of_collector() -> dict[str, str]:
    """Every collector (cost and activity) -> the platform its resources sit under."""
    out = {}
    for spec in SOURCES:
        if spec.platform:
            out[spec.collector] = spec.platform
        out.update({collector: spec.platform for collector in spec.activity_collectors})
    return out
