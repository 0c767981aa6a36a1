"""The product design's HTTP API: each endpoint's parameters (validated, and its OpenAPI description) and its answer,
computed by the drill-down service, the rule book and the rule evaluator (the CLI's own functions).

An answer is a function of the store and the request's values; the app (``web.app``) runs it on the shared store
session and turns errors into statuses: a bad parameter 400 naming it, an unknown node, resource or rule 404.
Every drill-down answer carries its periods, its settings and the completeness of both periods.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polo_pipelines.drilldown import delta
from polo_pipelines.drilldown.periods import Periods, Settings
from polo_pipelines.drilldown.service import DrillDown, answer, to_json
from polo_pipelines.rules import book, evaluate, ruleset
from polo_pipelines.rules.ruleset import SEVERITIES, RuleError
from polo_pipelines.rules.types import TYPES
from polo_pipelines.store.storage import Store
from polo_pipelines.web.params import PERIODS, SETTINGS, Asked, BadParam, Param, periods_of, read

LIMIT = Param("limit", "integer", "how many rows at most", default=20, minimum=1, maximum=1000)
HIERARCHY = Param("hierarchy", "string", "one hierarchy (default: every hierarchy the store holds)")


@dataclass(frozen=True)
class Request:
    """What an answer sees of a request: its query's values, its path's values, its JSON body, and the day it is."""

    values: Mapping[str, Any]
    path: Mapping[str, str]
    body: Any
    today: dt.date
    rules_path: Path
    # (key, compute) -> compute(store), kept while nothing else can have written (``SharedStore.remembered``)
    remember: Callable[[Any, Callable[[Store], Any]], Any] = lambda key, compute: None  # noqa: E731

    def kept(self, store: Store, key: Any, compute: Callable[[Store], Any]) -> Any:
        found = self.remember(key, compute)
        return compute(store) if found is None else found


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    name: str
    summary: str
    params: tuple[Param, ...]
    answer: Callable[[Store, Request], Any]
    changes_rules: bool = False  # needs the token
    body: str = ""  # what the JSON body is, for the OpenAPI description

    def values(self, query: Mapping[str, str]) -> dict[str, Any]:
        return read(query, self.params)


def frame_json(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A frame's rows as JSON values (dates and times in ISO 8601, missing values null)."""
    columns = [str(c) for c in frame.columns]
    return [{c: _plain(v) for c, v in zip(columns, row)} for row in frame.astype(object).itertuples(index=False)]


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, (str, bytes, list, dict)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()  # a NumPy scalar
    return to_json(value)


def with_completeness(service: DrillDown, r: Request, periods: Periods, settings: Settings, body: Mapping[str, Any]) -> dict[str, Any]:
    complete = r.kept(service.store, ("completeness", periods, r.today), lambda _: service.completeness(periods, today=r.today))
    return answer(periods, settings, {**body, "completeness": {name: c.as_json() for name, c in complete.items()}})


def held(service: DrillDown, r: Request) -> list[str]:
    return r.kept(service.store, ("hierarchies", tuple(service.configured)), lambda _: service.hierarchies())


def _hierarchy(service: DrillDown, r: Request, name: str | None, node: str | None = None) -> str | None:
    """The hierarchy asked for, checked against the store; for a node without one, the node's only hierarchy."""
    held_now = held(service, r)
    if name is not None and name not in held_now:
        raise BadParam("hierarchy", f"unknown hierarchy {name!r}; the store holds {', '.join(held_now) or 'none yet'}")
    if node is not None:
        found = delta.hierarchies_of(service.store, node)  # an unknown node is a 404
        if name is None:
            if len(found) > 1:
                raise BadParam("hierarchy", f"node {node!r} is in several hierarchies ({', '.join(found)}): say which")
            return found[0]
        if name not in found:
            raise BadParam("hierarchy", f"node {node!r} is not in hierarchy {name!r} (it is in {', '.join(found)})")
    return name


# ------------------------------------------------------------------ the drill-down


def cost_delta(store: Store, r: Request) -> dict[str, Any]:
    a = asked_of(r)
    service = DrillDown(store)
    parent = a.values["parentNodeId"]
    hierarchy = _hierarchy(service, r, a.values["hierarchy"], parent)
    limit = a.values["limit"]
    overview = service.overview(a.periods, a.settings, hierarchy=hierarchy, parent=parent, limit=limit, causes=min(limit, 8))
    return with_completeness(service, r, a.periods, a.settings, {**overview.as_json(), "parentNodeId": parent})


