"""Each script in examples/ runs on its own in a fresh directory and prints what it claims."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from typedstore import SchemaMismatchError, TypedStore

EXAMPLES_DIR = Path(__file__).parents[1] / "examples"
EXAMPLES = ["evolve", "quickstart", "records", "settings", "shop", "transfer"]


def run_example(name: str, cwd: Path, *args: str) -> str:
    """Run ``examples/<name>.py`` with warnings as errors; return its stdout, checking success."""
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES_DIR / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout


class FirstRuns:
    """Each example's first run in an empty directory, made once and copied to each test
    that looks at it: a run costs a process start and the imports, a copy very little."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._done: dict[str, tuple[Path, str]] = {}

    def __call__(self, name: str, cwd: Path) -> str:
        """Leave in ``cwd`` what ``name``'s first run in an empty directory leaves; return
        what that run printed."""
        if name not in self._done:
            where = self._factory.mktemp(name)
            self._done[name] = (where, run_example(name, where))
        where, out = self._done[name]
        shutil.copytree(where, cwd, dirs_exist_ok=True)
        return out


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> FirstRuns:
    """The examples' first runs, shared by this module's tests."""
    return FirstRuns(tmp_path_factory)


def test_every_example_is_checked() -> None:
    """The list this module runs is exactly the set of scripts in examples/."""
    assert sorted(path.stem for path in EXAMPLES_DIR.glob("*.py")) == EXAMPLES


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_has_a_module_docstring(name: str) -> None:
    """Each example starts with a docstring saying what it shows."""
    tree = ast.parse((EXAMPLES_DIR / f"{name}.py").read_text(encoding="utf-8"))
    docstring = ast.get_docstring(tree)
    assert docstring is not None
    assert len(docstring) > 40


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_writes_its_log_under_data_by_default(
    first_run: FirstRuns, name: str, tmp_path: Path
) -> None:
    """Without arguments an example creates ./data/<name>.log in the working directory."""
    first_run(name, tmp_path)
    log = tmp_path / "data" / f"{name}.log"
    assert log.read_bytes().startswith(b"\x89TDSLOG\n")


def all_but(quick: str) -> list[Any]:
    """Every example, those but ``quick`` marked slow: the quick run tries a behaviour that
    each example has alike on one of them."""
    return [
        pytest.param(name, marks=[] if name == quick else [pytest.mark.slow]) for name in EXAMPLES
    ]


@pytest.mark.parametrize("name", all_but("quickstart"))
def test_example_uses_the_log_path_it_is_given(name: str, tmp_path: Path) -> None:
    """An explicit path argument is where the example's log goes, and ./data is not made."""
    target = tmp_path / "elsewhere" / "custom.log"
    run_example(name, tmp_path, str(target))
    assert target.read_bytes().startswith(b"\x89TDSLOG\n")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("name", all_but("transfer"))
def test_example_starts_fresh_on_every_run(first_run: FirstRuns, name: str, tmp_path: Path) -> None:
    """A second run over the first run's log prints exactly the same output."""
    first = first_run(name, tmp_path)
    assert run_example(name, tmp_path) == first


def test_quickstart_prints_the_recovered_users(first_run: FirstRuns, tmp_path: Path) -> None:
    """Quickstart recovers alice (modified) and carol in order, and bob stays removed."""
    lines = first_run("quickstart", tmp_path).splitlines()
    start = lines.index("recovered 2 users after reopening:")
    assert lines[start + 1 : start + 4] == [
        "  alice: name=Alice age=31 tags=admin",
        "  carol: name=Carol age=41 tags=ops, oncall",
        "bob present: False",
    ]


def test_quickstart_prints_the_real_log_sizes(first_run: FirstRuns, tmp_path: Path) -> None:
    """The sizes quickstart prints are the log's, and compaction made it smaller."""
    out = first_run("quickstart", tmp_path)
    before = re.search(r"^log file size: (\d+) bytes$", out, re.MULTILINE)
    after = re.search(r"^after compact\(\): (\d+) bytes", out, re.MULTILINE)
    assert before is not None
    assert after is not None
    assert int(after[1]) == (tmp_path / "data" / "quickstart.log").stat().st_size
    assert int(before[1]) > int(after[1])


def test_quickstart_log_replays_to_what_it_printed(first_run: FirstRuns, tmp_path: Path) -> None:
    """The log quickstart leaves opens, without its model, to the two users it printed."""
    first_run("quickstart", tmp_path)
    log = tmp_path / "data" / "quickstart.log"
    with TypedStore.open(log, str, dict[str, object], readonly=True) as users:
        assert [(key, user["age"]) for key, user in users.items()] == [
            ("alice", 31),
            ("carol", 41),
        ]


def test_settings_first_run_stores_the_defaults(first_run: FirstRuns, tmp_path: Path) -> None:
    """The settings example reports storing the defaults, and shows them."""
    lines = first_run("settings", tmp_path).splitlines()
    assert lines[:2] == [
        "first run: stored defaults for 'default'",
        "defaults: theme=light font_size=12 recent=-",
    ]


def test_settings_rejects_an_invalid_update(first_run: FirstRuns, tmp_path: Path) -> None:
    """An out-of-range font size is refused and the settings keep their old size."""
    out = first_run("settings", tmp_path)
    assert "rejected font_size=500: Input should be less than or equal to 72" in out
    assert "after updates: theme=dark font_size=12 recent=todo.txt, notes.md" in out


def test_settings_second_run_sees_the_first_runs_updates(
    first_run: FirstRuns, tmp_path: Path
) -> None:
    """The reopened settings are the updated ones, and no defaults are written again."""
    lines = first_run("settings", tmp_path).splitlines()
    assert lines[-1] == "second run: theme=dark font_size=12 recent=todo.txt, notes.md"
    assert sum(line.startswith("first run:") for line in lines) == 1


