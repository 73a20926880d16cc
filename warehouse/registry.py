"""The tenant registry: tenants, their credentials, options and versioned correlation settings.

One SQLite file (`PlatformSettings.registry_path`) shared by the service, the CLI and the
pipelines; `registry_store` holds the SQL, `secret_box` the encryption. Records returned from
here never carry secret material, except `IssuedCredentials` (shown to the operator once) and
`AuthSnapshot` (for the service's authenticator); both keep it out of their repr.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from warehouse import registry_store as store
from warehouse.config import PlatformSettings
from warehouse.correlation_settings import CorrelationSettings, format_duration
from warehouse.registry_aws import (
    AwsAccountAccess,
    AwsAccountInfo,
    external_id_associated,
    validate_access,
    validate_account_id,
)
from warehouse.registry_aws import hint as aws_hint
from warehouse.registry_credentials import (
    DEFAULT_GRACE,
    EPOCH,
    GRAFANA_SIGNATURE_HEADER,
    MAX_GRACE,
    RegistryError,
    RegistryUnavailable,
    TenantNotFound,
    check_grafana_signing,
    claim_sns_topic,
    grafana_associated,
    issue_api_key,
    issue_secret,
    open_secret,
)
from warehouse.registry_records import (
    TENANT_ID_PATTERN,
    AuthSnapshot,
    GrafanaSigning,
    IssuedCredentials,
    SettingsVersion,
    Tenant,
    TenantOptions,
    check_options,
    hash_api_key,
    validate_sns_topic,
    validate_tenant_id,
)
from warehouse.secret_box import SecretBox, SecretBoxError, load_secret_box

__all__ = [
    "TENANT_ID_PATTERN",
    "AuthSnapshot",
    "GrafanaSigning",
    "IssuedCredentials",
    "Registry",
    "RegistryError",
    "RegistryUnavailable",
    "SettingsVersion",
    "Tenant",
    "TenantNotFound",
    "TenantOptions",
    "GRAFANA_SIGNATURE_HEADER",
    "check_grafana_signing",
    "check_options",
    "hash_api_key",
    "validate_sns_topic",
    "validate_tenant_id",
]

class Registry:
    """The registry file; one instance may be shared by threads (one connection, one lock).

    Methods that write or depend on the clock take `now` (timezone-aware UTC) for tests.
    """

    def __init__(
        self, conn: sqlite3.Connection, probe: sqlite3.Connection, settings: PlatformSettings
    ) -> None:
        self._conn = conn
        self._probe = probe  # only asks PRAGMA data_version, see data_version()
        self._settings = settings
        self._lock = threading.RLock()
        self._own_writes = 0
        self._box: SecretBox | None = None

    @classmethod
    def open(cls, settings: PlatformSettings) -> Registry:
        """Open the registry file of these settings, creating and migrating it if needed."""
        path = settings.registry_path
        try:
            conn = store.connect(path)
            store.migrate(conn)
            probe = store.connect(path)
        except (sqlite3.Error, store.SchemaError, OSError) as exc:
            raise RegistryUnavailable(f"cannot open the tenant registry {path}: {exc}") from None
        return cls(conn, probe, settings)

    def close(self) -> None:
        """Close the connections."""
        with self._lock:
            self._conn.close()
            self._probe.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_tenant(
        self, tenant_id: str, name: str, *, now: datetime | None = None
    ) -> IssuedCredentials:
        """Add a tenant with one API key and one HMAC secret, returned here only."""
        validate_tenant_id(tenant_id)
        name = _check_name(name)
        at, box = _now(now), self._secret_box()
        with self._write() as conn:
            if store.tenant_exists(conn, tenant_id):
                raise RegistryError(f"tenant {tenant_id!r} already exists")
            store.insert_tenant(conn, tenant_id, name, at)
            api_key = issue_api_key(conn, tenant_id, at)
            hmac_secret = issue_secret(conn, box, tenant_id, at)
        return IssuedCredentials(tenant_id, api_key, hmac_secret)

    def list_tenants(self, *, now: datetime | None = None) -> list[Tenant]:
        """Every tenant, by id."""
        at = _now(now)
        with self._read() as conn:
            ids = [tenant_id for (tenant_id,) in conn.execute("SELECT id FROM tenants ORDER BY id")]
            return [
                _require(store.load_tenant(conn, tenant_id, at), tenant_id) for tenant_id in ids
            ]

    def get_tenant(self, tenant_id: str, *, now: datetime | None = None) -> Tenant:
        """One tenant; raises TenantNotFound."""
        validate_tenant_id(tenant_id)
        at = _now(now)
        with self._read() as conn:
            return _require(store.load_tenant(conn, tenant_id, at), tenant_id)

    def set_options(
        self,
        tenant_id: str,
        require_signature: bool | None = None,
        rate_limit_per_second: float | None = None,
        rate_limit_burst: int | None = None,
    ) -> Tenant:
        """Change the options given (None keeps one as it is); returns the updated tenant."""
        validate_tenant_id(tenant_id)
        check_options(rate_limit_per_second, rate_limit_burst)
        if (require_signature, rate_limit_per_second, rate_limit_burst) == (None, None, None):
            raise ValueError("no option to change was given")
        signature = None if require_signature is None else int(bool(require_signature))
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            store.update_options(
                conn, tenant_id, (signature, rate_limit_per_second, rate_limit_burst)
            )
        return self.get_tenant(tenant_id)

    def new_api_key(self, tenant_id: str, *, now: datetime | None = None) -> str:
        """Issue one more API key for the tenant; its other keys stay valid."""
        validate_tenant_id(tenant_id)
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            return issue_api_key(conn, tenant_id, _now(now))

    def revoke_key(
        self, tenant_id: str, key_prefix: str | None, *, now: datetime | None = None
    ) -> int:
        """Revoke the tenant's active keys with this 12-character prefix (None: all of them).

        Returns how many were revoked; 0 when none matched.
        """
        validate_tenant_id(tenant_id)
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            return store.revoke_api_keys(conn, tenant_id, key_prefix, _now(now))

    def rotate_secret(
        self, tenant_id: str, grace: timedelta = DEFAULT_GRACE, *, now: datetime | None = None
    ) -> str:
        """Issue a new HMAC secret; every older valid one expires `grace` from now (or sooner,
        if it was already due to)."""
        validate_tenant_id(tenant_id)
        if not timedelta(0) <= grace <= MAX_GRACE:
            raise ValueError(f"grace must be between 0s and {format_duration(MAX_GRACE)}")
        at, box = _now(now), self._secret_box()
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            store.expire_secrets(conn, tenant_id, at, at + grace)
            return issue_secret(conn, box, tenant_id, at)

    def set_grafana_signing(
        self,
        tenant_id: str,
        secret: str | None,
        header: str = GRAFANA_SIGNATURE_HEADER,
        timestamp_header: str | None = None,
        *,
        now: datetime | None = None,
    ) -> Tenant:
        """Configure the secret Grafana signs this tenant's webhooks with (stored sealed),
        replacing any earlier one; `secret=None` removes it. Returns the updated tenant."""
        validate_tenant_id(tenant_id)
        if secret is None:
            with self._write() as conn:
                self._require_tenant(conn, tenant_id)
                store.delete_grafana_signing(conn, tenant_id)
            return self.get_tenant(tenant_id)
        plain, headers = check_grafana_signing(secret, header, timestamp_header)
        at, box = _now(now), self._secret_box()
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            sealed = box.seal(plain, grafana_associated(tenant_id))
            store.upsert_grafana_signing(conn, tenant_id, sealed, headers, at)
        return self.get_tenant(tenant_id)

    def add_sns_topic(self, tenant_id: str, arn: str, *, now: datetime | None = None) -> Tenant:
        """Allow SNS messages of this TopicArn (or `…:<account>:*` pattern) for the tenant."""
        return self.change_sns_topics(tenant_id, add=(arn,), now=now)

    def remove_sns_topic(self, tenant_id: str, arn: str) -> Tenant:
        """Stop accepting this TopicArn (or pattern) for the tenant; RegistryError if absent."""
        return self.change_sns_topics(tenant_id, remove=(arn,))

    def change_sns_topics(
        self,
        tenant_id: str,
        add: Iterable[str] = (),
        remove: Iterable[str] = (),
        *,
        now: datetime | None = None,
    ) -> Tenant:
        """Remove, then add SNS topics in one transaction: all of it happens or none.

        A topic belongs to one tenant only, so an SNS message's verified TopicArn names its
        tenant. An exact topic and another tenant's account-wide pattern covering it would
        make that ambiguous, so such overlaps are refused as well. Adding a topic the tenant
        already has changes nothing.
        """
        validate_tenant_id(tenant_id)
        if isinstance(add, str) or isinstance(remove, str):
            raise TypeError("add and remove take collections of ARNs, not one string")
        adding = [validate_sns_topic(arn) for arn in add]
        removing = [validate_sns_topic(arn) for arn in remove]
        at = _now(now)
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            for arn in removing:
                if not store.delete_sns_topic(conn, tenant_id, arn):
                    raise RegistryError(f"tenant {tenant_id!r} has no SNS topic {arn!r}")
            for arn in adding:
                if claim_sns_topic(conn, tenant_id, arn):
                    store.insert_sns_topic(conn, tenant_id, arn, at)
        return self.get_tenant(tenant_id)

    def set_aws_account(self, tenant_id: str, account_id: str, *, role_arn: str | None = None,
                        external_id: str | None = None, regions: Iterable[str] = (),
                        now: datetime | None = None) -> AwsAccountInfo:
        """Add or replace a client AWS account of the tenant (patch compliance)."""
        validate_tenant_id(tenant_id)
        ordered = tuple(sorted(set(regions)))
        validate_access(account_id, role_arn, external_id, ordered)
        at = _now(now)
        sealed = hint_text = None
        if external_id is not None:
            sealed = self._secret_box().seal(external_id.encode(),
                                             external_id_associated(account_id))
            hint_text = aws_hint(external_id)
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            owner = store.aws_account_owner(conn, account_id)
            if owner is not None and owner != tenant_id:
                raise RegistryError(f"AWS account {account_id} belongs to tenant {owner!r}")
            store.upsert_aws_account(conn, account_id, tenant_id, role_arn, sealed, hint_text,
                                     ordered, at)
        return AwsAccountInfo(account_id, tenant_id, role_arn, hint_text, ordered)

    def remove_aws_account(self, tenant_id: str, account_id: str) -> None:
        validate_tenant_id(tenant_id)
        validate_account_id(account_id)
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            if not store.delete_aws_account(conn, tenant_id, account_id):
                raise RegistryError(f"tenant {tenant_id!r} has no AWS account {account_id}")

    def aws_accounts(self, tenant_id: str | None = None) -> list[AwsAccountInfo]:
        """Accounts (of one tenant, or all), External IDs masked."""
        if tenant_id is not None:
            validate_tenant_id(tenant_id)
        with self._read() as conn:
            if tenant_id is not None:
                self._require_tenant(conn, tenant_id)
            rows = store.aws_account_rows(conn, tenant_id)
        return [AwsAccountInfo(a, t, role, hint_text, _regions(regions))
                for a, t, role, _sealed, hint_text, regions in rows]

    def aws_account_access(self) -> list[AwsAccountAccess]:
        """Every account with its External ID unsealed: for the collector only."""
        with self._read() as conn:
            rows = store.aws_account_rows(conn)
        box = self._secret_box() if any(r[3] is not None for r in rows) else None
        out = []
        for account, tenant, role, sealed, _hint, regions in rows:
            external = None
            if sealed is not None and box is not None:
                external = box.open(sealed, external_id_associated(account)).decode()
            out.append(AwsAccountAccess(account, tenant, role, external, _regions(regions)))
        return out

    def set_settings(
        self,
        tenant_id: str,
        changes: Mapping[str, object],
        effective_at: datetime | None = None,
        *,
        now: datetime | None = None,
    ) -> SettingsVersion:
        """Store a new version: the one in force at `effective_at` with `changes` applied.

        Every version is a full snapshot (R15). A version placed before later ones does not
        alter them: from the next version's effective time on, that one rules again.
        """
        validate_tenant_id(tenant_id)
        if not changes:
            raise ValueError("no correlation setting to change was given")
        at = _now(now)
        effective = at if effective_at is None else _utc(effective_at, "effective_at")
        with self._write() as conn:
            self._require_tenant(conn, tenant_id)
            base = _version_or_default(conn, tenant_id, effective)
            settings = base.settings.with_changes(changes)
            return store.insert_settings_version(conn, tenant_id, settings, effective, at)

    def settings_history(self, tenant_id: str) -> list[SettingsVersion]:
        """Every stored version by version number (the default, version 0, is not stored)."""
        validate_tenant_id(tenant_id)
        with self._read() as conn:
            self._require_tenant(conn, tenant_id)
            return store.settings_versions(conn, tenant_id)

    def settings_at(self, tenant_id: str, t: datetime) -> SettingsVersion:
        """The version in force at `t`: latest effective time <= t, the highest number on ties;
        version 0 (defaults, effective since the epoch) when none is."""
        validate_tenant_id(tenant_id)
        at = _utc(t, "t")
        with self._read() as conn:
            self._require_tenant(conn, tenant_id)
            return _version_or_default(conn, tenant_id, at)

    def data_version(self) -> int:
        """A number that changes whenever anyone commits to the registry; compare with !=.

        SQLite's data_version moves on commits by *other* connections: other processes, and
        this instance's own main connection as seen from the probe connection. The own-write
        counter is a second guard for this instance's writes.
        """
        with self._lock, _unavailable_on_operational_error():
            (probed,) = self._probe.execute("PRAGMA data_version").fetchone()
            return int(probed) + self._own_writes

    def auth_snapshot(self, now: datetime | None = None) -> AuthSnapshot:
        """What the authenticator needs, read in one transaction, secrets decrypted.

        Rebuild it when data_version() changes or `valid_until` passes (that is when a secret
        in a rotation's grace period expires).
        """
        at, box = _now(now), self._secret_box()
        version = self.data_version()  # read first: a later commit makes the next poll differ
        with self._read() as conn:
            keys, options, sealed = store.auth_rows(conn, at)
            grafana_rows = store.grafana_rows(conn)
            sns_topics = store.all_sns_topics(conn)
        grafana = {
            tenant_id: GrafanaSigning(
                open_secret(box, ciphertext, tenant_id, grafana_associated(tenant_id)),
                header,
                timestamp_header,
            )
            for tenant_id, ciphertext, header, timestamp_header in grafana_rows
        }
        secrets_by_tenant: dict[str, list[bytes]] = {tenant_id: [] for tenant_id in options}
        for tenant_id, ciphertext, _expires in sealed:
            secrets_by_tenant[tenant_id].append(open_secret(box, ciphertext, tenant_id))
        expiries = [expires for _, _, expires in sealed if expires is not None]
        return AuthSnapshot.build(
            keys,
            {tenant_id: tuple(found) for tenant_id, found in secrets_by_tenant.items()},
            options,
            data_version=version,
            taken_at=at,
            valid_until=min(expiries, default=None),
            grafana_signing=grafana,
            sns_topics=sns_topics,
        )

    def _require_tenant(self, conn: sqlite3.Connection, tenant_id: str) -> None:
        if not store.tenant_exists(conn, tenant_id):
            raise TenantNotFound(f"no tenant {tenant_id!r}")

    def _secret_box(self) -> SecretBox:
        # Loaded on first use, so commands that touch no secret never create a key file.
        with self._lock:
            if self._box is None:
                try:
                    self._box = load_secret_box(self._settings)
                except (SecretBoxError, OSError) as exc:
                    raise RegistryError(f"cannot load the master key: {exc}") from None
            return self._box

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so concurrent writers queue on the busy
        # timeout instead of failing when they upgrade a read transaction.
        with self._lock, _unavailable_on_operational_error():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._own_writes += 1

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One read transaction, so reads of several tables see one state.
        with self._lock, _unavailable_on_operational_error():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("ROLLBACK")


@contextmanager
def _unavailable_on_operational_error() -> Iterator[None]:
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise RegistryUnavailable(f"tenant registry unavailable: {exc}") from None


def _utc(value: datetime, name: str) -> datetime:
    offset = value.utcoffset() if isinstance(value, datetime) else None
    if offset is None or offset != timedelta(0):
        raise ValueError(f"{name} must be a timezone-aware UTC datetime, got {value!r}")
    return value.astimezone(UTC)


def _now(now: datetime | None) -> datetime:
    return datetime.now(UTC) if now is None else _utc(now, "now")


def _check_name(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(cleaned) <= 200 or not cleaned.isprintable():
        raise ValueError("tenant name must be 1-200 printable characters")
    return cleaned


def _require(tenant: Tenant | None, tenant_id: str) -> Tenant:
    if tenant is None:
        raise TenantNotFound(f"no tenant {tenant_id!r}")
    return tenant


def _version_or_default(conn: sqlite3.Connection, tenant_id: str, t: datetime) -> SettingsVersion:
    found = store.settings_version_at(conn, tenant_id, t)
    return found or SettingsVersion(tenant_id, 0, EPOCH, EPOCH, CorrelationSettings())




def _regions(text: str) -> tuple[str, ...]:
    return tuple(r for r in text.split(",") if r)
