"""Resource hierarchies: the configuration file (config/hierarchy.yaml) and the ancestry rows it yields.

Each resource sits under the deepest node it has a value for; its ancestors are that node and
the node's parents up to the top, one ``resource_ancestry`` row per ancestor at every depth,
so "everything under node X" is one prefix read. A node's parent is the node one level up
on most of its resources (tags can disagree; the disagreements are reported), unless the
file pins it in ``parents``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from polo_pipelines.hierarchy.rollup import newest_load
from polo_pipelines.settings import PROJECT_ROOT
from polo_pipelines.sources import activity_collectors, cost_collectors, platform_of_collector
from polo_pipelines.store.events import ALLOCATION_COLLECTORS, ALLOCATION_HIERARCHIES, as_utc, properties_column
from polo_pipelines.store.storage import Store
from polo_pipelines.store.swap import Load, atomic_load
from polo_pipelines.validation import known_keys, load_yaml, require

DEFAULT_FILE = PROJECT_ROOT / "config" / "hierarchy.yaml"  # means something on any organisation's data
SAMPLE_FILE = PROJECT_ROOT / "config" / "sample" / "hierarchy.yaml"  # the sample world's tags and account names
FIELDS = ("aws_account_id", "platform", "provider", "collector", "service", "aws_region")
PLATFORM_OF_PROVIDER = {
    "aws": "aws",
    "amazon web services": "aws",
    "microsoft": "azure",
    "azure": "azure",
    "google cloud": "gcp",
    "gcp": "gcp",
    "oracle": "oci",
    "oracle cloud": "oci",
}


COST_CATEGORY = "cost_category:"  # an event property per AWS cost category: cost_category:<its name> -> its value
ORGANIZATION = "aws_organization"
ACCOUNT_TAG = "account_tag:"  # a resource's account's tag in the AWS Organization: account_tag:<key> -> its value


class HierarchyError(ValueError):
    """The hierarchy file is wrong; the message names the file and the place."""


@dataclass(frozen=True)
class Level:
    type: str
    tag: str | None = None
    field: str | None = None
    names: Mapping[str, Mapping[str, str]] = dataclasses.field(default_factory=dict)
    event_property: str | None = None  # any event property, e.g. cost_category:Team (declared hierarchies use it)

    @property
    def source(self) -> str:
        if self.event_property:
            return self.event_property
        return f"tag:{self.tag}" if self.tag else self.field or ""

    def node_id(self, value: str) -> str:
        named = self.names.get(value)
        return f"{self.type}:{named['name'] if named else value}"


@dataclass(frozen=True)
class Hierarchy:
    name: str
    description: str
    levels: tuple[Level, ...]
    unassigned: str | None = None
    parents: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def node_types(self) -> tuple[str, ...]:
        return tuple(level.type for level in self.levels)


def hierarchy_file() -> Path:
    """POLO_HIERARCHY_FILE; else the sample world's own file while only the sample world is collected; else the default,
    which holds only what every organisation's data has (platforms and accounts)."""
    if os.environ.get("POLO_HIERARCHY_FILE"):
        return Path(os.environ["POLO_HIERARCHY_FILE"])
    from polo_pipelines.sources.sample import only_sample_world

    return SAMPLE_FILE if only_sample_world() else DEFAULT_FILE


def load(path: Path | None = None) -> dict[str, Hierarchy]:
    """The hierarchy file's hierarchies, validated; read again only when the file changes (the web API asks per request)."""
    path = Path(path or hierarchy_file())
    try:
        seen = path.stat()
        stamp = (seen.st_mtime_ns, seen.st_size, seen.st_ino)
    except OSError:
        stamp = None  # load_yaml names the missing file
    if stamp is None:
        return parse(load_yaml(path, "hierarchy file", HierarchyError), str(path))
    return dict(_load_unchanged(str(path), stamp))


@functools.lru_cache(maxsize=16)
def _load_unchanged(path: str, stamp: tuple[int, int, int]) -> dict[str, Hierarchy]:
    return parse(load_yaml(Path(path), "hierarchy file", HierarchyError), path)


