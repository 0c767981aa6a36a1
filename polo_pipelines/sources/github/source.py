"""Where GitHub costs come from: an organisation's billing report and Actions runs (POLO_GITHUB_ORG, token)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.github import client as github
from polo_pipelines.sources.http import CHECK_RETRY, ApiClient
from polo_pipelines.sources.secrets import get_secret
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label


class GithubSource(CostSource):
    """A GitHub organisation; the token (fine-grained: organisation administration read, Actions read) comes from
    POLO_GITHUB_TOKEN or the Secrets Manager secret polo/github-pat."""

    org: str | None = None
    api_url: str = github.API_URL
    token: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.org)

    def api(self, partition: str | None = None) -> github.GithubApi:
        org, url = self.org or "", self.api_url
        token = self.token or get_secret("polo/github-pat").value
        if not token:
            raise PoloInputError("no token: set POLO_GITHUB_TOKEN or the secret polo/github-pat", source="github", partition=partition)
        client = ApiClient("github", headers={**github.HEADERS, "Authorization": f"Bearer {token}"}, secrets=(token,), partition=partition)
        return github.GithubApi(client, org, url)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        api = self.api(window_label(start, end))
        window = github.collect(api, start, end)
        counts = {
            "usage_items": window.usage_items,
            "workflow_runs": window.runs,
            "jobs": window.jobs,
            "repositories": window.repositories,
            "api_requests": window.requests,
        }
        return Collected(github.COLLECTOR, f"{api.url} ({api.org})", window.events, window.sources, counts)

    def check(self) -> str:
        api = self.api()
        api.client.retry = CHECK_RETRY
        return f"organisation {api.ping()}"


def from_env() -> GithubSource:
    return GithubSource(
        org=os.environ.get("POLO_GITHUB_ORG") or None,
        api_url=os.environ.get("POLO_GITHUB_API_URL") or github.API_URL,
        token=dg.EnvVar("POLO_GITHUB_TOKEN") if os.environ.get("POLO_GITHUB_TOKEN") else None,
    )
