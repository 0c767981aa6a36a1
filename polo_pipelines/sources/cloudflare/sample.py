"""The sample world's Cloudflare account, rendered as GraphQL Analytics API answers.

Three Workers scripts (one busy enough to pass the plan's included requests mid-month, one
CPU-heavy) and two R2 buckets (one large, written and read all day).
"""

from __future__ import annotations

import datetime as dt
import random
from typing import TYPE_CHECKING, Any

from polo_pipelines.sources.sample.server import SAMPLE_TOKEN, Reply, Request, SampleServer, bearer

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

ACCOUNT = "0123456789abcdef0123456789abcdef"
# script -> (requests a day, CPU ms per request)
SCRIPTS = {"polo-api": (900_000, 4.0), "image-resizer": (180_000, 95.0), "edge-auth": (350_000, 1.2)}
# bucket -> (GiB stored, {action: operations a day})
BUCKETS = {
    "model-storage": (420.0, {"PutObject": 60_000, "GetObject": 1_400_000, "ListObjectsV2": 9_000, "DeleteObject": 2_000}),
    "web-assets": (6.0, {"GetObject": 250_000, "HeadObject": 40_000, "PutObject": 300}),
}


class CloudflareSample:
    def __init__(self, start: dt.date, end: dt.date, seed: int):
        self.start, self.end, self.seed = start, end, seed

    def _rng(self, day: dt.date) -> random.Random:
        return random.Random(f"{self.seed}:cloudflare:{day.isoformat()}")

    def account(self, start: dt.date, end_inclusive: dt.date, limit: int) -> dict[str, Any]:
        workers, ops, storage = [], [], []
        day = max(start, self.start - dt.timedelta(days=31))  # the account predates the window: whole months have usage
        while day <= min(end_inclusive, self.end - dt.timedelta(days=1)):
            rng = self._rng(day)
            for script, (requests, cpu_ms) in SCRIPTS.items():
                n = int(requests * rng.uniform(0.85, 1.15))
                workers.append(
                    {
                        "sum": {"requests": n, "errors": n // 500, "cpuTimeUs": int(n * cpu_ms * 1000)},
                        "dimensions": {"scriptName": script, "date": day.isoformat()},
                    }
                )
            age = (day - self.start).days
            for bucket, (gib, actions) in BUCKETS.items():
                for action, count in actions.items():
                    ops.append(
                        {
                            "sum": {"requests": int(count * rng.uniform(0.8, 1.2))},
                            "dimensions": {"actionType": action, "bucketName": bucket, "date": day.isoformat()},
                        }
                    )
                size = int(gib * (1 + 0.002 * age) * 2**30)
                storage.append(
                    {
                        "max": {"payloadSize": size, "metadataSize": size // 1000, "objectCount": size // 2**22},
                        "dimensions": {"bucketName": bucket, "date": day.isoformat()},
                    }
                )
            day += dt.timedelta(days=1)
        return {
            "workersInvocationsAdaptive": workers[:limit],
            "r2OperationsAdaptiveGroups": ops[:limit],
            "r2StorageAdaptiveGroups": storage[:limit],
        }


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    def graphql(request: Request) -> Reply:
        denied = bearer(request)
        if denied:
            return Reply(400, {"success": False, "errors": [{"code": 10000, "message": "Authentication error"}]})
        body = request.body or {}
        variables = body.get("variables") or {}
        if "accounts" not in str(body.get("query", "")):
            return Reply(200, {"data": None, "errors": [{"message": "the sample answers account usage queries only"}]})
        if variables.get("accountTag") != ACCOUNT:
            return Reply(200, {"data": {"viewer": {"accounts": []}}, "errors": None})
        start, end = dt.date.fromisoformat(variables["start"]), dt.date.fromisoformat(variables["end"])
        account = world.data("cloudflare").account(start, end, int(variables.get("limit", 10000)))
        return Reply(200, {"data": {"viewer": {"accounts": [account]}}, "errors": None})

    def verify(request: Request) -> Reply:
        return bearer(request) or Reply(
            200, {"success": True, "errors": [], "messages": [], "result": {"id": "sample", "status": "active"}}
        )

    server.route("POST", r"/cloudflare/graphql", graphql)
    server.route("GET", r"/cloudflare/user/tokens/verify", verify)


def sample_data(world: PlatformSample) -> CloudflareSample:
    return CloudflareSample(world.start, world.end, world.seed)


def sample_source():
    """The Cloudflare source, pointed at the sample server's account."""
    from polo_pipelines.sources.cloudflare.source import CloudflareSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    _, server = serve_sample()
    return CloudflareSource(account_id=ACCOUNT, api_url=f"{server.url}/cloudflare", token=SAMPLE_TOKEN)
