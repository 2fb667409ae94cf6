"""`python -m services.tools.local_postgres up|down|status|url` — what `make pg-*` runs."""

from __future__ import annotations

import argparse
import os
import sys

from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings, PostgresError


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_postgres")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the local cluster (initialised the first time)")
    up.add_argument("--timeout", type=float, default=60.0)
    down = sub.add_parser("down", help="stop the local cluster")
    down.add_argument("--wipe", action="store_true", help="also delete its data")
    sub.add_parser("status", help="is it running, and where")
    sub.add_parser("url", help="print its DATABASE_URL")
    args = parser.parse_args(argv)

    existing = os.environ.get("DATABASE_URL")
    if existing and args.command in ("up", "url"):
        _log("DATABASE_URL is set: using that server, starting nothing")
        print(existing)
        return 0

    cluster = LocalPostgres(LocalPostgresSettings.from_env(log=_log))
    try:
        if args.command == "up":
            print(cluster.up(timeout=args.timeout))
        elif args.command == "down":
            stopped = cluster.down(wipe=args.wipe)
            _log(
                ("stopped the server" if stopped else "no server was running")
                + (", data wiped" if args.wipe else "")
            )
        elif args.command == "url":
            print(cluster.url())
        else:
            status = cluster.status()
            state = (
                "running"
                if status.running
                else "stale pid file"
                if status.stale_pid_file
                else "stopped"
                if status.initialized
                else "not initialised"
            )
            print(f"postgres: {state} pid={status.pid} port={cluster.settings.port}")
    except (PostgresError, FileNotFoundError) as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
