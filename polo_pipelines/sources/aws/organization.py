"""The AWS Organization, read through the Organizations API: each account's name, status, tags and the path of
organizational units from the root down to it. It becomes the ``aws_organization`` hierarchy (root -> OUs -> account)
and names the accounts of every hierarchy with an account level (see ``hierarchy.ancestry.with_declared``).

The standard credential chain must reach the management account or a delegated administrator
(``organizations:ListRoots``, ``ListOrganizationalUnitsForParent``, ``ListAccountsForParent``,
``ListTagsForResource``). An organisation of a few hundred accounts is read in a few hundred calls.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from polo_pipelines.errors import PoloInputError

SOURCE = "aws-organization"
COLUMNS = ["account_id", "account_name", "account_status", "root_id", "root_name", "ou_ids", "ou_names", "tags", "observed_at"]


PAGE_KEYS = {
    "list_roots": "Roots",
    "list_organizational_units_for_parent": "OrganizationalUnits",
    "list_accounts_for_parent": "Accounts",
    "list_tags_for_resource": "Tags",
}


def _call(client, operation: str, what: str, **kwargs) -> list[dict[str, Any]]:
    """Every page of one paginated Organizations call, or a PoloInputError naming the call and AWS's error code."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        out: list[dict[str, Any]] = []
        for page in client.get_paginator(operation).paginate(**kwargs):
            out.extend(page.get(PAGE_KEYS[operation]) or [])
        return out
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        hint = {
            "AWSOrganizationsNotInUseException": "this account is not in an organization",
            "AccessDeniedException": "the credentials are not the management account's or a delegated administrator's",
        }.get(code, "")
        raise PoloInputError(f"{what} failed: {code}" + (f" ({hint})" if hint else ""), source=SOURCE, field=operation) from None
    except BotoCoreError as exc:
        raise PoloInputError(f"{what} failed: {type(exc).__name__}", source=SOURCE, field=operation) from None


def read_organization(client, now: dt.datetime) -> pd.DataFrame:
    """One row per account of the organization, with the OU path (outermost first) above it."""
    rows: list[dict[str, Any]] = []
    roots = _call(client, "list_roots", "listing the organization's roots")
    if not roots:
        raise PoloInputError("the organization has no root", source=SOURCE, field="Roots")

    def walk(root: dict[str, Any], parent_id: str, ou_ids: list[str], ou_names: list[str]) -> None:
        for account in _call(client, "list_accounts_for_parent", f"listing the accounts of {parent_id}", ParentId=parent_id):
            for name in ("Id", "Name"):
                if name not in account:
                    raise PoloInputError("an account has no " + name, source=SOURCE, field=f"Accounts[].{name}")
            tags = _call(client, "list_tags_for_resource", f"listing the tags of {account['Id']}", ResourceId=account["Id"])
            rows.append(
                {
                    "account_id": str(account["Id"]),
                    "account_name": str(account["Name"]),
                    "account_status": str(account.get("Status") or account.get("State") or ""),
                    "root_id": str(root["Id"]),
                    "root_name": str(root.get("Name") or ""),
                    "ou_ids": list(ou_ids),
                    "ou_names": list(ou_names),
                    "tags": {str(t["Key"]): str(t.get("Value") or "") for t in tags},
                    "observed_at": now,
                }
            )
        units = _call(
            client, "list_organizational_units_for_parent", f"listing the organizational units of {parent_id}", ParentId=parent_id
        )
        for unit in sorted(units, key=lambda u: str(u.get("Name", ""))):
            walk(root, unit["Id"], [*ou_ids, str(unit["Id"])], [*ou_names, str(unit.get("Name") or unit["Id"])])

    for root in roots:
        walk(root, root["Id"], [], [])
    if not rows:
        raise PoloInputError("the organization lists no account", source=SOURCE, field="Accounts")
    return pd.DataFrame(rows, columns=COLUMNS)


def write_organization(store, frame: pd.DataFrame) -> None:
    """Replace polo.aws_organization with ``frame`` in one swap."""
    from polo_pipelines.store.swap import atomic_load

    with atomic_load(store, "the AWS Organization") as load:
        scratch = load.scratch("polo.aws_organization")
        insert = frame.copy()
        insert["observed_at"] = pd.to_datetime(insert["observed_at"], utc=True).dt.tz_localize(None)
        store.insert_df(scratch, insert)
        load.replace("polo.aws_organization", scratch, "tuple()", {}, len(frame) > 0)
        load.commit()
