"""Where Azure costs come from: Cost Management queries over one or more scopes, as an AAD application."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.settings import fx_rates
from polo_pipelines.sources.azure import client as azure
from polo_pipelines.sources.http import CHECK_RETRY, ApiClient
from polo_pipelines.sources.secrets import get_secret
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label


class AzureSource(CostSource):
    """Scopes such as ``subscriptions/<id>`` or ``providers/Microsoft.Billing/billingAccounts/<id>`` (POLO_AZURE_SCOPES,
    comma-separated), read by an application (POLO_AZURE_TENANT_ID, POLO_AZURE_CLIENT_ID) with Cost Management Reader;
    its secret from POLO_AZURE_CLIENT_SECRET or the secret polo/azure-client-secret."""

    scopes: list[str] = []
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    management_url: str = azure.MANAGEMENT_URL
    authority_url: str = azure.AUTHORITY_URL
    fx_rates: dict[str, float] = {}

    @property
    def configured(self) -> bool:
        return bool(self.scopes)

    def api(self, partition: str | None = None) -> azure.AzureApi:
        scopes, tenant, client_id, management, authority = (
            self.scopes,
            self.tenant_id or "",
            self.client_id or "",
            self.management_url,
            self.authority_url,
        )
        secret = self.client_secret or get_secret("polo/azure-client-secret").value
        if not (tenant and client_id and secret):
            raise PoloInputError(
                "set POLO_AZURE_TENANT_ID, POLO_AZURE_CLIENT_ID and POLO_AZURE_CLIENT_SECRET (or the secret polo/azure-client-secret)",
                source="azure",
                partition=partition,
            )
        client = ApiClient("azure", secrets=(secret,), partition=partition)
        access = azure.token(client, authority, tenant, client_id, secret)
        client.headers["Authorization"] = f"Bearer {access}"
        client.secrets = (secret, access)
        return azure.AzureApi(client, scopes, management)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        api = self.api(window_label(start, end))
        window = azure.collect(api, start, end, fx_rates=self.fx_rates)
        counts = {"rows": window.rows, "scopes": len(window.scopes), "api_requests": window.requests}
        sources = [f"{api.url}/{scope}/providers/Microsoft.CostManagement/query" for scope in window.scopes]
        return Collected(azure.COLLECTOR, api.url, window.events, sources, counts)

    def check(self) -> str:
        api = self.api()
        api.client.retry = CHECK_RETRY
        return api.ping()


def from_env() -> AzureSource:
    return AzureSource(
        scopes=[s for s in (os.environ.get("POLO_AZURE_SCOPES") or "").split(",") if s.strip()],
        tenant_id=os.environ.get("POLO_AZURE_TENANT_ID") or None,
        client_id=os.environ.get("POLO_AZURE_CLIENT_ID") or None,
        client_secret=dg.EnvVar("POLO_AZURE_CLIENT_SECRET") if os.environ.get("POLO_AZURE_CLIENT_SECRET") else None,
        management_url=os.environ.get("POLO_AZURE_MANAGEMENT_URL") or azure.MANAGEMENT_URL,
        authority_url=os.environ.get("POLO_AZURE_AUTHORITY_URL") or azure.AUTHORITY_URL,
        fx_rates=fx_rates(),
    )
