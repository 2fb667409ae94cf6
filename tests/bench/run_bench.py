"""`make bench`: the whole loop under a sweep of open-loop load, next to a raw pipe.

    python -m tests.bench.run_bench [--quick] [--levels 50,100,...] [--label NAME]

Starts a broker of its own (wiped before and after; or uses $KAFKA_BOOTSTRAP_SERVERS), the
topics, the partner doubles with zero injected latency and the seven services, as `make demo`
does. For each offered load (ascending) the load generator runs as its own process
(load_generator.py); around it this runner reads every process's CPU time and peak RSS from
/proc, every topic's end offsets, and then the bytes of the records written in between
(key + value + headers; sampled per partition when there are many). The sweep stops one
level after the first load the loop cannot sustain (a backlog would only grow); then one
overload level offers twice the max sustained load (collapse_ratio: does throughput hold?).
Then the raw aiokafka pipe (raw_pipe.py) pushes the loop's record budget — the records per
return of the max sustained level, per topic and at their average size, changelogs
included (or bench_figures.TARGET_RECORD_BUDGET with --raw-budget target) — through a
consume → produce chain with the services' producer settings on the same broker.

Output: a table on the terminal, tests/bench/results/<time>-<label>.json (machine, Kafka
version, git commit, settings, all figures), a PNG next to it, and as the last line one
JSON object (bench_figures.final_line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from services.eventing.topic_bootstrap import bootstrap_topics
from services.tools.local_kafka.broker import LocalKafka, LocalKafkaSettings, default_base_port
from services.tools.local_postgres.databases import fresh_database, postgres_server
from services.tools.local_postgres.server import LocalPostgres, LocalPostgresSettings
from services.tools.local_stack.orphan_reaper import reap_children_if_i_die
from services.tools.local_stack.stack import LEDGER, PARTNERS, SERVICES, LocalStack, pinned_to
from services.tools.oncall import consumer_lag
from tests.bench import bench_figures, process_metrics, service_profiles, topic_offsets
from tests.bench.latency_plot import plot_levels
from tests.bench.raw_pipe import run_raw_pipe

RISK_GROUP = "boomerang-risk"  # counts each order: folded before the clock starts

console = Console(stderr=True)
REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
FULL_LEVELS = (25, 50, 100, 150, 200, 300)
QUICK_LEVELS = (25, 100)
# zero injected latency at the partners: the carrier collects at once, refunds settle at once
ZERO_LATENCY_ENV = {"PSP_SETTLE_DELAY_MS": "0", "PSP_TRANSFER_SETTLE_MS": "0"}


@dataclass(frozen=True)
class BenchSettings:
    levels: tuple[float, ...]
    warmup_s: float
    duration_s: float
    drain_s: float
    raw_returns: int
    quick: bool
    label: str
    profile_at: float | None = None  # offered load at which the services are profiled
    warmup_run_s: float = 15.0  # load before the sweep, not recorded


def settings_from(args: argparse.Namespace) -> BenchSettings:
    levels = tuple(float(x) for x in args.levels.split(",")) if args.levels else None
    profile_at = float(args.profile_at) if args.profile_at else None
    if args.quick:
        return BenchSettings(
            levels or QUICK_LEVELS, 3.0, 10.0, 10.0, 3000, True, args.label, profile_at, 8.0
        )
    return BenchSettings(
        levels or FULL_LEVELS, 5.0, 30.0, 20.0, 10000, False, args.label, profile_at
    )


def isolate_load(cores: int) -> frozenset[int] | None:
    """With `cores` > 0: this process (and so the broker and the services it starts) keeps
    all but the last `cores` of its CPUs; those are returned for the outside world."""
    if cores <= 0:
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if cores >= len(cpus):
        raise SystemExit(f"--isolate-load {cores}: only {len(cpus)} cores here")
    os.sched_setaffinity(0, cpus[:-cores])
    return frozenset(cpus[-cores:])


class Bench:
    def __init__(
        self,
        stack: LocalStack,
        bootstrap: str,
        broker_pid: int | None,
        work: Path,
        postgres_pid: int | None = None,
    ):
        self.stack = stack
        self.bootstrap = bootstrap
        self.broker_pid = broker_pid
        self.postgres_pid = postgres_pid  # settlement's database server, when in the loop
        self.work = work
        self.profiles: dict[str, Path] = {}

    @staticmethod
    def cpu(name: str, pid: int) -> float | None:
        """A process's CPU seconds (PostgreSQL's: the server and its backends)."""
        if name == "postgres":
            return process_metrics.tree_cpu_seconds(pid)
        return process_metrics.cpu_seconds(pid)

    def pids(self) -> dict[str, int]:
        pids = {
            name: managed.process.pid
            for name, managed in self.stack.processes.items()
            if managed.process is not None and managed.running
        }
        if self.broker_pid:
            pids["broker"] = self.broker_pid
        if self.postgres_pid:
            pids["postgres"] = self.postgres_pid
        return pids

    def idle_cores(self, seconds: float = 10.0) -> dict[str, float]:
        """CPU each process burns with no load at all (cores): the fixed cost of running."""
        pids = self.pids()
        before = {name: self.cpu(name, pid) for name, pid in pids.items()}
        time.sleep(seconds)
        after = {name: self.cpu(name, pid) for name, pid in pids.items()}
        return {
            name: round((after[name] - before[name]) / seconds, 3)
            for name in pids
            if after.get(name) is not None and before.get(name) is not None
        }

    def run_level(
        self, rate: float, settings: BenchSettings, overload_factor: float | None = None
    ) -> dict[str, Any]:
        """One level at `rate` returns/s offered; `overload_factor`: it offers that many times
        the max sustained level (the overload and admission levels)."""
        pids = self.pids()
        for pid in pids.values():
            process_metrics.reset_peak_rss(pid)
        cpu_at_launch = {name: self.cpu(name, pid) for name, pid in pids.items()}
        offsets_at_launch = asyncio.run(topic_offsets.end_offsets(self.bootstrap))
        out = self.work / f"level-{rate:g}.json"
        ready = self.work / f"level-{rate:g}.ready"
        ready.unlink(missing_ok=True)
        generator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.bench.load_generator",
                "--bootstrap",
                self.bootstrap,
                "--returns-url",
                ",".join(self.stack.url(n) for n in self.stack.instances_of("returns")),
                "--inspection-url",
                ",".join(self.stack.url(n) for n in self.stack.instances_of("inspection")),
                "--rate",
                str(rate),
                "--warmup-s",
                str(settings.warmup_s),
                "--duration-s",
                str(settings.duration_s),
                "--drain-s",
                str(settings.drain_s),
                "--out",
                str(out),
                # the front door reads every return's order: placed before the load
                "--marketplace-url",
                self.stack.url("marketplace"),
                *(["--ledger-url", self.stack.url(LEDGER)] if self.stack.database_url else []),
                "--orders-folded-by",
                RISK_GROUP,
                "--ready-file",
                str(ready),
            ],
            preexec_fn=pinned_to(self.stack.partner_cpus),  # with the partner doubles
        )
        generator_pid = generator.pid
        # the orders are placed, delivered and counted before the clock starts (in life
        # they come long before their returns): the level's figures start from there, and
        # what the orders cost is reported apart
        while not ready.exists() and generator.poll() is None:
            time.sleep(0.02)
        cpu_before = {name: self.cpu(name, pid) for name, pid in pids.items()}
        booked_before = self.ledger_entries()
        offsets_before = asyncio.run(topic_offsets.end_offsets(self.bootstrap))
        lag: dict[str, Any] = {}
        lag_probe = threading.Timer(
            settings.warmup_s + settings.duration_s, self._measure_lag, args=(lag,)
        )
        lag_probe.start()
        profiling = {}
        if settings.profile_at == rate:
            services = {
                name: pid for name, pid in pids.items() if name in self.stack.service_processes
            }
            profiling = service_profiles.start_profiles(
                services, settings.warmup_s + settings.duration_s, self.work / "profiles"
            )
        _, status, usage = os.wait4(generator.pid, 0)
        generator.returncode = os.waitstatus_to_exitcode(status)
        generator_cpu_s = usage.ru_utime + usage.ru_stime
        lag_probe.join()
        self.profiles = service_profiles.finish_profiles(profiling) or self.profiles
        if generator.returncode != 0:
            raise RuntimeError(
                f"the load generator failed at {rate:g}/s (exit {generator.returncode})"
            )
        result = json.loads(out.read_text())
        offsets_after = asyncio.run(topic_offsets.end_offsets(self.bootstrap))
        cpu_after = {name: self.cpu(name, pid) for name, pid in pids.items()}
        bytes_by_topic, bytes_measure = self.bytes_written(offsets_before, offsets_after)
        completed = result["completed_total"]
        cpu = {
            name: round(cpu_after[name] - cpu_before[name], 2)
            for name in pids
            if cpu_after.get(name) is not None and cpu_before.get(name) is not None
        }
        written = bench_figures.records_delta(
            topic_offsets.totals(offsets_before), topic_offsets.totals(offsets_after)
        )
        internal = sum(n for topic, n in written.items() if topic.startswith("__"))
        records = sum(n for topic, n in written.items() if not topic.startswith("__"))
        changelogs = sum(n for topic, n in written.items() if bench_figures.is_state_topic(topic))
        generator_run_cpu_s = result.get("generator_run_cpu_s", generator_cpu_s)
        level = {
            **result,
            "sustained": bench_figures.sustained(
                rate, result["completed_per_s"], result["measured"], result["unfinished"]
            ),
            "records_per_return": round(records / completed, 2) if completed else None,
            "changelog_records_per_return": round(changelogs / completed, 2) if completed else None,
            "offset_commit_records_per_return": round(internal / completed, 2)
            if completed
            else None,
            "records_by_topic": written,
            "cpu_s": cpu,
            "cpu_s_per_1000_returns": {
                name: bench_figures.per_thousand(seconds, completed)
                for name, seconds in cpu.items()
            },
            # services + broker; the partner doubles and the load generator apart
            "cpu_ms_per_return": bench_figures.cpu_ms_per_return(
                cpu, {*self.stack.service_processes, "broker"}, completed
            ),
            "partner_doubles_cpu_ms_per_return": bench_figures.cpu_ms_per_return(
                cpu, PARTNERS, completed
            ),
            # settlement in the loop: its process and its PostgreSQL, beside the figure above
            "settlement_cpu_ms_per_return": bench_figures.cpu_ms_per_return(
                cpu, {*self.stack.ledger_processes, "postgres"}, completed
            )
            if self.stack.database_url
            else None,
            "ledger_entries_booked": self.ledger_entries() - booked_before
            if self.stack.database_url
            else None,
            # the generator's run phase (its imports and drawn returns before the clock left out)
            "generator_cpu_ms_per_return": bench_figures.per_thousand(
                generator_run_cpu_s, completed
            ),
            "generator_pid": generator_pid,
            "generator_cpu_s": round(generator_cpu_s, 2),
            "kb_per_return": None
            if "error" in bytes_measure
            else bench_figures.kb_per_return(bytes_by_topic, completed),
            "bytes_by_topic": bytes_by_topic,
            "bytes_measure": bytes_measure,
            "overload": overload_factor is not None,
            "overload_factor": overload_factor,
            "lag_at_window_end": lag,
            "peak_rss_mb": {
                name: round(mb, 1) if (mb := process_metrics.peak_rss_mb(pid)) else None
                for name, pid in pids.items()
            },
        }
        level["orders_before_the_clock"] = self.orders_figures(
            result["created"],
            bench_figures.records_delta(
                topic_offsets.totals(offsets_at_launch), topic_offsets.totals(offsets_before)
            ),
            {
                name: round(cpu_before[name] - cpu_at_launch[name], 2)
                for name in pids
                if cpu_before.get(name) is not None and cpu_at_launch.get(name) is not None
            },
        )
        level["unfinished_states"] = self.saga_states(result.get("unfinished_return_ids", []))
        return level

    def orders_figures(
        self, orders: int, written: dict[str, int], cpu: dict[str, float]
    ) -> dict[str, Any]:
        """What placing, delivering and counting the level's orders cost (and a buyer's
        sign-in with each), before the clock: per order, not in the return's figures."""
        return {
            "orders": orders,
            "records_per_order": round(
                sum(n for topic, n in written.items() if not topic.startswith("__")) / orders, 2
            )
            if orders
            else None,
            "records_by_topic": written,
            "cpu_s": cpu,
            "cpu_ms_per_order": bench_figures.cpu_ms_per_return(
                cpu, {*self.stack.service_processes, "broker"}, orders
            ),
            "partner_doubles_cpu_ms_per_order": bench_figures.cpu_ms_per_return(
                cpu, PARTNERS, orders
            ),
        }

    def ledger_entries(self) -> int:
        """Entries in settlement's ledger (0 without settlement)."""
        if not self.stack.database_url:
            return 0
        with psycopg.connect(self.stack.database_url) as conn:
            return conn.execute("SELECT count(*) FROM booked_entries").fetchone()[0]

    def bytes_written(
        self, before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]
    ) -> tuple[dict[str, int], dict[str, Any]]:
        """Bytes the loop wrote per topic between two offset snapshots. Read after the CPU
        snapshot: the broker's work serving this read is not the loop's."""
        loop_topics = [topic for topic in after if bench_figures.is_loop_topic(topic)]
        try:
            return asyncio.run(
                topic_offsets.bytes_written(self.bootstrap, before, after, loop_topics)
            )
        except Exception as exc:  # a figure missing is no reason to lose the run
            return {}, {"error": repr(exc)}

    def _measure_lag(self, into: dict[str, Any]) -> None:
        """Each service's consumer lag when the offered load stops: where the backlog is."""
        try:
            report = asyncio.run(consumer_lag.measure(self.bootstrap, int(time.time() * 1000)))
        except Exception as exc:  # a figure missing is no reason to lose the run
            into["error"] = repr(exc)
            return
        for group in report["groups"]:
            into[group["service"]] = {
                "lag": group["lag"],
                "oldest_unprocessed_age_s": group["oldest_unprocessed_age_s"],
            }

    def saga_states(self, return_ids: list[str]) -> dict[str, str]:
        """Where the coordinator says each unfinished return is (to tell a slow path from a
        stuck one)."""
        states = {}
        with httpx.Client(timeout=5.0) as http:
            for return_id in return_ids:
                try:
                    answer = http.get(f"{self.stack.url('coordinator')}/returns/{return_id}")
                    view = answer.json() if answer.status_code == 200 else {}
                    states[return_id] = f"{answer.status_code} {view.get('status', '')}".strip()
                except (httpx.HTTPError, ValueError) as exc:
                    states[return_id] = type(exc).__name__
        return states


