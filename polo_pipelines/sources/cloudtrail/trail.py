"""CloudTrail management events from a trail's S3 delivery, as the config and lifecycle events of the resources they touch.

A trail delivers gzip JSON files (``{"Records": [...]}``, one record per API call) under
``AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/`` (an account trail) or
``AWSLogs/<org-id>/<account>/CloudTrail/<region>/YYYY/MM/DD/`` (an organisation trail), the date being
the delivery's, a few minutes after the calls: a day's events are read from that day's folders and the
next day's, and kept by their own ``eventTime``.

Only what Level 3 shows is kept: the time, the call, the resource, the actor (from ``userIdentity``)
and a short summary built from a few named request fields (an instance type, a count, a CIDR block).
Source IPs, user agents, access keys, session credentials and the rest of the request and response
are never stored. Read-only calls (``Describe*``, ``Get*``, ``List*``) and calls that failed
(``errorCode``) changed nothing and are skipped.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import gc
import gzip
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.sources.locations import Location
from polo_pipelines.store.events import EVENT_COLUMNS, build_properties, conform, properties_column, window_label

COLLECTOR = "activity_aws"
SOURCE = "cloudtrail"
# a day's calls are delivered within minutes; the next day's folders are read for the last ones
DELIVERY_DAYS_LATER = 1


@dataclass(frozen=True)
class Touch:
    """One resource an API call touched: its ARN and type, the event's type and action, and what to say."""

    arn: str
    resource_type: str
    event_type: str  # config | lifecycle
    action: str
    summary: str
    related: tuple[str, ...] = ()
    details: dict[str, str] = field(default_factory=dict)


@dataclass
class TrailWindow:
    events: pd.DataFrame
    files: list[str]
    records: int = 0
    skipped: int = 0  # read-only or failed calls, and calls on nothing this reader maps


# ------------------------------------------------------------------ listing the delivery


def day_folders(location: Location, day: dt.date) -> list[str]:
    """Every ``.../CloudTrail/<region>/YYYY/MM/DD/`` folder of ``day``, for an account or an organisation trail."""
    found = []
    for top in location.list_dirs("AWSLogs"):
        accounts = location.list_dirs(f"AWSLogs/{top}") if top.startswith("o-") else [None]
        for account in accounts:
            base = f"AWSLogs/{top}/{account}" if account else f"AWSLogs/{top}"
            for region in location.list_dirs(f"{base}/CloudTrail"):
                found.append(f"{base}/CloudTrail/{region}/{day:%Y/%m/%d}")
    return found


def files_for(location: Location, start: dt.date, end: dt.date) -> list[str]:
    """The trail's files delivered from ``start`` to ``DELIVERY_DAYS_LATER`` days after the window's last day."""
    days = pd.date_range(start, end + dt.timedelta(days=DELIVERY_DAYS_LATER - 1), freq="D").date
    out = []
    for day in days:
        for folder in day_folders(location, day):
            out.extend(f for f in location.glob(f"{folder}/*") if f.endswith((".json.gz", ".json")))
    return sorted(out)


# ------------------------------------------------------------------ one file


def unpacked(location: Location, relpath: str, partition: str) -> bytes:
    """A delivered file's JSON text; a truncated gzip names the file."""
    raw = location.read_bytes(relpath)
    try:
        return gzip.decompress(raw) if relpath.endswith(".gz") else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise PoloInputError(
            f"{location.uri}/{relpath}: not a whole gzip file ({exc})", source=SOURCE, field="file", partition=partition
        ) from None


