"""A private PostgreSQL server for the tests that need one, and a fresh schema per test.

The server is a temporary cluster made with ``initdb`` and started with ``pg_ctl`` once per
test session (once per xdist worker): its data directory and unix socket directory are
private to the run, it listens on no TCP address, and the socket trusts its users. When
the tests run as root, the server runs as the ``postgres`` user, which PostgreSQL insists
on. It is stopped with ``-m immediate`` and its folder removed at the end.

Without the server binaries on the PATH the tests that need it skip, saying so, unless
``TYPEDSTORE_REQUIRE_POSTGRES=1`` (``.ci/run`` sets it): then they fail, so that CI can
never pass without them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REQUIRE_ENV = "TYPEDSTORE_REQUIRE_POSTGRES"
SERVER_USER = "postgres"


@dataclass(frozen=True)
class Server:
    """A running temporary PostgreSQL cluster reached through its unix socket."""

    data: Path
    socket_dir: Path
    port: int
    run_as: list[str]
    """The command prefix that runs the server's tools as the server's user."""

    def dsn(self, database: str = "postgres", **options: str) -> str:
        """Return a libpq connection string for ``database`` on this server."""
        parts = {"host": str(self.socket_dir), "port": str(self.port), "user": SERVER_USER}
        parts.update(dbname=database, **options)
        return " ".join(f"{key}={value}" for key, value in parts.items())

    def pg_ctl(self, *args: str) -> None:
        """Run ``pg_ctl`` on this cluster as the server's user."""
        command = [*self.run_as, "pg_ctl", "-D", str(self.data), "-w", "-s", *args]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        """Start (or restart after a stop) the server on its socket and port."""
        options = f"-k {self.socket_dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        self.pg_ctl("-o", options, "-l", str(self.data.parent / "server.log"), "start")

    def stop(self) -> None:
        """Stop the server at once, as a crash would."""
        self.pg_ctl("-m", "immediate", "stop")


def missing_binaries() -> str | None:
    """Return why no server can be made here, or None when ``initdb`` and ``pg_ctl`` exist."""
    missing = [name for name in ("initdb", "pg_ctl") if shutil.which(name) is None]
    if missing:
        return f"PostgreSQL server binaries not on the PATH: {', '.join(missing)}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root, and no runuser to run the server as the postgres user"
    return None


def free_port() -> int:
    """Return a TCP port number nothing listens on now (it names the server's socket)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def make_server(root: Path) -> Server:
    """Create a cluster under ``root`` (writable by the server's user) and start it."""
    run_as: list[str] = []
    if os.geteuid() == 0:
        run_as = ["runuser", "-u", SERVER_USER, "--"]
        shutil.chown(root, SERVER_USER)
    data, socket_dir = root / "data", root / "socket"
    subprocess.run(
        [*run_as, "mkdir", "-m", "700", str(socket_dir)], check=True, capture_output=True
    )
    subprocess.run(
        [
            *run_as,
            "initdb",
            "-D",
            str(data),
            "-U",
            SERVER_USER,
            "--auth=trust",
            "-N",
            "-E",
            "UTF8",
            "--locale=C",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = Server(data, socket_dir, free_port(), run_as)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Server]:
    """A temporary PostgreSQL server for the whole session (skipped if none can be made)."""
    reason = missing_binaries()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires the PostgreSQL tests")
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="typedstore-pg-"))
    root.chmod(0o755)
    server = None
    try:
        server = make_server(root)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_dsn(postgres_server: Server) -> str:
    """A connection string whose tables go to a new schema of their own, for one test."""
    import psycopg
    from psycopg import sql

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    return postgres_server.dsn(options=f"-csearch_path={schema}")
