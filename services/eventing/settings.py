"""Where the Kafka cluster is: KAFKA_BOOTSTRAP_SERVERS, else this checkout's local broker."""

from __future__ import annotations

import os


def bootstrap_servers() -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        return configured
    try:  # a development checkout runs its own broker; a runtime build has none
        from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "KAFKA_BOOTSTRAP_SERVERS is not set (this build has no local broker)"
        ) from exc

    local = LocalKafka(LocalKafkaSettings.from_env())
    return local.settings.bootstrap(local.formatted_nodes() or 1)
