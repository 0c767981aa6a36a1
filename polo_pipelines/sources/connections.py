"""`polo check-connections`: per configured source, do its credentials work? Never prints a credential."""

from __future__ import annotations

from dataclasses import dataclass

from polo_pipelines.sources import SOURCES, by_name
from polo_pipelines.sources.http import scrub
from polo_pipelines.sources.secrets import secret_values


@dataclass
class Check:
    platform: str
    status: str  # ok | failed | skipped
    detail: str
    holds: str = ""  # the days the source holds, where it can tell


def held_range(source) -> str:
    try:
        held = source.holds()
    except Exception as exc:  # what a source holds is advice: a failure to tell is shown, never fatal
        return f"cannot tell ({failure_text(exc, 120)})"
    return f"{held[0]}..{held[1]}" if held else ""


def days_held() -> dict[str, tuple]:
    """Per collector, the days its source holds where it can tell: the configured sources, else (collecting the
    sample world) the sample's."""
    from polo_pipelines.sources.sample import only_sample_world

    sample = only_sample_world()
    out = {}
    for spec in SOURCES:
        source = spec.sample_source() if sample else spec.from_env()
        if source is None or not source.configured:
            continue
        try:
            held = source.process_config_and_initialize().holds()
        except Exception:  # advice only
            continue
        if held:
            out[spec.collector] = held
    return out


def check_connections(platforms: list[str] | None = None) -> list[Check]:
    specs = [by_name(name) for name in platforms] if platforms else list(SOURCES)
    results = []
    for spec in specs:
        source = spec.from_env().process_config_and_initialize()  # resolves EnvVar settings as a Dagster run would
        if not source.configured:
            results.append(Check(spec.name, "skipped", f"not configured (set {spec.configured_by})"))
            continue
        try:
            results.append(Check(spec.name, "ok", source.check(), held_range(source)))
        except Exception as exc:  # every failure is reported, none stops the others; a client's text may quote its request
            results.append(Check(spec.name, "failed", failure_text(exc)))
    return results


def failure_text(exc: Exception, limit: int = 500) -> str:
    """An error as one line a terminal shows whole, scrubbed of every secret this process holds."""
    text = " ".join(scrub(f"{type(exc).__name__}: {exc}", secret_values()).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