def print_levels(levels: list[dict[str, Any]]) -> None:
    table = Table(title="Boomerang: the whole loop under open-loop load")
    for column in (
        "offered/s",
        "completed/s",
        "sustained",
        "unfinished",
        "errors",
        "req→refund p50/p95/p99/max ms",
        "scan→refund p50/p95/p99/max ms",
        "records/return",
        "KB/return",
        "CPU ms/return (services+broker)",
        "doubles/generator CPU ms/return",
        "settlement+PostgreSQL CPU ms/return",
        "peak RSS MB (max service)",
    ):
        table.add_column(column, justify="right")

    def quad(figures: dict[str, Any]) -> str:
        return "/".join(
            "-" if figures[p] is None else f"{figures[p]:.0f}" for p in ("p50", "p95", "p99", "max")
        )

    for level in levels:
        rss = [
            mb
            for name, mb in level["peak_rss_mb"].items()
            if name not in ("broker", "postgres") and mb
        ]
        table.add_row(
            f"{level['offered_per_s']:g}"
            + (f" ({level.get('overload_factor') or 2:g}×)" if level.get("overload") else ""),
            f"{level['completed_per_s']:.1f}",
            "yes" if level["sustained"] else "NO",
            str(level["unfinished"]),
            str(level["errors"]),
            quad(level["request_to_refund_ms"]),
            quad(level["scan_to_refund_ms"]),
            str(level["records_per_return"]),
            str(level["kb_per_return"]),
            str(level["cpu_ms_per_return"]),
            f"{level['partner_doubles_cpu_ms_per_return']}/{level['generator_cpu_ms_per_return']}",
            str(level.get("settlement_cpu_ms_per_return") or "-"),
            f"{max(rss):.0f}" if rss else "-",
        )
    console.print(table)
    last = bench_figures.best_sustained(levels) or levels[-1]
    cpu_table = Table(title=f"CPU s per 1,000 completed returns at {last['offered_per_s']:g}/s")
    cpu_table.add_column("process")
    cpu_table.add_column("CPU s / 1,000", justify="right")
    cpu_table.add_column("peak RSS MB", justify="right")
    for name, per_1000 in sorted(
        last["cpu_s_per_1000_returns"].items(), key=lambda kv: -(kv[1] or 0)
    ):
        cpu_table.add_row(name, str(per_1000), str(last["peak_rss_mb"].get(name)))
    console.print(cpu_table)