def cost_causes(store: Store, r: Request) -> dict[str, Any]:
    a = asked_of(r)
    service = DrillDown(store)
    body = {"total": service.headline(a.periods, a.settings), "causes": service.causes(a.periods, a.settings, limit=a.values["limit"])}
    return with_completeness(service, r, a.periods, a.settings, body)


def cost_resources(store: Store, r: Request) -> dict[str, Any]:
    a = asked_of(r)
    service = DrillDown(store)
    node = a.values["nodeId"]
    hierarchy = _hierarchy(service, r, a.values["hierarchy"], node)
    found = service.resources(node, a.periods, a.settings, hierarchy=hierarchy)
    return with_completeness(service, r, a.periods, a.settings, found.as_json())


def level3_periods(values: Mapping[str, Any], today: dt.date) -> Periods:
    """Level 3's window as periods: [start, end) split in two halves (the explanation looks for the change itself);
    no window: the last complete week and the week before."""
    start, end = values.get("start"), values.get("end")
    if (start is None) != (end is None):
        raise BadParam("end" if end is None else "start", "start and end go together")
    if start is None:
        return Periods.last_complete_week(today)
    if (end - start).days < 2:
        raise BadParam("end", f"the window needs two days at least: {start} .. {end} (end is exclusive)")
    middle = start + dt.timedelta(days=(end - start).days // 2)
    return Periods(middle, end, start, middle)


def cost_events(store: Store, r: Request) -> dict[str, Any]:
    periods = level3_periods(r.values, r.today)
    settings = Settings(include_non_usage=r.values["includeCredits"])
    service = DrillDown(store)
    story = service.story(r.values["arn"], periods, settings, limit=r.values["limit"])
    body = {**story.as_json(), "start": periods.compare_start.isoformat(), "end": periods.current_end.isoformat()}
    return with_completeness(service, r, periods, settings, body)


def cost_summary(store: Store, r: Request) -> dict[str, Any]:
    """This period's total and change, per account, the first hierarchy's top nodes and the daily costs."""
    a = asked_of(r)
    service = DrillDown(store)
    names = held(service, r)
    current, compare = service.daily(a.periods, a.settings)
    top_of = next((h for h in names if h not in ("platform", "aws_account")), names[0] if names else None)
    body = {
        "total": service.headline(a.periods, a.settings),
        "accounts": service.nodes("aws_account", a.periods, a.settings, limit=None) if "aws_account" in names else [],
        "top_nodes": {
            "hierarchy": top_of,
            "nodes": _top_level(service.nodes(top_of, a.periods, a.settings, limit=None))[:5] if top_of else [],
        },
        "daily": {"current": frame_json(current), "compare": frame_json(compare)},
    }
    return with_completeness(service, r, a.periods, a.settings, body)


def _top_level(nodes: list) -> list:
    """The hierarchy's first level only (the customers, not their clusters), by |delta| as ranked."""
    top = min((n.depth for n in nodes), default=0)
    return [n for n in nodes if n.depth == top]


def store_status(store: Store, r: Request) -> dict[str, Any]:
    from polo_pipelines.drilldown.summary import status
    from polo_pipelines.store.schema import schema_version

    loaded, activity = status(store)
    return {"schema_version": schema_version(store), "collectors": frame_json(loaded), "activity": frame_json(activity)}


def asked_of(r: Request) -> Asked:
    """The request's periods and settings, from its values."""
    v = r.values
    settings = Settings(v.get("nodeThreshold", 1.0), v.get("resourceThreshold", 0.5), v.get("includeCredits", False))
    return Asked(periods_of(v, r.today), settings, dict(v))


# ------------------------------------------------------------------ the rules


def rule_json(rule: ruleset.Rule, open_violations: int | None = None) -> dict[str, Any]:
    doc = {**rule.to_doc(), "enabled": rule.enabled, "scope_label": rule.scope_label, "cadence": rule.cadence}
    if open_violations is not None:
        doc["open_violations"] = open_violations
    return doc


def rules_list(store: Store, r: Request) -> dict[str, Any]:
    current = ruleset.load(r.rules_path)
    counts = evaluate.violations(store, state="open", limit=100_000)["rule_id"].value_counts().to_dict()
    return {"file": r.rules_path.name, "rules": [rule_json(x, int(counts.get(x.rule_id, 0))) for x in current]}


def rule_get(store: Store, r: Request) -> dict[str, Any]:
    rule = book.find(ruleset.load(r.rules_path), r.path["rule_id"], r.rules_path)
    open_now = evaluate.violations(store, state="open", limit=100_000)
    return rule_json(rule, int((open_now["rule_id"] == rule.rule_id).sum()))


def _doc(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RuleError("the body must be one rule as a JSON object (the rule file's fields: id, name, type, scope, condition, ...)")
    return body


def rule_create(store: Store, r: Request) -> dict[str, Any]:
    doc = _doc(r.body)
    rules, counts = book.change(r.rules_path, lambda rules: book.added(rules, [doc], r.rules_path), store)
    return {"rule": rule_json(book.find(rules, doc.get("id", ""), r.rules_path)), "synced": counts}


def rule_update(store: Store, r: Request) -> dict[str, Any]:
    rule_id, doc = r.path["rule_id"], _doc(r.body)
    rules, counts = book.change(r.rules_path, lambda rules: book.replaced(rules, rule_id, doc, r.rules_path), store)
    return {"rule": rule_json(book.find(rules, rule_id, r.rules_path)), "synced": counts}


def rule_switch(enabled: bool) -> Callable[[Store, Request], dict[str, Any]]:
    def switch(store: Store, r: Request) -> dict[str, Any]:
        rule_id = r.path["rule_id"]
        rules, counts = book.change(r.rules_path, lambda rules: book.switched(rules, rule_id, enabled, r.rules_path), store)
        return {"rule": rule_json(book.find(rules, rule_id, r.rules_path)), "synced": counts}

    return switch


def violations(store: Store, r: Request) -> dict[str, Any]:
    v = r.values
    if v["scope"]:
        delta.hierarchies_of(store, v["scope"])  # an unknown node is a 404, not an empty list
    frame = evaluate.violations(store, severity=v["severity"], rule_type=v["type"], scope=v["scope"], state=v["state"], limit=v["limit"])
    return {"state": v["state"], "violations": frame_json(frame)}


def compliance(store: Store, r: Request) -> dict[str, Any]:
    v = r.values
    held = delta.held_hierarchies(store)
    if v["hierarchy"] and v["hierarchy"] not in held:
        raise BadParam("hierarchy", f"unknown hierarchy {v['hierarchy']!r}; the store holds {', '.join(held) or 'none yet'}")
    if v["node"]:
        delta.hierarchies_of(store, v["node"])
    frame = evaluate.compliance(store, v["hierarchy"])
    if v["node"]:
        frame = frame[frame["node_id"] == v["node"]]
    return {"compliance": frame_json(frame.head(v["limit"]))}


# ------------------------------------------------------------------ the routes

DELTA = (
    *PERIODS,
    HIERARCHY,
    Param("parentNodeId", "string", "a node: its children instead of the hierarchy's top level"),
    *SETTINGS,
    LIMIT,
)
CAUSES = (*PERIODS, *SETTINGS, LIMIT)
RESOURCES = (
    Param("nodeId", "string", "the node whose resources moved (e.g. cluster:acme-prod-1)", required=True),
    *PERIODS,
    HIERARCHY,
    *SETTINGS,
)
EVENTS = (
    Param("arn", "string", "the resource (its ARN or id as the store holds it)", required=True),
    Param("start", "date", "first day of the window (default: the week before the last complete week)"),
    Param("end", "date", "the day after the window's last day (exclusive; default: the end of the last complete week)"),
    Param("includeCredits", "boolean", "count credits, refunds and tax in the explanation's cost", default=False),
    Param("limit", "integer", "how many events at most, newest first", default=50, minimum=1, maximum=1000),
)
SUMMARY = (*PERIODS, *SETTINGS)
VIOLATIONS = (
    Param("severity", "enum", "only these severities", choices=SEVERITIES, many=True),
    Param("type", "enum", "only rules of these types", choices=tuple(sorted(TYPES)), many=True),
    Param("scope", "string", "a node: its own violations and its resources'"),
    Param("state", "enum", "open, resolved or all", default="open", choices=("open", "resolved", "all")),
    Param("limit", "integer", "how many at most, newest first", default=200, minimum=1, maximum=10_000),
)
COMPLIANCE = (
    HIERARCHY,
    Param("node", "string", "one node only"),
    Param("limit", "integer", "how many nodes at most, least compliant first", default=100, minimum=1, maximum=10_000),
)
RULE_BODY = (
    "one rule as the rule file holds it: id, name, type, scope (hierarchy, node or node_type, filters), condition, severity, channel"
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/v1/cost/delta", "cost_delta", "Level 1: nodes ranked by |delta| per hierarchy (or a node's children), and the causes", DELTA, cost_delta),
    Endpoint("GET", "/api/v1/cost/delta/causes", "cost_causes", "The total's change and the concrete causes, ranked", CAUSES, cost_causes),
    Endpoint("GET", "/api/v1/cost/delta/resources", "cost_resources", "Level 2: the resources under a node, ranked by |delta|", RESOURCES, cost_resources),
    Endpoint("GET", "/api/v1/cost/delta/events", "cost_events", "Level 3: one resource's events newest first and the explanation of its change", EVENTS, cost_events),
    Endpoint("GET", "/api/v1/cost/summary", "cost_summary", "The period's total and change, per account, the top nodes, daily costs", SUMMARY, cost_summary),
    Endpoint("GET", "/api/v1/status", "status", "What the store holds, per collector", (), store_status),
    Endpoint("GET", "/api/v1/rules", "rules", "The rule file's rules, each with its open violations", (), rules_list),
    Endpoint("POST", "/api/v1/rules", "rule_create", "Add a rule to the rule file (validated as the file is) and sync it", (), rule_create, True, RULE_BODY),
    Endpoint("GET", "/api/v1/rules/{rule_id}", "rule", "One rule", (), rule_get),
    Endpoint("PUT", "/api/v1/rules/{rule_id}", "rule_update", "Replace a rule (same id) and sync it", (), rule_update, True, RULE_BODY),
    Endpoint("POST", "/api/v1/rules/{rule_id}/enable", "rule_enable", "Enable a rule", (), rule_switch(True), True),
    Endpoint("POST", "/api/v1/rules/{rule_id}/disable", "rule_disable", "Disable a rule (kept in the file)", (), rule_switch(False), True),
    Endpoint("GET", "/api/v1/violations", "violations", "Rule violations, newest first, filtered", VIOLATIONS, violations),
    Endpoint("GET", "/api/v1/compliance", "compliance", "Compliance per node: resources without an open violation", COMPLIANCE, compliance),
)  # fmt: skip


def openapi() -> dict[str, Any]:
    """The API's OpenAPI 3.1 description, from the same declarations that validate requests."""
    paths: dict[str, Any] = {}
    for e in ENDPOINTS:
        op: dict[str, Any] = {"operationId": e.name, "summary": e.summary, "parameters": [p.openapi() for p in e.params]}
        if "{rule_id}" in e.path:
            op["parameters"].append({"name": "rule_id", "in": "path", "required": True, "schema": {"type": "string"}})
        if e.body:
            op["requestBody"] = {"required": True, "description": e.body, "content": {"application/json": {"schema": {"type": "object"}}}}
        if e.changes_rules:
            op["security"] = [{"token": []}]
        op["responses"] = {
            "200": {"description": "the answer", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"description": "a bad parameter or rule, named"},
            **({"404": {"description": "an unknown node, resource or rule"}} if e.path != "/api/v1/status" else {}),
            **({"401": {"description": "no or a wrong token"}, "403": {"description": "rule changes are off (no POLO_API_TOKEN)"}} if e.changes_rules else {}),
            "503": {"description": "the store is busy longer than the server waits"},
        }  # fmt: skip
        paths.setdefault(e.path, {})[e.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Polo", "version": "1", "description": "Why costs moved: the drill-down, the rules, the violations."},
        "paths": paths,
        "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer", "description": "POLO_API_TOKEN"}}},
    }


__all__ = ["ENDPOINTS", "Endpoint", "Request", "openapi", "to_json"]
