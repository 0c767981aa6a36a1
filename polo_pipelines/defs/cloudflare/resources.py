"""Where Cloudflare costs come from: one account's GraphQL Analytics usage x published prices."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines import cloudflare
from polo_pipelines.api import CHECK_RETRY, ApiClient
from polo_pipelines.collect import Collected, PlatformSource, sample_platforms
from polo_pipelines.errors import PoloInputError
from polo_pipelines.events import window_label
from polo_pipelines.secrets import get_secret


class CloudflareSource(PlatformSource):
    """A Cloudflare account (POLO_CLOUDFLARE_ACCOUNT_ID); an API token with Account Analytics read from
    POLO_CLOUDFLARE_TOKEN or the secret polo/cloudflare-token."""

    account_id: str | None = None
    api_url: str = cloudflare.API_URL
    token: str | None = None

    @property
    def platform(self) -> str:
        return "cloudflare"

    @property
    def configured(self) -> bool:
        return bool(self.account_id)

    def api(self, partition: str | None = None, *, sample: bool = False) -> cloudflare.CloudflareApi:
        if sample:
            from polo_pipelines.sample.cloudflare import ACCOUNT
            from polo_pipelines.sample.server import SAMPLE_TOKEN

            _, server = sample_platforms()
            account, url, token = ACCOUNT, f"{server.url}/cloudflare", SAMPLE_TOKEN
        else:
            account, url = self.account_id or "", self.api_url
            token = self.token or get_secret("polo/cloudflare-token").value
            if not token:
                raise PoloInputError("no token: set POLO_CLOUDFLARE_TOKEN or the secret polo/cloudflare-token", source="cloudflare", partition=partition)
        client = ApiClient("cloudflare", headers={"Authorization": f"Bearer {token}"}, secrets=(token,), partition=partition)
        return cloudflare.CloudflareApi(client, account, url)

    def collect(self, start: dt.date, end: dt.date, *, sample: bool = False) -> Collected:
        api = self.api(window_label(start, end), sample=sample)
        window = cloudflare.collect(api, start, end)
        counts = {"usage_rows": window.usage_rows, "months_read": len(window.months), "api_requests": window.requests}
        return Collected(cloudflare.COLLECTOR, f"{api.url}/graphql", window.events, [f"{api.url}/graphql"], counts)

    def check(self) -> str:
        api = self.api()
        api.client.retry = CHECK_RETRY
        return api.ping()


def cloudflare_from_env() -> CloudflareSource:
    return CloudflareSource(
        account_id=os.environ.get("POLO_CLOUDFLARE_ACCOUNT_ID") or None,
        api_url=os.environ.get("POLO_CLOUDFLARE_API_URL") or cloudflare.API_URL,
        token=dg.EnvVar("POLO_CLOUDFLARE_TOKEN") if os.environ.get("POLO_CLOUDFLARE_TOKEN") else None,
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"cloudflare": cloudflare_from_env()})
