"""The settlement database's schema, versioned: the numbered SQL files of `migrations/`
applied in order when the service starts, each recorded with a checksum, all under an
advisory lock (two instances starting together apply them once). An applied file that
was edited since is refused: a change is a new file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from psycopg import AsyncConnection

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
LOCK_KEY = "boomerang-settlement-migrations"


class MigrationError(RuntimeError):
    """A migration file that cannot be applied, or an applied one that changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        number, _, name = path.stem.partition("_")
        if not number.isdigit() or not name:
            raise MigrationError(f"{path.name}: migrations are named NNNN_what.sql")
        found.append(Migration(int(number), name, path.read_text()))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migrations share a number in {directory}")
    return found


async def apply_migrations(conn: AsyncConnection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply the migrations not yet applied, in one transaction; their names."""
    applied_now = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version, checksum FROM schema_migrations")
        applied = dict(await cursor.fetchall())
        for migration in migrations(directory):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version} ({migration.name}) was applied and has "
                        "changed since: write a new migration instead"
                    )
                continue
            await conn.execute(migration.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            applied_now.append(f"{migration.version:04d}_{migration.name}")
    return applied_now
