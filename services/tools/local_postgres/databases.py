"""A PostgreSQL server for a run and databases of a run's own on it: the server at
DATABASE_URL, or this checkout's local cluster (started for the run and stopped after when
it was not running before); a fresh database per run (or test), dropped after it. Used by
`make demo`, the chaos run and the tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import make_conninfo

from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings


@contextmanager
def postgres_server(log: Callable[[str], None] = lambda message: None) -> Iterator[str]:
    """The URL of a server whose user may create databases."""
    existing = os.environ.get("DATABASE_URL")
    if existing:
        yield existing
        return
    cluster = LocalPostgres(LocalPostgresSettings.from_env(log=log))
    was_running = cluster.status().running
    url = cluster.up()
    try:
        yield url
    finally:
        if not was_running:
            cluster.down()


@contextmanager
def fresh_database(server_url: str, prefix: str = "boomerang_test_") -> Iterator[str]:
    """A new, empty database on that server (its conninfo), dropped afterwards."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
