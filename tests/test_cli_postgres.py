"""The command line on a store in PostgreSQL: a DSN and --name where a log path goes, and
``init-postgres`` (docs/CLI.md). Skips without the server binaries unless
``TYPEDSTORE_REQUIRE_POSTGRES=1``."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.pg import Server
from typedstore import PostgresEngine, TypedStore
from typedstore._cli import run


@pytest.fixture
def dsn(postgres_server: Server, pg_dsn: str) -> str:
    """A postgresql:// URI on the test's own schema (the CLI takes URIs only)."""
    schema = pg_dsn.split("search_path=")[1]
    return (
        f"postgresql://postgres@/postgres?host={postgres_server.socket_dir}"
        f"&port={postgres_server.port}&options=-csearch_path%3D{schema}"
    )


def write(where: str | Path | PostgresEngine) -> None:
    """Write the same few records to a store."""
    with TypedStore.open(where, str, int) as store:
        store.update({"a": 1, "b": 2, "c": 3})
        store["a"] = 4
        del store["b"]


def output(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the CLI; return its exit status, stdout and stderr."""
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dump_equals_the_dump_of_a_file_store_with_the_same_writes(
    dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """dump DSN --name reads the store in PostgreSQL as the file's code reads a file."""
    write(PostgresEngine(dsn, name="users"))
    write(tmp_path / "store.log")
    code, from_pg, _ = output(capsys, "dump", dsn, "--name", "users")
    assert code == 0
    assert output(capsys, "dump", str(tmp_path / "store.log"))[1] == from_pg
    assert [json.loads(line)["key"] for line in from_pg.splitlines()] == ["a", "c"]


def test_verify_and_info_read_a_store_in_postgres(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify says clean; info counts the records, as for a file."""
    write(PostgresEngine(dsn, name="users"))
    code, out, _ = output(capsys, "verify", dsn, "--name", "users", "--json")
    assert code == 0
    assert json.loads(out)["status"] == "clean"
    code, out, _ = output(capsys, "info", dsn, "--name", "users", "--json")
    assert code == 0
    assert "store 'users'" in out


def test_a_dsn_without_a_name_is_a_usage_error(
    dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DSN needs --name; compact and repair refuse a DSN; nothing is created."""
    code, _, err = output(capsys, "dump", dsn)
    assert code == 64
    assert "--name" in err
    code, _, err = output(capsys, "compact", dsn, "--name", "users")
    assert code == 64
    assert "store.compact()" in err


def test_a_missing_store_is_named(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """dump of a store whose tables are missing fails, naming it, creating nothing."""
    code, _, err = output(capsys, "dump", dsn, "--name", "nobody")
    assert code == 3
    assert "no such store" in err


def test_init_postgres_creates_the_tables_a_store_then_uses(
    dsn: str, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """init-postgres creates the two tables; a store opens on them."""
    code, out, _ = output(capsys, "init-postgres", dsn, "--name", "users")
    assert code == 0, out
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT to_regclass('users_log') IS NOT NULL "
            "AND to_regclass('users_snapshot') IS NOT NULL"
        ).fetchone()
    assert found == (True,)
    write(PostgresEngine(dsn, name="users"))
    assert output(capsys, "dump", dsn, "--name", "users")[0] == 0


def test_init_postgres_print_sql_connects_nowhere(capsys: pytest.CaptureFixture[str]) -> None:
    """--print-sql prints the CREATE TABLE statements for the name, needing no server."""
    code, out, _ = output(capsys, "init-postgres", "--name", "users", "--print-sql")
    assert code == 0
    assert out.count("CREATE TABLE IF NOT EXISTS") == 2
    assert '"users_log"' in out


def test_init_postgres_refuses_a_bad_name(capsys: pytest.CaptureFixture[str]) -> None:
    """A name that is not a lower-case identifier is a usage error."""
    code, _, err = output(capsys, "init-postgres", "--name", "Users; drop", "--print-sql")
    assert code != 0
    assert "identifier" in err
