"""`make chaos`: returns flowing through real processes while everything goes wrong.

    python -m services.tools.local_stack.chaos [--returns M] [--seed S] [--nodes 1|3]

On a broker of its own (a fresh cluster: 1 node, or 3 with NODES=3) it drives M returns and
meanwhile, from a seeded plan:
- SIGKILLs a random service every few seconds and restarts it (every service at least twice);
- stops and restarts the broker (or, with 3 nodes, kills a partition leader and brings it back);
- makes the PSP and the carrier fail transiently and permanently;
- posts malformed scans and writes poison records onto every input topic;
- SIGKILLs settlement twice and crashes PostgreSQL once (immediate stop, then started);
and at the end replays: the coordinator's, refund's and intake's consumer groups are reset to
the earliest offsets and reprocess everything. Then it checks the invariants and prints one
JSON line; the exit code is non-zero if any fails. Settlement's invariants: the ledger
balanced, no entry twice, every refund at a provider booked exactly once, every refunded
SELLER-liable return debited to its seller exactly once.

The pieces: chaos_faults (the faults), consumer_replay (the replay), chaos_checks (the
figures and invariants), loop_driver (the returns) and stack_session (broker, processes,
teardown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections import Counter

from rich.console import Console

from services.eventing.log_setup import FRAMEWORK_LOGGERS, RepeatedMessageFilter
from services.tools.local_postgres.databases import fresh_database, postgres_server
from services.tools.local_stack.chaos_checks import (
    dead_letters,
    expected_movements,
    invariants,
    lost_events,
    partner_figures,
    settlement_checks,
)
from services.tools.local_stack.chaos_faults import ChaosRun
from services.tools.local_stack.consumer_replay import (
    REPLAYED,
    rewind_group,
    wait_until_consumed,
    wait_until_group_empty,
)
from services.tools.local_stack.loop_records import money_moved, saga_views
from services.tools.local_stack.stack_session import (
    create_topics,
    local_stack,
    new_run_dir,
    private_broker,
    stop_run,
)

console = Console(stderr=True)
# Deadlines short enough that a stuck step resolves within a run.
SAGA_ENV = {
    "SAGA_MAX_TRIES": "6",
    "SAGA_BACKOFF_BASE_MS": "500",
    "SAGA_BACKOFF_CAP_MS": "5000",
    "SAGA_BOOKING_DEADLINE_MS": "20000",
    "SAGA_COLLECTION_DEADLINE_MS": "60000",
    "SAGA_INSPECTION_DEADLINE_MS": "300000",
    "SAGA_INTAKE_DEADLINE_MS": "20000",
    "SAGA_REFUND_DEADLINE_MS": "20000",
    "SAGA_SETTLEMENT_DEADLINE_MS": "60000",
    "SAGA_COMPENSATION_DEADLINE_MS": "20000",
    "SAGA_EXCHANGE_DEADLINE_MS": "20000",
    "SAGA_BUYER_DETAILS_DEADLINE_MS": "120000",
    "BOOMERANG_RETRY_ATTEMPTS": "3",
}


async def run_chaos(run: ChaosRun, kill_interval_s: float, settle_timeout_s: float) -> dict:
    """Drive the returns while the faults run, let the sagas settle, replay, and sum up."""
    stack, bootstrap = run.stack, run.bootstrap
    await run.configure_partner_faults()
    started = time.monotonic()
    driving = asyncio.create_task(run.driver.run(timeout_s=settle_timeout_s))
    chaos = [
        asyncio.create_task(run.kill_services(kill_interval_s)),
        asyncio.create_task(run.restart_broker(after_s=kill_interval_s * 3)),
        asyncio.create_task(run.scale_out_and_in(after_s=kill_interval_s * 5, kept_s=30)),
        asyncio.create_task(run.malformed_scans()),
        asyncio.create_task(run.write_poison()),
        asyncio.create_task(run.kill_settlement(after_s=kill_interval_s * 2)),
        asyncio.create_task(run.restart_postgres(after_s=kill_interval_s * 4)),
    ]
    await driving
    run.done.set()
    await asyncio.gather(*chaos, return_exceptions=True)
    drive_s = time.monotonic() - started
    return_ids = [t.return_id for t in run.driver.tracked if t.return_id]
    ours = set(return_ids)

    # settle: every saga terminal (timers resolve what chaos left hanging)
    deadline = time.monotonic() + settle_timeout_s
    while True:
        views = await saga_views(stack.url("coordinator"), return_ids, concurrency=20)
        stuck = [r for r in return_ids if not views.get(r, {}).get("terminal")]
        if not stuck or time.monotonic() > deadline:
            break
        console.print(f"  settling: {len(stuck)} returns not terminal yet")
        await asyncio.sleep(5)

    await wait_until_consumed(bootstrap)
    refunds_before, ledger_before = await partner_figures(stack)

    # replay: stop the consumers, rewind their groups, let them reprocess everything
    console.print(
        "replay: rewinding coordinator, refund and warehouse-intake to the earliest offsets"
    )
    replayed_processes = [
        name
        for service in ("coordinator", "refund", "warehouse-intake")
        for name in stack.instances_of(service)
    ]
    for name in replayed_processes:
        await asyncio.to_thread(stack.stop, name)
    replayed = 0
    for group, topics in REPLAYED.items():
        await wait_until_group_empty(bootstrap, group)
        replayed += await rewind_group(bootstrap, group, topics)
    for name in replayed_processes:
        stack.start(name)
    await asyncio.to_thread(stack.wait_healthy, replayed_processes)
    await wait_until_consumed(bootstrap, timeout_s=180)
    await asyncio.sleep(5)  # let any effect of the replay land
    refunds_after, ledger_after = await partner_figures(stack)

    views = await saga_views(stack.url("coordinator"), return_ids, concurrency=20)
    terminal = [r for r in return_ids if views.get(r, {}).get("terminal")]
    paid = money_moved(refunds_after, ours)
    expected_refunds = sum(
        1
        for v in views.values()
        if (v.get("refund") or {}).get("status") in ("SUCCEEDED", "PENDING")
    )
    dlq_total, poison_found = await dead_letters(bootstrap)
    lost = await lost_events(bootstrap, run.codec, views)
    evidence = run.stack.run_dir  # what a failed run leaves to diagnose it (the broker is wiped)
    (evidence / "sagas.json").write_text(json.dumps(views, indent=1, sort_keys=True))
    (evidence / "lost-events.json").write_text(json.dumps(lost, indent=1))
    for item in lost[:5]:
        console.print(f"  lost: {item}")
    movements_expected = expected_movements(views)
    statuses = Counter(v["status"] for v in views.values())
    settlement = await settlement_checks(stack, views, refunds_after, ours)
    summary = {
        "returns": len(run.driver.tracked),
        "terminal": len(terminal),
        "stuck": len(return_ids)
        - len(terminal)
        + sum(1 for t in run.driver.tracked if not t.return_id),
        "completed": statuses.get("COMPLETED", 0),
        "refunds_expected": expected_refunds,
        "refunds_at_psp": len(paid),
        "double_refunds": sum(1 for count in paid.values() if count > 1),
        "double_stock_moves": max(0, ledger_after["movements_applied"] - movements_expected),
        "lost_events": len(lost),
        "dlq_records": dlq_total,
        "poison_written": len(run.log.poison),
        "poison_in_dlq": len(set(run.log.poison) & poison_found),
        "kills": sum(run.log.kills.values()),
        "crash_restarts": sum(stack.restarts.values()),
        "broker_restarts": run.log.broker_restarts,
        "postgres_restarts": run.log.postgres_restarts,
        "replayed_records": replayed,
        "replay_new_refunds": sum(money_moved(refunds_after, ours).values())
        - sum(money_moved(refunds_before, ours).values()),
        "replay_new_stock_moves": ledger_after["movements_applied"]
        - ledger_before["movements_applied"],
        "statuses": dict(statuses),
        "reasons": dict(
            Counter(
                (v.get("outcome") or {}).get("reason", "")[:60]
                for v in views.values()
                if v["status"] != "COMPLETED"
            ).most_common(6)
        ),
        "instances": stack.instances,
        "scale_events": run.log.scale_events,
        "wrong_http_answers": len(run.driver.wrong_answers),
        "http_answers": dict(sorted(run.driver.http_answers.items())),
        "drive_s": round(drive_s, 1),
        "seed": run.seed,
        **settlement,
    }
    if lost:
        console.print(f"  lost events (first 5): {lost[:5]}")
    for wrong in run.driver.wrong_answers[:10]:
        console.print(f"  wrong answer: {wrong}")
    console.print(f"  kills per service: {dict(run.log.kills)}")
    console.print(f"  malformed scans: {dict(run.log.malformed_scans)}")
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the chaos run; 0 when every invariant holds."""
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_stack.chaos")
    parser.add_argument("--returns", type=int, default=int(os.environ.get("M") or 1000))
    parser.add_argument(
        "--seed", type=int, default=int(os.environ.get("SEED") or time.time_ns() % 100_000)
    )
    parser.add_argument("--nodes", type=int, default=int(os.environ.get("NODES") or 1))
    parser.add_argument(
        "--instances",
        type=int,
        default=int(os.environ.get("INSTANCES") or 1),
        help="processes per service; a kill hits any instance",
    )
    parser.add_argument("--kill-interval", type=float, default=None, help="seconds between kills")
    parser.add_argument("--settle-timeout", type=float, default=420.0)
    args = parser.parse_args(argv)
    console.print(
        f"chaos: {args.returns} returns, seed {args.seed}, {args.nodes} broker node(s), "
        f"{args.instances} instance(s) per service"
    )
    library_lines = logging.StreamHandler(sys.stderr)  # the runner's own Kafka clients
    library_lines.setFormatter(logging.Formatter("  %(name)s: %(message)s"))
    library_lines.addFilter(RepeatedMessageFilter(FRAMEWORK_LOGGERS, window_s=10.0))
    logging.basicConfig(level=logging.WARNING, handlers=[library_lines])
    started = time.monotonic()

    broker = private_broker(  # a cluster of its own, wiped at the end: counts are exact
        f"kafka-chaos-{args.nodes}",
        args.nodes,
        port_slot=2 + args.nodes,
        heap="384m" if args.nodes == 3 else None,
    )
    bootstrap = broker.bootstrap
    run_dir = new_run_dir("boomerang-chaos-")
    databases = contextlib.ExitStack()
    server_url = databases.enter_context(postgres_server())
    database_url = databases.enter_context(fresh_database(server_url, "boomerang_chaos_"))
    stack = local_stack(
        bootstrap, run_dir, extra_env=SAGA_ENV, instances=args.instances, database_url=database_url
    )
    try:
        create_topics(bootstrap)
        stack.start_all()
        run = ChaosRun(stack, broker.started, bootstrap, args.nodes, args.returns, args.seed)
        interval = args.kill_interval or max(5.0, min(8.0, args.returns / 120))
        summary = asyncio.run(run_chaos(run, interval, args.settle_timeout))
        summary["wall_s"] = round(time.monotonic() - started, 1)
        failures = invariants(summary)
        for failure in failures:
            console.print(f"[red]INVARIANT FAILED[/red] {failure}")
        console.print(f"logs: {run_dir / 'logs'}")
        print(json.dumps(summary), flush=True)
        return 1 if failures else 0
    finally:
        stop_run(stack, broker)
        databases.close()


if __name__ == "__main__":
    sys.exit(main())
