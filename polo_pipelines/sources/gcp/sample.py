"""The sample world's GCP billing account: billing-export rows, and BigQuery's REST answers to Polo's query.

The account bills in AUD (rate 1.52 per USD, carried on every row, as the export does).
Two training VMs with sustained-use discounts and a dataset bucket carry the labels of
customer ``gamma``; BigQuery analysis has no resource name and a promotional credit; tax
arrives on the 1st of each month. Each resource has two export rows a day (the export is
hourly), which the query groups.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import TYPE_CHECKING, Any

from polo_pipelines.sources.sample.server import Reply, Request, SampleServer

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

PROJECT = "polo-billing"  # the project that runs the query jobs
TABLE = "polo-billing.billing_export.gcp_billing_export_resource_v1_0A1B2C_3D4E5F_6A7B8C"
RATE = 1.52
GAMMA = [{"key": "customer", "value": "gamma"}, {"key": "cluster", "value": "gamma-gcp-1"}]
# Each project's ancestors as the export lists them: the project first, its organization last.
ANCESTORS = {
    "ml-training": [
        {"resource_name": "projects/804213", "display_name": "ml-training"},
        {"resource_name": "folders/5521", "display_name": "Machine learning"},
        {"resource_name": "folders/5500", "display_name": "Data"},
        {"resource_name": "organizations/77001", "display_name": "example.com"},
    ],
    "analytics": [
        {"resource_name": "projects/804214", "display_name": "analytics"},
        {"resource_name": "folders/5500", "display_name": "Data"},
        {"resource_name": "organizations/77001", "display_name": "example.com"},
    ],
}
# (project, service, sku, global name, AUD a day, credits [(type, share of cost)], labels)
RESOURCES = [
    (
        "ml-training",
        "Compute Engine",
        "N2 Instance Core running in Americas",
        "//compute.googleapis.com/projects/ml-training/zones/us-central1-a/instances/trainer-1",
        68.0,
        [("SUSTAINED_USAGE_DISCOUNT", 0.2)],
        GAMMA,
    ),
    (
        "ml-training",
        "Compute Engine",
        "N2 Instance Core running in Americas",
        "//compute.googleapis.com/projects/ml-training/zones/us-central1-a/instances/trainer-2",
        68.0,
        [("SUSTAINED_USAGE_DISCOUNT", 0.2)],
        GAMMA,
    ),
    (
        "ml-training",
        "Cloud Storage",
        "Standard Storage US Multi-region",
        "//storage.googleapis.com/projects/_/buckets/gamma-datasets",
        12.5,
        [],
        GAMMA,
    ),
    ("analytics", "BigQuery", "Analysis", None, 30.0, [("PROMOTION", 0.25)], []),
]


class GcpSample:
    def __init__(self, start: dt.date, end: dt.date, seed: int):
        self.start, self.end, self.seed = start, end, seed

    def export_rows(self, start: dt.date, end_inclusive: dt.date) -> list[dict[str, Any]]:
        """Billing-export rows (the fields Polo's query reads) for usage days in [start, end_inclusive]."""
        out = []
        day = max(start, self.start)
        while day <= min(end_inclusive, self.end - dt.timedelta(days=1)):
            rng = random.Random(f"{self.seed}:gcp:{day.isoformat()}")
            for project, service, sku, name, cost, credits, labels in RESOURCES:
                for half in (0, 12):
                    amount = round(cost / 2 * rng.uniform(0.9, 1.1), 6)
                    out.append(
                        {
                            "usage_start_time": dt.datetime.combine(day, dt.time(half), tzinfo=dt.UTC),
                            "project": {"id": project, "ancestors": ANCESTORS[project]},
                            "service": {"description": service},
                            "sku": {"description": sku},
                            "resource": {"global_name": name},
                            "location": {"region": "us-central1"},
                            "cost_type": "regular",
                            "currency": "AUD",
                            "currency_conversion_rate": RATE,
                            "labels": labels,
                            "cost": amount,
                            "credits": [
                                {"name": kind.replace("_", " ").title(), "amount": -round(amount * share, 6), "type": kind}
                                for kind, share in credits
                            ],
                        }
                    )
            if day.day == 1:
                out.append(
                    {
                        "usage_start_time": dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC),
                        "project": {"id": None, "ancestors": []},
                        "service": {"description": "Invoice"},
                        "sku": {"description": "Tax"},
                        "resource": {"global_name": None},
                        "location": {"region": None},
                        "cost_type": "tax",
                        "currency": "AUD",
                        "currency_conversion_rate": RATE,
                        "labels": [],
                        "cost": 48.0,
                        "credits": [],
                    }
                )
            day += dt.timedelta(days=1)
        return out

    def query_result(self, start: dt.date, end_inclusive: dt.date, detailed: bool) -> list[dict[str, Any]]:
        """What Polo's grouped query returns over the export rows (see polo_pipelines.sources.gcp.client.query_sql)."""
        groups: dict[tuple, dict[str, Any]] = {}
        for row in self.export_rows(start, end_inclusive):
            key = (
                row["usage_start_time"].date().isoformat(),
                row["project"]["id"] or "",
                row["service"]["description"],
                row["sku"]["description"],
                (row["resource"]["global_name"] or "") if detailed else "",
                row["location"]["region"] or "",
                row["cost_type"],
                row["currency"],
                row["currency_conversion_rate"],
                json.dumps(row["labels"], separators=(",", ":")),
                json.dumps(row["project"]["ancestors"], separators=(",", ":")),
            )
            group = groups.setdefault(key, {"cost": 0.0, "credits": []})
            group["cost"] += row["cost"]
            group["credits"].extend(row["credits"])
        names = (
            "day",
            "project_id",
            "service",
            "sku",
            "resource_name",
            "region",
            "cost_type",
            "currency",
            "currency_conversion_rate",
            "labels",
            "project_ancestors",
        )
        return [{**dict(zip(names, key)), "cost": round(g["cost"], 6), "credits": g["credits"]} for key, g in groups.items()]


