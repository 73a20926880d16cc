"""The SQLite store behind the tenant registry: connection, migrations and row-level SQL.

`registry.Registry` owns transactions, validation and encryption; these functions run inside
its transactions and only move rows, values always as bound parameters. The service, the CLI
and the pipelines share the file, so it runs in WAL mode (readers never block the writer) with
a busy timeout (writers wait for each other instead of failing). Migrations are numbered by
`PRAGMA user_version` and run inside a write transaction, so two processes starting together
cannot both apply one.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warehouse.correlation_settings import CorrelationSettings
from warehouse.registry_aws import AwsAccountInfo
from warehouse.registry_records import SettingsVersion, Tenant, TenantOptions

BUSY_TIMEOUT_MS = 10_000

# Index i holds the statements that take user_version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            created_at TEXT NOT NULL,
            require_signature INTEGER NOT NULL DEFAULT 1,
            rate_limit_per_second REAL NOT NULL DEFAULT 10000,
            rate_limit_burst INTEGER NOT NULL DEFAULT 100000
        ) STRICT""",
        """CREATE TABLE api_keys (
            key_hash TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            key_prefix TEXT NOT NULL,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        ) STRICT""",
        "CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, key_prefix)",
        """CREATE TABLE hmac_secrets (
            id INTEGER PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            ciphertext BLOB NOT NULL,
            created_at TEXT NOT NULL,
            expires_at TEXT
        ) STRICT""",
        "CREATE INDEX hmac_secrets_by_tenant ON hmac_secrets (tenant_id)",
        """CREATE TABLE settings_versions (
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            version INTEGER NOT NULL CHECK (version >= 1),
            effective_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            settings_json TEXT NOT NULL,
            PRIMARY KEY (tenant_id, version)
        ) STRICT""",
        "CREATE INDEX settings_by_effective_time ON settings_versions (tenant_id, effective_at)",
    ),
    (
        # At most one Grafana signing secret per tenant, sealed like the HMAC secrets.
        """CREATE TABLE grafana_signing (
            tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
            ciphertext BLOB NOT NULL,
            header TEXT NOT NULL,
            timestamp_header TEXT,
            updated_at TEXT NOT NULL
        ) STRICT""",
        # The primary key makes "a topic belongs to one tenant only" a database fact.
        """CREATE TABLE sns_topics (
            arn TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            created_at TEXT NOT NULL
        ) STRICT""",
        "CREATE INDEX sns_topics_by_tenant ON sns_topics (tenant_id)",
    ),
    (
        # Client AWS accounts for patch compliance; an account belongs to one tenant.
        """CREATE TABLE aws_accounts (
            account_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants (id),
            role_arn TEXT,
            external_id_sealed BLOB,
            external_id_hint TEXT,
            regions TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) STRICT""",
        "CREATE INDEX aws_accounts_by_tenant ON aws_accounts (tenant_id)",
    ),
)


def db_time(value: datetime) -> str:
    """The stored form of a timezone-aware datetime: RFC 3339 UTC, always 27 characters.

    Fixed width (zero-padded year, always microseconds) makes SQLite's string comparison
    and ordering agree with time order.
    """
    if value.utcoffset() is None:
        raise ValueError("registry timestamps must be timezone-aware")
    utc = value.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def from_db_time(text: str) -> datetime:
    """Read a timestamp written by `db_time`."""
    return datetime.fromisoformat(text).astimezone(UTC)


class SchemaError(Exception):
    """The registry file was written by a newer version of the software."""


def connect(path: Path) -> sqlite3.Connection:
    """Open the registry in autocommit mode (transactions are explicit), WAL, busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # Hashes and ciphertexts only, but still nobody else's business; SQLite gives the
        # -wal and -shm files the same permissions as the database file.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    # Registry writes are rare and must survive a power cut: keep FULL in WAL mode too.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to the latest version; a no-op when it is already there."""
    if _user_version(conn) == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = _user_version(conn)
        if current > len(MIGRATIONS):
            raise SchemaError(
                f"registry schema version {current} is newer than this software "
                f"supports ({len(MIGRATIONS)}); upgrade Alert Whisperer"
            )
        for statements in MIGRATIONS[current:]:
            for statement in statements:
                conn.execute(statement)
        # PRAGMA takes no bound parameters; the value is our own integer.
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


# -- tenants ---------------------------------------------------------------------------------


