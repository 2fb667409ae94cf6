"""Start, stop and inspect this checkout's PostgreSQL cluster (`LocalPostgres`).

Debian's `postgresql-15` server binaries run a cluster whose data, socket, log and
password live in `.cache/postgres/`; its port is derived from the checkout's path (the
slot the local broker leaves free), so two checkouts never share a database. The server
refuses to run as root: when we are root (CI), every server command runs as the
`postgres` user, and when that user cannot reach `.cache/` (a clone inside a 0700
directory, as `mktemp -d` makes), the cluster lives in `/var/tmp/boomerang-postgres-<hash>/`
with `.cache/postgres` a link to it. A postmaster.pid whose process is gone or is not
this cluster's server (a killed run, a recycled pid) is removed before starting.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from services.tools.local_kafka.cluster_settings import REPO_ROOT, default_base_port
from services.tools.local_kafka.node_processes import is_ours, port_open
from services.tools.local_stack.orphan_reaper import OWNER_VARIABLE

SERVER_USER = "postgres"  # the system user the server runs as when we are root
BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
PORT_OFFSET = 7  # in the local broker's slot of 8 ports, the one it never uses
DATABASE = "boomerang"
OWNER = "boomerang"


class PostgresError(RuntimeError):
    """For a person to act on: the server is not installed, a port taken, a failed start."""


@dataclass(frozen=True)
class LocalPostgresSettings:
    port: int
    run_dir: Path
    bin_dir: Path | None  # None: not installed (found when it is needed)
    log: Callable[[str], None] = field(default=print, compare=False)

    @classmethod
    def from_env(cls, log: Callable[[str], None] = print) -> LocalPostgresSettings:
        """This checkout's cluster, with BOOMERANG_PG_PORT / BOOMERANG_PG_DIR /
        BOOMERANG_PG_BIN / BOOMERANG_CACHE_DIR overrides."""
        cache = Path(os.environ.get("BOOMERANG_CACHE_DIR", REPO_ROOT / ".cache"))
        return cls(
            port=int(os.environ.get("BOOMERANG_PG_PORT") or default_base_port() + PORT_OFFSET),
            run_dir=Path(os.environ.get("BOOMERANG_PG_DIR") or cache / "postgres"),
            bin_dir=server_bin_dir(os.environ.get("BOOMERANG_PG_BIN")),
            log=log,
        )


def server_bin_dir(override: str | None = None) -> Path | None:
    """Where initdb and pg_ctl are: the override, Debian's PostgreSQL 15, or the PATH."""
    candidates = [Path(override)] if override else list(BIN_DIRS)
    for candidate in candidates:
        if (candidate / "pg_ctl").exists():
            return candidate
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and not override else None


@dataclass(frozen=True)
class ClusterStatus:
    initialized: bool
    running: bool
    pid: int | None
    stale_pid_file: bool