def git_commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+uncommitted" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run_bench")
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("QUICK")))
    parser.add_argument("--levels", default=os.environ.get("LEVELS") or None, help="e.g. 25,50,100")
    parser.add_argument("--label", default=os.environ.get("LABEL") or "run")
    parser.add_argument(
        "--instances",
        type=int,
        default=int(os.environ.get("INSTANCES") or 1),
        help="processes per service (requests spread over them)",
    )
    parser.add_argument(
        "--isolate-load",
        type=int,
        default=int(os.environ.get("ISOLATE_LOAD") or 0),
        metavar="CORES",
        help="run the outside world (load generator, partner doubles) on the last CORES "
        "cores and the broker and services on the others, as separate machines would",
    )
    parser.add_argument("--no-raw", action="store_true", help="skip the raw pipe ceiling")
    parser.add_argument(
        "--settlement",
        action="store_true",
        default=bool(os.environ.get("SETTLEMENT")),
        help="settlement in the loop (its own PostgreSQL database; orders placed first)",
    )
    parser.add_argument(
        "--no-admission-level",
        action="store_true",
        help="skip the level at 4× the max sustained offer (admission control's check)",
    )
    parser.add_argument(
        "--raw-budget",
        choices=("measured", "target"),
        default=os.environ.get("RAW_BUDGET") or "measured",
        help="the raw pipe's records per return: as the max sustained level wrote them, "
        "or the target table (bench_figures.TARGET_RECORD_BUDGET)",
    )
    parser.add_argument(
        "--profile-at",
        default=os.environ.get("PROFILE") or None,
        help="offered load (one of the levels) at which py-spy samples the seven services",
    )
    args = parser.parse_args(argv)
    settings = settings_from(args)
    started = time.monotonic()
    reap_children_if_i_die()
    load_cpus = isolate_load(args.isolate_load)
    cache = REPO / ".cache"
    (cache / "runs").mkdir(parents=True, exist_ok=True)
    broker: LocalKafka | None = None
    broker_pid: int | None = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    kafka_version = "unknown (external cluster)"
    if not bootstrap:  # a broker of its own, wiped before and after: every run starts equal
        defaults = LocalKafkaSettings.from_env(log=lambda m: console.print(f"  {m}"))
        kafka_settings = LocalKafkaSettings(
            version=defaults.version,
            base_port=default_base_port() + 8 * 7,
            run_dir=cache / "kafka-bench",
            cache_dir=defaults.cache_dir,
            heap=defaults.heap,
            log=defaults.log,
        )
        broker = LocalKafka(kafka_settings)
        broker.down(wipe=True)
        console.print("starting a broker for the benchmark ...")
        bootstrap = broker.up(nodes=1, timeout=180)
        broker_pid = broker.statuses()[0].pid
        kafka_version = f"Apache Kafka {kafka_settings.version} (KRaft, 1 node, local)"
    work = Path(tempfile.mkdtemp(prefix="boomerang-bench-", dir=cache / "runs"))
    databases = contextlib.ExitStack()
    database_url = postgres_pid = None
    if args.settlement:  # settlement in the loop, on a ledger database of the run's own
        console.print("starting PostgreSQL for settlement ...")
        server_url = databases.enter_context(postgres_server())
        database_url = databases.enter_context(fresh_database(server_url, "boomerang_bench_"))
        if not os.environ.get("DATABASE_URL"):
            postgres_pid = LocalPostgres(LocalPostgresSettings.from_env()).status().pid
    stack = LocalStack(
        bootstrap,
        work,
        carrier_callback_delay_ms=0,
        extra_env=ZERO_LATENCY_ENV,
        log=lambda m: console.print(f"  {m}"),
        instances=args.instances,
        partner_cpus=load_cpus,
        database_url=database_url,
        ledger_start_ms=int(time.time() * 1000) if database_url else None,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels: list[dict[str, Any]] = []
    raw: dict[str, Any] | None = None
    bench: Bench | None = None
    idle: dict[str, float] = {}
    try:
        asyncio.run(bootstrap_topics(bootstrap))
        stack.start_all()
        bench = Bench(stack, bootstrap, broker_pid, work, postgres_pid)
        time.sleep(3)  # let the groups settle
        idle = bench.idle_cores()
        # the broker's JIT and the services' first-use paths warm up outside the figures
        warm_rate = settings.levels[0]
        console.print(f"warming up: {settings.warmup_run_s:g} s at {warm_rate:g}/s (not recorded)")
        bench.run_level(
            warm_rate,
            BenchSettings((warm_rate,), 0.0, settings.warmup_run_s, settings.drain_s, 0, True, ""),
        )
        console.print(
            f"idle: {sum(idle.values()):.2f} cores with no load ("
            + ", ".join(f"{name} {cores:.2f}" for name, cores in sorted(idle.items()))
            + ")"
        )
        for rate in settings.levels:
            console.print(
                f"[bold]{rate:g} returns/s[/bold]: {settings.warmup_s:g} s warm-up, "
                f"{settings.duration_s:g} s measured, up to {settings.drain_s:g} s drain"
            )
            level = bench.run_level(rate, settings)
            levels.append(level)
            console.print(
                f"  completed {level['completed_per_s']:.1f}/s, unfinished {level['unfinished']}, "
                f"refused {level.get('refused', 0)}, "
                f"scan→refund p99 {level['scan_to_refund_ms']['p99']} ms"
                + ("" if level["sustained"] else "  [red]not sustained[/red]")
            )
            backlog = {
                name: figures["lag"]
                for name, figures in level["lag_at_window_end"].items()
                if isinstance(figures, dict) and figures["lag"]
            }
            console.print(f"  consumer lag when the load stopped: {backlog or 'none'}")
            if level["unfinished_states"]:
                console.print(f"  unfinished: {level['unfinished_states']}")
            if sum(not lv["sustained"] for lv in levels) >= 2:
                console.print("  two levels not sustained: the sweep stops here")
                break
        overload = bench_figures.overload_rate(levels)
        if overload is not None and bench_figures.level_at(levels, overload) is None:
            console.print(
                f"[bold]{overload:g} returns/s[/bold] (overload: twice the max sustained "
                f"offer): {settings.warmup_s:g} s warm-up, {settings.duration_s:g} s measured"
            )
            level = bench.run_level(overload, settings, bench_figures.OVERLOAD_FACTOR)
            levels.append(level)
            console.print(
                f"  completed {level['completed_per_s']:.1f}/s, unfinished {level['unfinished']}, "
                f"refused {level.get('refused', 0)}"
            )
        admission_rate = bench_figures.admission_rate(levels)
        if not args.no_admission_level and admission_rate is not None:
            console.print(
                f"[bold]{admission_rate:g} returns/s[/bold] (admission: "
                f"{bench_figures.ADMISSION_FACTOR:g}× the max sustained offer): "
                f"{settings.warmup_s:g} s warm-up, {settings.duration_s:g} s measured"
            )
            level = bench.run_level(admission_rate, settings, bench_figures.ADMISSION_FACTOR)
            levels.append(level)
            console.print(
                f"  accepted {level['accepted']}, of which within {level['target_s']:g} s "
                f"{level['accepted_within_target']} ({level['accepted_within_target_share']}), "
                f"refused {level['refused']}, unanswered {level['requests_unanswered']}, "
                f"unfinished {level['unfinished']}, completed {level['completed_per_s']:.1f}/s"
            )
        if not args.no_raw:
            raw = run_raw(bench, levels, settings, args.raw_budget)
    except KeyboardInterrupt:
        console.print("interrupted: stopping everything")
        return 130
    finally:
        stack.stop_all()
        if broker is not None:
            broker.down(wipe=True)
        databases.close()
    saturation = bench_figures.saturation_level(levels)
    final = bench_figures.final_line(levels, raw["returns_per_s"] if raw else None)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-{settings.label}{'-quick' if settings.quick else ''}"
    plot = plot_levels(
        levels,
        saturation,
        f"Boomerang {settings.label}: latency vs offered load ({git_commit()[:10]})",
        RESULTS / f"{name}.png",
    )
    report = {
        "when": stamp,
        "label": settings.label,
        "git_commit": git_commit(),
        "machine": {**process_metrics.machine(), "python": platform.python_version()},
        "kafka": kafka_version,
        "settings": {
            "levels": settings.levels,
            "warmup_s": settings.warmup_s,
            "duration_s": settings.duration_s,
            "drain_s": settings.drain_s,
            "raw_returns": settings.raw_returns,
            "raw_budget": args.raw_budget,
            "warmup_run_s": settings.warmup_run_s,
            "services": list(SERVICES),
            "instances": stack.instances,
            "partner_latency_ms": 0,
            # cores of the load generator and the partner doubles, apart from the system's
            "isolated_load_cpus": sorted(load_cpus) if load_cpus else None,
        },
        "idle_cores": idle,
        "levels": levels,
        "saturation_offered_per_s": saturation,
        "raw_pipe": raw,
        "plot": str(plot.relative_to(REPO)),
        "wall_s": round(time.monotonic() - started, 1),
        "summary": final,
    }
    if bench is not None and bench.profiles:
        summary_path = RESULTS / f"{name}-profile.txt"
        service_profiles.write_summary(bench.profiles, summary_path)
        report["profile"] = str(summary_path.relative_to(REPO))
        console.print(f"profiles at {settings.profile_at:g}/s: {summary_path}")
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1, default=list))
    print_levels(levels)
    if raw:
        console.print(
            f"raw aiokafka pipe: {raw['returns_per_s']} returns/s through {raw['hops']} hops "
            f"({raw['through']} of {raw['returns']} in {raw['elapsed_s']} s; "
            f"{raw['records_per_return']} records, {raw['kb_per_return']} KB per return)"
        )
    console.print(f"results: {RESULTS / (name + '.json')}  plot: {plot}  ({report['wall_s']} s)")
    print(json.dumps(final), flush=True)
    return 0


