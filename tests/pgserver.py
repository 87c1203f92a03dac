"""A throwaway PostgreSQL server for the test suite: initdb + pg_ctl in a temp directory.

Started once per test session, as a non-root user (the ``postgres`` account when the suite runs
as root), listening on a free loopback port; stopped and deleted at the end. Missing binaries are
an error, never a skip: ``make test`` installs them.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from tests.livesite import free_port


def _bindir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make test`, which installs them"
    )


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.tmp = Path(tempfile.mkdtemp(prefix="babelwire-pg-"))
        self.data = self.tmp / "data"
        self.port = free_port()
        self.user: str | None = None
        self.running = False
        self.frozen = False
        if os.geteuid() == 0:
            self.user = "postgres" if _has_user("postgres") else "nobody"
            os.chmod(self.tmp, 0o777)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.user:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.tmp)
        if res.returncode:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {res.stderr[-1500:]}{res.stdout[-500:]}")

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N"
        )
        self.start_server()

    def start_server(self) -> None:
        """Start the server on its data directory and port (again, after ``stop_server``)."""
        opts = (
            f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.tmp / "log"), "-w", "-t", "60", "start"
        )
        self.running = True

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: ``fast`` ends every session (a restart, a failover),
        ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def _signal_all(self, signum: int) -> None:
        """Send ``signum`` to the postmaster first (it starts no backend meanwhile), then to every
        process it started (backends, checkpointer, walwriter…)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signum)
        for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(child), signum)

    def freeze(self) -> None:
        """SIGSTOP the whole server: the kernel still accepts connections and acknowledges bytes,
        nothing answers (a server swapped out, stuck, or paused in a VM)."""
        self._signal_all(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        try:
            if self.frozen:
                self.thaw()
            if self.running:
                self.stop_server("immediate")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def create_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def drop_database(self, url: str) -> None:
        """Drop a database made by ``create_database`` (open connections are cut)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