def _require(cond: bool, where: str, message: str) -> None:
    require(cond, where, message, HierarchyError)


def _keys(mapping: Mapping, allowed: set[str], where: str) -> None:
    known_keys(mapping, allowed, where, HierarchyError)


def parse(doc: Any, source: str = "hierarchy file") -> dict[str, Hierarchy]:
    _require(isinstance(doc, dict) and isinstance(doc.get("hierarchies"), dict), source, "needs a 'hierarchies' mapping at the top")
    _keys(doc, {"hierarchies"}, source)
    out = {}
    for name, spec in doc["hierarchies"].items():
        where = f"{source}: hierarchy {name}"
        _require(
            isinstance(name, str) and bool(name.strip()),
            where,
            f"a hierarchy's name must be text (got {type(name).__name__} {name!r}; quote it in YAML: '{name}')",
        )
        _require(isinstance(spec, dict), where, "must be a mapping")
        _keys(spec, {"description", "levels", "unassigned", "parents"}, where)
        levels_spec = spec.get("levels")
        _require(isinstance(levels_spec, list) and levels_spec, where, "needs a non-empty list of levels")
        levels = []
        for n, lv in enumerate(levels_spec, 1):
            lwhere = f"{where}, level {n}"
            _require(isinstance(lv, dict), lwhere, "must be a mapping")
            _keys(lv, {"type", "tag", "field", "property", "names"}, lwhere)
            _require(isinstance(lv.get("type"), str) and lv["type"] and ":" not in lv["type"], lwhere, "needs a 'type' without ':'")
            _require(
                sum(bool(lv.get(k)) for k in ("tag", "field", "property")) == 1, lwhere, "needs exactly one of 'tag', 'field' or 'property'"
            )
            for key in ("tag", "property"):
                _require(lv.get(key) is None or isinstance(lv[key], str), lwhere, f"'{key}' must be text, got {lv.get(key)!r}")
            if lv.get("field"):
                _require(lv["field"] in FIELDS, lwhere, f"field {lv['field']!r} is not one of {list(FIELDS)}")
            names = {str(k): v for k, v in (lv.get("names") or {}).items()}
            for value, named in names.items():
                _require(
                    isinstance(named, dict) and isinstance(named.get("name"), str) and named["name"],
                    lwhere,
                    f"names[{value!r}] needs a 'name'",
                )
            by_node = Counter(named["name"] for named in names.values())
            dupes = [n for n, c in by_node.items() if c > 1]
            if dupes:
                raise HierarchyError(f"{lwhere}: duplicate node {lv['type']}:{dupes[0]} (two values share the name)")
            levels.append(
                Level(
                    type=lv["type"],
                    tag=lv.get("tag"),
                    field=lv.get("field"),
                    event_property=lv.get("property"),
                    names={v: dict(d) for v, d in names.items()},
                )
            )
        types = Counter(level.type for level in levels)
        repeated = [t for t, c in types.items() if c > 1]
        if repeated:
            raise HierarchyError(f"{where}: duplicate node type {repeated[0]!r}")
        unassigned = spec.get("unassigned")
        if unassigned is not None:
            _require(isinstance(unassigned, str) and ":" in unassigned, where, "'unassigned' must be a node id such as customer:untagged")
        parents = spec.get("parents") or {}
        _require(isinstance(parents, dict), where, "'parents' must map node ids to their parent node ids")
        for child, parent in parents.items():
            _require(
                isinstance(child, str) and ":" in child and isinstance(parent, str) and ":" in parent,
                where,
                f"parents: {child!r} -> {parent!r} must both be node ids (type:value)",
            )
        _check_cycles(parents, where)
        out[name] = Hierarchy(
            name=name, description=str(spec.get("description", "")), levels=tuple(levels), unassigned=unassigned, parents=dict(parents)
        )
    _require(bool(out), source, "defines no hierarchy")
    return out


def _check_cycles(parents: Mapping[str, str], where: str) -> None:
    for start in parents:
        seen = [start]
        node = start
        while node in parents:
            node = parents[node]
            if node in seen:
                cycle = " -> ".join(seen[seen.index(node) :] + [node])
                raise HierarchyError(f"{where}: parents form a cycle: {cycle}")
            seen.append(node)


