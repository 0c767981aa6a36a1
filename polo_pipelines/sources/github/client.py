"""GitHub costs: the organisation's billing usage report, with Actions minutes broken down per workflow.

Two sources, one day's bill:

- the billing usage report (``/organizations/{org}/settings/billing/usage``) gives each day's
  cost per product and SKU, per repository where it names one. Net amounts are the cost
  (what is paid); gross and discount are kept beside them.
- Actions minutes are re-derived per workflow from the repositories' completed workflow runs
  and their jobs (all attempts) x a dated runner price table: runner type from the job's
  labels, minutes rounded up per job, a job counted on the UTC day it started.

Reconciliation: for each day and repository the report's Actions-minutes net amount is the
truth. Each workflow's list-price cost is scaled by that report line's net/gross (so included
minutes and discounts are shared in proportion) and whatever the workflows do not explain
(runs deleted since, jobs on other days, price-table drift) becomes the resource
``github:{org}/actions/unattributed/{repo}``. A day's events therefore always add up to the
report's net total for that day.

Workflow resources are ``github:{org}/actions/workflow/{repo}/{file}``: the file name alone
(``ci.yml``) is shared by most repositories of an organisation, so the repository is part of
the id; ``properties['repository']`` and ``['workflow_path']`` carry both parts.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.http import ApiClient, records, require
from polo_pipelines.store.events import conform, cost_events, empty_events, properties_column

COLLECTOR = "cost_github"
SOURCE = "github"
API_URL = "https://api.github.com"
HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
RUNS_CAP = 1000  # a filtered workflow-runs search returns at most this many
USAGE_FIELDS = ("date", "product", "sku", "quantity", "unitType", "grossAmount", "discountAmount", "netAmount")
JOB_FIELDS = ("started_at", "completed_at", "labels")

# USD per minute of a GitHub-hosted runner, by the day a price took effect (GitHub's published
# prices; the 2026 reduction took effect on 2026-01-01). Larger Linux/Windows runners cost
# the 2-core price x cores / 2; self-hosted runners are free.
RUNNER_PRICES: list[tuple[dt.date, dict[str, float]]] = [
    (dt.date(2023, 1, 1), {"linux": 0.008, "windows": 0.016, "macos": 0.08, "macos-large": 0.12, "macos-xlarge": 0.16}),
    (dt.date(2026, 1, 1), {"linux": 0.006, "windows": 0.010, "macos": 0.062, "macos-large": 0.077, "macos-xlarge": 0.102}),
]
_CORES = re.compile(r"(\d+)[-_ ]?cores?\b")


def runner_type(labels: Iterable[str]) -> tuple[str, int]:
    """(runner family, cores) from a job's labels: ('linux', 2), ('windows', 8), ('macos-xlarge', 0), ('self-hosted', 0)."""
    text = [str(label).lower() for label in labels]
    if "self-hosted" in text:
        return "self-hosted", 0
    cores = 2
    for label in text:
        found = _CORES.search(label)
        if found:
            cores = int(found.group(1))
    joined = " ".join(text)
    if "macos" in joined or "mac" in text:
        if "xlarge" in joined:
            return "macos-xlarge", 0
        if "large" in joined:
            return "macos-large", 0
        return "macos", 0
    if "windows" in joined:
        return "windows", cores
    return "linux", cores


def price_per_minute(runner: str, cores: int, day: dt.date) -> float:
    if runner == "self-hosted":
        return 0.0
    table = RUNNER_PRICES[0][1]
    for since, prices in RUNNER_PRICES:
        if day >= since:
            table = prices
    base = table[runner]
    return base * (cores / 2) if runner in ("linux", "windows") else base


def report_day(value: Any) -> dt.date:
    """A usage item's date: '2026-11-03', '2026-11-03T00:00:00Z' (seen in the wild) or epoch seconds."""
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC).date()
    return dt.date.fromisoformat(str(value)[:10])


def _parse_time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def strip_ref(path: str) -> str:
    """A run's workflow path without its ``@ref`` suffix."""
    return str(path).split("@", 1)[0]


@dataclass
class GithubWindow:
    events: pd.DataFrame
    usage_items: int = 0
    runs: int = 0
    jobs: int = 0
    repositories: int = 0
    requests: int = 0
    sources: list[str] = field(default_factory=list)


