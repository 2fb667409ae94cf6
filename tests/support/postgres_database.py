"""A real PostgreSQL for the tests (services/tools/local_postgres/databases.py): the server
at DATABASE_URL or this checkout's local cluster, and a database of its own per test."""

from services.tools.local_postgres.databases import fresh_database, postgres_server

__all__ = ["fresh_database", "postgres_server"]
