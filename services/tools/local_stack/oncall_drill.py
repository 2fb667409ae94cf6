"""`make demo DRILL=consumer-bug` and `KEEP=1`: the system left running for a person, with
the runbook's first incident staged."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from rich.console import Console

from services.tools.local_stack.loop_driver import LoopDriver
from services.tools.local_stack.stack import OPERATOR_TOKENS, OPS, LocalStack

console = Console(stderr=True)


def consumer_bug_drill(stack: LocalStack, bootstrap: str, returns: int, seed: int) -> int:
    """The runbook's first incident, staged: a refund-service build with a wrong PSP base
    URL is deployed (the PSPs answer 404, so every refund command is dead-lettered), the
    returns reach the refund step, the fixed build is deployed; the system keeps running
    for the on-call engineer to reprocess what failed."""
    refund = stack.processes["refund"]
    good = refund.env["PSP_PROVIDERS"]
    broken = {name: f"{url}/v0" for name, url in json.loads(good).items()}
    refund.env["PSP_PROVIDERS"] = json.dumps(broken)
    console.print("drill: deploying a faulty refund build (its PSP base URL ends in /v0) ...")
    stack.restart("refund", hard=False)
    console.print(f"driving {returns} returns (seed {seed}) into the faulty build ...")
    driver = LoopDriver(stack, bootstrap, returns, seed)
    asyncio.run(driver.run(timeout_s=20 + returns * 0.5))
    refund.env["PSP_PROVIDERS"] = good
    console.print("drill: deploying the fixed refund build ...")
    stack.restart("refund", hard=False)
    waiting = sum(1 for t in driver.tracked if not t.terminal)
    console.print(
        f"drill: {waiting} of {returns} returns wait for their refund; the refund commands the "
        "faulty build could not handle are in boomerang.refund.commands.dlq. Runbook: "
        "docs/runbook.md, incident 1."
    )
    keep_running(stack, bootstrap)
    return 0


def keep_running(stack: LocalStack, bootstrap: str) -> None:
    """Leave the system up for a person (e.g. an on-call drill) until Ctrl-C."""
    console.print("the system keeps running (Ctrl-C stops it). In another terminal:")
    console.print(f"  export KAFKA_BOOTSTRAP_SERVERS={bootstrap}")
    for name in ("returns", "coordinator", "inspection", "warehouse-intake", "refund", "psp"):
        console.print(f"  {name:<17} {stack.url(name)}")
    token = next(iter(OPERATOR_TOKENS.values()))
    console.print(f"  dashboard         {stack.url(OPS)}/dashboard (operator token {token})")
    (Path(stack.run_dir) / "services.json").write_text(
        json.dumps({"bootstrap": bootstrap, **{n: stack.url(n) for n in stack.processes}}, indent=1)
    )
    console.print(f"  (addresses also in {Path(stack.run_dir) / 'services.json'})")
    while True:
        time.sleep(3600)
