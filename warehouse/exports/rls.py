"""Row-level security for QuickSight: which QuickSight user or group sees which tenants.

The mapping is a JSON file (path in `AW_QUICKSIGHT_RLS_FILE` or `--rls-file`):

    {
      "users":  {"alice@acme.example": ["acme"], "msp-admin": ["*"]},
      "groups": {"client-globex": ["globex", "globex-eu"], "msp-analysts": ["*"]}
    }

Keys are QuickSight user names (`UserName`) or group names (`GroupName`) of the namespace the
dashboards are shared in; values are tenant ids, or `"*"` for every tenant. It becomes the
permissions dataset QuickSight expects (user-based rules, format version 1): columns
`UserName`, `GroupName`, `tenant_id`, one row per principal and tenant. A `"*"` becomes one
row with an empty `tenant_id`, which QuickSight reads as "all values". A user or group that
is in no row sees no row of an RLS-protected dataset; dataset owners always see everything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from warehouse.exports.catalog import Column
from warehouse.registry_records import TENANT_ID_PATTERN

RLS_TABLE = "rls_tenant_permissions"
ALL_TENANTS = "*"
RLS_COLUMNS = (Column("UserName", "VARCHAR"), Column("GroupName", "VARCHAR"),
               Column("tenant_id", "VARCHAR"))
_PRINCIPAL = re.compile(r"^[^\x00-\x1f,]{1,256}$")

Row = tuple[str | None, str | None, str | None]


class RlsMappingError(ValueError):
    """The RLS mapping is not valid; the message says where."""


@dataclass(frozen=True)
class RlsMapping:
    users: Mapping[str, tuple[str, ...]]
    groups: Mapping[str, tuple[str, ...]]

    def rows(self) -> list[Row]:
        """(UserName, GroupName, tenant_id) rows, sorted; None is an empty field."""
        out: list[Row] = []
        for principals, as_user in ((self.users, True), (self.groups, False)):
            for name in sorted(principals):
                tenants = principals[name]
                values: list[str | None] = [None]  # every tenant
                if ALL_TENANTS not in tenants:
                    values = [*sorted(set(tenants))]
                out += [(name, None, t) if as_user else (None, name, t) for t in values]
        return out

    def tenants(self) -> set[str]:
        return {t for ts in (*self.users.values(), *self.groups.values()) for t in ts
                if t != ALL_TENANTS}


def parse_mapping(value: object) -> RlsMapping:
    """Validate a decoded JSON mapping (see the module docstring)."""
    if not isinstance(value, dict) or not value:
        raise RlsMappingError('the RLS mapping must be a JSON object with "users" and/or '
                              '"groups"')
    unknown = set(value) - {"users", "groups"}
    if unknown:
        raise RlsMappingError(f"unknown key(s) in the RLS mapping: {', '.join(sorted(unknown))}"
                              ' (expected "users" and/or "groups")')
    return RlsMapping(users=_principals(value.get("users", {}), "users"),
                      groups=_principals(value.get("groups", {}), "groups"))


def _principals(value: object, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise RlsMappingError(f'"{where}" must be an object of name → list of tenant ids')
    out: dict[str, tuple[str, ...]] = {}
    for name, tenants in value.items():
        if not _PRINCIPAL.match(name):
            raise RlsMappingError(f"{where}: {name!r} is not a valid QuickSight name "
                                  "(1–256 characters, no comma or control character)")
        if not isinstance(tenants, list) or not tenants:
            raise RlsMappingError(f"{where}.{name}: expected a non-empty list of tenant ids "
                                  f'or ["{ALL_TENANTS}"]')
        for tenant in tenants:
            if tenant != ALL_TENANTS and not (isinstance(tenant, str)
                                              and TENANT_ID_PATTERN.fullmatch(tenant)):
                raise RlsMappingError(f"{where}.{name}: {tenant!r} is not a tenant id")
        out[name] = tuple(tenants)
    return out


def load_mapping(path: Path) -> RlsMapping:
    """Read and validate the mapping file at `path`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RlsMappingError(f"cannot read the RLS mapping {path}: {exc.strerror or exc}"
                              ) from exc
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RlsMappingError(f"{path} is not valid JSON: {exc}") from exc
    try:
        return parse_mapping(value)
    except RlsMappingError as exc:
        raise RlsMappingError(f"{path}: {exc}") from exc
