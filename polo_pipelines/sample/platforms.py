"""The sample world beyond AWS, served over HTTP in each platform's own API shape."""

from __future__ import annotations

import datetime as dt
from functools import cached_property

from polo_pipelines.sample.server import SAMPLE_TOKEN, Reply, Request, SampleServer, page_of, sample_server
from polo_pipelines.sample.world import SEED


class PlatformSample:
    """Every platform's sample data for the window [start, end) of the AWS sample world."""

    def __init__(self, start: dt.date, end: dt.date, seed: int = SEED):
        self.start, self.end, self.seed = start, end, seed
        monday = end - dt.timedelta(days=end.weekday())
        self.last_week_start = monday - dt.timedelta(days=7)

    @cached_property
    def github(self):
        from polo_pipelines.sample.github import GithubSample

        return GithubSample(self.start, self.end, self.last_week_start, self.seed)

    @cached_property
    def datadog(self):
        from polo_pipelines.sample.datadog import DatadogSample

        return DatadogSample(self.start, self.end, self.seed)

    @cached_property
    def cloudflare(self):
        from polo_pipelines.sample.cloudflare import CloudflareSample

        return CloudflareSample(self.start, self.end, self.seed)

    @cached_property
    def azure(self):
        from polo_pipelines.sample.azure import AzureSample

        return AzureSample(self.start, self.end, self.seed)

    @cached_property
    def gcp(self):
        from polo_pipelines.sample.gcp import GcpSample

        return GcpSample(self.start, self.end, self.seed)

    def serve(self) -> SampleServer:
        return sample_server(f"{self.start}:{self.end}:{self.seed}", self.add_routes)

    def add_routes(self, server: SampleServer) -> None:
        add_github_routes(server, self)
        add_datadog_routes(server, self)
        add_cloudflare_routes(server, self)
        add_azure_routes(server, self)
        add_bigquery_routes(server, self)


def _bearer(request: Request) -> Reply | None:
    if request.headers.get("authorization") != f"Bearer {SAMPLE_TOKEN}":
        return Reply(401, {"message": "Bad credentials"})
    return None


def add_github_routes(server: SampleServer, world: PlatformSample) -> None:
    from polo_pipelines.sample.github import ORG

    gh = world.github

    def org(request: Request) -> Reply:
        return _bearer(request) or Reply(200, {"login": ORG, "id": 1})

    def usage(request: Request) -> Reply:
        q = request.query
        day = dt.date(int(q["year"]), int(q["month"]), int(q["day"]))
        return _bearer(request) or Reply(200, {"usageItems": gh.usage_items(day)})

    def repos(request: Request) -> Reply:
        items, headers = page_of([{"name": r, "full_name": f"{ORG}/{r}"} for r in gh.repos], request)
        return _bearer(request) or Reply(200, items, headers)

    def runs(request: Request) -> Reply:
        since, until = (dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in request.query["created"].split(".."))
        every = gh.runs_payload(request.match["repo"], since, until)
        items, headers = page_of(every, request)
        return _bearer(request) or Reply(200, {"total_count": len(every), "workflow_runs": items}, headers)

    def jobs(request: Request) -> Reply:
        every = gh.jobs_payload(request.match["repo"], int(request.match["run"]))
        if every is None:
            return Reply(404, {"message": "Not Found"})
        items, headers = page_of(every, request)
        return _bearer(request) or Reply(200, {"total_count": len(every), "jobs": items}, headers)

    base = "/github"
    server.route("GET", rf"{base}/orgs/{ORG}", org)
    server.route("GET", rf"{base}/organizations/{ORG}/settings/billing/usage", usage)
    server.route("GET", rf"{base}/orgs/{ORG}/repos", repos)
    server.route("GET", rf"{base}/repos/{ORG}/(?P<repo>[^/]+)/actions/runs", runs)
    server.route("GET", rf"{base}/repos/{ORG}/(?P<repo>[^/]+)/actions/runs/(?P<run>\d+)/jobs", jobs)


DATADOG_API_KEY = "sample-dd-api-key"
DATADOG_APP_KEY = "sample-dd-app-key"


def add_datadog_routes(server: SampleServer, world: PlatformSample) -> None:
    dd = world.datadog

    def keys(request: Request) -> Reply | None:
        if request.headers.get("dd-api-key") != DATADOG_API_KEY or request.headers.get("dd-application-key") != DATADOG_APP_KEY:
            return Reply(403, {"errors": ["Forbidden"]})
        return None

    def estimated(request: Request) -> Reply:
        q = request.query
        data = dd.estimated(dt.date.fromisoformat(q["start_date"]), dt.date.fromisoformat(q["end_date"]))
        return keys(request) or Reply(200, {"data": data})

    def historical(request: Request) -> Reply:
        month = dt.date.fromisoformat(request.query["start_month"] + "-01")
        return keys(request) or Reply(200, {"data": dd.historical(month)})

    server.route("GET", r"/datadog/api/v2/usage/estimated_cost", estimated)
    server.route("GET", r"/datadog/api/v2/usage/historical_cost", historical)


