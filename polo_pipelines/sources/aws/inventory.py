"""AWS inventory: running instances, EBS volumes and SageMaker notebooks, as config and lifecycle events.

A snapshot lists each account's resources per region (through an assumed role where one is
given) and compares them with the latest state the store holds. Only what changed is
written, at the snapshot's time:

- ``config`` event: the resource's whole current state (``state``, ``state_since``, type,
  size, tags as ``tag:<key>``), when it is first seen or any of it changed;
- ``lifecycle`` event: ``event_action`` = the new state (``running``, ``stopped``,
  ``InService``, ``deleted``, …), when the state changed;
- a resource no longer listed gets a ``config`` event with ``state = deleted`` and a
  ``deleted`` lifecycle event.

So a snapshot taken twice writes nothing the second time: the unit of idempotency is the
change, not the 15-minute slot, and the month partitions of ``resource_events`` are only
ever appended to (collector ``inventory_aws``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from polo_pipelines.errors import PoloInputError
from polo_pipelines.store.events import EVENT_COLUMNS, as_utc, conform, properties_column

COLLECTOR = "inventory_aws"
SOURCE = "aws-inventory"
KINDS = ("ec2:instance", "ec2:volume", "sagemaker:notebook-instance")


@dataclass(frozen=True)
class Target:
    account_id: str
    role_arn: str = ""  # assumed for this account; empty: the caller's own credentials
    regions: tuple[str, ...] = ("us-east-1",)


@dataclass
class Observed:
    resource_arn: str
    resource_type: str
    resource_name: str
    account: str
    region: str
    props: dict[str, str]


@dataclass
class SnapshotResult:
    events: pd.DataFrame
    observed: int = 0
    changed: int = 0
    deleted: int = 0
    accounts: list[str] = field(default_factory=list)


def _iso(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return as_utc(value).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value or "")


def _tags(items: Iterable[dict] | None) -> dict[str, str]:
    return {f"tag:{t['Key']}": str(t.get("Value", "")) for t in items or [] if t.get("Key") and not str(t["Key"]).startswith("aws:")}


def session_for(target: Target, base_session, *, endpoint_url: str | None = None) -> Any:
    """A boto3 session for the target account: the base session, or one from STS AssumeRole."""
    import boto3

    if not target.role_arn:
        return base_session
    sts = base_session.client("sts", endpoint_url=endpoint_url)
    try:
        creds = sts.assume_role(RoleArn=target.role_arn, RoleSessionName="polo-inventory")["Credentials"]
    except Exception as exc:  # botocore's error text names the role, never a secret
        raise PoloInputError(f"cannot assume {target.role_arn}: {exc}", source=SOURCE, field="role_arn") from None
    return boto3.Session(
        aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"]
    )


def observe(session, target: Target, region: str, *, endpoint_url: str | None = None) -> list[Observed]:
    """Every instance, volume and notebook of one account and region, as Polo sees them."""
    account = target.account_id
    out: list[Observed] = []
    ec2 = session.client("ec2", region_name=region, endpoint_url=endpoint_url)
    for page in ec2.get_paginator("describe_instances").paginate():
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                iid = inst["InstanceId"]
                state = inst.get("State", {}).get("Name", "")
                props = {
                    "state": state,
                    "state_since": _iso(inst.get("LaunchTime")) if state == "running" else "",
                    "instance_type": inst.get("InstanceType", ""),
                }
                props.update(_tags(inst.get("Tags")))
                out.append(Observed(f"arn:aws:ec2:{region}:{account}:instance/{iid}", "ec2:instance", iid, account, region, props))
    for page in ec2.get_paginator("describe_volumes").paginate():
        for vol in page.get("Volumes", []):
            vid = vol["VolumeId"]
            props = {
                "state": vol.get("State", ""),
                "state_since": _iso(vol.get("CreateTime")),
                "volume_type": vol.get("VolumeType", ""),
                "size_gb": str(vol.get("Size", "")),
            }
            props.update(_tags(vol.get("Tags")))
            out.append(Observed(f"arn:aws:ec2:{region}:{account}:volume/{vid}", "ec2:volume", vid, account, region, props))
    sagemaker = session.client("sagemaker", region_name=region, endpoint_url=endpoint_url)
    for page in sagemaker.get_paginator("list_notebook_instances").paginate():
        for nb in page.get("NotebookInstances", []):
            arn = nb["NotebookInstanceArn"]
            props = {
                "state": nb.get("NotebookInstanceStatus", ""),
                "state_since": _iso(nb.get("LastModifiedTime")),
                "instance_type": nb.get("InstanceType", ""),
            }
            props.update(_tags(sagemaker.list_tags(ResourceArn=arn).get("Tags")))
            out.append(Observed(arn, "sagemaker:notebook-instance", nb["NotebookInstanceName"], account, region, props))
    return out


def latest_state(store, accounts: list[str]) -> dict[str, tuple[str, dict[str, str], str, str, str]]:
    """The store's latest inventory state per resource of these accounts: arn -> (type, props, name, account, region)."""
    frame = store.query_df(
        """
        SELECT resource_arn, argMax(resource_type, event_time) AS resource_type, argMax(properties, event_time) AS props,
               argMax(resource_name, event_time) AS resource_name, argMax(aws_account_id, event_time) AS account,
               argMax(aws_region, event_time) AS region
        FROM polo.resource_events
        WHERE collector = {c:String} AND event_type = 'config' AND aws_account_id IN {a:Array(String)}
        GROUP BY resource_arn
        """,
        {"c": COLLECTOR, "a": accounts},
    )
    return {r.resource_arn: (r.resource_type, dict(r.props), r.resource_name, r.account, r.region) for r in frame.itertuples(index=False)}