SCHEMA = {
    "fields": [
        {"name": "day", "type": "DATE", "mode": "NULLABLE"},
        {"name": "project_id", "type": "STRING", "mode": "NULLABLE"},
        {"name": "service", "type": "STRING", "mode": "NULLABLE"},
        {"name": "sku", "type": "STRING", "mode": "NULLABLE"},
        {"name": "resource_name", "type": "STRING", "mode": "NULLABLE"},
        {"name": "region", "type": "STRING", "mode": "NULLABLE"},
        {"name": "cost_type", "type": "STRING", "mode": "NULLABLE"},
        {"name": "currency", "type": "STRING", "mode": "NULLABLE"},
        {"name": "currency_conversion_rate", "type": "FLOAT", "mode": "NULLABLE"},
        {"name": "labels", "type": "STRING", "mode": "NULLABLE"},
        {"name": "project_ancestors", "type": "STRING", "mode": "NULLABLE"},
        {"name": "cost", "type": "FLOAT", "mode": "NULLABLE"},
        {
            "name": "credits",
            "type": "RECORD",
            "mode": "REPEATED",
            "fields": [
                {"name": "name", "type": "STRING", "mode": "NULLABLE"},
                {"name": "amount", "type": "FLOAT", "mode": "NULLABLE"},
                {"name": "type", "type": "STRING", "mode": "NULLABLE"},
            ],
        },
    ]
}


