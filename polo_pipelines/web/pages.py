"""The pages: server-rendered from the API's own answers (``web.api``), so a page shows exactly what the API says.

Every page's state is in its URL (period, hierarchy, node, resource, filters), so a link pasted into a chat opens
the same view; the browser's back button walks back up the drill-down. Forms that change rules need a signed-in
session and carry its CSRF token (``web.security``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import yaml
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from polo_pipelines.drilldown.periods import Periods, day_span
from polo_pipelines.rules.ruleset import SEVERITIES, RuleError
from polo_pipelines.rules.types import TYPES
from polo_pipelines.rules.validate import FILTERS
from polo_pipelines.web import api
from polo_pipelines.web.params import BadParam, Param, read
from polo_pipelines.web.security import SESSION_COOKIE, Forbidden

ENDPOINT = {e.name: e for e in api.ENDPOINTS}
log = logging.getLogger("polo.web")
DAY = dt.timedelta(days=1)
CHOICES = (7, 14, 30)

PERIOD_PARAMS = (
    Param("days", "integer", "the last N days against the N before", minimum=1, maximum=366),
    Param("from", "date", "first day of a custom period"),
    Param("to", "date", "last day of a custom period (included)"),
)

env = Environment(loader=PackageLoader("polo_pipelines.web", "templates"), autoescape=select_autoescape(["html"]))


def money(value: Any, signed: bool = False) -> str:
    """$1,234.56, or +$1,234.56 / -$1,234.56 when signed; never "-0.00"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    v = round(float(value), 2)
    if v == 0:
        v = 0.0
    sign = ("+" if v > 0 else "-" if v < 0 else "") if signed else ("-" if v < 0 else "")
    return f"{sign}${abs(v):,.2f}"


def pct(value: Any) -> str:
    return "" if value is None else f"{float(value):+.1f}%"


env.filters["money"] = money
env.filters["signed"] = lambda v: money(v, signed=True)
env.filters["pct"] = pct


def render(template: str, request: Request, status: int = 200, **context: Any) -> str:
    polo = request.app.state.polo
    session = request.cookies.get(SESSION_COOKIE)
    return env.get_template(template).render(
        request=request,
        signed_in=polo.guard.signed_in(session),
        changes_allowed=polo.guard.changes_allowed,
        csrf=polo.guard.csrf(session) if polo.guard.signed_in(session) else "",
        token_file=polo.guard.token_file,
        link=link,
        **context,
    )


def link(path: str, **query: Any) -> str:
    kept = {k: v for k, v in query.items() if v not in (None, "", False)}
    return path + ("?" + urlencode(kept, doseq=True) if kept else "")


# ------------------------------------------------------------------ periods


class PageState:
    """A page's period from its URL: ``days`` (the last N days against the N before), a custom ``from``..``to`` (both
    included), or by default the last complete ISO week against the week before."""

    def __init__(self, values: Mapping[str, Any], today: dt.date):
        self.days, self.first, self.last = values.get("days"), values.get("from"), values.get("to")
        if (self.first is None) != (self.last is None):
            raise BadParam("to" if self.last is None else "from", "from and to go together")
        if self.first is not None:
            if self.last < self.first:
                raise BadParam("to", f"{self.last} is before {self.first}")
            self.periods = Periods.preceding(self.first, self.last + DAY)
        elif self.days:
            self.periods = Periods.preceding(today - dt.timedelta(days=self.days), today)
        else:
            self.periods = Periods.last_complete_week(today)

    def query(self) -> dict[str, str]:
        """The state's period as URL values (what links keep)."""
        if self.first is not None:
            return {"from": self.first.isoformat(), "to": self.last.isoformat()}
        return {"days": str(self.days)} if self.days else {}

    def api(self) -> dict[str, str]:
        p = self.periods
        return {
            "currentStart": p.current_start.isoformat(),
            "currentEnd": p.current_end.isoformat(),
            "compareStart": p.compare_start.isoformat(),
            "compareEnd": p.compare_end.isoformat(),
        }

    def label(self) -> str:
        return self.periods.describe()


def page_values(request: Request, extra: tuple[Param, ...]) -> dict[str, Any]:
    return read(dict(request.query_params), (*PERIOD_PARAMS, *extra))