def tenant_exists(conn: sqlite3.Connection, tenant_id: str) -> bool:
    return conn.execute("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)).fetchone() is not None


def insert_tenant(conn: sqlite3.Connection, tenant_id: str, name: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
        (tenant_id, name, db_time(now)),
    )


def update_options(
    conn: sqlite3.Connection, tenant_id: str, options: tuple[int | None, float | None, int | None]
) -> None:
    """Set (require_signature, rate per second, burst); None keeps a column as it is."""
    conn.execute(
        "UPDATE tenants SET require_signature = coalesce(?, require_signature),"
        " rate_limit_per_second = coalesce(?, rate_limit_per_second),"
        " rate_limit_burst = coalesce(?, rate_limit_burst) WHERE id = ?",
        (*options, tenant_id),
    )


def load_tenant(conn: sqlite3.Connection, tenant_id: str, now: datetime) -> Tenant | None:
    """The tenant with its active key prefixes and the expiries of its valid secrets."""
    row = conn.execute(
        "SELECT id, name, created_at, require_signature, rate_limit_per_second,"
        " rate_limit_burst FROM tenants WHERE id = ?",
        (tenant_id,),
    ).fetchone()
    if row is None:
        return None
    prefixes = conn.execute(
        "SELECT key_prefix FROM api_keys WHERE tenant_id = ? AND revoked_at IS NULL"
        " ORDER BY created_at, key_prefix",
        (tenant_id,),
    ).fetchall()
    expiries = tuple(
        None if expires is None else from_db_time(expires)
        for (expires,) in conn.execute(
            "SELECT expires_at FROM hmac_secrets WHERE tenant_id = ?"
            " AND (expires_at IS NULL OR expires_at > ?) ORDER BY created_at DESC, id DESC",
            (tenant_id, db_time(now)),
        )
    )
    grafana = conn.execute(
        "SELECT header, timestamp_header FROM grafana_signing WHERE tenant_id = ?", (tenant_id,)
    ).fetchone()
    return Tenant(
        id=row[0],
        name=row[1],
        created_at=from_db_time(row[2]),
        require_signature=bool(row[3]),
        rate_limit_per_second=float(row[4]),
        rate_limit_burst=int(row[5]),
        key_prefixes=tuple(prefix for (prefix,) in prefixes),
        secret_count=len(expiries),
        secrets_expire_at=expiries,
        grafana_signature_header=None if grafana is None else grafana[0],
        grafana_timestamp_header=None if grafana is None else grafana[1],
        sns_topics=tuple(sns_topics_of(conn, tenant_id)),
        aws_accounts=tuple(
            AwsAccountInfo(a, t, role, hint, tuple(r for r in regions.split(",") if r))
            for a, t, role, _sealed, hint, regions in aws_account_rows(conn, tenant_id)),
    )


# -- credentials -----------------------------------------------------------------------------


def insert_api_key(
    conn: sqlite3.Connection, tenant_id: str, key_hash: str, key_prefix: str, now: datetime
) -> None:
    conn.execute(
        "INSERT INTO api_keys (key_hash, tenant_id, key_prefix, created_at) VALUES (?, ?, ?, ?)",
        (key_hash, tenant_id, key_prefix, db_time(now)),
    )


def revoke_api_keys(
    conn: sqlite3.Connection, tenant_id: str, key_prefix: str | None, now: datetime
) -> int:
    """Revoke active keys with this prefix (None: all of them); returns how many."""
    cursor = conn.execute(
        "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND revoked_at IS NULL"
        " AND (? IS NULL OR key_prefix = ?)",
        (db_time(now), tenant_id, key_prefix, key_prefix),
    )
    return cursor.rowcount


def insert_secret(conn: sqlite3.Connection, tenant_id: str, sealed: bytes, now: datetime) -> None:
    conn.execute(
        "INSERT INTO hmac_secrets (tenant_id, ciphertext, created_at) VALUES (?, ?, ?)",
        (tenant_id, sealed, db_time(now)),
    )


def expire_secrets(
    conn: sqlite3.Connection, tenant_id: str, now: datetime, expires_at: datetime
) -> None:
    """Make every valid secret expire by `expires_at` and drop those already expired."""
    # Expired ciphertexts can never be valid again, so they need not be kept.
    conn.execute(
        "DELETE FROM hmac_secrets WHERE tenant_id = ? AND expires_at <= ?",
        (tenant_id, db_time(now)),
    )
    # A secret already due to expire sooner keeps its earlier expiry.
    conn.execute(
        "UPDATE hmac_secrets SET expires_at = ? WHERE tenant_id = ?"
        " AND (expires_at IS NULL OR expires_at > ?)",
        (db_time(expires_at), tenant_id, db_time(expires_at)),
    )


def auth_rows(
    conn: sqlite3.Connection, now: datetime
) -> tuple[dict[str, str], dict[str, TenantOptions], list[tuple[str, bytes, datetime | None]]]:
    """Active key hashes, every tenant's options, valid sealed secrets (newest first)."""
    keys = dict(conn.execute("SELECT key_hash, tenant_id FROM api_keys WHERE revoked_at IS NULL"))
    options = {
        tenant_id: TenantOptions(bool(signature), float(rate), int(burst))
        for tenant_id, signature, rate, burst in conn.execute(
            "SELECT id, require_signature, rate_limit_per_second, rate_limit_burst FROM tenants"
        )
    }
    sealed = [
        (tenant_id, ciphertext, None if expires is None else from_db_time(expires))
        for tenant_id, ciphertext, expires in conn.execute(
            "SELECT tenant_id, ciphertext, expires_at FROM hmac_secrets"
            " WHERE expires_at IS NULL OR expires_at > ? ORDER BY created_at DESC, id DESC",
            (db_time(now),),
        )
    ]
    return keys, options, sealed


# -- source-specific authentication: Grafana's HMAC, SNS topics ------------------------------


def upsert_grafana_signing(
    conn: sqlite3.Connection,
    tenant_id: str,
    sealed: bytes,
    headers: tuple[str, str | None],
    now: datetime,
) -> None:
    conn.execute(
        "INSERT INTO grafana_signing (tenant_id, ciphertext, header, timestamp_header, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO UPDATE SET"
        " ciphertext = excluded.ciphertext, header = excluded.header,"
        " timestamp_header = excluded.timestamp_header, updated_at = excluded.updated_at",
        (tenant_id, sealed, *headers, db_time(now)),
    )


def delete_grafana_signing(conn: sqlite3.Connection, tenant_id: str) -> bool:
    cursor = conn.execute("DELETE FROM grafana_signing WHERE tenant_id = ?", (tenant_id,))
    return cursor.rowcount > 0


def grafana_rows(conn: sqlite3.Connection) -> list[tuple[str, bytes, str, str | None]]:
    """(tenant, sealed secret, header, timestamp header) for every tenant that has one."""
    return [
        (tenant_id, ciphertext, header, timestamp_header)
        for tenant_id, ciphertext, header, timestamp_header in conn.execute(
            "SELECT tenant_id, ciphertext, header, timestamp_header FROM grafana_signing"
        )
    ]


def sns_topics_of(conn: sqlite3.Connection, tenant_id: str) -> list[str]:
    return [
        arn
        for (arn,) in conn.execute(
            "SELECT arn FROM sns_topics WHERE tenant_id = ? ORDER BY arn", (tenant_id,)
        )
    ]


def sns_topic_owners(conn: sqlite3.Connection, arns: tuple[str, ...]) -> dict[str, str]:
    """{arn: tenant} for those of `arns` that are stored."""
    owners: dict[str, str] = {}
    for arn in arns:
        row = conn.execute("SELECT tenant_id FROM sns_topics WHERE arn = ?", (arn,)).fetchone()
        if row is not None:
            owners[arn] = row[0]
    return owners


def sns_topics_under(conn: sqlite3.Connection, pattern: str) -> dict[str, str]:
    """{arn: tenant} of the stored exact topics an account-wide `…:*` pattern covers."""
    prefix = pattern[:-1]  # keeps the trailing ':'
    # substr() rather than LIKE: ARNs may hold '_' and '%' would need escaping.
    return dict(
        conn.execute(
            "SELECT arn, tenant_id FROM sns_topics WHERE substr(arn, 1, ?) = ? AND arn != ?",
            (len(prefix), prefix, pattern),
        )
    )


def insert_sns_topic(conn: sqlite3.Connection, tenant_id: str, arn: str, now: datetime) -> None:
    conn.execute(
        "INSERT INTO sns_topics (arn, tenant_id, created_at) VALUES (?, ?, ?)",
        (arn, tenant_id, db_time(now)),
    )


def delete_sns_topic(conn: sqlite3.Connection, tenant_id: str, arn: str) -> bool:
    cursor = conn.execute(
        "DELETE FROM sns_topics WHERE tenant_id = ? AND arn = ?", (tenant_id, arn)
    )
    return cursor.rowcount > 0


def all_sns_topics(conn: sqlite3.Connection) -> dict[str, str]:
    return dict(conn.execute("SELECT arn, tenant_id FROM sns_topics"))


# -- correlation settings versions -----------------------------------------------------------


def settings_version_at(
    conn: sqlite3.Connection, tenant_id: str, t: datetime
) -> SettingsVersion | None:
    """The stored version in force at `t` (latest effective time <= t, then highest number)."""
    row = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM settings_versions"
        " WHERE tenant_id = ? AND effective_at <= ?"
        " ORDER BY effective_at DESC, version DESC LIMIT 1",
        (tenant_id, db_time(t)),
    ).fetchone()
    return None if row is None else _version_from_row(row)


