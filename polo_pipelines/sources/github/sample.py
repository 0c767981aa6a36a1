"""The sample world's GitHub organisation, rendered as the REST API's own payloads.

Six repositories and their workflows run every day; Linux, Windows, macOS and a larger Linux
runner all appear. The billing usage report is derived from the same jobs (with the plan's
3,000 included minutes a month as discounts, and a few per cent of minutes from runs deleted
since, which the collector must book as unattributed). Story: in the last complete week the
``search`` repository's ``e2e.yml`` workflow runs on every push with a 4-job matrix on
4-core runners: a CI-minutes spike.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polo_pipelines.sources.github.client import price_per_minute, runner_type
from polo_pipelines.sources.sample.server import SAMPLE_TOKEN, Reply, Request, SampleServer, bearer, page_of

if TYPE_CHECKING:
    from polo_pipelines.sources.sample.platforms import PlatformSample

ORG = "examplecorp"
INCLUDED_MINUTES = 3000
COPILOT_SEATS = 40
COPILOT_SEAT_MONTH = 19.0

# repo -> [(workflow file, name, labels, runs per day, jobs per run, minutes per job)]
WORKFLOWS: dict[str, list[tuple[str, str, tuple[str, ...], int, int, int]]] = {
    "api": [("ci.yml", "CI", ("ubuntu-latest",), 14, 2, 7), ("release.yml", "Release", ("ubuntu-latest",), 1, 3, 12)],
    "web": [("ci.yml", "CI", ("ubuntu-latest",), 12, 2, 6), ("e2e.yml", "E2E", ("ubuntu-latest",), 4, 2, 14)],
    "search": [("ci.yml", "CI", ("ubuntu-latest",), 8, 2, 8), ("e2e.yml", "E2E", ("ubuntu-latest-4-cores",), 3, 2, 18)],
    "ml-models": [("nightly.yml", "Nightly training smoke test", ("ubuntu-latest-8-cores",), 1, 1, 55)],
    "desktop": [("build.yml", "Build", ("windows-latest",), 4, 1, 16)],
    "ios": [("ios.yml", "iOS", ("macos-latest",), 3, 1, 11)],
}
SPIKE_REPO, SPIKE_WORKFLOW = "search", "e2e.yml"
SPIKE_RUNS, SPIKE_JOBS = 60, 4
SPIKE_AUTHOR = "dana@example.com"
SPIKE_COMMIT = "Run e2e on every push: a 4-way matrix on 4-core runners"
ACTORS = ["alice", "bob", "carol", "dave", "erin"]
DELETED_SHARE = 0.03  # minutes of runs deleted before collection: billed, not traceable


@dataclass(frozen=True)
class Run:
    id: int
    repo: str
    path: str
    name: str
    created: dt.datetime
    actor: str
    jobs: tuple[tuple[dt.datetime, dt.datetime, tuple[str, ...]], ...]


class GithubSample:
    def __init__(self, start: dt.date, end: dt.date, last_week_start: dt.date, seed: int):
        self.start, self.end, self.last_week_start, self.seed = start, end, last_week_start, seed
        self.repos = list(WORKFLOWS)
        self._runs: dict[tuple[str, dt.date], list[Run]] = {}

    def runs_on(self, repo: str, day: dt.date) -> list[Run]:
        key = (repo, day)
        if key in self._runs:
            return self._runs[key]
        runs: list[Run] = []
        if self.start <= day < self.end:
            rng = random.Random(f"{self.seed}:{repo}:{day.isoformat()}")
            base = (day - self.start).days * 1_000_000 + self.repos.index(repo) * 10_000
            n = 0
            for file, name, labels, per_day, jobs, minutes in WORKFLOWS[repo]:
                spike = repo == SPIKE_REPO and file == SPIKE_WORKFLOW and day >= self.last_week_start
                count = SPIKE_RUNS if spike else max(0, per_day + rng.randint(-1, 1))
                job_count = SPIKE_JOBS if spike else jobs
                for _ in range(count):
                    n += 1
                    created = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(0, 86_000))
                    run_jobs = []
                    for j in range(job_count):
                        began = created + dt.timedelta(seconds=5 + 30 * j)
                        length = max(20, int(minutes * 60 * rng.uniform(0.7, 1.3)))
                        run_jobs.append((began, began + dt.timedelta(seconds=length), labels))
                    runs.append(Run(base + n, repo, f".github/workflows/{file}", name, created, rng.choice(ACTORS), tuple(run_jobs)))
        self._runs[key] = runs
        return runs

    def usage_items(self, day: dt.date) -> list[dict[str, Any]]:
        """The billing report's lines for one day, as GitHub renders them."""
        if not (self.start <= day < self.end):
            return []
        used_before = sum(self._minutes_of(d) for d in _days(day.replace(day=1), day) if d >= self.start)
        remaining = max(INCLUDED_MINUTES - used_before, 0)
        items: list[dict[str, Any]] = []
        for repo in self.repos:
            by_sku: dict[str, list[float]] = {}
            for run in self._runs_started(repo, day):
                for began, ended, labels in run.jobs:
                    if began.date() != day:
                        continue
                    family, cores = runner_type(labels)
                    minutes = math.ceil((ended - began).total_seconds() / 60)
                    sku = f"actions_{family}" + (f"_{cores}_core" if cores > 2 else "")
                    slot = by_sku.setdefault(sku, [0.0, 0.0])
                    slot[0] += minutes
                    slot[1] += minutes * price_per_minute(family, cores, day)
            if repo == "api":  # runs deleted before the collector saw them
                slot = by_sku.setdefault("actions_linux", [0.0, 0.0])
                extra = round(slot[0] * DELETED_SHARE)
                slot[0] += extra
                slot[1] += extra * price_per_minute("linux", 2, day)
            for sku, (minutes, gross) in sorted(by_sku.items()):
                free = min(minutes, remaining) if sku == "actions_linux" else 0
                remaining -= free
                discount = round(gross * free / minutes, 6) if minutes else 0.0
                items.append(_item(day, "actions", sku, minutes, "Minutes", gross / minutes if minutes else 0, gross, discount, repo))
            storage_gb_hours = 24 * (2.0 + self.repos.index(repo))
            items.append(
                _item(
                    day,
                    "actions",
                    "actions_storage",
                    storage_gb_hours,
                    "GigabyteHours",
                    0.00033602,
                    storage_gb_hours * 0.00033602,
                    0.0,
                    repo,
                )
            )
        days = calendar.monthrange(day.year, day.month)[1]
        seat_day = COPILOT_SEATS * COPILOT_SEAT_MONTH / days
        items.append(_item(day, "copilot", "copilot_business", COPILOT_SEATS / days, "UserMonths", COPILOT_SEAT_MONTH, seat_day, 0.0, ""))
        items.append(_item(day, "packages", "packages_storage", 24 * 12.0, "GigabyteHours", 0.00033602, 24 * 12.0 * 0.00033602, 0.0, ""))
        return items

    def _runs_started(self, repo: str, day: dt.date) -> list[Run]:
        return self.runs_on(repo, day - dt.timedelta(days=1)) + self.runs_on(repo, day)

    def _minutes_of(self, day: dt.date) -> float:
        """Linux 2-core minutes billed on ``day`` (what the included minutes are spent on)."""
        total = 0.0
        for repo in self.repos:
            minutes = sum(
                math.ceil((ended - began).total_seconds() / 60)
                for run in self._runs_started(repo, day)
                for began, ended, labels in run.jobs
                if began.date() == day and runner_type(labels) == ("linux", 2)
            )
            total += minutes + (round(minutes * DELETED_SHARE) if repo == "api" else 0)
        return total

    def runs_payload(self, repo: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        runs = []
        day = since.date()
        while day <= until.date():
            runs.extend(r for r in self.runs_on(repo, day) if since <= r.created <= until)
            day += dt.timedelta(days=1)
        return [
            {
                "id": r.id,
                "name": r.name,
                "path": f"{r.path}@refs/heads/main",
                "workflow_id": 1000 + self.repos.index(repo),
                "run_started_at": _iso(r.created),
                "created_at": _iso(r.created),
                "updated_at": _iso(max(j[1] for j in r.jobs)),
                "status": "completed",
                "conclusion": "success",
                "actor": {"login": r.actor},
                "head_sha": f"{r.id:040x}",
                "run_attempt": 1,
            }
            for r in sorted(runs, key=lambda r: r.created, reverse=True)
        ]

    def commits_payload(self, repo: str, path: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        """The commits API's answer for one file: the spike's commit to search's e2e.yml, the Monday it began."""
        if (repo, path) != (SPIKE_REPO, f".github/workflows/{SPIKE_WORKFLOW}"):
            return []
        at = dt.datetime.combine(self.last_week_start, dt.time(8, 30), tzinfo=dt.UTC)
        if not since <= at <= until:
            return []
        return [
            {
                "sha": "9f3c2e1d4b5a69788a7b6c5d4e3f2a1b0c9d8e7f",
                "commit": {
                    "author": {"name": "Dana", "email": SPIKE_AUTHOR, "date": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
                    "message": SPIKE_COMMIT + "\n\nFaster feedback.",
                },
                "author": {"login": "dana"},
            }
        ]

    def jobs_payload(self, repo: str, run_id: int) -> list[dict[str, Any]] | None:
        day = self.start + dt.timedelta(days=run_id // 1_000_000)
        for run in self.runs_on(repo, day):
            if run.id == run_id:
                return [
                    {
                        "id": run_id * 10 + i,
                        "run_id": run_id,
                        "status": "completed",
                        "conclusion": "success",
                        "started_at": _iso(began),
                        "completed_at": _iso(ended),
                        "name": f"job {i + 1}",
                        "labels": list(labels),
                        "runner_name": f"GitHub Actions {i + 1}",
                    }
                    for i, (began, ended, labels) in enumerate(run.jobs)
                ]
        return None


def _days(start: dt.date, end: dt.date):
    day = start
    while day < end:
        yield day
        day += dt.timedelta(days=1)


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _item(day, product, sku, quantity, unit, price, gross, discount, repo) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "product": product,
        "sku": sku,
        "quantity": round(quantity, 4),
        "unitType": unit,
        "pricePerUnit": round(price, 6),
        "grossAmount": round(gross, 6),
        "discountAmount": round(discount, 6),
        "netAmount": round(gross - discount, 6),
        "organizationName": ORG,
        "repositoryName": repo,
    }


def add_routes(server: SampleServer, world: PlatformSample) -> None:
    gh = world.data("github")

    def org(request: Request) -> Reply:
        return bearer(request) or Reply(200, {"login": ORG, "id": 1})

    def usage(request: Request) -> Reply:
        q = request.query
        day = dt.date(int(q["year"]), int(q["month"]), int(q["day"]))
        return bearer(request) or Reply(200, {"usageItems": gh.usage_items(day)})

    def repos(request: Request) -> Reply:
        items, headers = page_of([{"name": r, "full_name": f"{ORG}/{r}"} for r in gh.repos], request)
        return bearer(request) or Reply(200, items, headers)

    def runs(request: Request) -> Reply:
        since, until = (dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in request.query["created"].split(".."))
        every = gh.runs_payload(request.match["repo"], since, until)
        items, headers = page_of(every, request)
        return bearer(request) or Reply(200, {"total_count": len(every), "workflow_runs": items}, headers)

    def jobs(request: Request) -> Reply:
        every = gh.jobs_payload(request.match["repo"], int(request.match["run"]))
        if every is None:
            return Reply(404, {"message": "Not Found"})
        items, headers = page_of(every, request)
        return bearer(request) or Reply(200, {"total_count": len(every), "jobs": items}, headers)

    def commits(request: Request) -> Reply:
        q = request.query
        since, until = (dt.datetime.fromisoformat(q[k].replace("Z", "+00:00")) for k in ("since", "until"))
        every = gh.commits_payload(request.match["repo"], q.get("path", ""), since, until)
        items, headers = page_of(every, request)
        return bearer(request) or Reply(200, items, headers)

    base = "/github"
    server.route("GET", rf"{base}/repos/{ORG}/(?P<repo>[^/]+)/commits", commits)
    server.route("GET", rf"{base}/orgs/{ORG}", org)
    server.route("GET", rf"{base}/organizations/{ORG}/settings/billing/usage", usage)
    server.route("GET", rf"{base}/orgs/{ORG}/repos", repos)
    server.route("GET", rf"{base}/repos/{ORG}/(?P<repo>[^/]+)/actions/runs", runs)
    server.route("GET", rf"{base}/repos/{ORG}/(?P<repo>[^/]+)/actions/runs/(?P<run>\d+)/jobs", jobs)


def sample_data(world: PlatformSample) -> GithubSample:
    return GithubSample(world.start, world.end, world.last_week_start, world.seed)


def sample_source():
    """The GitHub source, pointed at the sample server's organisation."""
    from polo_pipelines.sources.github.source import GithubSource
    from polo_pipelines.sources.sample.platforms import serve_sample

    _, server = serve_sample()
    return GithubSource(org=ORG, api_url=f"{server.url}/github", token=SAMPLE_TOKEN)