def error_page(request: Request, exc: BaseException) -> HTMLResponse:
    from polo_pipelines.web.app import status_of

    status, doc = status_of(exc)
    if status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return HTMLResponse(render("error.html", request, title="Not answered", status=status, message=doc["error"]), status_code=status)


def page(handler):
    """A page handler run off the event loop; any error becomes a page saying what was wrong, with its status."""

    async def handle(request: Request) -> Response:
        try:
            return await run_in_threadpool(handler, request)
        except Exception as exc:  # noqa: BLE001
            return error_page(request, exc)

    return handle


def ask(request: Request, name: str, query: Mapping[str, Any], path: Mapping[str, str] | None = None, body: Any = None) -> Any:
    polo = request.app.state.polo
    wanted = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in query.items() if v not in (None, "")}
    return api.to_json(polo.run(ENDPOINT[name], wanted, dict(path or {}), body))


# ------------------------------------------------------------------ charts (inline SVG: no script, no download)


def bars_svg(
    series: list[tuple[str, float]], compare: list[tuple[str, float]] | None = None, width: int = 640, height: int = 160
) -> Markup:
    """Daily cost bars, the compare period's as outlines beside them."""
    values = [v for _, v in series] + [v for _, v in (compare or [])]
    top = max([v for v in values if v > 0] or [1.0])
    n = max(len(series), len(compare or []), 1)
    slot = width / n
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 20}" role="img" aria-label="daily cost">']
    for i, (day, value) in enumerate(series):
        h = max(value, 0) / top * height
        parts.append(
            f'<rect x="{i * slot + slot * 0.15:.1f}" y="{height - h:.1f}" width="{slot * 0.35:.1f}" height="{h:.1f}" class="now">'
            f"<title>{day}: {money(value)}</title></rect>"
        )
        parts.append(f'<text x="{i * slot + slot / 2:.1f}" y="{height + 14}" class="tick">{day[5:10]}</text>')
    for i, (day, value) in enumerate(compare or []):
        h = max(value, 0) / top * height
        parts.append(
            f'<rect x="{i * slot + slot * 0.5:.1f}" y="{height - h:.1f}" width="{slot * 0.35:.1f}" height="{h:.1f}" class="before">'
            f"<title>{day}: {money(value)} (compare)</title></rect>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def line_svg(points: list[tuple[str, float]], width: int = 640, height: int = 140) -> Markup:
    """A resource's daily cost as a line."""
    if not points:
        return Markup('<p class="quiet">no cost in this window</p>')
    top = max([v for _, v in points] + [0.01])
    step = width / max(len(points) - 1, 1)
    xy = [(i * step, height - max(v, 0) / top * (height - 10)) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy))
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{d}: {money(v)}</title></circle>' for (x, y), (d, v) in zip(xy, points))
    ticks = "".join(f'<text x="{x:.1f}" y="{height + 14}" class="tick">{d[5:10]}</text>' for (x, _), (d, _) in zip(xy, points))
    return Markup(f'<svg class="chart line" viewBox="-20 0 {width + 40} {height + 20}" role="img" aria-label="daily cost">'
                  f'<path d="{path}"/>{dots}{ticks}</svg>')  # fmt: skip


def movers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a bar width (share of the largest |delta|) and a direction for the colour."""
    top = max([abs(r["delta"]) for r in rows] + [0.01])
    return [{**r, "bar": round(abs(r["delta"]) / top * 100, 1), "up": r["delta"] > 0} for r in rows]


# ------------------------------------------------------------------ the pages


def dashboard(request: Request) -> HTMLResponse:
    state = PageState(page_values(request, ()), request.app.state.polo.today())
    doc = ask(request, "cost_summary", state.api())
    daily = [(d["day"], d["cost"]) for d in doc["daily"]["current"]]
    before = [(d["day"], d["cost"]) for d in doc["daily"]["compare"]]
    return HTMLResponse(
        render(
            "dashboard.html",
            request,
            title="Dashboard",
            state=state,
            doc=doc,
            accounts=doc["accounts"],
            top=movers(doc["top_nodes"]["nodes"]),
            chart=bars_svg(daily, before),
            choices=CHOICES,
        )
    )


DELTA_PAGE = (
    Param("hierarchy", "string", "one hierarchy"),
    Param("parent", "string", "a node: its children"),
    Param("node", "string", "a node: its resources"),
)


def node_resources(request: Request, state: PageState, node: str, hierarchy: str | None, keep: dict) -> HTMLResponse:
    """Level 2 as a page: the node's resources ranked by |delta|."""
    doc = ask(request, "cost_resources", {**state.api(), "nodeId": node, "hierarchy": hierarchy})
    return HTMLResponse(
        render("resources.html", request, title=node, state=state, doc=doc, lines=movers(doc["resources"]), keep=keep, choices=CHOICES)
    )