def test_records_failed_modify_changes_nothing(first_run: FirstRuns, tmp_path: Path) -> None:
    """Each failing modify in the records example is reported and leaves value and log alone."""
    out = first_run("records", tmp_path)
    assert "ship A-1002 refused: cannot ship an order that is open" in out
    assert "pay A-1002 failed: card declined" in out
    assert "status 'lost' refused: Input should be 'open', 'paid' or 'shipped'" in out
    assert "A-1002 and the log unchanged after failed updates: True" in out


def test_records_reopen_shows_the_modified_orders(first_run: FirstRuns, tmp_path: Path) -> None:
    """After reopening, the orders have the statuses their successful modifies gave them."""
    lines = first_run("records", tmp_path).splitlines()
    start = lines.index("after reopening:")
    assert lines[start + 1 :] == [
        "  A-1001: Ada 450 cents shipped 2024-05-01T12:30:00+00:00",
        "  A-1002: Bo 1350 cents paid 2024-05-01T12:30:00+00:00",
    ]


def test_transfer_keeps_the_total_constant(first_run: FirstRuns, tmp_path: Path) -> None:
    """Every balance line the transfer example prints has the same total."""
    out = first_run("transfer", tmp_path)
    totals = re.findall(r"total=(\d+)$", out, re.MULTILINE)
    assert totals == ["12500"] * 4


def test_transfer_failed_transfer_changes_nothing(first_run: FirstRuns, tmp_path: Path) -> None:
    """The refused transfer leaves the balances of the good one, also after reopening."""
    lines = first_run("transfer", tmp_path).splitlines()
    assert lines[2] == "bob->alice 9000 failed: Bob has 5500 cents, cannot send 9000"
    assert lines[3:] == [
        "after failed transfer: alice=7000 bob=5500 total=12500",
        "after reopening: alice=7000 bob=5500 total=12500",
    ]


def test_evolve_opens_old_records_at_each_release(first_run: FirstRuns, tmp_path: Path) -> None:
    """Release 2 sees the renamed field, release 3 every customer upgraded to version 3."""
    lines = first_run("evolve", tmp_path).splitlines()
    assert lines[:3] == [
        "release 1: stored 2 customers at version 1",
        "release 2: ada is CustomerV2(full_name='Ada Lovelace', phone='555-0101', "
        "fax='555-0102', email='')",
        "release 2: stored cy at version 2",
    ]
    start = lines.index(
        "release 3: ada is CustomerV3(full_name='Ada Lovelace', phone='555-0101', email='')"
    )
    assert lines[start + 1 : start + 3] == [
        "release 3: bo is CustomerV3(full_name='Bo Diddley', phone='555-0201', email='')",
        "release 3: cy is CustomerV3(full_name='Cy Twombly', phone='555-0301', "
        "email='cy@example.com')",
    ]


def test_evolve_refusals_name_the_problem_and_change_nothing(
    first_run: FirstRuns, tmp_path: Path
) -> None:
    """The missing step, the kept ``fax`` and the downgrade are refused; the log is unchanged."""
    out = first_run("evolve", tmp_path)
    assert "release 3 without the 2 -> 3 step: refused (version 1 records)" in out
    assert "release 3 keeping fax by mistake: refused, would lose fax" in out
    assert "log unchanged by the refusals: True" in out
    assert "release 2 reopening the log: refused (records at version 3)" in out


def test_evolve_compaction_leaves_a_single_version_log(
    first_run: FirstRuns, tmp_path: Path
) -> None:
    """After the example, the log opens at version 3 without migrations and refuses version 2."""
    out = first_run("evolve", tmp_path)
    assert "same values: True" in out
    log = tmp_path / "data" / "evolve.log"
    with TypedStore.open(log, str, dict[str, object], version=3, readonly=True) as customers:
        assert list(customers) == ["ada", "bo", "cy", "di"]
        assert "fax" not in customers["cy"]
    with pytest.raises(SchemaMismatchError, match="newer than this code's version 2"):
        TypedStore.open(log, str, dict[str, object], version=2, readonly=True)


def test_evolve_logs_the_compatible_change(first_run: FirstRuns, tmp_path: Path) -> None:
    """The defaulted field added without a bump opens, and the store's log line says so."""
    lines = first_run("evolve", tmp_path).splitlines()
    assert lines[-2:] == [
        "  logged: the value type changed without a schema version bump (added: newsletter)",
        "compatible change: ada.newsletter=False",
    ]


def test_shop_pays_across_collections_once(first_run: FirstRuns, tmp_path: Path) -> None:
    """The shop example finds bo by email, lists the newest orders first, charges ada once
    for order 1, and the declined payment of order 2 leaves both collections as they were,
    also after reopening."""
    lines = first_run("shop", tmp_path).splitlines()
    assert lines == [
        "user with email bo@example.org: bo",
        "two newest orders: [2, 1]",
        "order 1 paid: True, ada spent 3000",
        "order 2 payment failed: card of bo declined",
        "nothing written by the failed payment: True",
        "after reopening:",
        "  user ada: Ada spent=3000",
        "  user bo: Bo spent=0",
        "  order 1: ada 3000 paid",
        "  order 2: bo 1250 open",
        "  order 3: ada 800 open",
    ]


def test_shop_rerun_over_its_log_charges_nobody_twice(first_run: FirstRuns, tmp_path: Path) -> None:
    """Running the shop example again over its own log, as after a crash, adds no record."""
    first_run("shop", tmp_path)
    log = tmp_path / "data" / "shop.log"
    size = log.stat().st_size
    run_example("shop", tmp_path)
    assert log.stat().st_size == size