def settings_versions(conn: sqlite3.Connection, tenant_id: str) -> list[SettingsVersion]:
    rows = conn.execute(
        f"SELECT {_VERSION_COLUMNS} FROM settings_versions WHERE tenant_id = ? ORDER BY version",
        (tenant_id,),
    ).fetchall()
    return [_version_from_row(row) for row in rows]


def insert_settings_version(
    conn: sqlite3.Connection,
    tenant_id: str,
    settings: CorrelationSettings,
    effective_at: datetime,
    now: datetime,
) -> SettingsVersion:
    """Store `settings` under the tenant's next version number."""
    (version,) = conn.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM settings_versions WHERE tenant_id = ?",
        (tenant_id,),
    ).fetchone()
    conn.execute(
        "INSERT INTO settings_versions"
        " (tenant_id, version, effective_at, created_at, settings_json) VALUES (?, ?, ?, ?, ?)",
        (tenant_id, version, db_time(effective_at), db_time(now), settings.to_json()),
    )
    return SettingsVersion(tenant_id, version, effective_at, now, settings)


_VERSION_COLUMNS = "tenant_id, version, effective_at, created_at, settings_json"


def _version_from_row(row: tuple[Any, ...]) -> SettingsVersion:
    tenant_id, version, effective_at, created_at, settings_json = row
    return SettingsVersion(
        tenant_id,
        version,
        from_db_time(effective_at),
        from_db_time(created_at),
        CorrelationSettings.from_json(settings_json),
    )


