"""Start, stop, kill and restart Boomerang's processes on this machine.

Every process gets a free port, its own log file under the run directory, and the
environment that wires it to the broker and to the partner doubles. Processes run in their
own session so a Ctrl-C on the caller never leaves half of them behind: `stop_all` (also
called on exit) terminates each one, then kills what did not stop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.tools.local_stack.orphan_reaper import OWNER_VARIABLE, reap_children_if_i_die

SERVICES = (
    "returns",
    "coordinator",
    "pickup",
    "inspection",
    "warehouse-intake",
    "refund",
    "risk",
    "notifications",
    "cases",
)
INSTANCE_MARK = "#"  # instance K > 1 of a service is the process "<service>#K"
PAYMENT_PROVIDERS = ("psp", "psp-b")
PARTNERS = ("carrier", *PAYMENT_PROVIDERS, "marketplace", "notify")
LEDGER = "settlement"  # one process, with a database (`database_url`)
OPS = "ops"  # one process: the operators' dashboard, reading every other one
OPERATOR_TOKENS = {"operator-1": "local-stack-operator-token-1"}
STATION_TOKENS = {"ST-1": "e2e-station-token-0001", "ST-2": "e2e-station-token-0002"}
CARRIER_SECRET = "local-stack-carrier-secret"
PSP_WEBHOOK_SECRET = "local-stack-psp-webhook-secret"
SELLER_TOKEN_SECRET = "local-stack-seller-token-secret"  # the marketplace signs, settlement checks
REVIEWER_TOKENS = {
    "reviewer-1": "local-stack-reviewer-token-1",
    "reviewer-2": "local-stack-reviewer-token-2",
    # the dashboard reads the review queue with it (and gives no verdict)
    "ops-dashboard": "local-stack-dashboard-reader-token",
}
# the next rule set version runs in shadow beside the live one (decided, never acted on)
SHADOW_RULES = Path(__file__).resolve().parents[3] / "deploy" / "risk" / "shadow.yaml"
FINANCE_TOKEN = "local-stack-finance-token"  # finance reads every statement and balance
# cards have a second provider (failover when the first is down); other methods one
REFUND_PROVIDER_ROUTES = '{"CARD": ["psp", "psp-b"], "*": ["psp"]}'


_PORT_DRAWS = random.SystemRandom()  # its own draws: never tied to a seeded run


def free_port(low: int = 10000, high: int = 19999, taken: Collection[int] = ()) -> int:
    """A free port below the ephemeral range (32768+), so a restarted process never finds
    its port taken by an outgoing connection that happened to get it; none of `taken` (the
    ports already given to processes that are not listening yet)."""
    for _ in range(200):
        port = _PORT_DRAWS.randint(low, high)
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def pinned_to(cpus: frozenset[int] | None) -> Callable[[], None] | None:
    """For Popen's preexec_fn: the child runs on `cpus` only (None: no pinning)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def instance_name(service: str, instance: int) -> str:
    return service if instance == 1 else f"{service}{INSTANCE_MARK}{instance}"


def service_of(process_name: str) -> str:
    return process_name.partition(INSTANCE_MARK)[0]


def instance_of(process_name: str) -> str:
    return process_name.partition(INSTANCE_MARK)[2] or "1"


