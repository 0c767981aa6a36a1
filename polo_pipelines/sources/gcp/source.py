"""Where GCP costs come from: the Cloud Billing export table in BigQuery."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import dagster as dg

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.gcp import client as gcp
from polo_pipelines.sources.secrets import get_secret
from polo_pipelines.sources.spec import Collected, CostSource
from polo_pipelines.store.events import window_label


class GcpSource(CostSource):
    """The billing export table ``project.dataset.table`` (POLO_GCP_BILLING_TABLE; ``gcp_billing_export_resource_v1_*``
    is the detailed export), queried as POLO_GCP_PROJECT (default: the table's project). Credentials: a service-account
    key (file path or JSON) from POLO_GCP_CREDENTIALS or the secret polo/gcp-service-account, else Application
    Default Credentials; the account needs BigQuery Job User and Data Viewer on the dataset."""

    billing_table: str | None = None
    project: str | None = None
    detailed: bool | None = None
    partitioned: bool = True
    credentials: str | None = None
    api_endpoint: str | None = None
    anonymous: bool = False  # no credentials at all: an emulator or the sample world's local BigQuery
    retry_timeout: float = 300.0

    @property
    def configured(self) -> bool:
        return bool(self.billing_table)

    def client(self, partition: str | None = None):
        from google.cloud import bigquery

        table = self.billing_table or ""
        project = self.project or table.split(".")[0]
        options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
        return bigquery.Client(project=project, credentials=self._credentials(partition), client_options=options), table

    def _credentials(self, partition: str | None):
        if self.anonymous:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()
        key = self.credentials or get_secret("polo/gcp-service-account").value
        if not key:
            return None  # Application Default Credentials
        from google.oauth2 import service_account

        try:
            info = json.loads(key) if key.lstrip().startswith("{") else json.loads(Path(key).read_text())
            return service_account.Credentials.from_service_account_info(info, scopes=["https://www.googleapis.com/auth/bigquery.readonly"])
        except (OSError, ValueError, KeyError):
            # the key itself must not reach the message
            raise PoloInputError(
                "the service-account key is not a readable JSON key file or JSON document",
                source="gcp",
                field="POLO_GCP_CREDENTIALS",
                partition=partition,
            ) from None

    def is_detailed(self, table: str) -> bool:
        return self.detailed if self.detailed is not None else "_resource_v1_" in table

    def collect(self, start: dt.date, end: dt.date) -> Collected:
        partition = window_label(start, end)
        client, table = self.client(partition)
        gcp.authenticate(client, partition)
        window = gcp.collect(
            client,
            table,
            start,
            end,
            detailed=self.is_detailed(table),
            partitioned=self.partitioned,
            partition=partition,
            retry_timeout=self.retry_timeout,
        )
        counts = {"groups": window.groups, "bytes_processed": window.bytes_processed}
        return Collected(gcp.COLLECTOR, f"bigquery:{table}", window.events, [f"bigquery:{table}"], counts)

    def check(self) -> str:
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        client, table = self.client()
        gcp.authenticate(client, None)
        found = client.get_table(table, retry=DEFAULT_RETRY.with_timeout(15.0), timeout=30.0)
        return f"table {table} ({found.num_rows or 0} rows)"


def from_env() -> GcpSource:
    detailed = os.environ.get("POLO_GCP_DETAILED_EXPORT")
    return GcpSource(
        billing_table=os.environ.get("POLO_GCP_BILLING_TABLE") or None,
        project=os.environ.get("POLO_GCP_PROJECT") or None,
        detailed=None if not detailed else detailed.lower() in ("1", "true", "yes"),
        partitioned=(os.environ.get("POLO_GCP_PARTITIONED_TABLE", "1").lower() in ("1", "true", "yes")),
        credentials=dg.EnvVar("POLO_GCP_CREDENTIALS") if os.environ.get("POLO_GCP_CREDENTIALS") else None,
        api_endpoint=os.environ.get("POLO_GCP_BIGQUERY_URL") or None,
    )