def parsed(text: bytes, where: str, partition: str) -> list[dict[str, Any]]:
    """A file's records; anything but ``{"Records": [...]}`` names the file."""
    try:
        doc = orjson.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PoloInputError(f"{where}: not JSON ({exc})", source=SOURCE, field="file", partition=partition) from None
    records = doc.get("Records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise PoloInputError(f'{where}: no "Records" list', source=SOURCE, field="Records", partition=partition)
    return records  # each record is checked as it is read (records_to_rows): one pass over a million, not two


def read_records(location: Location, relpath: str, partition: str) -> list[dict[str, Any]]:
    """A delivered file's records."""
    return parsed(unpacked(location, relpath, partition), f"{location.uri}/{relpath}", partition)


def invalid_record(record: Any, n: int, where: str, partition: str) -> PoloInputError:
    """What is wrong with a record that is not an object with a non-empty ``eventName`` and ``eventTime``."""
    if not isinstance(record, dict):
        return PoloInputError(f"{where}: record {n} is not an object", source=SOURCE, field="Records", partition=partition)
    name = next(k for k in ("eventName", "eventTime") if not isinstance(record.get(k), str) or not record[k])
    return PoloInputError(f"{where}: record {n} has no {name}", source=SOURCE, field=name, partition=partition)


ISO = "%Y-%m-%dT%H:%M:%SZ"


def _time_shaped(text: Any) -> bool:
    """``YYYY-MM-DDThh:...`` at a glance: the check a call outside the window gets before it is passed over."""
    return isinstance(text, str) and len(text) >= 20 and text[4] == "-" and text[7] == "-" and text[10] == "T" and text[:4].isdigit()


def event_time(record: dict[str, Any], where: str, partition: str) -> dt.datetime:
    """The call's time, aware: the documented ``YYYY-MM-DDThh:mm:ssZ`` (any ISO 8601 time with its offset is taken)."""
    try:
        at = dt.datetime.fromisoformat(record["eventTime"])
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise PoloInputError(
            f"{where}: eventTime {record['eventTime']!r} is not YYYY-MM-DDThh:mm:ssZ", source=SOURCE, field="eventTime", partition=partition
        )
    return at


# ------------------------------------------------------------------ who


def actor(identity: Any) -> tuple[str, str]:
    """(the person or service, the role it acted through) from ``userIdentity``: an IAM user's name; an assumed role's
    session name (an SSO session is the person's e-mail); a federated user's name; root; an AWS service."""
    if not isinstance(identity, dict):
        return "", ""
    kind = str(identity.get("type", ""))
    arn = str(identity.get("arn", ""))
    if kind == "IAMUser":
        return str(identity.get("userName") or arn.rsplit("/", 1)[-1]), ""
    if kind == "AssumedRole":
        issuer = (
            ((identity.get("sessionContext") or {}).get("sessionIssuer") or {}) if isinstance(identity.get("sessionContext"), dict) else {}
        )
        role = str(issuer.get("userName", "")) if isinstance(issuer, dict) else ""
        return (arn.rsplit("/", 1)[-1] if "/" in arn else str(identity.get("principalId", "")).split(":")[-1]), role
    if kind == "FederatedUser":
        return arn.rsplit("/", 1)[-1], ""
    if kind == "Root":
        return f"root (account {identity.get('accountId', '')})", ""
    if kind == "AWSService":
        return str(identity.get("invokedBy", "an AWS service")), ""
    return str(identity.get("userName") or arn.rsplit("/", 1)[-1] or identity.get("principalId", "")), ""


# ------------------------------------------------------------------ what


def _find(doc: Any, *names: str) -> Any:
    """The first value under any of ``names`` at any depth (request and response shapes differ between APIs and
    between their XML- and JSON-era serialisations: ``natGatewayId`` here, ``NatGatewayId`` there)."""
    if isinstance(doc, dict):  # the usual case: the name as spelled, at the top
        for name in names:
            value = doc.get(name)
            if value not in (None, "", [], {}):
                return value
    wanted = {n.lower() for n in names}
    stack = collections.deque([doc])
    while stack:
        node = stack.popleft()
        if isinstance(node, dict):
            for key, value in node.items():
                if key.lower() in wanted and value not in (None, "", [], {}):
                    return value
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def _items(doc: Any, name: str) -> list[dict]:
    """EC2's ``{"instancesSet": {"items": [...]}}`` as a list."""
    found = _find(doc, name)
    if isinstance(found, dict):
        found = found.get("items", [])
    return [i for i in found if isinstance(i, dict)] if isinstance(found, list) else []


def _text(value: Any) -> str:
    if isinstance(value, dict) and "value" in value:  # ModifyInstanceAttribute's {"instanceType": {"value": "m5.xlarge"}}
        value = value["value"]
    return "" if value is None else str(value)


def touches(record: dict[str, Any]) -> list[Touch]:
    """The resources one management call touched, with what to say of each."""
    name = record["eventName"]
    mapper = MAPPERS.get(name)
    if mapper is None:
        return _declared(record)
    region, account = str(record.get("awsRegion", "")), str(record.get("recipientAccountId") or _account(record))
    return mapper(record.get("requestParameters") or {}, record.get("responseElements") or {}, region, account)


def _account(record: dict[str, Any]) -> str:
    identity = record.get("userIdentity")
    return str(identity.get("accountId", "")) if isinstance(identity, dict) else ""


def _declared(record: dict[str, Any]) -> list[Touch]:
    """A call this reader has no mapping for still lands on the ARNs its record's ``resources`` names."""
    out = []
    for resource in record.get("resources") or []:
        arn = resource.get("ARN") if isinstance(resource, dict) else None
        if isinstance(arn, str) and arn.startswith("arn:"):
            kind = str(resource.get("type", "")).replace("AWS::", "").replace("::", ":").lower()
            out.append(Touch(arn, kind, "config", record["eventName"], record["eventName"]))
    return out


def ec2(region: str, account: str, kind: str, rid: str) -> str:
    return f"arn:aws:ec2:{region}:{account}:{kind}/{rid}"


def _run_instances(req, resp, region, account) -> list[Touch]:
    launched = _items(resp, "instancesSet")
    kind = _text(_find(req, "instanceType")) or _text(_find(launched, "instanceType"))
    subnet = _text(_find(req, "subnetId")) or _text(_find(launched, "subnetId"))
    where = f" in {subnet}" if subnet else ""
    n = len(launched)
    return [
        Touch(
            ec2(region, account, "instance", i["instanceId"]),
            "ec2:instance",
            "lifecycle",
            "created",
            f"launched {kind or 'an instance'}{where}" + (f", one of {n} in one call" if n > 1 else ""),
            details={"instance_type": kind, "subnet": subnet},
        )
        for i in launched
        if i.get("instanceId")
    ]


def _instance_state(action: str, verb: str) -> Callable:
    def mapper(req, resp, region, account) -> list[Touch]:
        ids = [i.get("instanceId") for i in _items(req, "instancesSet")] or [i.get("instanceId") for i in _items(resp, "instancesSet")]
        return [Touch(ec2(region, account, "instance", i), "ec2:instance", "lifecycle", action, verb) for i in ids if i]

    return mapper


def _modify_instance(req, resp, region, account) -> list[Touch]:
    instance = _text(_find(req, "instanceId"))
    changed = [k for k in ("instanceType", "disableApiTermination", "userData", "groupSet", "ebsOptimized") if _find(req, k) is not None]
    kind = _text(_find(req, "instanceType"))
    summary = f"instance type set to {kind}" if kind else ("changed " + ", ".join(changed) if changed else "attributes changed")
    if not instance:
        return []
    return [
        Touch(
            ec2(region, account, "instance", instance),
            "ec2:instance",
            "config",
            "ModifyInstanceAttribute",
            summary,
            details={"instance_type": kind},
        )
    ]


def _nat_created(req, resp, region, account) -> list[Touch]:
    nat = _text(_find(resp, "natGatewayId"))
    subnet = _text(_find(req, "subnetId"))
    if not nat:
        return []
    return [
        Touch(
            ec2(region, account, "natgateway", nat),
            "ec2:natgateway",
            "lifecycle",
            "created",
            f"NAT gateway created in {subnet or 'a subnet'}",
        )
    ]


def _nat_deleted(req, resp, region, account) -> list[Touch]:
    nat = _text(_find(req, "natGatewayId"))
    return [Touch(ec2(region, account, "natgateway", nat), "ec2:natgateway", "lifecycle", "deleted", "NAT gateway deleted")] if nat else []


def _route(req, resp, region, account) -> list[Touch]:
    nat, table = _text(_find(req, "natGatewayId")), _text(_find(req, "routeTableId"))
    cidr = _text(_find(req, "destinationCidrBlock", "destinationIpv6CidrBlock", "destinationPrefixListId"))
    if not nat:
        return []
    return [
        Touch(
            ec2(region, account, "natgateway", nat),
            "ec2:natgateway",
            "config",
            "route",
            f"route {cidr or '?'} in {table or 'a route table'} now via this NAT",
            related=(table,) if table else (),
            details={"route_table": table},
        )
    ]


def _endpoint(action: str) -> Callable:
    def mapper(req, resp, region, account) -> list[Touch]:
        endpoint = _text(_find(resp, "vpcEndpointId")) or _text(_find(req, "vpcEndpointId"))
        service = _text(_find(req, "serviceName"))
        tables = _find(req, "routeTableId", "addRouteTableId")
        related = tuple(str(t) for t in (tables if isinstance(tables, list) else [tables] if tables else []))
        if not endpoint:
            return []
        said = f"VPC endpoint {'created' if action == 'created' else 'modified'}" + (f" for {service}" if service else "")
        return [
            Touch(
                ec2(region, account, "vpc-endpoint", endpoint),
                "ec2:vpc-endpoint",
                "lifecycle" if action == "created" else "config",
                action,
                said,
                related,
            )
        ]

    return mapper


def _volume_created(req, resp, region, account) -> list[Touch]:
    volume = _text(_find(resp, "volumeId"))
    size, kind = _text(_find(req, "size")), _text(_find(req, "volumeType"))
    if not volume:
        return []
    return [
        Touch(
            ec2(region, account, "volume", volume),
            "ec2:volume",
            "lifecycle",
            "created",
            f"volume created: {size or '?'} GiB {kind}".rstrip(),
        )
    ]


def _volume_modified(req, resp, region, account) -> list[Touch]:
    volume = _text(_find(req, "volumeId"))
    size, kind, iops = _text(_find(req, "size")), _text(_find(req, "volumeType")), _text(_find(req, "iops"))
    parts = [p for p in (f"{size} GiB" if size else "", kind, f"{iops} IOPS" if iops else "") if p]
    return (
        [
            Touch(
                ec2(region, account, "volume", volume),
                "ec2:volume",
                "config",
                "ModifyVolume",
                "volume changed to " + (" ".join(parts) or "?"),
            )
        ]
        if volume
        else []
    )


def _volume_attached(req, resp, region, account) -> list[Touch]:
    volume, instance = _text(_find(req, "volumeId")), _text(_find(req, "instanceId"))
    if not volume:
        return []
    return [
        Touch(
            ec2(region, account, "volume", volume),
            "ec2:volume",
            "config",
            "AttachVolume",
            f"attached to {instance or 'an instance'}",
            (instance,) if instance else (),
        )
    ]


def _asg(req, resp, region, account) -> list[Touch]:
    group = _text(_find(req, "autoScalingGroupName"))
    sizes = [
        f"{label} {_text(_find(req, key))}"
        for key, label in (("desiredCapacity", "desired"), ("minSize", "min"), ("maxSize", "max"))
        if _find(req, key) is not None
    ]
    if not group:
        return []
    arn = f"arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/{group}"
    return [Touch(arn, "autoscaling:autoscalinggroup", "config", "UpdateAutoScalingGroup", "capacity " + (", ".join(sizes) or "changed"))]


def _db(action: str) -> Callable:
    def mapper(req, resp, region, account) -> list[Touch]:
        db = _text(_find(req, "dBInstanceIdentifier"))
        kind, storage = _text(_find(req, "dBInstanceClass")), _text(_find(req, "allocatedStorage"))
        if not db:
            return []
        bits = ", ".join(p for p in (kind, f"{storage} GiB" if storage else "") if p)
        said = {"created": "database created", "deleted": "database deleted"}.get(action, "database modified") + (
            f": {bits}" if bits else ""
        )
        return [
            Touch(
                f"arn:aws:rds:{region}:{account}:db:{db}", "rds:db", "config" if action == "ModifyDBInstance" else "lifecycle", action, said
            )
        ]

    return mapper


def _ecs_service(req, resp, region, account) -> list[Touch]:
    service, cluster = _text(_find(req, "service")), _text(_find(req, "cluster")) or "default"
    desired = _text(_find(req, "desiredCount"))
    if not service:
        return []
    arn = service if service.startswith("arn:") else f"arn:aws:ecs:{region}:{account}:service/{cluster.rsplit('/', 1)[-1]}/{service}"
    return [Touch(arn, "ecs:service", "config", "UpdateService", f"desired count {desired}" if desired else "service updated")]


def _notebook(action: str, said: str) -> Callable:
    def mapper(req, resp, region, account) -> list[Touch]:
        name = _text(_find(req, "notebookInstanceName"))
        kind = _text(_find(req, "instanceType"))
        if not name:
            return []
        arn = f"arn:aws:sagemaker:{region}:{account}:notebook-instance/{name.lower()}"
        return [Touch(arn, "sagemaker:notebook-instance", "lifecycle", action, said + (f" ({kind})" if kind else ""))]

    return mapper


MAPPERS: dict[str, Callable[..., list[Touch]]] = {
    "RunInstances": _run_instances,
    "TerminateInstances": _instance_state("terminated", "terminated"),
    "StopInstances": _instance_state("stopped", "stopped"),
    "StartInstances": _instance_state("started", "started"),
    "ModifyInstanceAttribute": _modify_instance,
    "CreateNatGateway": _nat_created,
    "DeleteNatGateway": _nat_deleted,
    "CreateRoute": _route,
    "ReplaceRoute": _route,
    "CreateVpcEndpoint": _endpoint("created"),
    "ModifyVpcEndpoint": _endpoint("ModifyVpcEndpoint"),
    "CreateVolume": _volume_created,
    "ModifyVolume": _volume_modified,
    "AttachVolume": _volume_attached,
    "UpdateAutoScalingGroup": _asg,
    "CreateDBInstance": _db("created"),
    "ModifyDBInstance": _db("ModifyDBInstance"),
    "DeleteDBInstance": _db("deleted"),
    "UpdateService": _ecs_service,
    "CreateNotebookInstance": _notebook("created", "notebook created"),
    "StartNotebookInstance": _notebook("started", "notebook started"),
    "StopNotebookInstance": _notebook("stopped", "notebook stopped"),
    "DeleteNotebookInstance": _notebook("deleted", "notebook deleted"),
}


READS = ("Describe", "Get", "List", "Lookup")  # calls that change nothing, by their name, where readOnly is absent


# ------------------------------------------------------------------ the window


@dataclass(frozen=True)
class Routing:
    """What earlier days said of the network: the NAT each route table's default route goes through and the route
    table of each subnet (the latest of each), so that a launch today into a subnet routed last month is linked."""

    nat_of_table: dict[str, str] = field(default_factory=dict)  # rtb-… → NAT gateway ARN
    table_of_subnet: dict[str, str] = field(default_factory=dict)  # subnet-… → rtb-…

    @classmethod
    def before(cls, store, start: dt.date) -> Routing:
        """The latest route and association of each route table and subnet the store holds from before ``start``."""
        day = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
        routes = store.query_rows(
            """
            SELECT properties['route_table'] AS t, argMax(resource_arn, event_time)
            FROM polo.resource_events
            WHERE collector = {c:String} AND event_action = 'route' AND event_time < {day:DateTime64(3, 'UTC')} AND t != ''
            GROUP BY t
            """,
            {"c": COLLECTOR, "day": day},
        )
        tables = store.query_rows(
            """
            SELECT properties['subnet'] AS s, argMax(properties['route_table'], event_time)
            FROM polo.resource_events
            WHERE collector = {c:String} AND event_action = 'AssociateRouteTable' AND event_time < {day:DateTime64(3, 'UTC')} AND s != ''
            GROUP BY s
            """,
            {"c": COLLECTOR, "day": day},
        )
        return cls(dict(routes), dict(tables))


def routed_instances(rows: list[dict], earlier: Routing = Routing()) -> list[dict]:
    """A config event on a NAT gateway for instances launched into a subnet whose route table sends traffic through it,
    from the window's route, association and launch calls and what earlier days said (``earlier``): "3 new instances
    routing via this NAT"."""
    ordered = sorted((r for r in rows if r["event_action"] in ("route", "AssociateRouteTable")), key=lambda r: r["event_time"])
    nat_of_table = {
        **earlier.nat_of_table,
        **{r["route_table"]: r["resource_arn"] for r in ordered if r["event_action"] == "route" and r.get("route_table")},
    }
    table_of_subnet = {
        **earlier.table_of_subnet,
        **{r["subnet"]: r["route_table"] for r in ordered if r["event_action"] == "AssociateRouteTable" and r.get("subnet")},
    }
    launches: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["event_action"] == "created" and r["resource_type"] == "ec2:instance" and r.get("subnet"):
            nat = nat_of_table.get(table_of_subnet.get(r["subnet"], ""))
            if nat:
                launches.setdefault((nat, r["event_time"], r["actor_name"]), []).append(r)
    out = []
    for (nat, _at, _who), launched in launches.items():
        ids = ",".join(x["resource_arn"].rsplit("/", 1)[-1] for x in launched)
        out.append(
            {
                **launched[0],
                "resource_arn": nat,
                "resource_type": "ec2:natgateway",
                "resource_name": nat.rsplit("/", 1)[-1],
                "event_type": "config",
                "event_action": "routed",
                "summary": f"{len(launched)} new instance(s) routing via this NAT",
                "related": ids,
            }
        )
    return out


def _association(record: dict[str, Any]) -> dict | None:
    if record["eventName"] != "AssociateRouteTable":
        return None
    req = record.get("requestParameters") or {}
    table, subnet = _text(_find(req, "routeTableId")), _text(_find(req, "subnetId"))
    return {"route_table": table, "subnet": subnet} if table and subnet else None


def records_to_rows(
    batches: Iterable[tuple[str, list[dict]]], start: dt.datetime, end: dt.datetime, partition: str
) -> tuple[list[dict], int]:
    """The rows of the calls in [start, end) that changed something, from (file, its records) batches, and how many
    calls in the window were skipped. A day holds about a million calls, most of them reads: a call is ruled out on
    its ``eventTime`` text (the documented ``YYYY-MM-DDThh:mm:ssZ`` sorts as the time does) and its name before
    anything is parsed or mapped."""
    rows, skipped = [], 0
    lo, hi = start.strftime(ISO), end.strftime(ISO)
    for where, records in batches:
        for n, record in enumerate(records):
            try:
                text, name = record["eventTime"], record["eventName"]
            except (KeyError, TypeError, IndexError):
                raise invalid_record(record, n, where, partition) from None
            if type(text) is not str or type(name) is not str or not text or not name:
                raise invalid_record(record, n, where, partition)
            if not (lo <= text < hi):
                if not _time_shaped(text):
                    event_time(record, where, partition)  # names the file and the field
                continue
            if record.get("errorCode") or record.get("readOnly") is True or name.startswith(READS):  # changed nothing
                skipped += 1
                continue
            at = event_time(record, where, partition)
            if not (start <= at < end):  # an offset other than Z
                continue
            association = _association(record)
            if association:
                who, role = actor(record.get("userIdentity"))
                region, account = str(record.get("awsRegion", "")), str(record.get("recipientAccountId") or _account(record))
                table = ec2(region, account, "route-table", association["route_table"])
                rows.append(
                    {
                        "resource_arn": table,
                        "resource_type": "ec2:route-table",
                        "resource_name": association["route_table"],
                        "event_time": at,
                        "event_type": "config",
                        "event_action": "AssociateRouteTable",
                        "actor_name": who,
                        "role": role,
                        "event_name": name,
                        "summary": f"associated with {association['subnet']}",
                        "related": association["subnet"],
                        "aws_account_id": account,
                        "aws_region": region,
                        **association,
                    }
                )
                continue
            found = touches(record)
            if not found:
                skipped += 1
                continue
            who, role = actor(record.get("userIdentity"))
            for touch in found:
                rows.append(
                    {
                        "resource_arn": touch.arn,
                        "resource_type": touch.resource_type,
                        "resource_name": touch.arn.rsplit("/", 1)[-1].rsplit(":", 1)[-1],
                        "event_time": at,
                        "event_type": touch.event_type,
                        "event_action": touch.action,
                        "actor_name": who,
                        "role": role,
                        "event_name": name,
                        "summary": touch.summary,
                        "related": ",".join(touch.related),
                        "aws_account_id": touch.arn.split(":")[4] if touch.arn.count(":") >= 5 else "",
                        "aws_region": touch.arn.split(":")[3] if touch.arn.count(":") >= 5 else "",
                        **{k: v for k, v in touch.details.items() if v},
                    }
                )
    return rows, skipped


DETAILS = ("instance_type", "subnet", "route_table")  # the request fields an event keeps, by name


def to_events(rows: list[dict], earlier: Routing = Routing()) -> pd.DataFrame:
    """The rows as events, with the NAT gateways' "routed" events, column by column (a day's 150,000 rows built one
    by one took 2 s)."""
    rows = rows + routed_instances(rows, earlier)
    if not rows:
        return conform(pd.DataFrame(columns=EVENT_COLUMNS))
    n = len(rows)
    frame = pd.DataFrame(
        {
            k: pd.Series([r.get(k) for r in rows], dtype=object)
            for k in ("resource_arn", "resource_type", "resource_name", "event_type", "event_action")
        }
    )
    frame["event_time"] = [r["event_time"] for r in rows]

    def text(name: str) -> pd.Series:
        return pd.Series([r.get(name) or "" for r in rows], dtype=object)

    events = pd.DataFrame(
        {
            "resource_arn": frame["resource_arn"],
            "resource_type": frame["resource_type"],
            "resource_name": frame["resource_name"],
            "event_time": pd.to_datetime(frame["event_time"], utc=True).dt.tz_localize(None).astype("datetime64[ms]"),
            "event_type": frame["event_type"],
            "event_action": frame["event_action"],
            "value": 0.0,
            "unit": "",
            "actor_name": text("actor_name"),
            "collector": COLLECTOR,
            "aws_account_id": text("aws_account_id"),
            "aws_region": text("aws_region"),
            "provider": "AWS",
            "billed_cost": 0.0,
            "list_cost": 0.0,
            "charge_category": "",
            "service": "",
        }
    )
    shown = {k: text(k) for k in ("summary", "event_name", "role", "related", *DETAILS)}
    events["properties"] = properties_column(build_properties(n, columns=shown), index=events.index)
    return conform(events)


def collect(location: Location, start: dt.date, end: dt.date, earlier: Routing = Routing()) -> TrailWindow:
    """The trail's management events of the days [start, end) as config and lifecycle events; ``earlier`` is what the
    days before said of routes and subnets."""
    partition = window_label(start, end)
    files = files_for(location, start, end)

    def batches() -> Iterator[tuple[str, list[dict]]]:
        for relpath in files:
            yield f"{location.uri}/{relpath}", read_records(location, relpath, partition)

    return window_of(batches(), start, end, earlier, [f"{location.uri}/{f}" for f in files])


def window_of(batches: Iterable[tuple[str, list[dict]]], start: dt.date, end: dt.date, earlier: Routing, places: list[str]) -> TrailWindow:
    """The events of the records of [start, end) from (where, records) batches: a trail's files or LookupEvents' pages."""
    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    hi = dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC)
    counted = {"records": 0}

    def counting() -> Iterator[tuple[str, list[dict]]]:
        for where, records in batches:
            counted["records"] += len(records)
            yield where, records

    with gc_paused():
        rows, skipped = records_to_rows(counting(), lo, hi, window_label(start, end))
    return TrailWindow(to_events(rows, earlier), places, counted["records"], skipped)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a day's records are parsed: a million records are some fifty million
    objects, none of them in a cycle, and the collections their allocation triggers cost half the reading time
    (6 s of 12 on the bench's organisation day). Everything is freed by reference counting as before."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