@dataclass
class ManagedProcess:
    name: str
    port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen | None = None
    starts: int = 0
    kills: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalStack:
    bootstrap: str
    run_dir: Path
    carrier_callback_delay_ms: int = 300
    extra_env: dict[str, str] = field(default_factory=dict)
    log: Callable[[str], None] = print
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    supervise: bool = True  # restart processes that exit, like `restart: unless-stopped`
    instances: int = 1  # processes per service, in one consumer group each
    # the cores the partner doubles run on (None: wherever the scheduler puts them); a
    # benchmark keeps the outside world off the cores of the system it measures
    partner_cpus: frozenset[int] | None = None
    # settlement runs when there is a database for its ledger; it reads the topics from
    # `ledger_start_ms` (the run's start: a fresh ledger books only this run's records)
    database_url: str | None = None
    ledger_start_ms: int | None = None
    desired: set[str] = field(default_factory=set)
    restarts: dict[str, int] = field(default_factory=dict)
    _supervisor: threading.Thread | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _closing: bool = False

    def __post_init__(self) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.run_dir / "state").mkdir(parents=True, exist_ok=True)
        ports: dict[str, int] = {}
        instances = [instance_name(s, k) for s in SERVICES for k in range(1, self.instances + 1)]
        for name in (*PARTNERS, *instances, *self.ledger_processes, OPS):
            ports[name] = free_port(taken=ports.values())
        owner_mark = reap_children_if_i_die()
        common = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("COV_", "PYTEST_"))},
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "BOOMERANG_LOG_FORMAT": "json",
            "BOOMERANG_STATE_DIR": str(self.run_dir / "state"),
            "PYTHONUNBUFFERED": "1",
            "CARRIER_URL": f"http://127.0.0.1:{ports['carrier']}",
            "PSP_URL": f"http://127.0.0.1:{ports['psp']}",
            "CARRIER_CALLBACK_URL": f"http://127.0.0.1:{ports['pickup']}/carrier/callbacks",
            "CARRIER_SIGNING_SECRET": CARRIER_SECRET,
            "CARRIER_CALLBACK_DELAY_MS": str(self.carrier_callback_delay_ms),
            "PSP_LEDGER_FILE": str(self.run_dir / "psp-ledger.jsonl"),
            "PSP_PROVIDERS": json.dumps(
                {name: f"http://127.0.0.1:{ports[name]}" for name in PAYMENT_PROVIDERS}
            ),
            "REFUND_PROVIDER_ROUTES": REFUND_PROVIDER_ROUTES,
            "PSP_WEBHOOK_URL": f"http://127.0.0.1:{ports['refund']}/webhooks/psp",
            "PSP_WEBHOOK_SECRET": PSP_WEBHOOK_SECRET,
            "MARKETPLACE_URL": f"http://127.0.0.1:{ports['marketplace']}",
            "MARKETPLACE_LEDGER_FILE": str(self.run_dir / "marketplace-ledger.jsonl"),
            # buyers' tokens outlive a restart of the marketplace (chaos restarts it)
            "MARKETPLACE_SIGNING_KEY_FILE": str(self.run_dir / "marketplace-signing-key.pem"),
            "NOTIFY_URL": f"http://127.0.0.1:{ports['notify']}",
            "NOTIFY_LEDGER_FILE": str(self.run_dir / "notify-ledger.jsonl"),
            "BUYER_REQUESTS_PER_MINUTE": "120",
            "BUYER_REQUESTS_BURST": "20",
            "INSPECTION_STATION_TOKENS": ",".join(f"{s}:{t}" for s, t in STATION_TOKENS.items()),
            "SELLER_TOKEN_SECRET": SELLER_TOKEN_SECRET,
            "SETTLEMENT_FINANCE_TOKENS": FINANCE_TOKEN,
            "RISK_REVIEWER_TOKENS": ",".join(f"{r}:{t}" for r, t in REVIEWER_TOKENS.items()),
            "RISK_SHADOW_RULES_FILE": str(SHADOW_RULES),
            "RISK_GOVERNANCE_INTERVAL_S": "5",  # each seller is still judged once a day
            **self.extra_env,
            OWNER_VARIABLE: owner_mark,
        }
        # the second PSP is the same program: its own name, port and ledger
        own: dict[str, dict[str, str]] = {
            LEDGER: {
                "DATABASE_URL": self.database_url or "",
                "BOOMERANG_SETTLEMENT_START_AT_MS": str(self.ledger_start_ms or ""),
            },
            OPS: {
                "OPS_COORDINATOR_URL": f"http://127.0.0.1:{ports['coordinator']}",
                "OPS_RISK_URL": f"http://127.0.0.1:{ports['risk']}",
                "OPS_RISK_TOKEN": REVIEWER_TOKENS["ops-dashboard"],
                "OPS_OPERATOR_TOKENS": ",".join(f"{o}:{t}" for o, t in OPERATOR_TOKENS.items()),
            },
            "psp": {"PSP_NAME": "psp"},
            "psp-b": {
                "PSP_NAME": "psp-b",
                "PSP_PORT": str(ports["psp-b"]),
                "PSP_LEDGER_FILE": str(self.run_dir / "psp-b-ledger.jsonl"),
            },
        }
        for name, port in ports.items():
            service = service_of(name)
            env = {
                **common,
                f"{service.upper().replace('-', '_')}_PORT": str(port),
                **own.get(name, {}),
            }
            self.processes[name] = ManagedProcess(
                name, port, self.run_dir / "logs" / f"{name}.log", env
            )
        # the dashboard reads the processes the stack starts with (metrics_sources)
        self.processes[OPS].env["OPS_METRICS_SOURCES"] = json.dumps(self.metrics_sources)
        atexit.register(self.stop_all)

    def url(self, name: str) -> str:
        return self.processes[name].url

    def url_of(self, service: str, draw: int) -> str:
        """One of `service`'s instances, by `draw` (callers spread their requests: each
        instance answers or forwards to the owner)."""
        names = self.instances_of(service)
        return self.processes[names[draw % len(names)]].url

    @property
    def ledger_processes(self) -> tuple[str, ...]:
        """The settlement process, when there is a database for it."""
        return (LEDGER,) if self.database_url else ()

    @property
    def metrics_sources(self) -> dict[str, str]:
        """Every service process's and settlement's /metrics, by process name."""
        return {
            name: f"{self.url(name)}/metrics"
            for name in (*self.service_processes, *self.ledger_processes)
        }

    @property
    def singletons(self) -> tuple[str, ...]:
        """The processes of one instance each: settlement (with a database) and ops."""
        return (*self.ledger_processes, OPS)

    @property
    def service_processes(self) -> tuple[str, ...]:
        """Every service's processes: "returns", "returns#2", …"""
        return tuple(name for service in SERVICES for name in self.instances_of(service))

    def instances_of(self, service: str) -> tuple[str, ...]:
        """The process names of `service`'s instances (the first is the service's name)."""
        if service not in SERVICES:
            return (service,)
        names = [name for name in self.processes if service_of(name) == service]
        return tuple(sorted(names, key=lambda name: int(instance_of(name))))

    def add_instance(self, service: str) -> str:
        """One more instance of `service` (not started): its process name. It joins the
        service's consumer group when started, taking a share of its partitions."""
        with self._lock:
            name = instance_name(service, len(self.instances_of(service)) + 1)
            first = self.processes[service]
            port = free_port(taken=[m.port for m in self.processes.values()])
            port_variable = f"{service.upper().replace('-', '_')}_PORT"
            env = {**first.env, port_variable: str(port)}
            log_path = self.run_dir / "logs" / f"{name}.log"
            self.processes[name] = ManagedProcess(name, port, log_path, env)
        return name

    # -- lifecycle

    def start(self, name: str) -> None:
        with self._lock:
            self.desired.add(name)
            self._spawn(name)
        if self.supervise and self._supervisor is None:
            self._supervisor = threading.Thread(target=self._watch, daemon=True)
            self._supervisor.start()

    def forget(self, name: str) -> None:
        """Drop a stopped instance added by `add_instance`."""
        with self._lock:
            if name in self.processes and service_of(name) != name:
                self.stop(name)
                del self.processes[name]

    def _watch(self) -> None:
        while not self._closing:
            time.sleep(1.0)
            with self._lock:
                for name in sorted(self.desired):
                    managed = self.processes[name]
                    if not self._closing and managed.process is not None and not managed.running:
                        self.restarts[name] = self.restarts.get(name, 0) + 1
                        self.log(f"{name} exited ({managed.process.returncode}); restarting it")
                        self._spawn(name)

    def _spawn(self, name: str) -> None:
        managed = self.processes[name]
        if managed.running:
            return
        with open(managed.log_path, "ab") as out:
            command = [sys.executable, "-m", "services.cli", "run", service_of(name)]
            if service_of(name) in SERVICES:
                command += ["--instance", instance_of(name), "--port", str(managed.port)]
            managed.process = subprocess.Popen(
                command,
                env=managed.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=pinned_to(self.partner_cpus) if name in PARTNERS else None,
            )
        managed.starts += 1

    def wait_healthy(self, names: tuple[str, ...] | list[str], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        with httpx.Client(timeout=2.0) as http:
            while pending:
                for name in list(pending):
                    managed = self.processes[name]
                    if not managed.running:
                        raise RuntimeError(
                            f"{name} exited ({managed.process and managed.process.returncode}); "
                            f"see {managed.log_path}\n{self.tail(name)}"
                        )
                    try:
                        if http.get(f"{managed.url}/health").status_code == 200:
                            pending.remove(name)
                    except httpx.HTTPError:
                        pass
                if pending and time.monotonic() > deadline:
                    raise RuntimeError(
                        f"not healthy after {timeout:.0f}s: {pending}\n"
                        + "\n".join(self.tail(n) for n in pending)
                    )
                if pending:
                    time.sleep(0.3)

    def start_all(self, timeout: float = 180.0) -> None:
        started = time.monotonic()
        for name in PARTNERS:
            self.start(name)
        self.wait_healthy(PARTNERS, timeout)
        for name in (*self.service_processes, *self.singletons):
            self.start(name)
        self.wait_healthy((*self.service_processes, *self.singletons), timeout)
        took = time.monotonic() - started
        count = len(PARTNERS) + len(self.service_processes) + len(self.singletons)
        self.log(f"{count} processes healthy in {took:.1f}s")

    def stop(self, name: str, timeout: float = 20.0) -> None:
        with self._lock:
            self.desired.discard(name)
        managed = self.processes[name]
        process = managed.process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash would (fault injection). The supervisor starts it again."""
        managed = self.processes[name]
        with self._lock:
            if not (managed.running and managed.process is not None):
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(managed.process.pid, signal.SIGKILL)
            managed.process.wait(10)
            managed.kills += 1
            if name in self.desired:
                self._spawn(name)

    def restart(self, name: str, hard: bool = True, timeout: float = 120.0) -> None:
        if hard:
            self.kill(name)
        else:
            self.stop(name)
        self.start(name)
        self.wait_healthy([name], timeout)

    def stop_all(self) -> None:
        self._closing = True
        with self._lock:
            self.desired.clear()
        for name in reversed([*PARTNERS, *self.service_processes, *self.singletons]):
            managed = self.processes.get(name)
            if managed is not None and managed.running and managed.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(managed.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for managed in self.processes.values():
            if managed.process is None:
                continue
            try:
                managed.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(managed.process.pid, signal.SIGKILL)
                managed.process.wait(5)

    def running_pids(self) -> list[int]:
        return [m.process.pid for m in self.processes.values() if m.running and m.process]

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.processes[name].log_path
        if not path.exists():
            return f"--- {name}: no log"
        return f"--- {name} ({path}):\n" + "\n".join(
            path.read_text(errors="replace").splitlines()[-lines:]
        )
