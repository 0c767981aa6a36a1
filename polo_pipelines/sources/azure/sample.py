"""The sample world's Azure subscription, rendered as Cost Management Query API answers.

A few VMs and storage, an Azure OpenAI account whose models appear under several service
names (the grouping collapses them), speech services, and a reserved instance whose
purchase is billed on the 1st (actual cost) but spread daily (amortized cost).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING, Any

from polo_pipelines.sources.sample.server import Reply, Request, SampleServer

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

TENANT = "11111111-2222-3333-4444-555555555555"
SUBSCRIPTION = "6f1c2d3e-0000-4000-8000-00000000a2e0"
CLIENT_ID = "sample-client"
CLIENT_SECRET = "sample-client-secret"
ACCESS_TOKEN = "sample-azure-access-token"
PAGE_ROWS = 40


def _rid(group: str, provider: str, name: str) -> str:
    # Azure returns ids in mixed case; the collector lower-cases them
    return f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{group}/providers/{provider}/{name}"


# (resource id, service name, USD a day)
RESOURCES = [
    (_rid("RG-Inference", "Microsoft.Compute/virtualMachines", "vm-inference-1"), "Virtual Machines", 21.0),
    (_rid("RG-Inference", "Microsoft.Compute/virtualMachines", "vm-inference-2"), "Virtual Machines", 21.0),
    (_rid("RG-Inference", "Microsoft.Storage/storageAccounts", "stinference"), "Storage", 3.4),
    (_rid("RG-AI", "Microsoft.CognitiveServices/accounts", "openai-prod"), "Azure OpenAI", 38.0),
    (_rid("RG-AI", "Microsoft.CognitiveServices/accounts", "openai-prod"), "Cognitive Services - Azure OpenAI GPT-4o", 12.0),
    (_rid("RG-AI", "Microsoft.CognitiveServices/accounts", "speech-prod"), "Speech to Text", 4.5),
    (_rid("RG-AI", "Microsoft.CognitiveServices/accounts", "speech-prod"), "Text to Speech", 2.2),
]
RESERVATION_MONTHLY = 310.0  # a reserved VM instance: billed on the 1st, amortized daily


class AzureSample:
    def __init__(self, start: dt.date, end: dt.date, seed: int):
        self.start, self.end, self.seed = start, end, seed

    def rows(self, kind: str, start: dt.date, end_inclusive: dt.date) -> list[list[Any]]:
        out = []
        day = max(start, self.start)
        while day <= min(end_inclusive, self.end - dt.timedelta(days=1)):
            rng = random.Random(f"{self.seed}:azure:{day.isoformat()}")
            date = int(day.strftime("%Y%m%d"))
            for rid, service, cost in RESOURCES:
                out.append([round(cost * rng.uniform(0.9, 1.1), 6), date, rid, service, "USD"])
            reserved = _rid("RG-Inference", "Microsoft.Compute/virtualMachines", "vm-reserved")
            if kind == "AmortizedCost":
                days = ((day.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - day.replace(day=1)).days
                out.append([round(RESERVATION_MONTHLY / days, 6), date, reserved, "Virtual Machines", "USD"])
            elif day.day == 1:
                out.append([RESERVATION_MONTHLY, date, "", "Reservations", "USD"])
            day += dt.timedelta(days=1)
        return out

    def page(self, kind: str, body: dict[str, Any], skip: int, base: str) -> dict[str, Any]:
        period = body["timePeriod"]
        start, end = dt.date.fromisoformat(period["from"][:10]), dt.date.fromisoformat(period["to"][:10])
        rows = self.rows(kind, start, end)
        chunk = rows[skip : skip + PAGE_ROWS]
        next_link = f"{base}&$skiptoken={skip + PAGE_ROWS}" if skip + PAGE_ROWS < len(rows) else None
        columns = [
            {"name": "Cost", "type": "Number"},
            {"name": "UsageDate", "type": "Number"},
            {"name": "ResourceId", "type": "String"},
            {"name": "ServiceName", "type": "String"},
            {"name": "Currency", "type": "String"},
        ]
        return {
            "id": "sample",
            "name": "sample",
            "type": "Microsoft.CostManagement/query",
            "properties": {"nextLink": next_link, "columns": columns, "rows": chunk},
        }


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    from urllib.parse import parse_qs

    def token(request: Request) -> Reply:
        form = {k: v[-1] for k, v in parse_qs(request.body if isinstance(request.body, str) else "").items()}
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return Reply(401, {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."})
        return Reply(200, {"token_type": "Bearer", "expires_in": 3599, "access_token": ACCESS_TOKEN})

    def query(request: Request) -> Reply:
        if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
            return Reply(401, {"error": {"code": "AuthenticationFailed", "message": "Authentication failed."}})
        if request.match["sub"] != SUBSCRIPTION:
            return Reply(403, {"error": {"code": "AuthorizationFailed", "message": "no access to this scope"}})
        base = f"{request.base_url}{request.path}?api-version={request.query.get('api-version', '')}"
        return Reply(200, world.data("azure").page(request.body["type"], request.body, int(request.query.get("$skiptoken", 0)), base))

    server.route("POST", rf"/azure/login/{TENANT}/oauth2/v2.0/token", token)
    server.route("POST", r"/azure/management/subscriptions/(?P<sub>[^/]+)/providers/Microsoft.CostManagement/query", query)


def sample_data(world: PlatformSample) -> AzureSample:
    return AzureSample(world.start, world.end, world.seed)


def sample_source():
    """The Azure source, pointed at the sample server's tenant and subscription."""
    from polo_pipelines.sources.azure.source import AzureSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    _, server = serve_sample()
    return AzureSource(
        scopes=[f"subscriptions/{SUBSCRIPTION}"],
        tenant_id=TENANT,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        management_url=f"{server.url}/azure/management",
        authority_url=f"{server.url}/azure/login",
    )