def add_cloudflare_routes(server: SampleServer, world: PlatformSample) -> None:
    from polo_pipelines.sample.cloudflare import ACCOUNT

    def graphql(request: Request) -> Reply:
        denied = _bearer(request)
        if denied:
            return Reply(400, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]})
        body = request.body or {}
        variables = body.get("variables") or {}
        if "accounts" not in str(body.get("query", "")):
            return Reply(200, {"data": None, "errors": [{"message": "the sample answers account usage queries only"}]})
        if variables.get("accountTag") != ACCOUNT:
            return Reply(200, {"data": {"viewer": {"accounts": []}}, "errors": None})
        start, end = dt.date.fromisoformat(variables["start"]), dt.date.fromisoformat(variables["end"])
        account = world.cloudflare.account(start, end, int(variables.get("limit", 10000)))
        return Reply(200, {"data": {"viewer": {"accounts": [account]}}, "errors": None})

    def verify(request: Request) -> Reply:
        return _bearer(request) or Reply(200, {"success": True, "errors": [], "messages": [], "result": {"id": "sample", "status": "active"}})

    server.route("POST", r"/cloudflare/graphql", graphql)
    server.route("GET", r"/cloudflare/user/tokens/verify", verify)


def add_azure_routes(server: SampleServer, world: PlatformSample) -> None:
    from urllib.parse import parse_qs

    from polo_pipelines.sample import azure as az

    def token(request: Request) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body if isinstance(request.body, str) else "").items()}
        if form.get("client_id") != az.CLIENT_ID or form.get("client_secret") != az.CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": az.ACCESS_TOKEN})

    def query(request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {az.ACCESS_TOKEN}":
            return Reply(401, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}})
        if request.match["sub"] != az.SUBSCRIPTION:
            return Reply(403, {"error": {"code": "AuthorizationFailed", "message": "no access to this scope"}})
        base = f"{request.base_url}{request.path}?api-version={request.query.get('api-version', '')}"
        return Reply(200, world.azure.page(request.body["type"], request.body, int(request.query.get("$skiptoken", 0)), base))

    server.route("POST", rf"/azure/login/{az.TENANT}/oauth2/v2.0/token", token)
    server.route("POST", r"/azure/management/subscriptions/(?P<sub>[^/]+)/providers/Microsoft.CostManagement/query", query)


def add_bigquery_routes(server: SampleServer, world: PlatformSample) -> None:
    """BigQuery's jobs.query / jobs.getQueryResults / jobs.get, answering Polo's billing query from the sample export."""
    import itertools

    from polo_pipelines.sample import gcp

    jobs: dict[str, dict] = {}
    ids = itertools.count(1)
    page_rows = 50

    def result_page(job_id: str, start: int, size: int | None) -> dict:
        job = jobs[job_id]
        size = min(size or page_rows, page_rows)
        rows = job["rows"][start : start + size]
        doc = {
            "kind": "bigquery#getQueryResultsResponse",
            "schema": gcp.SCHEMA,
            "jobReference": {"projectId": job["project"], "jobId": job_id, "location": "US"},
            "totalRows": str(len(job["rows"])),
            "rows": [gcp.encode_row(r) for r in rows],
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
        if gcp.TABLE not in sql or "@start" not in sql:
            return Reply(400, {"error": {"code": 400, "message": f"Not found: Table {sql[:80]!r}", "status": "INVALID_ARGUMENT"}})
        params = {p["name"]: p["parameterValue"]["value"] for p in body.get("queryParameters", [])}
        start, end = dt.date.fromisoformat(params["start"]), dt.date.fromisoformat(params["end_day"])
        job_id = f"polo_sample_{next(ids)}"
        jobs[job_id] = {"project": request.match["project"], "rows": world.gcp.query_result(start, end, detailed="resource.global_name" in sql), "sql": sql}
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
        return Reply(200, {"kind": "bigquery#job", "id": f"{ref['projectId']}:US.{job_id}", "jobReference": ref, "configuration": {"jobType": "QUERY", "query": {"query": jobs[job_id]["sql"], "useLegacySql": False}}, "status": {"state": "DONE"}, "statistics": {"query": {"totalBytesProcessed": "0"}}})

    def table(request: Request) -> Reply:
        name = f"{request.match['project']}.{request.match['dataset']}.{request.match['table']}"
        if name != gcp.TABLE:
            return Reply(404, {"error": {"code": 404, "message": f"Not found: Table {name}"}})
        ref = {"projectId": request.match["project"], "datasetId": request.match["dataset"], "tableId": request.match["table"]}
        rows = len(world.gcp.export_rows(world.start, world.end))
        return Reply(200, {"kind": "bigquery#table", "id": name, "tableReference": ref, "numRows": str(rows), "schema": {"fields": []}, "timePartitioning": {"type": "DAY"}})

    prefix = r"/gcp/bigquery/v2/projects/(?P<project>[^/]+)"
    server.route("GET", rf"{prefix}/datasets/(?P<dataset>[^/]+)/tables/(?P<table>[^/]+)", table)
    server.route("POST", rf"{prefix}/queries", query)
    server.route("GET", rf"{prefix}/queries/(?P<job>[^/]+)", results)
    server.route("GET", rf"{prefix}/jobs/(?P<job>[^/]+)", job)
