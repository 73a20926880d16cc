"""Client AWS accounts of a tenant, for patch compliance (ARCHITECTURE.md: `aw tenants set ID
--aws-account ACCOUNT_ID [--role-arn ARN --external-id EXTERNAL_ID --regions …]`).

An account belongs to one tenant (a database fact: the account id is the primary key), which
is also how rows of a Resource Data Sync, keyed by account id, find their tenant. With a role
the platform collects through STS AssumeRole with the External ID; without one the account is
read only through the MSP's Resource Data Sync location (`AW_SSM_SYNC_URI`).

The External ID is not a password, but it is what stops a confused deputy: it is sealed in the
registry like the other secrets, shown only masked, and handed unsealed to the collector only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ACCOUNT = re.compile(r"[0-9]{12}")
_ROLE_ARN = re.compile(
    r"arn:(?P<partition>aws|aws-cn|aws-us-gov):iam::(?P<account>[0-9]{12}):role/"
    r"[\w+=,.@/-]{1,512}")
# STS: 2-1224 characters of [\w+=,.@:/-] (AssumeRole ExternalId).
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]{1,2}")
MAX_REGIONS = 32


@dataclass(frozen=True)
class AwsAccountInfo:
    """An account as operators see it (the External ID masked)."""

    account_id: str
    tenant_id: str
    role_arn: str | None
    external_id_hint: str | None  # last 4 characters, e.g. "…a1b2"
    regions: tuple[str, ...]


@dataclass(frozen=True)
class AwsAccountAccess:
    """What the collector needs, the External ID unsealed (never logged or stored in the lake)."""

    account_id: str
    tenant_id: str
    role_arn: str | None
    external_id: str | None
    regions: tuple[str, ...]


def validate_account_id(value: str) -> str:
    if not isinstance(value, str) or not _ACCOUNT.fullmatch(value):
        raise ValueError(f"invalid AWS account id {str(value)[:40]!r}: expected 12 digits")
    return value


def validate_access(account_id: str, role_arn: str | None, external_id: str | None,
                    regions: tuple[str, ...]) -> None:
    """Raise ValueError unless the role, the External ID and the regions are usable."""
    validate_account_id(account_id)
    if (role_arn is None) != (external_id is None):
        raise ValueError("--role-arn and --external-id go together: a role assumed without "
                         "an External ID is open to the confused-deputy problem")
    if role_arn is not None:
        found = _ROLE_ARN.fullmatch(role_arn)
        if found is None:
            raise ValueError(f"invalid role ARN {role_arn[:120]!r}: expected "
                             "arn:aws:iam::<12-digit account>:role/<name>")
        if found["account"] != account_id:
            raise ValueError(f"the role ARN belongs to account {found['account']}, "
                             f"not {account_id}")
        if not regions:
            raise ValueError("a role needs --regions (for example us-east-1,eu-west-1)")
    if external_id is not None and not _EXTERNAL_ID.fullmatch(external_id):
        raise ValueError("invalid External ID: 2 to 1224 characters of letters, digits and "
                         "+=,.@:/-_")
    if len(regions) > MAX_REGIONS:
        raise ValueError(f"at most {MAX_REGIONS} regions per account")
    for region in regions:
        if not _REGION.fullmatch(region):
            raise ValueError(f"invalid AWS region {region[:40]!r} (for example us-east-1)")


def parse_regions(text: str | None) -> tuple[str, ...]:
    """`us-east-1,eu-west-1` → a sorted tuple without duplicates."""
    if not text:
        return ()
    return tuple(sorted({part.strip() for part in text.split(",") if part.strip()}))


def hint(external_id: str) -> str:
    return "…" + external_id[-4:] if len(external_id) > 4 else "…"


def external_id_associated(account_id: str) -> bytes:
    """Associated data binding a sealed External ID to its account and purpose."""
    return b"aws-external-id\0" + account_id.encode()
