"""Where the Kafka cluster is: KAFKA_BOOTSTRAP_SERVERS, else this checkout's local broker."""

from __future__ import annotations

import os


def bootstrap_servers() -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured
    from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings

    local = LocalKafka(LocalKafkaSettings.from_env())
    return local.settings.bootstrap(local.formatted_nodes() or 1)