def encode_row(row: dict[str, Any], schema: dict[str, Any] = SCHEMA) -> dict[str, Any]:
    """A row in BigQuery's REST encoding: {"f": [{"v": ...}]}, every scalar a string, records nested the same way."""

    def value(field: dict[str, Any], v: Any) -> Any:
        if field.get("mode") == "REPEATED":
            return [{"v": value({**field, "mode": "NULLABLE"}, item)} for item in v or []]
        if v is None:
            return None
        if field["type"] == "RECORD":
            return {"f": [{"v": value(f, v.get(f["name"]))} for f in field["fields"]]}
        return str(v)

    return {"f": [{"v": value(f, row.get(f["name"]))} for f in schema["fields"]]}


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    """BigQuery's jobs.query / jobs.getQueryResults / jobs.get, answering Polo's billing query from the sample export."""
    import itertools

    jobs: dict[str, dict] = {}
    ids = itertools.count(1)
    page_rows = 50

    def result_page(job_id: str, start: int, size: int | None) -> dict:
        job = jobs[job_id]
        size = min(size or page_rows, page_rows)
        rows = job["rows"][start : start + size]
        doc = {
            "kind": "bigquery#getQueryResultsResponse",
            "schema": SCHEMA,
            "jobReference": {"projectId": job["project"], "jobId": job_id, "location": "US"},
            "totalRows": str(len(job["rows"])),
            "rows": [encode_row(r) for r in rows],
            "totalBytesProcessed": str(1024 * len(job["rows"])),
            "jobComplete": True,
            "cacheHit": False,
        }
        if start + size < len(job["rows"]):
            doc["pageToken"] = str(start + size)
        return doc

    def query(request: Request) -> Reply:
        body = request.body or {}
        sql = str(body.get("query", ""))
        if TABLE not in sql or "@start" not in sql:
            return Reply(400, {"error": {"code": 400, "message": f"Not found: Table {sql[:80]!r}", "status": "INVALID_ARGUMENT"}})
        params = {p["name"]: p["parameterValue"]["value"] for p in body.get("queryParameters", [])}
        start, end = dt.date.fromisoformat(params["start"]), dt.date.fromisoformat(params["end_day"])
        job_id = f"polo_sample_{next(ids)}"
        jobs[job_id] = {
            "project": request.match["project"],
            "rows": world.data("gcp").query_result(start, end, detailed="resource.global_name" in sql),
            "sql": sql,
        }
        doc = result_page(job_id, 0, body.get("maxResults"))
        doc["kind"] = "bigquery#queryResponse"
        return Reply(200, doc)

    def results(request: Request) -> Reply:
        job_id = request.match["job"]
        if job_id not in jobs:
            return Reply(404, {"error": {"code": 404, "message": f"Not found: Job {job_id}"}})
        size = int(request.query["maxResults"]) if "maxResults" in request.query else None
        if size == 0:
            doc = result_page(job_id, 0, 1)
            doc.pop("rows", None)
            doc.pop("pageToken", None)
            return Reply(200, doc)
        return Reply(200, result_page(job_id, int(request.query.get("pageToken") or request.query.get("startIndex") or 0), size))

    def job(request: Request) -> Reply:
        job_id = request.match["job"]
        if job_id not in jobs:
            return Reply(404, {"error": {"code": 404, "message": f"Not found: Job {job_id}"}})
        ref = {"projectId": jobs[job_id]["project"], "jobId": job_id, "location": "US"}
        return Reply(
            200,
            {
                "kind": "bigquery#job",
                "id": f"{ref['projectId']}:US.{job_id}",
                "jobReference": ref,
                "configuration": {"jobType": "QUERY", "query": {"query": jobs[job_id]["sql"], "useLegacySql": False}},
                "status": {"state": "DONE"},
                "statistics": {"query": {"totalBytesProcessed": "0"}},
            },
        )

    def table(request: Request) -> Reply:
        name = f"{request.match['project']}.{request.match['dataset']}.{request.match['table']}"
        if name != TABLE:
            return Reply(404, {"error": {"code": 404, "message": f"Not found: Table {name}"}})
        ref = {"projectId": request.match["project"], "datasetId": request.match["dataset"], "tableId": request.match["table"]}
        rows = len(world.data("gcp").export_rows(world.start, world.end))
        return Reply(
            200,
            {
                "kind": "bigquery#table",
                "id": name,
                "tableReference": ref,
                "numRows": str(rows),
                "schema": {"fields": []},
                "timePartitioning": {"type": "DAY"},
            },
        )

    prefix = r"/gcp/bigquery/v2/projects/(?P<project>[^/]+)"
    server.route("GET", rf"{prefix}/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)", table)
    server.route("POST", rf"{prefix}/queries", query)
    server.route("GET", rf"{prefix}/queries/(?P<job>[^/]+)", results)
    server.route("GET", rf"{prefix}/jobs/(?P<job>[^/]+)", job)


def sample_data(world: PlatformSample) -> GcpSample:
    return GcpSample(world.start, world.end, world.seed)


def sample_source():
    """The GCP source, pointed at the sample server's BigQuery with anonymous credentials."""
    from polo_pipelines.sources.gcp.source import GcpSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    _, server = serve_sample()
    return GcpSource(billing_table=TABLE, project=PROJECT, anonymous=True, api_endpoint=f"{server.url}/gcp")
