"""Where Cloudflare costs come from: one account's GraphQL Analytics usage x published prices."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.cloudflare import client as cloudflare
from polo_pipelines.sources.http import CHECK_RETRY, ApiClient
from polo_pipelines.sources.secrets import get_secret
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label


class CloudflareSource(CostSource):
    """A Cloudflare account (POLO_CLOUDFLARE_ACCOUNT_ID); an API token with Account Analytics read from
    POLO_CLOUDFLARE_TOKEN or the secret polo/cloudflare-token."""

    account_id: str | None = None
    api_url: str = cloudflare.API_URL
    token: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.account_id)

    def api(self, partition: str | None = None) -> cloudflare.CloudflareApi:
        account, url = self.account_id or "", self.api_url
        token = self.token or get_secret("polo/cloudflare-token").value
        if not token:
            raise PoloInputError(
                "no token: set POLO_CLOUDFLARE_TOKEN or the secret polo/cloudflare-token", source="cloudflare", partition=partition
            )
        client = ApiClient("cloudflare", headers={"Authorization": f"Bearer {token}"}, secrets=(token,), partition=partition)
        return cloudflare.CloudflareApi(client, account, url)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        api = self.api(window_label(start, end))
        window = cloudflare.collect(api, start, end)
        counts = {"usage_rows": window.usage_rows, "months_read": len(window.months), "api_requests": window.requests}
        return Collected(cloudflare.COLLECTOR, f"{api.url}/graphql", window.events, [f"{api.url}/graphql"], counts)

    def check(self) -> str:
        api = self.api()
        api.client.retry = CHECK_RETRY
        return api.ping()


def from_env() -> CloudflareSource:
    return CloudflareSource(
        account_id=os.environ.get("POLO_CLOUDFLARE_ACCOUNT_ID") or None,
        api_url=os.environ.get("POLO_CLOUDFLARE_API_URL") or cloudflare.API_URL,
        token=dg.EnvVar("POLO_CLOUDFLARE_TOKEN") if os.environ.get("POLO_CLOUDFLARE_TOKEN") else None,
    )