def delta_page(request: Request) -> HTMLResponse:
    values = page_values(request, DELTA_PAGE)
    state = PageState(values, request.app.state.polo.today())
    keep = {**state.query(), "hierarchy": values["hierarchy"]}
    if values["node"]:
        return node_resources(request, state, values["node"], values["hierarchy"], keep)
    doc = ask(request, "cost_delta", {**state.api(), "hierarchy": values["hierarchy"], "parentNodeId": values["parent"]})
    nodes = {h: movers(rows) for h, rows in doc["nodes"].items()}
    if values["parent"] and not any(nodes.values()):  # a leaf: its resources are what is below it
        return node_resources(request, state, values["parent"], values["hierarchy"], keep)
    return HTMLResponse(
        render(
            "delta.html",
            request,
            title="Why costs moved",
            state=state,
            doc=doc,
            nodes=nodes,
            parent=values["parent"],
            keep=keep,
            choices=CHOICES,
        )
    )


RESOURCE_PAGE = (Param("arn", "string", "the resource", required=True), Param("node", "string", "the node it was reached from"))


def resource_page(request: Request) -> HTMLResponse:
    values = page_values(request, RESOURCE_PAGE)
    state = PageState(values, request.app.state.polo.today())
    p = state.periods
    doc = ask(request, "cost_events", {"arn": values["arn"], "start": p.compare_start.isoformat(), "end": p.current_end.isoformat()})
    per_day: dict[str, float] = {}
    for e in doc["events"]:
        if e["event_type"] == "cost":
            per_day[e["event_time"][:10]] = per_day.get(e["event_time"][:10], 0.0) + e["value"]
    days = [(p.compare_start + dt.timedelta(days=n)).isoformat() for n in range((p.current_end - p.compare_start).days)]
    return HTMLResponse(
        render(
            "resource.html",
            request,
            title=values["arn"].rsplit("/", 1)[-1],
            state=state,
            doc=doc,
            arn=values["arn"],
            node=values["node"],
            chart=line_svg([(d, per_day.get(d, 0.0)) for d in days]),
            window=day_span(p.compare_start, p.current_end),
            keep=state.query(),
        )
    )


VIOLATION_PAGE = tuple(p for p in api.VIOLATIONS if p.name != "limit")


def violations_page(request: Request) -> HTMLResponse:
    query = dict(request.query_params)
    for name in ("severity", "type"):  # checkboxes and selects send a value each
        if name in query:
            query[name] = ",".join(v for v in request.query_params.getlist(name) if v)
    values = read(query, VIOLATION_PAGE)
    doc = ask(
        request,
        "violations",
        {
            "severity": ",".join(values["severity"] or []),
            "type": ",".join(values["type"] or []),
            "scope": values["scope"],
            "state": values["state"],
        },
    )
    return HTMLResponse(
        render("violations.html", request, title="Violations", doc=doc, values=values, severities=SEVERITIES, types=sorted(TYPES))
    )


def compliance_page(request: Request) -> HTMLResponse:
    values = read(dict(request.query_params), (api.HIERARCHY,))
    doc = ask(request, "compliance", {"hierarchy": values["hierarchy"]})
    held = sorted({row["hierarchy"] for row in doc["compliance"]})
    return HTMLResponse(render("compliance.html", request, title="Compliance", doc=doc, hierarchy=values["hierarchy"], held=held))


# ------------------------------------------------------------------ the rules

