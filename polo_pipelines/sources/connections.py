"""`polo check-connections`: per configured source, do its credentials work? Never prints a credential."""

from __future__ import annotations

from dataclasses import dataclass

from polo_pipelines.sources import SOURCES, by_name


@dataclass
class Check:
    platform: str
    status: str  # ok | failed | skipped
    detail: str


def check_connections(platforms: list[str] | None = None) -> list[Check]:
    specs = [by_name(name) for name in platforms] if platforms else list(SOURCES)
    results = []
    for spec in specs:
        source = spec.from_env().process_config_and_initialize()  # resolves EnvVar settings as a Dagster run would
        if not source.configured:
            results.append(Check(spec.name, "skipped", f"not configured (set {spec.configured_by})"))
            continue
        try:
            results.append(Check(spec.name, "ok", source.check()))
        except Exception as exc:  # every failure is reported, none stops the others
            results.append(Check(spec.name, "failed", f"{type(exc).__name__}: {exc}"))
    return results
