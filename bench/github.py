"""GitHub collector figures for ``make bench``: a year of an organisation with 300 repositories and 2,000 workflow
runs a day, normalised and written, API waiting excluded.

The API's answers (usage items, runs, jobs: about 2.2 million jobs; the commits that changed each
workflow file) are generated first as the parsed JSON the client would hand over, and served from
memory by a ``GithubApi`` whose requests never leave the process; everything after that is the
collector's real code (``github.collect``: flattening runs and jobs, pricing, reconciliation, each
workflow's metrics and changes, events) and the store's real write (``events.replace_days`` over the
year's months, rollups included).

Usage: ``python -m bench.github DSN`` prints one JSON line.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import sys
import time
from collections import defaultdict

from bench.memory import peak_rss_mib
from polo_pipelines.sources.github import client as github
from polo_pipelines.sources.http import ApiClient
from polo_pipelines.store.events import day_range, replace_days

REPOS = 300
RUNS_PER_DAY = 2000
START = dt.date(2025, 11, 1)
END = dt.date(2026, 11, 1)
ORG = "benchorg"
LABELS = (
    [("ubuntu-latest",)] * 14 + [("ubuntu-latest-4-cores",)] * 3 + [("windows-latest",)] * 2 + [("macos-latest",), ("self-hosted", "linux")]
)


class MemoryGithubApi(github.GithubApi):
    """The GitHub API's parsed answers, from memory: the collector's code runs unchanged, without network waits."""

    def __init__(self, usage, runs, jobs, commits):
        super().__init__(ApiClient("github", partition=f"{START}..{END - dt.timedelta(days=1)}"), ORG, "memory://github")
        self._usage, self._runs, self._jobs, self._commits = usage, runs, jobs, commits

    def usage(self, day):
        return self._usage.get(day, [])

    def runs(self, repo, since, until):
        low, high = since.isoformat(), until.isoformat()
        return [r for r in self._runs.get(repo, []) if low <= r["created_at"] <= high]

    def jobs(self, repo, run_id):
        return self._jobs[run_id]

    def commits(self, repo, path, since, until):
        low, high = f"{since:%Y-%m-%dT%H:%M:%SZ}", f"{until:%Y-%m-%dT%H:%M:%SZ}"
        return [c for c in self._commits.get((repo, path), []) if low <= c["commit"]["author"]["date"] <= high]


def generate(seed: int = 11):
    rng = random.Random(seed)
    repos = [f"repo-{i:03d}" for i in range(REPOS)]
    workflows = {r: [f"wf-{j}.yml" for j in range(rng.randint(1, 5))] for r in repos}
    weights = [rng.paretovariate(1.2) for _ in repos]
    usage: dict[dt.date, list] = defaultdict(list)
    runs: dict[str, list] = defaultdict(list)
    jobs: dict[int, list] = {}
    run_id = 0
    for day in day_range(START, END):
        minutes: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for repo in rng.choices(repos, weights, k=RUNS_PER_DAY):
            run_id += 1
            created = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=rng.randrange(0, 80_000))
            labels = rng.choice(LABELS)
            run_jobs = []
            for j in range(rng.randint(1, 5)):
                began = created + dt.timedelta(seconds=10 + 20 * j)
                ended = began + dt.timedelta(seconds=rng.randrange(30, 1800))
                run_jobs.append(
                    {
                        "started_at": f"{began:%Y-%m-%dT%H:%M:%SZ}",
                        "completed_at": f"{ended:%Y-%m-%dT%H:%M:%SZ}",
                        "labels": list(labels),
                        "id": run_id * 10 + j,
                    }
                )
                family, cores = github.runner_type(labels)
                billed = math.ceil((ended - began).total_seconds() / 60)
                sku = f"actions_{family}"
                minutes[(repo, sku)][0] += billed
                minutes[(repo, sku)][1] += billed * github.price_per_minute(family, cores, day)
            jobs[run_id] = run_jobs
            workflow = rng.choice(workflows[repo])
            runs[repo].append(
                {
                    "id": run_id,
                    "name": workflow,
                    "path": f".github/workflows/{workflow}@refs/heads/main",
                    "created_at": f"{created:%Y-%m-%dT%H:%M:%S+00:00}",
                    "actor": {"login": f"dev{rng.randrange(40)}"},
                }
            )
        for (repo, sku), (count, gross) in minutes.items():
            usage[day].append(
                {
                    "date": day.isoformat(),
                    "product": "actions",
                    "sku": sku,
                    "quantity": count,
                    "unitType": "Minutes",
                    "grossAmount": round(gross * 1.01, 6),
                    "discountAmount": 0.0,
                    "netAmount": round(gross * 1.01, 6),
                    "repositoryName": repo,
                }
            )
        for repo in repos[:50]:
            usage[day].append(
                {
                    "date": day.isoformat(),
                    "product": "packages",
                    "sku": "packages_storage",
                    "quantity": 24.0,
                    "unitType": "GigabyteHours",
                    "grossAmount": 0.01,
                    "discountAmount": 0.0,
                    "netAmount": 0.01,
                    "repositoryName": repo,
                }
            )
        usage[day].append(
            {
                "date": day.isoformat(),
                "product": "copilot",
                "sku": "copilot_business",
                "quantity": 1.0,
                "unitType": "UserMonths",
                "grossAmount": 25.0,
                "discountAmount": 0.0,
                "netAmount": 25.0,
                "repositoryName": "",
            }
        )
    # The commits that changed each workflow file over the year, as the commits API lists them (newest first)
    commits: dict[tuple[str, str], list] = {}
    for repo in repos:
        for workflow in workflows[repo]:
            changed = sorted(
                (START + dt.timedelta(seconds=rng.randrange(0, 365 * 86_400)) for _ in range(rng.randint(0, 12))), reverse=True
            )
            commits[(repo, f".github/workflows/{workflow}")] = [
                {
                    "sha": f"{rng.getrandbits(160):040x}",
                    "commit": {
                        "author": {"name": f"Dev {n}", "email": f"dev{n}@benchorg.example", "date": f"{at:%Y-%m-%dT%H:%M:%SZ}"},
                        "message": f"ci: tune {workflow}\n\nmore detail",
                    },
                    "author": {"login": f"dev{n}"},
                }
                for at, n in (
                    (dt.datetime.combine(when, dt.time(), tzinfo=dt.UTC) + dt.timedelta(hours=rng.randrange(24)), rng.randrange(40))
                    for when in changed
                )
            ]
    return usage, runs, jobs, commits


def main(dsn: str) -> dict:
    from polo_pipelines.store import polo_store

    t = time.perf_counter()
    usage, runs, jobs, commits = generate()
    generate_s = time.perf_counter() - t
    api = MemoryGithubApi(usage, runs, jobs, commits)
    with polo_store(dsn) as store:
        store.query_df("SELECT 1")  # open the engine before the clock starts
        t = time.perf_counter()
        window = github.collect(api, START, END)
        normalise_s = time.perf_counter() - t
        t = time.perf_counter()
        loads = replace_days(
            store, window.events, collector=github.COLLECTOR, days=day_range(START, END), source="bench", sources=["bench"], run_id="bench"
        )
        write_s = time.perf_counter() - t
    report_net = sum(i["netAmount"] for items in usage.values() for i in items)
    return {
        "days": len(loads),
        "repositories": REPOS,
        "runs": window.runs,
        "jobs": window.jobs,
        "usage_items": window.usage_items,
        "events": int(len(window.events)),
        "normalise_s": round(normalise_s, 2),
        "write_s": round(write_s, 2),
        "total_s": round(normalise_s + write_s, 2),
        # the cost events against the usage report (a workflow's metric events count runs and minutes, not dollars)
        "reconciled_usd": round(abs(float(window.events.loc[window.events["event_type"] == "cost", "value"].sum()) - report_net), 6),
        "generate_s": round(generate_s, 1),
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