MAX_FORM = 64 * 1024


async def posted(request: Request) -> dict[str, str]:
    """A page's form (``application/x-www-form-urlencoded``, what the pages send); a larger one is cut off."""
    body = await request.body()
    return dict(parse_qsl(body[:MAX_FORM].decode("utf-8", "replace"), keep_blank_values=True))


def policies_page(request: Request) -> HTMLResponse:
    doc = ask(request, "rules", {})
    return HTMLResponse(render("policies.html", request, title="Policies", doc=doc))


def form_of(rule: Mapping[str, Any] | None, rule_type: str) -> dict[str, Any]:
    """A rule as the form's fields: lists comma-separated, each condition value as YAML."""
    rule = rule or {}
    scope = rule.get("scope") or {}
    filters = scope.get("filters") or {}
    condition = rule.get("condition") or {}
    return {
        "id": rule.get("id", ""),
        "name": rule.get("name", ""),
        "type": rule_type,
        "severity": rule.get("severity", "warning"),
        "channel": rule.get("channel", ""),
        "hierarchy": scope.get("hierarchy", ""),
        "node": scope.get("node", ""),
        "node_type": scope.get("node_type", ""),
        "untagged": "" if "untagged" not in filters else str(filters["untagged"]).lower(),
        "tags": "\n".join(f"{k}={'|'.join(v)}" for k, v in (filters.get("tags") or {}).items()),
        **{f"filter_{k}": ", ".join(filters.get(k) or []) for k in FILTERS if k not in ("untagged", "tags")},
        **{
            f"condition_{k}": yaml.safe_dump(condition[k], default_flow_style=True).strip().removesuffix("...").strip()
            for k in TYPES[rule_type].condition_keys
            if k in condition
        },
    }


def doc_of(form: Mapping[str, str]) -> dict[str, Any]:
    """The form's fields as a rule (what the rule file holds): no SQL, each field named."""
    rule_type = form.get("type", "")
    if rule_type not in TYPES:
        raise RuleError(f"type must be one of {', '.join(TYPES)}, got {rule_type!r}")
    scope: dict[str, Any] = {k: form[k].strip() for k in ("hierarchy", "node", "node_type") if form.get(k, "").strip()}
    filters: dict[str, Any] = {}
    for key in FILTERS:
        if key in ("untagged", "tags"):
            continue
        values = [v.strip() for v in form.get(f"filter_{key}", "").split(",") if v.strip()]
        if values:
            filters[key] = values
    if form.get("untagged") in ("true", "false"):
        filters["untagged"] = form["untagged"] == "true"
    tags = {}
    for line in form.get("tags", "").splitlines():
        if line.strip():
            key, sep, value = line.partition("=")
            if not sep or not key.strip():
                raise RuleError(f"tags: each line is key=value1|value2, got {line.strip()!r}")
            tags[key.strip()] = [v.strip() for v in value.split("|") if v.strip()]
    if tags:
        filters["tags"] = tags
    if filters:
        scope["filters"] = filters
    condition = {}
    for key in sorted(TYPES[rule_type].condition_keys):
        text = form.get(f"condition_{key}", "").strip()
        if text:
            try:
                condition[key] = yaml.safe_load(text)
            except yaml.YAMLError:
                raise RuleError(f"condition {key}: not a value ({text!r}); write a number, a word, [a, list] or {{key: value}}") from None
    doc = {
        "id": form.get("id", "").strip(),
        "name": form.get("name", "").strip(),
        "type": rule_type,
        "scope": scope,
        "condition": condition,
        "severity": form.get("severity", "warning"),
    }
    if form.get("channel", "").strip():
        doc["channel"] = form["channel"].strip()
    return doc


def rule_form(request: Request) -> HTMLResponse:
    rule_id = request.path_params.get("rule_id")
    values = read(dict(request.query_params), (Param("type", "enum", "the rule's type", choices=tuple(TYPES)),))
    rule = ask(request, "rule", {}, {"rule_id": rule_id}) if rule_id else None
    rule_type = values["type"] or (rule or {}).get("type") or "budget"
    return HTMLResponse(form_page(request, form_of(rule, rule_type), editing=rule_id))


