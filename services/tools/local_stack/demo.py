"""`make demo`: real returns through the whole loop, on a real broker, in separate processes.

    python -m services.tools.local_stack.demo [--returns N] [--seed S] [--instances K]

Starts the broker (unless KAFKA_BOOTSTRAP_SERVERS points at one) and PostgreSQL (unless
DATABASE_URL points at a server; the run gets a database of its own, dropped at the end),
creates the topics, starts the partner doubles, the nine services and settlement, then
plays the world: the marketplace places each order, buyers POST return requests, the
carrier double calls back, a simulated scanner POSTs an inspection once the parcel has been
collected. Then it waits for settlement to book the run and reconciles the day with the
providers' reports, one anomaly of each kind put in (demo_settlement). It prints progress,
a summary table and, as its last line, one JSON object. Every process it started is
stopped at the end, also on Ctrl-C or failure.

The pieces: drawn_returns (the returns and their foreseen refunds), loop_driver (buyers,
scanner, events), loop_records (what the partners and the coordinator recorded),
demo_report (the figures), oncall_drill (`--drill`, `--keep-running`) and stack_session
(broker, processes, teardown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from rich.console import Console

from services.eventing.topics import RISK_COUNTS
from services.tools.local_postgres.databases import fresh_database, postgres_server
from services.tools.local_stack.consumer_replay import wait_for_group
from services.tools.local_stack.demo_cases import work_cases
from services.tools.local_stack.demo_metrics import DEMO_PICKUP_FAILURE_RATE, kpi_report
from services.tools.local_stack.demo_report import (
    demo_passed,
    dispute_figures,
    print_table,
    summarize,
)
from services.tools.local_stack.demo_risk import (
    PER_KIND,
    abusers_returns,
    decisions_of,
    draw_risk_world,
    history_increments,
    review_queue,
    risk_figures,
    risk_passed,
    seed_history,
    sellers_flagged,
    write_history,
)
from services.tools.local_stack.demo_settlement import charges_foreseen, settle_and_reconcile
from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.loop_records import psp_ledger, saga_views
from services.tools.local_stack.notification_figures import notification_figures
from services.tools.local_stack.oncall_drill import consumer_bug_drill, keep_running
from services.tools.local_stack.risk_history import ABUSE_KINDS
from services.tools.local_stack.stack import PARTNERS, PAYMENT_PROVIDERS, SERVICES
from services.tools.local_stack.stack_session import (
    checkout_broker,
    create_topics,
    local_stack,
    log_indented,
    new_run_dir,
    stop_run,
)

__all__ = ["LoopDriver", "main", "psp_ledger", "summarize"]  # the end-to-end tests use them

console = Console(stderr=True)
# the buyers of returns graded damaged who dispute the deduction (a second station
# inspects the parcel again)
DISPUTE_SHARE = 0.5


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every figure is as foreseen."""
    parser = argparse.ArgumentParser(prog="python -m services.tools.local_stack.demo")
    parser.add_argument("--returns", type=int, default=int(os.environ.get("N") or 50))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or 42))
    parser.add_argument(
        "--instances",
        type=int,
        default=int(os.environ.get("INSTANCES") or 1),
        help="processes per service (one consumer group each; requests spread over them)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds to wait at the end")
    parser.add_argument("--run-dir", type=Path, default=None)
    parser.add_argument(
        "--drill",
        choices=["consumer-bug"],
        default=os.environ.get("DRILL") or None,
        help="stage an incident for the runbook (implies --keep-running): consumer-bug = a "
        "faulty refund build dead-letters the refunds until the fixed build is deployed",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        default=bool(os.environ.get("KEEP")),
        help="leave the system running after the summary (Ctrl-C stops it): for on-call drills",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    broker = checkout_broker()
    bootstrap = broker.bootstrap
    run_dir = args.run_dir or new_run_dir("boomerang-demo-")
    databases = contextlib.ExitStack()
    console.print("starting PostgreSQL (a ledger database of the run's own) ...")
    server_url = databases.enter_context(postgres_server(log_indented))
    database_url = databases.enter_context(fresh_database(server_url, "boomerang_demo_"))
    stack = local_stack(bootstrap, run_dir, instances=args.instances, database_url=database_url)
    try:
        create_topics(bootstrap)
        logs = run_dir / "logs"
        services = f"{len(SERVICES)} services"
        if args.instances > 1:
            services += f" × {args.instances}"
        console.print(
            f"starting {len(PARTNERS)} partner doubles, {services} and settlement "
            f"(logs in {logs}) ..."
        )
        stack.start_all()
        # some pickups fail once before the carrier collects (first-attempt success < 1)
        httpx.post(
            f"{stack.url('carrier')}/admin/faults",
            json={
                "attempt_failure_rate": DEMO_PICKUP_FAILURE_RATE,
                "max_failed_attempts": 1,
                # after a missed attempt the carrier proposes the next day's window half the
                # time; the first attempt waits a moment, so a buyer can still move it
                "reschedule_proposal_rate": 0.5,
                "first_attempt_delay_ms": 1500,
            },
            timeout=10.0,
        ).raise_for_status()
        if args.drill == "consumer-bug":
            return consumer_bug_drill(stack, bootstrap, args.returns, args.seed)
        world = draw_risk_world(args.seed, int(time.time() * 1000))
        history = history_increments(world, int(time.time() * 1000), args.seed)
        console.print(
            f"seeding a year of history ({len(world.events)} orders, returns and inspections, "
            f"{len(world.labels)} returns of them; 20 sellers' last 80 days) ..."
        )
        asyncio.run(seed_history(bootstrap, history))
        # the risk service folds the history before the seeded abusers' returns are checked
        # (a check reading half-folded windows misses a ring or a claims history)
        asyncio.run(wait_for_group(bootstrap, "boomerang-risk", (RISK_COUNTS,), 90.0))
        write_history(world, run_dir / "risk-history.jsonl")  # for `boomerang risk backtest`
        per_kind = min(PER_KIND, args.returns // 40)
        abusive = per_kind * len(ABUSE_KINDS)
        console.print(
            f"driving {args.returns} returns (seed {args.seed}), {abusive} of them from seeded "
            "abusers; a reviewer works the queue ..."
        )
        driver = LoopDriver(
            stack, bootstrap, args.returns - abusive, args.seed, dispute_share=DISPUTE_SHARE
        )
        driver.tracked += abusers_returns(
            world, random.Random(args.seed), driver.run_id, len(driver.tracked), per_kind
        )
        timeout = args.timeout or 60 + args.returns * 0.5
        verdicts: Counter = Counter()
        asyncio.run(run_with_reviewer(driver, stack.url("risk"), timeout, verdicts))
        ledger = asyncio.run(psp_ledger(*(stack.url(p) for p in PAYMENT_PROVIDERS)))
        ids = [t.return_id for t in driver.tracked if t.return_id]
        views = asyncio.run(saga_views(stack.url("coordinator"), ids))
        summary = summarize(driver, ledger, time.monotonic() - started, views)
        summary["instances"] = args.instances
        summary["wrong_http_answers"] = len(driver.wrong_answers)
        summary["orders_placed"] = driver.orders_placed
        summary["requests_shed_503"] = driver.overloaded  # the front door's admission control
        summary |= dispute_figures(driver, ledger)
        summary["reschedules_asked"] = driver.reschedules_asked
        summary["reschedules"] = sum(
            (view.get("pickup") or {}).get("reschedules", 0) for view in views.values()
        )
        markets = [t.body["market"] for t in driver.tracked]
        summary |= settle_and_reconcile(stack, markets, timeout_s=120)
        summary |= charges_foreseen(driver, views)
        mine = {t.return_id for t in driver.tracked if t.return_id}
        summary |= risk_figures(
            driver.tracked,
            asyncio.run(decisions_of(bootstrap, mine)),
            verdicts,
            asyncio.run(sellers_flagged(bootstrap)),
        )
        ended = [t.return_id for t in driver.tracked if t.return_id and t.terminal]
        summary |= notification_figures(stack.url("notify"), ended)
        summary |= work_cases(stack.url("cases"), stack.url("marketplace"), ended)
        # the figures again as the services' /metrics tell them: they must agree
        summary |= kpi_report(stack, driver, summary)
        for wrong in driver.wrong_answers[:10]:
            console.print(f"  wrong answer: {wrong}")
        print_table(summary, driver)
        print(json.dumps(summary), flush=True)
        if args.keep_running:
            keep_running(stack, bootstrap)
        return 0 if demo_passed(summary) and risk_passed(summary) else 1
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything")
        return 130
    finally:
        if stop_run(stack, broker):
            console.print("stopped the broker this demo started")
        databases.close()


async def run_with_reviewer(
    driver: LoopDriver, risk_url: str, timeout: float, verdicts: Counter
) -> None:
    """The run, with a reviewer working the queue until it ends (held returns wait for it)."""
    stop = asyncio.Event()

    def abuse_of(return_id: str) -> str | None:
        tracked = driver.by_return_id.get(return_id)
        return tracked.abuse if tracked else None

    reviewer = asyncio.create_task(review_queue(risk_url, abuse_of, stop, verdicts))
    try:
        await driver.run(timeout)
    finally:
        stop.set()
        await reviewer


if __name__ == "__main__":
    sys.exit(main())