def run_raw(
    bench: Bench, levels: list[dict[str, Any]], settings: BenchSettings, budget_from: str
) -> dict[str, Any] | None:
    """The raw pipe with the loop's record budget: the records per return (per topic, at
    their average size) of the max sustained level, else of the first level that completed
    returns, else (or with budget_from "target") the target table."""
    best = bench_figures.best_sustained(levels)
    measured = next(
        (
            level
            for level in ([best] if best else []) + levels
            if level["completed_total"] and level["bytes_by_topic"]
        ),
        None,
    )
    if budget_from == "measured" and measured is not None:
        budget = bench_figures.record_budget(
            measured["records_by_topic"], measured["bytes_by_topic"], measured["completed_total"]
        )
        source = f"measured at {measured['offered_per_s']:g}/s"
    else:
        budget = [dict(record) for record in bench_figures.TARGET_RECORD_BUDGET]
        source = "target table (bench_figures.TARGET_RECORD_BUDGET)"
    totals = bench_figures.budget_totals(budget)
    console.print(
        f"raw pipe: {totals['records']} records per return ({totals['state_records']} state), "
        f"{totals['kb']} KB, {source}"
    )
    try:
        figures = run_raw_pipe(
            bench.bootstrap,
            budget,
            settings.raw_returns,
            bench.work,
            processes=len(SERVICES),
            log=console.print,
        )
    except ValueError as exc:  # a budget the pipe cannot run (fewer than 2 events)
        console.print(f"  raw pipe skipped: {exc}")
        return None
    figures["hop_names"] = [record["topic"] for record in budget if not record["state"]]
    figures["budget_source"] = source
    figures["budget"] = budget
    return figures


if __name__ == "__main__":
    sys.exit(main())
