"""`polo check-connections`: per configured platform, do its credentials work? Never prints a credential."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

PLATFORMS = ("aws", "focus", "github", "cloudflare", "datadog", "gcp", "azure")
SETTING = {
    "aws": "POLO_AWS_CUR_URI or POLO_AWS_MODE=cost_explorer",
    "focus": "POLO_FOCUS_URI",
    "github": "POLO_GITHUB_ORG",
    "cloudflare": "POLO_CLOUDFLARE_ACCOUNT_ID",
    "datadog": "POLO_DATADOG_SITE",
    "gcp": "POLO_GCP_BILLING_TABLE",
    "azure": "POLO_AZURE_SCOPES",
}


@dataclass
class Check:
    platform: str
    status: str  # ok | failed | skipped
    detail: str


def _aws() -> tuple[bool, Callable[[], str]]:
    import boto3

    from polo_pipelines.defs.aws.resources import aws_source_from_env

    source = aws_source_from_env()
    if source.mode == "cost_explorer":
        def check() -> str:
            identity = boto3.client("sts").get_caller_identity()
            return f"AWS account {identity['Account']} (Cost Explorer mode)"

        return True, check
    return bool(source.export_uri), lambda: _location(source.export_uri or "")


def _focus() -> tuple[bool, Callable[[], str]]:
    import os

    from polo_pipelines.defs.focus.resources import FocusSource

    uri = os.environ.get("POLO_FOCUS_URI") or ""
    return FocusSource(uri=uri or None).configured, lambda: _location(uri)


def _location(uri: str) -> str:
    import boto3

    from polo_pipelines.locations import open_location

    location = open_location(uri, s3_client=boto3.client("s3") if uri.startswith("s3://") else None)
    files = location.glob("**/*")
    if not files:
        raise RuntimeError(f"{location.uri} holds no files")
    return f"{location.uri}: {len(files)} file(s) readable"


def _platform(name: str) -> tuple[bool, Callable[[], str]]:
    from polo_pipelines.defs.azure.resources import azure_from_env
    from polo_pipelines.defs.cloudflare.resources import cloudflare_from_env
    from polo_pipelines.defs.datadog.resources import datadog_from_env
    from polo_pipelines.defs.gcp.resources import gcp_from_env
    from polo_pipelines.defs.github.resources import github_from_env

    build = {"github": github_from_env, "cloudflare": cloudflare_from_env, "datadog": datadog_from_env, "gcp": gcp_from_env, "azure": azure_from_env}[name]
    source = build().process_config_and_initialize()  # resolves EnvVar settings as a Dagster run would
    return source.configured, source.check


def check_connections(platforms: list[str] | None = None) -> list[Check]:
    results = []
    for name in platforms or PLATFORMS:
        if name not in PLATFORMS:
            raise ValueError(f"unknown platform {name!r}: one of {', '.join(PLATFORMS)}")
        configured, check = {"aws": _aws, "focus": _focus}.get(name, lambda n=name: _platform(n))()
        if not configured:
            results.append(Check(name, "skipped", f"not configured (set {SETTING[name]})"))
            continue
        try:
            results.append(Check(name, "ok", check()))
        except Exception as exc:  # every failure is reported, none stops the others
            results.append(Check(name, "failed", f"{type(exc).__name__}: {exc}"))
    return results