# ------------------------------------------------------------ resources and their ancestry


def property_keys(hierarchies: Mapping[str, Hierarchy]) -> list[str]:
    """The event properties the hierarchies' levels read (``tag:<key>`` for a tag level)."""
    return sorted({level.source for h in hierarchies.values() for level in h.levels if level.tag or level.event_property})


def resource_attributes(store: Store, keys: list[str]) -> pd.DataFrame:
    """Every resource with costs or an inventory record: its latest collector, provider, account, service, region, the
    latest non-empty value of each property in ``keys``, its tags and the cost categories its export assigns it. The
    activity sources (CloudTrail) explain resources, they do not describe them: only their creator is taken; and a
    source's config events (a workflow's commits) say who changed it, not what it is: a resource's state comes from the
    cost export and from the inventory's snapshots."""
    activity = sorted(activity_collectors())
    key_cols = ",\n".join(
        f"argMaxIf(properties[{{k{i}:String}}], event_time, properties[{{k{i}:String}}] != '') AS `key:{i}`" for i in range(len(keys))
    )
    frame = store.query_df(
        f"""
        SELECT resource_arn,
               argMax(collector, event_time) AS collector, argMax(provider, event_time) AS provider,
               argMax(aws_account_id, event_time) AS aws_account_id, argMax(service, event_time) AS service,
               argMax(aws_region, event_time) AS aws_region,
               argMax(resource_type, event_time) AS resource_type, argMax(resource_name, event_time) AS resource_name,
               argMaxIf(properties['instance_type'], event_time, properties['instance_type'] != '') AS detail,
               argMaxIf(actor_name, event_time, actor_name != '') AS created_by,
               min(event_time) AS first_seen, max(event_time) AS last_seen,
               mapFilter((k, v) -> startsWith(k, 'tag:') AND v != '', argMax(properties, event_time)) AS tags,
               mapFilter((k, v) -> startsWith(k, '{COST_CATEGORY}') AND v != '', argMax(properties, event_time)) AS cost_categories,
               argMaxIf(properties['{GCP_ANCESTRY}'], event_time, properties['{GCP_ANCESTRY}'] != '') AS gcp_ancestry{"," if keys else ""}
               {key_cols}
        FROM (SELECT * FROM polo.resource_events
              WHERE (event_type = 'cost' AND collector NOT IN {{activity:Array(String)}})
                 OR (event_type = 'config' AND collector NOT IN {{sources:Array(String)}}))
        GROUP BY resource_arn
        """,
        {**{f"k{i}": k for i, k in enumerate(keys)}, "activity": activity, "sources": sorted(cost_collectors() | set(activity))},
    )
    frame = frame.rename(columns={f"key:{i}": k for i, k in enumerate(keys)})
    # no aws:createdBy tag: the creator is whoever the activity (CloudTrail) saw create it
    creators = store.query_df(
        """
        SELECT resource_arn, argMin(actor_name, event_time) AS creator FROM polo.resource_events
        WHERE collector IN {activity:Array(String)} AND event_type = 'lifecycle' AND event_action = 'created' AND actor_name != ''
        GROUP BY resource_arn
        """,
        {"activity": activity},
        columns=["resource_arn", "creator"],
    )
    if not creators.empty:
        found = dict(zip(creators["resource_arn"], creators["creator"]))
        frame["created_by"] = [c or found.get(a, "") for a, c in zip(frame["resource_arn"], frame["created_by"])]
    by_collector = platform_of_collector()
    frame["platform"] = [platform_of(c, p, by_collector) for c, p in zip(frame["collector"], frame["provider"])]
    return frame


def platform_of(collector: str, provider: str, by_collector: Mapping[str, str] | None = None) -> str:
    """A collector's platform (from the source registry); a source of many providers (FOCUS) names it by provider."""
    by_collector = platform_of_collector() if by_collector is None else by_collector
    if collector in by_collector:
        return by_collector[collector]
    key = (provider or "").strip().lower()
    return PLATFORM_OF_PROVIDER.get(key, key.replace(" ", "-") or "unknown")


