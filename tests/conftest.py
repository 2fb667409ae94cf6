"""Session-wide fixtures. Tests under tests/integration are marked `integration` automatically."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.eventing.avro_codec import AvroCodec
from services.eventing.schema_catalogue import SchemaCatalogue
from tests.support.kafka_cluster import KafkaCluster, provide_cluster

TESTS_DIR = Path(__file__).parent
SESSION_STARTED_MS = int(time.time() * 1000)  # records older than this came from other runs
_cluster: KafkaCluster | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(TESTS_DIR).parts
        if parts[0] in ("integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0] if parts[0] == "e2e" else "integration"))


@pytest.fixture(scope="session")
def kafka_cluster() -> Iterator[KafkaCluster]:
    global _cluster
    _cluster = provide_cluster()
    os.environ["KAFKA_BOOTSTRAP_SERVERS_UNDER_TEST"] = _cluster.bootstrap
    try:
        yield _cluster
    finally:
        _cluster.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(kafka_cluster: KafkaCluster) -> str:
    return kafka_cluster.bootstrap


@pytest.fixture(scope="session")
def catalogue_topics(kafka_bootstrap: str) -> str:
    """The declared topics exist on the cluster under test."""
    from services.eventing.topic_bootstrap import bootstrap_topics

    asyncio.run(bootstrap_topics(kafka_bootstrap))
    return kafka_bootstrap


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """A real PostgreSQL server (DATABASE_URL, or this checkout's cluster for the session)."""
    from tests.support.postgres_database import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_server_url: str) -> Iterator[str]:
    """A new database of its own on that server, dropped after the test."""
    from tests.support.postgres_database import fresh_database

    with fresh_database(postgres_server_url) as conninfo:
        yield conninfo


@pytest.fixture(scope="session")
def catalogue() -> SchemaCatalogue:
    return SchemaCatalogue.load()


@pytest.fixture(scope="session")
def codec(catalogue: SchemaCatalogue) -> AvroCodec:
    return AvroCodec(catalogue)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _cluster is not None:
        terminalreporter.write_sep("-", "Kafka under test")
        terminalreporter.write_line(_cluster.describe())