class GithubApi:
    """The GitHub REST calls Polo makes, through the shared client."""

    def __init__(self, client: ApiClient, org: str, url: str = API_URL):
        self.client = client
        self.org = org
        self.url = url.rstrip("/")

    def usage(self, day: dt.date) -> list[dict[str, Any]]:
        doc = self.client.get_json(
            f"{self.url}/organizations/{self.org}/settings/billing/usage", params={"year": day.year, "month": day.month, "day": day.day}
        )
        items = require(doc, "usageItems", source=SOURCE, partition=self.client.partition, kind=list)
        return records(items, USAGE_FIELDS, source=SOURCE, what="usageItems", partition=self.client.partition)

    def repositories(self) -> list[str]:
        names: list[str] = []
        for page in self.client.pages_by_link(f"{self.url}/orgs/{self.org}/repos", params={"per_page": 100, "type": "all"}):
            if not isinstance(page, list):
                raise PoloInputError("repository list is not a list", source=SOURCE, field="repos", partition=self.client.partition)
            names.extend(str(require(repo, "name", source=SOURCE, partition=self.client.partition)) for repo in page)
        return names

    def runs(self, repo: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        """Completed runs created in [since, until]; a range past the search cap is split in halves."""
        created = f"{since:%Y-%m-%dT%H:%M:%SZ}..{until:%Y-%m-%dT%H:%M:%SZ}"
        url = f"{self.url}/repos/{self.org}/{repo}/actions/runs"
        out: list[dict[str, Any]] = []
        for page in self.client.pages_by_link(url, params={"created": created, "status": "completed", "per_page": 100}):
            total = require(page, "total_count", source=SOURCE, partition=self.client.partition)
            if int(total) > RUNS_CAP and until - since > dt.timedelta(minutes=1):
                middle = since + (until - since) / 2
                middle = middle.replace(microsecond=0)
                return self.runs(repo, since, middle) + self.runs(repo, middle + dt.timedelta(seconds=1), until)
            out.extend(require(page, "workflow_runs", source=SOURCE, partition=self.client.partition, kind=list))
        return out

    def jobs(self, repo: str, run_id: int) -> list[dict[str, Any]]:
        url = f"{self.url}/repos/{self.org}/{repo}/actions/runs/{run_id}/jobs"
        out: list[dict[str, Any]] = []
        for page in self.client.pages_by_link(url, params={"filter": "all", "per_page": 100}):
            jobs = require(page, "jobs", source=SOURCE, partition=self.client.partition, kind=list)
            out.extend(records(jobs, JOB_FIELDS, source=SOURCE, what="jobs", partition=self.client.partition))
        return out

    def commits(self, repo: str, path: str, since: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
        """The commits that changed one file in [since, until] (the commits API filtered by path)."""
        url = f"{self.url}/repos/{self.org}/{repo}/commits"
        params = {"path": path, "since": f"{since:%Y-%m-%dT%H:%M:%SZ}", "until": f"{until:%Y-%m-%dT%H:%M:%SZ}", "per_page": 100}
        out: list[dict[str, Any]] = []
        for page in self.client.pages_by_link(url, params=params):
            if not isinstance(page, list):
                raise PoloInputError("commit list is not a list", source=SOURCE, field="commits", partition=self.client.partition)
            out.extend(page)
        return out

    def ping(self) -> str:
        doc = self.client.get_json(f"{self.url}/orgs/{self.org}")
        return str(doc.get("login", self.org)) if isinstance(doc, dict) else self.org


def job_rows(api: GithubApi, repos: Iterable[str], start: dt.date, end: dt.date) -> tuple[list[tuple], int]:
    """(repo, workflow path, workflow name, actor, run id, started_at, completed_at, labels) per job started in [start, end)."""
    since = dt.datetime.combine(start - dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)  # a run may start its jobs after midnight
    until = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC) - dt.timedelta(seconds=1)
    rows: list[tuple] = []
    runs = 0
    for repo in repos:
        for run in api.runs(repo, since, until):
            for name in ("id", "path"):
                if name not in run:
                    raise PoloInputError(
                        "workflow run is missing a field", source=SOURCE, field=f"workflow_runs[].{name}", partition=api.client.partition
                    )
            runs += 1
            path = strip_ref(run["path"])
            actor = (run.get("actor") or {}).get("login", "") if isinstance(run.get("actor"), dict) else ""
            for job in api.jobs(repo, run["id"]):
                rows.append(
                    (
                        repo,
                        path,
                        str(run.get("name") or path),
                        actor,
                        run["id"],
                        job["started_at"],
                        job["completed_at"],
                        tuple(job["labels"] or ()),
                    )
                )
    return rows, runs


def workflow_costs(rows: list[tuple], start: dt.date, end: dt.date) -> pd.DataFrame:
    """Per day, repository and workflow: jobs, runs, minutes and list-price cost of the jobs started that day."""
    columns = ["repo", "path", "name", "actor", "run_id", "started_at", "completed_at", "labels"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return pd.DataFrame(columns=["day", "repo", "path", "name", "jobs", "runs", "minutes", "list_cost", "actors"])
    started = pd.to_datetime(frame["started_at"], utc=True, errors="coerce", format="ISO8601")
    completed = pd.to_datetime(frame["completed_at"], utc=True, errors="coerce", format="ISO8601")
    seconds = (completed - started).dt.total_seconds().fillna(0).clip(lower=0)
    frame["minutes"] = np.ceil(seconds / 60.0)
    frame["day"] = started.dt.date
    frame = frame[started.notna() & (frame["day"] >= start) & (frame["day"] < end)]
    kinds = {labels: runner_type(labels) for labels in frame["labels"].unique()}
    prices = {(labels, day): price_per_minute(*kinds[labels], day) for labels, day in set(zip(frame["labels"], frame["day"]))}
    frame["list_cost"] = frame["minutes"] * np.array(
        [prices[(labels, d)] for labels, d in zip(frame["labels"], frame["day"])], dtype="float64"
    )
    keys = ["day", "repo", "path"]
    out = frame.groupby(keys, sort=True).agg(
        name=("name", "last"),
        jobs=("run_id", "size"),
        runs=("run_id", "nunique"),
        minutes=("minutes", "sum"),
        list_cost=("list_cost", "sum"),
    )
    out["actors"] = top_actors(frame, keys).reindex(out.index).fillna("")
    return out.reset_index()


def top_actors(frame: pd.DataFrame, keys: list[str], n: int = 3) -> pd.Series:
    """Per group, its n most frequent actors by jobs, as 'a, b, c' (vectorised: a year has ~300K groups)."""
    counts = frame[frame["actor"] != ""].groupby([*keys, "actor"], sort=False).size().rename("jobs").reset_index()
    counts = counts.sort_values([*keys, "jobs", "actor"], ascending=[True] * len(keys) + [False, True])
    counts["rank"] = counts.groupby(keys, sort=False).cumcount()
    top = counts[counts["rank"] < n].pivot(index=keys, columns="rank", values="actor")
    joined = top[0].astype(str)
    for rank in range(1, n):
        if rank in top.columns:
            joined = joined.where(top[rank].isna(), joined + ", " + top[rank].astype(str))
    return joined


def normalize(
    org: str, usage: list[dict[str, Any]], workflows: pd.DataFrame, start: dt.date, end: dt.date, partition: str | None = None
) -> pd.DataFrame:
    """The window's cost events: report lines (Actions minutes replaced by workflows + unattributed remainder)."""
    if not usage and workflows.empty:
        return empty_events()
    report = (
        pd.DataFrame(usage, columns=[*USAGE_FIELDS, "repositoryName"]) if usage else pd.DataFrame(columns=[*USAGE_FIELDS, "repositoryName"])
    )
    try:
        report["day"] = [report_day(v) for v in report["date"]]
        for name in ("quantity", "grossAmount", "discountAmount", "netAmount"):
            report[name] = pd.to_numeric(report[name], errors="raise").astype("float64")
    except (ValueError, TypeError) as exc:
        raise PoloInputError(f"usage item has an unreadable value: {exc}", source=SOURCE, field="usageItems", partition=partition) from None
    report = report[(report["day"] >= start) & (report["day"] < end)]
    report["product"] = report["product"].astype(str).str.lower()
    report["sku"] = report["sku"].astype(str)
    report["repo"] = report["repositoryName"].fillna("").astype(str).str.split("/").str[-1]
    minutes = (report["product"] == "actions") & (report["unitType"].astype(str).str.lower() == "minutes")

    parts = [_report_events(org, report[~minutes])]
    actions = report[minutes].groupby(["day", "repo"], as_index=False)[["grossAmount", "netAmount", "quantity"]].sum()
    parts.extend(_actions_events(org, actions, workflows))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else empty_events()


def _report_events(org: str, lines: pd.DataFrame) -> pd.DataFrame:
    if lines.empty:
        return empty_events()
    lines = lines.reset_index(drop=True)
    has_repo = lines["repo"] != ""
    ids = np.where(has_repo, f"github:{org}/repo/" + lines["repo"], f"github:{org}/" + lines["product"] + "/" + lines["sku"])
    props = [
        {
            "product": p,
            "sku": s,
            "unit_type": str(u),
            "quantity": f"{q:g}",
            "gross_usd": f"{g:.6f}",
            "discount_usd": f"{d:.6f}",
            "repository": r,
        }
        for p, s, u, q, g, d, r in zip(
            lines["product"],
            lines["sku"],
            lines["unitType"],
            lines["quantity"],
            lines["grossAmount"],
            lines["discountAmount"],
            lines["repo"],
        )
    ]
    return cost_events(
        resource_arn=ids,
        resource_type=np.where(has_repo, "repository", "product"),
        resource_name=np.where(has_repo, lines["repo"], lines["product"] + " " + lines["sku"]),
        day=pd.to_datetime(lines["day"]),
        charge_category="Usage",
        value=lines["netAmount"].to_numpy(),
        billed_cost=lines["netAmount"].to_numpy(),
        list_cost=lines["grossAmount"].to_numpy(),
        service=lines["product"].to_numpy(),
        provider="GitHub",
        properties=props,
        collector=COLLECTOR,
    )


def _actions_events(org: str, actions: pd.DataFrame, workflows: pd.DataFrame) -> list[pd.DataFrame]:
    """Workflow events scaled to the report's Actions-minutes net, and per (day, repo) the remainder."""
    by_repo = not actions.empty and bool((actions["repo"] != "").any())
    wf = workflows.copy()
    if not by_repo:
        wf["repo_key"] = ""
    else:
        wf["repo_key"] = wf["repo"]
    report = actions.rename(columns={"repo": "repo_key"})
    wf_totals = wf.groupby(["day", "repo_key"], as_index=False)["list_cost"].sum().rename(columns={"list_cost": "computed"})
    merged = report.merge(wf_totals, on=["day", "repo_key"], how="outer").fillna(
        {"grossAmount": 0.0, "netAmount": 0.0, "quantity": 0.0, "computed": 0.0}
    )
    merged["ratio"] = np.where(
        merged["grossAmount"] > 0, merged["netAmount"] / merged["grossAmount"].where(merged["grossAmount"] > 0, 1.0), 0.0
    )
    wf = wf.merge(merged[["day", "repo_key", "ratio"]], on=["day", "repo_key"], how="left")
    wf["value"] = wf["list_cost"] * wf["ratio"].fillna(0.0)
    explained = wf.groupby(["day", "repo_key"], as_index=False)["value"].sum().rename(columns={"value": "explained"})
    merged = merged.merge(explained, on=["day", "repo_key"], how="left").fillna({"explained": 0.0})
    merged["remainder"] = merged["netAmount"] - merged["explained"]
    rest = merged[merged["remainder"].abs() >= 0.000001].reset_index(drop=True)
    wf = wf.reset_index(drop=True)

    out = []
    if not wf.empty:
        files = wf["path"].str.rsplit("/", n=1).str[-1]
        props = [
            {
                "repository": r,
                "workflow_path": p,
                "workflow_name": n,
                "runs": str(int(ru)),
                "jobs": str(int(j)),
                "minutes": f"{m:g}",
                "list_usd": f"{c:.6f}",
                "top_actors": a,
            }
            for r, p, n, ru, j, m, c, a in zip(
                wf["repo"], wf["path"], wf["name"], wf["runs"], wf["jobs"], wf["minutes"], wf["list_cost"], wf["actors"]
            )
        ]
        out.append(
            cost_events(
                resource_arn=(f"github:{org}/actions/workflow/" + wf["repo"] + "/" + files).to_numpy(),
                resource_type="workflow",
                resource_name=(wf["repo"] + " " + wf["name"].astype(str)).to_numpy(),
                day=pd.to_datetime(wf["day"]),
                charge_category="Usage",
                value=wf["value"].to_numpy(),
                billed_cost=wf["value"].to_numpy(),
                list_cost=wf["list_cost"].to_numpy(),
                service="actions",
                provider="GitHub",
                properties=props,
                collector=COLLECTOR,
                actor_name=wf["actors"].str.split(", ").str[0].fillna("").to_numpy(),
            )
        )
    if not rest.empty:
        suffix = np.where(rest["repo_key"] != "", "/" + rest["repo_key"], "")
        props = [
            {
                "repository": r,
                "report_net_usd": f"{n:.6f}",
                "report_gross_usd": f"{g:.6f}",
                "workflows_usd": f"{e:.6f}",
                "report_minutes": f"{q:g}",
            }
            for r, n, g, e, q in zip(rest["repo_key"], rest["netAmount"], rest["grossAmount"], rest["explained"], rest["quantity"])
        ]
        out.append(
            cost_events(
                resource_arn=(f"github:{org}/actions/unattributed" + suffix).tolist(),
                resource_type="actions_unattributed",
                resource_name=("Actions minutes not traced to a workflow " + rest["repo_key"]).str.strip().to_numpy(),
                day=pd.to_datetime(rest["day"]),
                charge_category="Usage",
                value=rest["remainder"].to_numpy(),
                billed_cost=rest["remainder"].to_numpy(),
                list_cost=(rest["grossAmount"] - rest["computed"]).to_numpy(),
                service="actions",
                provider="GitHub",
                properties=props,
                collector=COLLECTOR,
            )
        )
    return out


# What a workflow's day says of its cost: how often it ran, how long, and how wide its matrix was.
WORKFLOW_METRICS = (("runs", "runs", "Count"), ("minutes", "minutes", "Minutes"), ("matrix size", "matrix", "Count"))


def workflow_activity(api: GithubApi, workflows: pd.DataFrame, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Per workflow and day, its runs, minutes and matrix size (jobs per run) as metric events; and the commits that
    changed its file in the window as config events, with their author: what the timeline joins to its cost."""
    if workflows.empty:
        return empty_events()
    wf = workflows.assign(matrix=workflows["jobs"] / workflows["runs"].where(workflows["runs"] > 0, 1))
    arn = lambda repo, path: f"github:{api.org}/actions/workflow/{repo}/{strip_ref(path).rsplit('/', 1)[-1]}"  # noqa: E731
    rows = []
    for r in wf.itertuples(index=False):
        for label, column, unit in WORKFLOW_METRICS:
            rows.append(
                (
                    arn(r.repo, r.path),
                    f"{r.repo} {r.name}",
                    pd.Timestamp(r.day),
                    "metric",
                    label,
                    float(getattr(r, column)),
                    unit,
                    {"metric": label},
                    "",
                )
            )
    since = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    until = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC) - dt.timedelta(seconds=1)
    for (repo, path, name), _ in wf.groupby(["repo", "path", "name"]):
        for commit in api.commits(repo, strip_ref(path), since, until):
            detail = commit.get("commit") if isinstance(commit, dict) else None
            author = (detail or {}).get("author") if isinstance(detail, dict) else None
            if not isinstance(author, dict) or not author.get("date") or not commit.get("sha"):
                raise PoloInputError(
                    "commit without sha or author date", source=SOURCE, field="commits[].commit.author.date", partition=api.client.partition
                )
            login = (commit.get("author") or {}).get("login", "") if isinstance(commit.get("author"), dict) else ""
            who = author.get("email") or login or author.get("name") or ""
            title = str(detail.get("message", "")).splitlines()[0] if detail.get("message") else "changed"
            at = pd.Timestamp(_parse_time(author["date"]))
            summary = f"{title} ({str(commit['sha'])[:7]})"
            rows.append(
                (
                    arn(repo, path),
                    f"{repo} {name}",
                    at,
                    "config",
                    "workflow changed",
                    0.0,
                    "",
                    {"summary": summary, "event_name": "commit", "sha": str(commit["sha"])},
                    who,
                )
            )
    frame = pd.DataFrame(
        rows,
        columns=["resource_arn", "resource_name", "event_time", "event_type", "event_action", "value", "unit", "properties", "actor_name"],
    )
    frame = frame.assign(
        resource_type="workflow", billed_cost=0.0, list_cost=0.0, charge_category="", service="actions", provider="GitHub", collector=COLLECTOR,
        aws_account_id="", aws_region="",
    )  # fmt: skip
    return conform(frame.assign(properties=properties_column(list(frame["properties"]))))


def collect(api: GithubApi, start: dt.date, end: dt.date) -> GithubWindow:
    """Read the report for each day of [start, end) and the workflow runs of the repositories it names."""
    usage: list[dict[str, Any]] = []
    day = start
    while day < end:
        usage.extend(api.usage(day))
        day += dt.timedelta(days=1)
    named = sorted(
        {str(i.get("repositoryName") or "").split("/")[-1] for i in usage if str(i.get("product", "")).lower() == "actions"} - {""}
    )
    actions_without_repo = any(str(i.get("product", "")).lower() == "actions" and not i.get("repositoryName") for i in usage)
    repos = api.repositories() if actions_without_repo else named
    rows, runs = job_rows(api, repos, start, end)
    workflows = workflow_costs(rows, start, end)
    events = normalize(api.org, usage, workflows, start, end, api.client.partition)
    activity = workflow_activity(api, workflows, start, end)
    if not activity.empty:
        events = pd.concat([events, activity], ignore_index=True)
    return GithubWindow(
        events=events,
        usage_items=len(usage),
        runs=runs,
        jobs=len(rows),
        repositories=len(repos),
        requests=api.client.requests_made,
        sources=[f"{api.url}/organizations/{api.org}/settings/billing/usage", f"{api.url}/repos/{api.org}/*/actions/runs"],
    )
