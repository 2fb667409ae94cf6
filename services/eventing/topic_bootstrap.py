"""Create the declared topics that are missing (idempotently) and report drift of the rest.

    boomerang topics [--check] [--json]      (KAFKA_BOOTSTRAP_SERVERS, else the local broker)

Drift is reported, never "fixed" silently: changing partitions re-keys returns and
changing retention loses data, so a person decides.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from services.eventing.settings import bootstrap_servers
from services.eventing.topics import ALL_TOPICS, TopicSpec

TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class Drift:
    topic: str
    setting: str
    declared: str
    actual: str


@dataclass
class TopicReport:
    brokers: int
    created: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # only when not creating
    drift: list[Drift] = field(default_factory=list)
    applied: list[Drift] = field(default_factory=list)  # settings set to the declared ones

    @property
    def clean(self) -> bool:
        return not self.missing and not self.drift

    def lines(self) -> list[str]:
        out = [
            f"{len(self.created)} created, {len(self.unchanged)} already present, "
            f"{len(self.missing)} missing, {len(self.drift)} drifted setting(s) "
            f"({self.brokers} broker(s))"
        ]
        out += [f"  created  {name}" for name in self.created]
        out += [f"  missing  {name}" for name in self.missing]
        out += [
            f"  drift    {d.topic}: {d.setting} declared {d.declared}, cluster has {d.actual}"
            for d in self.drift
        ]
        out += [
            f"  applied  {d.topic}: {d.setting} {d.actual} → {d.declared}" for d in self.applied
        ]
        return out


async def _topic_configs(
    admin: AIOKafkaAdminClient, names: Sequence[str]
) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    configs: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for resource in response.resources:
            error_code, _message, _type, name, entries = resource[:5]
            if error_code == 0:
                configs[name] = {entry[0]: entry[1] for entry in entries}
    return configs


# drift that altering a topic's configuration cannot mend (a person decides: moving keys to
# other partitions breaks per-key order, replicas are a reassignment)
NOT_APPLIED = frozenset({"partitions", "replication.factor"})


def new_topic(spec: TopicSpec, brokers: int) -> NewTopic:
    """The create request of `spec` on a cluster of `brokers` nodes."""
    return NewTopic(
        spec.name,
        spec.partitions,
        spec.replication_for(brokers),
        topic_configs=spec.config(brokers),
    )


async def bootstrap_topics(
    bootstrap: str,
    topics: Sequence[TopicSpec] = ALL_TOPICS,
    create: bool = True,
    apply_settings: bool = False,
) -> TopicReport:
    """Create the missing topics (unless not `create`) and report drift; with
    `apply_settings`, a present topic's drifted settings (retention, cleanup, ...) are set to
    the declared ones, and reported as applied, not as drift."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        brokers = len((await admin.describe_cluster())["brokers"])
        report = TopicReport(brokers=brokers)
        existing = set(await admin.list_topics())
        to_create = [spec for spec in topics if spec.name not in existing]
        present = [spec for spec in topics if spec.name in existing]
        if to_create and create:
            response = await admin.create_topics([new_topic(s, brokers) for s in to_create])
            for name, error_code, *rest in response.topic_errors:
                if error_code == 0:
                    report.created.append(name)
                elif error_code == TOPIC_ALREADY_EXISTS:  # another bootstrapper won the race
                    report.unchanged.append(name)
                else:
                    raise RuntimeError(f"creating {name} failed: error {error_code} {rest}")
        elif to_create:
            report.missing.extend(spec.name for spec in to_create)

        described = {t["topic"]: t for t in await admin.describe_topics([s.name for s in present])}
        configs = await _topic_configs(admin, [s.name for s in present])
        for spec in present:
            report.unchanged.append(spec.name)
            report.drift.extend(
                _drift(spec, described.get(spec.name), configs.get(spec.name, {}), brokers)
            )
        if apply_settings:
            await _apply_settings(admin, report, {spec.name: spec for spec in present}, brokers)
        report.created.sort()
        report.unchanged.sort()
        return report
    finally:
        await admin.close()


async def _apply_settings(
    admin: AIOKafkaAdminClient, report: TopicReport, specs: dict[str, TopicSpec], brokers: int
) -> None:
    settable = [d for d in report.drift if d.setting not in NOT_APPLIED]
    names = sorted({d.topic for d in settable})
    if not names:
        return
    # AlterConfigs sets a topic's whole configuration: the declared settings, all of them
    resources = [
        ConfigResource(ConfigResourceType.TOPIC, name, configs=specs[name].config(brokers))
        for name in names
    ]
    for response in await admin.alter_configs(resources):
        for error_code, message, _type, name, *_ in response.resources:
            if error_code != 0:
                raise RuntimeError(f"setting {name}'s configuration failed: {error_code} {message}")
    report.applied = settable
    report.drift = [d for d in report.drift if d.setting in NOT_APPLIED]


def _drift(
    spec: TopicSpec, described: dict | None, config: dict[str, str], brokers: int
) -> list[Drift]:
    drift: list[Drift] = []
    partitions = (described or {}).get("partitions") or []
    if len(partitions) != spec.partitions:
        drift.append(Drift(spec.name, "partitions", str(spec.partitions), str(len(partitions))))
    if partitions:
        replicas = len(partitions[0]["replicas"])
        if replicas != spec.replication_for(brokers):
            drift.append(
                Drift(
                    spec.name,
                    "replication.factor",
                    str(spec.replication_for(brokers)),
                    str(replicas),
                )
            )
    for key, declared in spec.config(brokers).items():
        actual = config.get(key)
        if actual is not None and actual != declared:
            drift.append(Drift(spec.name, key, declared, actual))
    return drift


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boomerang topics")
    parser.add_argument(
        "--check", action="store_true", help="create nothing; exit 1 on missing or drift"
    )
    parser.add_argument(
        "--apply-settings",
        action="store_true",
        help="set drifted topic settings (retention, cleanup) to the declared ones",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.check and args.apply_settings:
        parser.error("--check changes nothing: it cannot --apply-settings")
    bootstrap = bootstrap_servers()
    report = asyncio.run(
        bootstrap_topics(bootstrap, create=not args.check, apply_settings=args.apply_settings)
    )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(f"topics on {bootstrap}: " + "\n".join(report.lines()))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