# ------------------------------------------------------------ hierarchies the organisation declares


def organization(store: Store) -> pd.DataFrame:
    """The AWS Organization as last read (polo.aws_organization), one row per account; empty when it was never read."""
    return store.query_df(
        "SELECT account_id, account_name, root_id, root_name, ou_ids, ou_names, tags FROM polo.aws_organization ORDER BY account_id",
        columns=["account_id", "account_name", "root_id", "root_name", "ou_ids", "ou_names", "tags"],
    )


def account_names(org: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Account id -> its node name: the account's name, with its id where two accounts share a name."""
    counts = Counter(org["account_name"])
    return {str(a): {"name": f"{n} ({a})" if counts[n] > 1 or not n else n} for a, n in zip(org["account_id"], org["account_name"])}


def organization_hierarchy(org: pd.DataFrame) -> Hierarchy:
    """root -> organizational units (outermost first) -> account: each account's node pinned under its OU path."""
    names = account_names(org)
    parents: dict[str, str] = {}
    for account, root_id, root_name, ou_names in zip(org["account_id"], org["root_id"], org["root_name"], org["ou_names"]):
        above = f"root:{root_name or root_id}"
        path: list[str] = []
        for ou in list(ou_names):
            path.append(str(ou))
            node = "ou:" + "/".join(path)  # the path, not the name: two OUs of one name in different places stay apart
            parents[node] = above
            above = node
        parents[f"account:{names[str(account)]['name']}"] = above
    level = Level(type="account", field="aws_account_id", names=names)
    return Hierarchy(ORGANIZATION, "AWS Organization: root → organizational units → account", (level,), parents=parents)


def _slug(text: str, default: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or default


def account_tag_hierarchies(resources: pd.DataFrame, org: pd.DataFrame) -> dict[str, Hierarchy]:
    """One hierarchy per tag key of the Organization's accounts (``aws_account_tag_<key>``): the tag's value → account.
    Adds the ``account_tag:<key>`` column its level reads to ``resources``, so a hierarchy file's level may read it
    too (``property: account_tag:cost-center``). Accounts without the tag are not in it."""
    tags_of = {str(a): _as_dict(t) for a, t in zip(org["account_id"], org["tags"])}
    keys = sorted({k for t in tags_of.values() for k in t})
    if not keys or "aws_account_id" not in resources:
        return {}
    accounts = resources["aws_account_id"].fillna("").astype(str)
    names = account_names(org)
    out = {}
    for key in keys:
        values = [tags_of.get(a, {}).get(key, "") for a in accounts]
        resources[ACCOUNT_TAG + key] = values
        # the account level reads the account only where it has the tag: an untagged account is not in the hierarchy
        resources[f"{ACCOUNT_TAG}{key}@account"] = [a if v else "" for a, v in zip(accounts, values)]
        slug = _slug(key, "tag")
        levels = (
            Level(type=slug if slug != "account" else "account_tag", event_property=ACCOUNT_TAG + key),
            Level(type="account", event_property=f"{ACCOUNT_TAG}{key}@account", names=names),
        )
        name = f"aws_account_tag_{slug}"
        out[name] = Hierarchy(name, f"AWS account tag {key} → account", levels)
    return out


def _as_dict(tags: Any) -> dict[str, str]:
    """A Map value as the store gives it (a dict, or key/value pairs), empty values dropped."""
    pairs = tags.items() if isinstance(tags, dict) else (tags if isinstance(tags, list | tuple) else [])
    return {str(k): str(v) for k, v in pairs if v not in (None, "")}


def category_hierarchies(resources: pd.DataFrame) -> dict[str, Hierarchy]:
    """One hierarchy per AWS cost category the export assigns (``cost_category_<name>``); uncategorized resources are
    not in it (its nodes say what the category explains, never a catch-all)."""
    keys = sorted({k for m in resources.get("cost_categories", []) if isinstance(m, dict) for k in m})
    out = {}
    for key in keys:
        category = key[len(COST_CATEGORY) :]
        slug = _slug(category, "category")
        level = Level(type=slug, event_property=key)
        out[f"cost_category_{slug}"] = Hierarchy(f"cost_category_{slug}", f"AWS cost category {category}", (level,))
    return out


GCP_ANCESTRY, GCP_PROJECT = "gcp_ancestry", "gcp:project"


def gcp_hierarchy(resources: pd.DataFrame) -> dict[str, Hierarchy]:
    """organization → folders → project, from the billing export's project ancestry (the GCP collector's
    ``gcp_ancestry`` property, organization first). Folders are named by their path, so two folders of one name in
    different places stay apart; a project by its display name, with its number where two share one."""
    chains = resources.get("gcp_ancestry", pd.Series("", index=resources.index)).fillna("").astype(str)
    if not (chains != "").any():
        return {}
    parsed = {c: [tuple(part.split("=", 1)) for part in c.split(">") if "=" in part] for c in set(chains) if c}
    shown = Counter()
    for chain in parsed.values():
        projects = {name: label for name, label in chain if name.startswith("projects/")}
        shown.update(set(projects.values()))
    parents: dict[str, str] = {}
    project_of: dict[str, str] = {}
    for text, chain in parsed.items():
        above, path = "", []
        for name, label in chain:
            if name.startswith("organizations/"):
                node = f"organization:{label}"
            elif name.startswith("folders/"):
                path.append(label)
                node = "folder:" + "/".join(path)
            elif name.startswith("projects/"):
                value = label if shown[label] <= 1 else f"{label} ({name.split('/', 1)[1]})"
                project_of[text] = value
                node = f"project:{value}"
            else:
                continue
            if above:
                parents[node] = above
            above = node
    resources[GCP_PROJECT] = [project_of.get(c, "") for c in chains]
    level = Level(type="project", event_property=GCP_PROJECT)
    return {"gcp_project": Hierarchy("gcp_project", "GCP: organization → folders → project", (level,), parents=parents)}


AZURE_GROUP = re.compile(r"^/subscriptions/([^/]+)(?:/resourcegroups/([^/]+))?", re.IGNORECASE)
AZURE_SUBSCRIPTION, AZURE_RESOURCE_GROUP = "azure:subscription", "azure:resource_group"


def azure_hierarchy(resources: pd.DataFrame) -> dict[str, Hierarchy]:
    """subscription → resource group, from Azure resource ids (the Azure collector's and FOCUS rows' alike). A resource
    group's name is unique only within its subscription and its case is not kept, so its node is
    ``<group> (sub <the subscription id's first block>)`` in lower case. Adds the two columns the levels read to ``resources``."""
    found = resources["resource_arn"].astype(str).str.extract(AZURE_GROUP) if len(resources) else pd.DataFrame([], columns=[0, 1])
    if found.empty or found[0].isna().all():
        return {}
    sub, group = found[0].fillna("").str.lower(), found[1].fillna("").str.lower()
    resources[AZURE_SUBSCRIPTION] = sub
    # a subscription id is a GUID: its first block tells subscriptions apart in a node name a person reads
    short = sub.str.split("-").str[0]
    if short[sub != ""].nunique() != sub[sub != ""].nunique():  # two subscriptions share the block: the whole ids
        short = sub
    resources[AZURE_RESOURCE_GROUP] = (group + " (sub " + short + ")").where(group != "", "")
    levels = (
        Level(type="subscription", event_property=AZURE_SUBSCRIPTION),
        Level(type="resource_group", event_property=AZURE_RESOURCE_GROUP),
    )
    return {"azure_resource_group": Hierarchy("azure_resource_group", "Azure: subscription → resource group", levels)}


OTEL_ENVIRONMENT, OTEL_SERVICE, OTEL_OPERATION = "otel:environment", "otel:service", "otel:operation"


def service_hierarchy(resources: pd.DataFrame) -> dict[str, Hierarchy]:
    """environment → service → operation, for the operations priced from OpenTelemetry spans (``otel:{service}/
    {operation}``, tagged with their service, operation and environment). A service or operation node is named with
    the environment above it (``service:prod/checkout``), so the same service in two environments stays two nodes;
    an operation sits under the environment it last ran in."""
    arns = resources["resource_arn"].astype(str) if len(resources) else pd.Series([], dtype=str)
    mine = arns.str.startswith("otel:")
    if not mine.any():
        return {}
    tags = resources.get("tags", pd.Series([{}] * len(resources), index=resources.index))
    env, service, operation = [], [], []
    for is_mine, tagged in zip(mine, tags):
        tagged = tagged if isinstance(tagged, dict) else dict(tagged or {})
        if not is_mine:
            env.append(""), service.append(""), operation.append("")
            continue
        e = tagged.get("tag:environment") or "unknown"
        s = tagged.get("tag:service") or "unknown"
        env.append(e)
        service.append(f"{e}/{s}")
        operation.append(f"{e}/{s}/{tagged.get('tag:operation') or 'unknown'}")
    resources[OTEL_ENVIRONMENT], resources[OTEL_SERVICE], resources[OTEL_OPERATION] = env, service, operation
    levels = (
        Level(type="environment", event_property=OTEL_ENVIRONMENT),
        Level(type="service", event_property=OTEL_SERVICE),
        Level(type="operation", event_property=OTEL_OPERATION),
    )
    return {"service": Hierarchy("service", "OpenTelemetry: environment → service → operation", levels)}


def with_declared(hierarchies: Mapping[str, Hierarchy], resources: pd.DataFrame, org: pd.DataFrame) -> dict[str, Hierarchy]:
    """The file's hierarchies, their account levels named from the Organization where the file names none, then the
    declared ones the file does not replace (a hierarchy of the same name in the file wins): the AWS Organization,
    one per account tag key of its accounts, one per cost category, GCP's organization, folders and projects, Azure's subscriptions and resource groups, the
    OpenTelemetry operations' environments and services."""
    names = account_names(org) if not org.empty else {}
    out: dict[str, Hierarchy] = {}
    for name, h in hierarchies.items():
        levels = tuple(
            dataclasses.replace(level, names=names) if level.field == "aws_account_id" and not level.names and names else level
            for level in h.levels
        )
        out[name] = dataclasses.replace(h, levels=levels)
    declared = {
        **({ORGANIZATION: organization_hierarchy(org)} if not org.empty else {}),
        **(account_tag_hierarchies(resources, org) if not org.empty else {}),
        **category_hierarchies(resources),
        **gcp_hierarchy(resources),
        **azure_hierarchy(resources),
        **service_hierarchy(resources),
    }
    out.update({name: h for name, h in declared.items() if name not in out})
    return out


@dataclass
class AncestryResult:
    rows: pd.DataFrame
    unplaced: dict[str, int]  # resources with no node, per hierarchy
    conflicts: dict[str, list[str]]  # nodes whose resources disagree about the parent


ANCESTRY_COLUMNS = ["resource_arn", "ancestor_id", "ancestor_type", "hierarchy", "depth", "parent_id"]


def build_ancestry(hierarchies: Mapping[str, Hierarchy], resources: pd.DataFrame) -> AncestryResult:
    frames, unplaced, conflicts = [], {}, {}
    # an allocation's resources (operations priced from spans) belong to their own hierarchy alone: in any other, their
    # cost would count a host's again beside the host
    allocated = resources["collector"].isin(ALLOCATION_COLLECTORS) if "collector" in resources else pd.Series(False, index=resources.index)
    billed = resources[~allocated]
    for h in hierarchies.values():
        rows, missing, disagree = _one(h, resources if h.name in ALLOCATION_HIERARCHIES else billed)
        frames.append(rows)
        unplaced[h.name] = missing
        conflicts[h.name] = disagree
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ANCESTRY_COLUMNS)
    return AncestryResult(rows=rows[ANCESTRY_COLUMNS], unplaced=unplaced, conflicts=conflicts)


def _one(h: Hierarchy, resources: pd.DataFrame) -> tuple[pd.DataFrame, int, list[str]]:
    # Each resource's node at each level ("" where it has no value).
    nodes = pd.DataFrame(index=resources.index)
    for level in h.levels:
        values = resources[level.source].fillna("").astype(str) if level.source in resources else pd.Series("", index=resources.index)
        nodes[level.type] = [level.node_id(v) if v else "" for v in values]
    deepest = pd.Series("", index=resources.index)
    for level in h.levels:
        deepest = deepest.where(nodes[level.type] == "", nodes[level.type])
    if h.unassigned:
        deepest = deepest.where(deepest != "", h.unassigned)
    placed = deepest != ""

    # Parent of a node: the nearest upper level's node on most of its resources, unless pinned.
    parent: dict[str, str] = {}
    disagree = []
    types = list(h.node_types)
    for k in range(1, len(types)):
        child = nodes[types[k]]
        upper = pd.Series("", index=resources.index)
        for j in range(k):
            upper = upper.where(nodes[types[j]] == "", nodes[types[j]])
        pairs = pd.DataFrame({"child": child, "parent": upper})
        pairs = pairs[(pairs["child"] != "") & (pairs["parent"] != "")]
        for node, group in pairs.groupby("child"):
            counts = group["parent"].value_counts()
            best = sorted(counts[counts == counts.max()].index)[0]
            parent[node] = best
            if len(counts) > 1:
                disagree.append(node)
    parent.update(h.parents)

    chains: dict[str, list[str]] = {}
    for node in set(deepest[placed]):
        chain, cursor = [node], node
        while cursor in parent and parent[cursor]:
            cursor = parent[cursor]
            if cursor in chain:
                raise HierarchyError(f"hierarchy {h.name}: parents form a cycle through {cursor}")
            chain.append(cursor)
        chains[node] = chain[::-1]  # top first

    records = []
    for node, chain in chains.items():
        for depth, ancestor in enumerate(chain, 1):
            records.append((node, ancestor, ancestor.split(":", 1)[0], depth, chain[depth - 2] if depth > 1 else ""))
    chain_rows = pd.DataFrame(records, columns=["deepest", "ancestor_id", "ancestor_type", "depth", "parent_id"])
    rows = pd.DataFrame({"resource_arn": resources.loc[placed, "resource_arn"], "deepest": deepest[placed]}).merge(chain_rows, on="deepest")
    rows["hierarchy"] = h.name
    return rows.drop(columns="deepest"), int((~placed).sum()), sorted(disagree)


RESOURCE_COLUMNS = [
    "resource_arn",
    "resource_type",
    "resource_name",
    "detail",
    "created_by",
    "collector",
    "provider",
    "aws_account_id",
    "service",
    "first_seen",
    "last_seen",
    "tags",
]


def write_resources(load: Load, resources: pd.DataFrame) -> None:
    """Plan replacing polo.resources (one row per resource, its latest attributes) as part of ``load``."""
    frame = resources[RESOURCE_COLUMNS].copy()
    frame["tags"] = properties_column([t if isinstance(t, dict) else {} for t in frame["tags"].tolist()], index=frame.index)
    scratch = load.scratch("polo.resources")
    load.store.insert_df(scratch, frame)
    load.replace("polo.resources", scratch, "tuple()", {}, len(resources) > 0)


def write_ancestry(load: Load, result: AncestryResult, hierarchies: Mapping[str, Hierarchy]) -> None:
    """Plan replacing each hierarchy's rows as part of ``load``; hierarchies no longer in the file are dropped."""
    held = set(load.store.query_df("SELECT DISTINCT hierarchy FROM polo.resource_ancestry")["hierarchy"])
    scratch = load.scratch("polo.resource_ancestry")
    load.store.insert_df(scratch, result.rows)
    for name in sorted(set(hierarchies) | held):
        has_rows = name in hierarchies and bool((result.rows["hierarchy"] == name).any())
        load.replace("polo.resource_ancestry", scratch, "{h:String}", {"h": name}, has_rows)


def refresh(store: Store, hierarchies: Mapping[str, Hierarchy]) -> tuple[pd.DataFrame, AncestryResult]:
    """Rebuild polo.resources and polo.resource_ancestry from the events the store holds: the file's hierarchies and the
    ones the organisation declares (its AWS Organization, its cost categories; see ``with_declared``)."""
    resources = resource_attributes(store, property_keys(hierarchies))
    hierarchies = with_declared(hierarchies, resources, organization(store))
    for level in (lv for h in hierarchies.values() for lv in h.levels if lv.event_property and lv.event_property not in resources):
        key = level.event_property
        resources[key] = [m.get(key, "") if isinstance(m, dict) else "" for m in resources["cost_categories"]]
    result = build_ancestry(hierarchies, resources)
    with atomic_load(store, "resources and resource ancestry") as load:  # swapped together: a reader never sees one new, one old
        write_resources(load, resources)
        write_ancestry(load, result, hierarchies)
        load.commit()
    return resources, result


@dataclass(frozen=True)
class Refreshed:
    """What the hierarchy asset did: ``rebuilt``, or ``unchanged`` when nothing it is built from changed since."""

    action: str
    resources: int
    ancestry_rows: int
    summary: pd.DataFrame  # per hierarchy: nodes, rows, max_depth, unplaced_resources, parent_conflicts
    conflicts: dict[str, list[str]]


def summarize(result: AncestryResult) -> pd.DataFrame:
    """Per hierarchy: its nodes, ancestry rows, depth, resources without a node and nodes whose resources disagree."""
    summary = (
        result.rows.groupby("hierarchy")
        .agg(nodes=("ancestor_id", "nunique"), rows=("ancestor_id", "size"), max_depth=("depth", "max"))
        .reset_index()
    )
    summary["unplaced_resources"] = summary["hierarchy"].map(result.unplaced)
    summary["parent_conflicts"] = summary["hierarchy"].map(lambda h: len(result.conflicts[h]))
    return summary


def built_from(store: Store, hierarchies: Mapping[str, Hierarchy]) -> tuple[int, dt.datetime | None, int]:
    """What the ancestry is built from, cheaply: the events held (a count the engine keeps), the newest load, and a
    hash of the hierarchies' definitions and of the AWS Organization. Every writer of events either loads days (and
    logs the load) or adds events (the inventory), so equal figures mean the same events."""
    ((events,),) = store.query_rows("SELECT count() FROM polo.resource_events")
    newest = newest_load(store)
    org = organization(store)
    text = repr(sorted((name, repr(h)) for name, h in hierarchies.items())) + org.to_json(orient="records")
    return int(events), newest, int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def refresh_if_changed(store: Store, hierarchies: Mapping[str, Hierarchy]) -> Refreshed:
    """``refresh`` when the events, the loads or the hierarchies changed since the last build; else the last build's
    figures, read back in milliseconds whatever the number of events (the hierarchy asset's usual case: a collector
    run that brought nothing new)."""
    state = built_from(store, hierarchies)
    rows = store.query_rows("SELECT events, loads_through, definitions, summary FROM polo.ancestry_state ORDER BY computed_at DESC LIMIT 1")
    if rows:
        events, loads_through, definitions, summary = rows[0]
        last = (int(events), as_utc(loads_through) if loads_through is not None and pd.notna(loads_through) else None, int(definitions))
        if last == state:
            doc = json.loads(summary)
            return Refreshed("unchanged", doc["resources"], doc["ancestry_rows"], pd.DataFrame(doc["summary"]), doc["conflicts"])
    resources, result = refresh(store, hierarchies)
    refreshed = Refreshed("rebuilt", len(resources), len(result.rows), summarize(result), result.conflicts)
    doc = {
        "resources": refreshed.resources,
        "ancestry_rows": refreshed.ancestry_rows,
        "summary": refreshed.summary.to_dict(orient="records"),
        "conflicts": refreshed.conflicts,
    }
    events, newest, definitions = state
    store.insert_df(
        "polo.ancestry_state",
        pd.DataFrame(
            {
                "computed_at": [pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("ms")],
                "events": [events],
                "loads_through": [pd.Timestamp(newest).tz_convert("UTC").tz_localize(None).as_unit("ms") if newest else pd.NaT],
                "definitions": [definitions],
                "summary": [json.dumps(doc, default=int)],
            }
        ),
    )
    return refreshed