# -- client AWS accounts ---------------------------------------------------------------------

_AWS_COLUMNS = "account_id, tenant_id, role_arn, external_id_sealed, external_id_hint, regions"


def aws_account_owner(conn: sqlite3.Connection, account_id: str) -> str | None:
    row = conn.execute("SELECT tenant_id FROM aws_accounts WHERE account_id = ?",
                       (account_id,)).fetchone()
    return None if row is None else str(row[0])


def upsert_aws_account(conn: sqlite3.Connection, account_id: str, tenant_id: str,
                       role_arn: str | None, sealed: bytes | None, hint: str | None,
                       regions: tuple[str, ...], now: datetime) -> None:
    conn.execute(
        "INSERT INTO aws_accounts (account_id, tenant_id, role_arn, external_id_sealed,"
        " external_id_hint, regions, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (account_id) DO UPDATE SET role_arn = excluded.role_arn,"
        " external_id_sealed = excluded.external_id_sealed,"
        " external_id_hint = excluded.external_id_hint, regions = excluded.regions,"
        " updated_at = excluded.updated_at",
        (account_id, tenant_id, role_arn, sealed, hint, ",".join(regions), db_time(now)),
    )


def delete_aws_account(conn: sqlite3.Connection, tenant_id: str, account_id: str) -> bool:
    cursor = conn.execute("DELETE FROM aws_accounts WHERE tenant_id = ? AND account_id = ?",
                          (tenant_id, account_id))
    return cursor.rowcount > 0


def aws_account_rows(conn: sqlite3.Connection, tenant_id: str | None = None
                     ) -> list[tuple[str, str, str | None, bytes | None, str | None, str]]:
    where, params = ("WHERE tenant_id = ?", (tenant_id,)) if tenant_id else ("", ())
    rows = conn.execute(
        f"SELECT {_AWS_COLUMNS} FROM aws_accounts {where} ORDER BY tenant_id, account_id",
        params).fetchall()
    return [tuple(r) for r in rows]
