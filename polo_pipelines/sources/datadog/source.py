"""Where Datadog costs come from: the usage-cost API of a parent organisation on one Datadog site."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.datadog import client as datadog
from polo_pipelines.sources.http import CHECK_RETRY, ApiClient
from polo_pipelines.sources.secrets import get_secret
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label


class DatadogSource(CostSource):
    """A Datadog parent organisation on ``site`` (POLO_DATADOG_SITE: datadoghq.com, us3.datadoghq.com, us5.datadoghq.com,
    datadoghq.eu, ap1.datadoghq.com, ap2.datadoghq.com, ddog-gov.com); keys from POLO_DATADOG_API_KEY /
    POLO_DATADOG_APP_KEY or the secrets polo/datadog-api-key / polo/datadog-app-key."""

    site: str | None = None
    api_url: str | None = None
    api_key: str | None = None
    app_key: str | None = None
    today: str | None = None  # ISO day the month-to-date estimates run to; empty means today (the sample world sets its end)

    @property
    def configured(self) -> bool:
        return bool(self.site)

    def api(self, partition: str | None = None) -> datadog.DatadogApi:
        url = self.api_url or datadog.api_url(self.site or "")
        api_key = self.api_key or get_secret("polo/datadog-api-key").value
        app_key = self.app_key or get_secret("polo/datadog-app-key").value
        if not (api_key and app_key):
            raise PoloInputError(
                "no keys: set POLO_DATADOG_API_KEY and POLO_DATADOG_APP_KEY (or the secrets polo/datadog-api-key and polo/datadog-app-key)",
                source="datadog",
                partition=partition,
            )
        headers = {"DD-API-KEY": api_key, "DD-APPLICATION-KEY": app_key, "Accept": "application/json"}
        return datadog.DatadogApi(ApiClient("datadog", headers=headers, secrets=(api_key, app_key), partition=partition), url)

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        api = self.api(window_label(start, end))
        today = dt.date.fromisoformat(self.today) if self.today else None
        window = datadog.collect(api, start, end, today=today)
        counts = {
            "final_months": len(window.final_months),
            "estimated_months": len(window.estimated_months),
            "api_requests": window.requests,
        }
        return Collected(
            datadog.COLLECTOR,
            api.url,
            window.events,
            [f"{api.url}/api/v2/usage/estimated_cost", f"{api.url}/api/v2/usage/historical_cost"],
            counts,
        )

    def check(self) -> str:
        api = self.api()
        api.client.retry = CHECK_RETRY
        return api.ping()


def from_env() -> DatadogSource:
    return DatadogSource(
        site=os.environ.get("POLO_DATADOG_SITE") or None,
        api_url=os.environ.get("POLO_DATADOG_API_URL") or None,
        api_key=dg.EnvVar("POLO_DATADOG_API_KEY") if os.environ.get("POLO_DATADOG_API_KEY") else None,
        app_key=dg.EnvVar("POLO_DATADOG_APP_KEY") if os.environ.get("POLO_DATADOG_APP_KEY") else None,
    )