def changes(observed: list[Observed], previous: dict, at: dt.datetime, scanned: set[tuple[str, str]]) -> tuple[pd.DataFrame, int, int]:
    """Config and lifecycle events for what differs from the previous state; resources gone from a scanned
    (account, region) are deleted."""
    rows: list[dict[str, Any]] = []

    def add(kind: str, action: str, o: Observed, props: dict[str, str]) -> None:
        rows.append(
            {
                "resource_arn": o.resource_arn,
                "resource_type": o.resource_type,
                "resource_name": o.resource_name,
                "event_time": at,
                "event_type": kind,
                "event_action": action,
                "value": 0.0,
                "billed_cost": 0.0,
                "list_cost": 0.0,
                "charge_category": "",
                "service": o.resource_type.split(":")[0],
                "provider": "AWS",
                "unit": "",
                "properties": props,
                "actor_name": "",
                "collector": COLLECTOR,
                "aws_account_id": o.account,
                "aws_region": o.region,
            }
        )

    changed = deleted = 0
    seen = set()
    for o in observed:
        seen.add(o.resource_arn)
        before = previous.get(o.resource_arn)
        old_props = before[1] if before else {}
        if old_props == o.props:
            continue
        changed += 1
        add("config", "observed" if not before or old_props.get("deleted") == "true" else "changed", o, o.props)
        if old_props.get("state") != o.props.get("state"):
            add(
                "lifecycle",
                o.props.get("state") or "unknown",
                o,
                {"previous_state": old_props.get("state", ""), "state_since": o.props.get("state_since", "")},
            )
    for arn, (rtype, props, name, account, region) in previous.items():
        if arn in seen or props.get("deleted") == "true" or (account, region) not in scanned:
            continue
        deleted += 1
        gone = Observed(arn, rtype, name, account, region, {"state": "deleted", "deleted": "true", "state_since": _iso(at)})
        add("config", "deleted", gone, gone.props)
        add("lifecycle", "deleted", gone, {"previous_state": props.get("state", "")})
    if not rows:
        return conform(pd.DataFrame({name: [] for name in EVENT_COLUMNS})), 0, 0
    frame = pd.DataFrame(rows)
    frame["properties"] = properties_column(frame["properties"].tolist())
    return conform(frame), changed, deleted


def snapshot(
    store,
    targets: list[Target],
    at: dt.datetime,
    *,
    base_session=None,
    endpoint_url: str | None = None,
    observe_fn: Callable[..., list[Observed]] = observe,
) -> SnapshotResult:
    """Observe every target and append what changed (nothing, when nothing did)."""
    import boto3

    base_session = base_session or boto3.Session()
    observed: list[Observed] = []
    scanned: set[tuple[str, str]] = set()
    for target in targets:
        session = session_for(target, base_session, endpoint_url=endpoint_url)
        for region in target.regions:
            observed.extend(observe_fn(session, target, region, endpoint_url=endpoint_url))
            scanned.add((target.account_id, region))
    previous = latest_state(store, [t.account_id for t in targets])
    events, changed, deleted = changes(observed, previous, at, scanned)
    if not events.empty:
        store.insert_df("polo.resource_events", events)
    return SnapshotResult(events, len(observed), changed, deleted, [t.account_id for t in targets])


def parse_targets(text: str) -> list[Target]:
    """POLO_AWS_INVENTORY_TARGETS: JSON list of {"account_id", "role_arn", "regions"}."""
    try:
        doc = json.loads(text)
        return [Target(str(t["account_id"]), str(t.get("role_arn") or ""), tuple(t.get("regions") or ("us-east-1",))) for t in doc]
    except (ValueError, TypeError, KeyError) as exc:
        raise PoloInputError(
            f"POLO_AWS_INVENTORY_TARGETS must be a JSON list of {{account_id, role_arn, regions}}: {exc}", source=SOURCE
        ) from None