class LocalPostgres:
    def __init__(self, settings: LocalPostgresSettings) -> None:
        self.settings = settings
        self.run_dir = settings.run_dir
        self.as_root = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        return self.run_dir.resolve() / "data"

    @property
    def password_file(self) -> Path:
        return self.run_dir.resolve() / "password"

    def url(self) -> str:
        """The DATABASE_URL of the cluster's database (its owner, over TCP)."""
        password = self.password_file.read_text().strip()
        return f"postgresql://{OWNER}:{password}@127.0.0.1:{self.settings.port}/{DATABASE}"

    # -- state

    def status(self) -> ClusterStatus:
        initialized = (self.data_dir / "PG_VERSION").exists()
        pid = self._postmaster_pid()
        running = pid is not None and is_ours(pid, self.data_dir)
        return ClusterStatus(initialized, running, pid, pid is not None and not running)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError, PermissionError):
            return None

    # -- lifecycle

    def up(self, timeout: float = 60.0) -> str:
        """Start the cluster (initialising it the first time) and create its database;
        the DATABASE_URL. Already running: the URL, nothing started."""
        status = self.status()
        if status.running:
            return self.url()
        bin_dir = self._bin_dir()
        if not status.initialized:
            self._initialize(bin_dir)
        if status.stale_pid_file:
            self.settings.log(
                f"postmaster.pid names {status.pid}, which is not this cluster's server "
                "(left by a killed run) - starting it again"
            )
            # its socket's lock names the same pid (a zombie under a PID 1 that reaps
            # nothing still answers kill(pid, 0): the server would refuse to start)
            run_dir = self.run_dir.resolve()
            for stale in (self.data_dir / "postmaster.pid", *run_dir.glob(".s.PGSQL.*")):
                stale.unlink(missing_ok=True)
        if port_open(self.settings.port):
            raise PostgresError(
                f"port {self.settings.port} is taken by another process; "
                "set BOOMERANG_PG_PORT to a free one"
            )
        options = (
            f"-p {self.settings.port} -k {self.run_dir.resolve()} "
            "-c listen_addresses=127.0.0.1 -c fsync=on"
        )
        started = time.monotonic()
        self._server_command(
            bin_dir / "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.run_dir.resolve() / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
        )
        self._create_database(bin_dir)
        self.settings.log(
            f"PostgreSQL ready on 127.0.0.1:{self.settings.port} in "
            f"{time.monotonic() - started:.1f}s ({self.data_dir})"
        )
        return self.url()

    def down(self, wipe: bool = False) -> bool:
        """Stop the server (fast shutdown: sessions ended, data flushed); True when one
        was running. `wipe` also deletes the cluster."""
        status = self.status()
        if status.running:
            self._server_command(
                self._bin_dir() / "pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w"
            )
        if wipe:
            target = self.run_dir.resolve()
            shutil.rmtree(target, ignore_errors=True)
            if self.run_dir.is_symlink():
                self.run_dir.unlink()
        return status.running

    def crash_and_restart(self) -> str:
        """Stop the server the way a crash does (immediate: no checkpoint, sessions cut)
        and start it again, recovering from its WAL; the DATABASE_URL."""
        if self.status().running:
            self._server_command(
                self._bin_dir() / "pg_ctl",
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                "immediate",
                "-w",
            )
        return self.up()

    # -- pieces

    def _bin_dir(self) -> Path:
        if self.settings.bin_dir is None:
            raise PostgresError(
                "PostgreSQL 15's server is not installed: `apt-get install postgresql-15` "
                "(`make setup` installs it when run as root), or set DATABASE_URL to an "
                "existing server"
            )
        return self.settings.bin_dir

    def _initialize(self, bin_dir: Path) -> None:
        self._prepare_run_dir()
        password = secrets.token_urlsafe(18)
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        pwfile = self.run_dir.resolve() / "initdb-password"
        pwfile.write_text(password + "\n")
        self._give_to_server_user(pwfile)
        try:
            self._server_command(
                bin_dir / "initdb",
                "-D",
                str(self.data_dir),
                "-U",
                OWNER,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self.settings.log(f"initialised a PostgreSQL cluster in {self.data_dir}")

    def _prepare_run_dir(self) -> None:
        """The run directory, writable by the server user; relocated (and linked) when
        that user cannot reach it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._give_to_server_user(self.run_dir)
        if not self.as_root or self._server_user_can_write(self.run_dir):
            return
        outside = Path(f"/var/tmp/boomerang-postgres-{zlib.crc32(str(self.run_dir).encode()):08x}")
        outside.mkdir(mode=0o700, exist_ok=True)
        self._give_to_server_user(outside)
        shutil.rmtree(self.run_dir)
        self.run_dir.symlink_to(outside, target_is_directory=True)
        self.settings.log(
            f"the {SERVER_USER} user cannot reach {self.run_dir}: the cluster lives in "
            f"{outside} (linked from there)"
        )

    def _server_user_can_write(self, path: Path) -> bool:
        check = ["runuser", "-u", SERVER_USER, "--", "test", "-w", str(path)]
        return subprocess.run(check, check=False).returncode == 0

    def _give_to_server_user(self, path: Path) -> None:
        if self.as_root:
            shutil.chown(path, SERVER_USER, SERVER_USER)

    def _create_database(self, bin_dir: Path) -> None:
        exists = self._server_command(
            bin_dir / "psql",
            *self._local_connection(),
            "-d",
            "postgres",
            "-tAc",
            f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
        )
        if exists.strip() != "1":
            self._server_command(bin_dir / "createdb", *self._local_connection(), DATABASE)

    def _local_connection(self) -> list[str]:
        return ["-h", str(self.run_dir.resolve()), "-p", str(self.settings.port), "-U", OWNER]

    def _server_command(self, program: Path | str, *args: str) -> str:
        command = [str(program), *args]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        # the server is this checkout's, not the run's that (re)started it: without the
        # run's mark a runner's reaper leaves it up for the next user (a test session
        # whose chaos run restarted it lost it when that run ended)
        env = {k: v for k, v in os.environ.items() if k != OWNER_VARIABLE}
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, cwd="/", env=env
        )
        if done.returncode != 0:
            log_tail = ""
            with contextlib.suppress(OSError):
                log_file = self.run_dir.resolve() / "postgres.log"
                log_tail = "\n".join(log_file.read_text().splitlines()[-5:])
            raise PostgresError(
                f"{Path(str(program)).name} {' '.join(args[:1])} failed "
                f"({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
                + (f"\n{log_tail}" if log_tail else "")
            )
        return done.stdout
