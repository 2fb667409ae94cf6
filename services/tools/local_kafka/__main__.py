"""`python -m services.tools.local_kafka up|down|status` — what `make kafka-*` runs."""

from __future__ import annotations

import argparse
import os
import sys

from services.tools.local_kafka.broker import BrokerError, LocalKafka, LocalKafkaSettings


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_kafka")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local KRaft cluster and wait until it answers")
    up.add_argument("--nodes", type=int, default=int(os.environ.get("NODES") or 1))
    up.add_argument("--timeout", type=float, default=120.0)
    down = sub.add_parser("down", help="stop the local cluster (by pid file)")
    down.add_argument("--wipe", action="store_true", help="also delete its data")
    sub.add_parser("status", help="which nodes run, and where")
    args = parser.parse_args(argv)

    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing and args.command == "up":
        _log("KAFKA_BOOTSTRAP_SERVERS is set: using the existing cluster, starting nothing")
        print(existing)
        return 0

    kafka = LocalKafka(LocalKafkaSettings.from_env(log=_log))
    try:
        if args.command == "up":
            bootstrap = kafka.up(nodes=args.nodes, timeout=args.timeout)
            _log(f"Kafka {kafka.settings.version} (KRaft, {args.nodes} node(s)) ready")
            print(bootstrap)
        elif args.command == "down":
            stopped = kafka.down(wipe=args.wipe)
            _log(
                f"stopped {len(stopped)} broker process(es)" + (", data wiped" if args.wipe else "")
            )
        else:
            statuses = kafka.statuses()
            if not statuses:
                print("not formatted (no local cluster yet)")
            for status in statuses:
                state = (
                    "running"
                    if status.running
                    else ("stale pid file" if status.stale_pid_file else "stopped")
                )
                print(
                    f"node {status.node_id}: {state} pid={status.pid} "
                    f"port={kafka.settings.broker_port(status.node_id)}"
                )
    except BrokerError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
