"""Where the Kafka cluster is: KAFKA_BOOTSTRAP_SERVERS (the `boomerang` command sets it to
this checkout's local broker when it is unset and the local broker tool is there)."""

from __future__ import annotations

import os


def bootstrap_servers() -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not configured:
        raise RuntimeError(
            "KAFKA_BOOTSTRAP_SERVERS is not set (run through `boomerang`, which uses this "
            "checkout's local broker, or set it to the cluster's bootstrap address)"
        )
    return configured