def form_page(request: Request, form: Mapping[str, Any], editing: str | None, problem: str = "") -> str:
    rule_type = form["type"]
    return render(
        "rule_form.html",
        request,
        title=f"Edit {editing}" if editing else "New rule",
        form=form,
        editing=editing,
        problem=problem,
        types=list(TYPES),
        severities=SEVERITIES,
        condition_keys=sorted(TYPES[rule_type].condition_keys),
        filter_keys=[k for k in FILTERS if k not in ("untagged", "tags")],
    )


async def rule_save(request: Request) -> Response:
    form = await posted(request)
    polo = request.app.state.polo
    editing = request.path_params.get("rule_id")
    try:
        polo.guard.check_form(request.cookies.get(SESSION_COOKIE), form.get("csrf"), request.headers.get("origin"), request.url.netloc)
    except Forbidden as exc:
        return error_page(request, exc)
    try:
        doc = doc_of(form)
        if editing:
            await run_in_threadpool(ask, request, "rule_update", {}, {"rule_id": editing}, doc)
        else:
            await run_in_threadpool(ask, request, "rule_create", {}, {}, doc)
    except RuleError as exc:  # the file's own validation message, on the form that caused it
        status = 404 if type(exc).__name__ == "UnknownRule" else 409 if type(exc).__name__ == "RuleTaken" else 400
        return HTMLResponse(form_page(request, {**form, "type": form.get("type") or "budget"}, editing, str(exc)), status_code=status)
    except Exception as exc:  # noqa: BLE001
        return error_page(request, exc)
    return RedirectResponse(link("/policies", saved=editing or doc["id"]), status_code=303)


async def rule_toggle(request: Request) -> Response:
    form = await posted(request)
    polo = request.app.state.polo
    try:
        polo.guard.check_form(request.cookies.get(SESSION_COOKIE), form.get("csrf"), request.headers.get("origin"), request.url.netloc)
        action = "rule_enable" if request.path_params["action"] == "enable" else "rule_disable"
        await run_in_threadpool(ask, request, action, {}, {"rule_id": request.path_params["rule_id"]})
    except Exception as exc:  # noqa: BLE001
        return error_page(request, exc)
    return RedirectResponse(link("/policies", saved=request.path_params["rule_id"]), status_code=303)


# ------------------------------------------------------------------ signing in


def login_page(request: Request) -> HTMLResponse:
    return HTMLResponse(render("login.html", request, title="Sign in", problem=""))


async def login(request: Request) -> Response:
    form = await posted(request)
    polo = request.app.state.polo
    origin = request.headers.get("origin")
    try:
        if origin and origin != "null" and origin.split("://", 1)[-1] != request.url.netloc:
            raise Forbidden(403, "this form was sent from another site")
        session = polo.guard.login(form.get("token", ""))
    except Forbidden as exc:
        return HTMLResponse(render("login.html", request, title="Sign in", problem=str(exc)), status_code=exc.status)
    response = RedirectResponse("/policies", status_code=303)
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


async def logout(request: Request) -> Response:
    request.app.state.polo.guard.logout(request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


def routes(polo) -> list[Route]:
    return [
        Route("/", page(dashboard), name="dashboard"),
        Route("/delta", page(delta_page), name="delta"),
        Route("/resource", page(resource_page), name="resource"),
        Route("/violations", page(violations_page), name="violations_page"),
        Route("/compliance", page(compliance_page), name="compliance_page"),
        Route("/policies", page(policies_page), name="policies"),
        Route("/policies/new", page(rule_form), name="rule_new"),
        Route("/policies/new", rule_save, methods=["POST"], name="rule_new_save"),
        Route("/policies/{rule_id}/edit", page(rule_form), name="rule_edit"),
        Route("/policies/{rule_id}/edit", rule_save, methods=["POST"], name="rule_edit_save"),
        Route("/policies/{rule_id}/{action:str}", rule_toggle, methods=["POST"], name="rule_toggle"),
        Route("/login", page(login_page), name="login_page"),
        Route("/login", login, methods=["POST"], name="login"),
        Route("/logout", logout, methods=["POST"], name="logout"),
    ]
