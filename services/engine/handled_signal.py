"""How far a service has *handled* its input partitions, committed every second to a group
of its own ("<group>-handled") as a signal for others: the front door's admission measures
every pipeline group's queues on it (services/returns/pipeline_backlog.py).

The group's real offsets wait for the state's changelog write (the sagas every 5 s), so a
healthy coordinator shows 3–7 s of wait there and an admission limit could not sit lower.
The handled position (the done prefix of each owned partition) shows the records not
started yet: ~0 s when healthy, the real queue when a service falls behind. It is only a
signal: nothing starts from it, and a stale one (a member put out of the group) is
corrected by the owner's next commit. It costs each instance one offset commit a second.
"""

from __future__ import annotations

import contextlib

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.eventing.log_setup import get_logger

HANDLED_GROUP_SUFFIX = "-handled"
SIGNAL_EVERY_S = 1.0
log = get_logger(__name__)


def handled_group(group_id: str) -> str:
    return group_id + HANDLED_GROUP_SUFFIX


class HandledPositions:
    """Commits positions to the signal group (a client with no subscription: the group never
    has members, so its offsets may be committed by any instance, per partition)."""

    def __init__(self, bootstrap: str, group_id: str, client_id: str) -> None:
        self.bootstrap = bootstrap
        self.group = handled_group(group_id)
        self.client_id = client_id
        self._client: AIOKafkaConsumer | None = None
        self._sent: dict[TopicPartition, int] = {}

    async def commit(self, positions: dict[TopicPartition, int]) -> None:
        changed = {tp: p for tp, p in positions.items() if self._sent.get(tp) != p}
        if not changed:
            return
        try:
            if self._client is None:
                client = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=self.group,
                    client_id=self.client_id,
                    enable_auto_commit=False,
                )
                await client.start()
                self._client = client
            assigned = self._client.assignment()
            if not set(changed) <= assigned:  # commit() takes assigned partitions only
                self._client.assign(sorted(assigned | set(changed)))
                self._client.pause(*self._client.assignment())  # never fetched
            await self._client.commit(changed)
            self._sent.update(changed)
        except KafkaError as exc:
            log.debug("handled positions not committed", error=repr(exc))
            await self.stop()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(KafkaError):
                await client.stop()
