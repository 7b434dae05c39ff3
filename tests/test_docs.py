"""README.md and docs/FORMAT.md say what the code does: examples are regenerated and run here."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import re
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import typedstore
from typedstore import EncodingError, StoreConfig, TypedStore, _catalog, _format, _inspect
from typedstore._codec import Codec, decode_metadata
from typedstore._compact import live_chunks
from typedstore._packing import packb

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FORMAT = (ROOT / "docs" / "FORMAT.md").read_text(encoding="utf-8")
QUICK_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e . "
    "&& .venv/bin/python examples/quickstart.py"
)
TEST_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' "
    "&& .venv/bin/python -m pytest -n 2"
)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
HEX_LINE = re.compile(r"^([0-9a-f]{4})  ((?:[0-9a-f]{2} )*[0-9a-f]{2})(?: {2,}\S.*)?$")


def fenced_blocks(text: str, language: str) -> list[str]:
    """Return the contents of the fenced code blocks of ``language`` in ``text``, in order."""
    return [body for lang, body in FENCE.findall(text) if lang == language]


def block_after_marker(text: str, marker: str) -> str:
    """Return the fenced block that directly follows the HTML comment ``<!-- marker -->``."""
    match = re.search(rf"<!-- {re.escape(marker)} -->\n```\w*\n(.*?)^```$", text, re.M | re.S)
    assert match is not None, f"no block marked {marker!r}"
    return match[1]


def parse_hex_dump(block: str) -> tuple[int, bytes]:
    """Return the start offset and the bytes of an annotated dump, checking every offset."""
    start: int | None = None
    data = bytearray()
    for line in block.splitlines():
        match = HEX_LINE.match(line)
        assert match is not None, f"not a dump line: {line!r}"
        offset = int(match[1], 16)
        if start is None:
            start = offset
        assert offset == start + len(data), f"offset {match[1]} does not follow the bytes above"
        data += bytes.fromhex(match[2])
    assert start is not None
    return start, bytes(data)


def write_format_example(folder: Path) -> tuple[bytes, bytes]:
    """Write FORMAT.md's example log; return its bytes before and after the batch."""
    path = folder / "example.log"
    with TypedStore.open(path, str, int) as store:
        store.insert("a", 1)
        store.insert("b", 2)
        store.remove("a")
    basic = path.read_bytes()
    with TypedStore.open(path, str, int) as store, store.transaction() as tx:
        tx["c"] = 3
        del tx["b"]
    return basic, path.read_bytes()


def write_collections_example() -> bytes:
    """Return FORMAT.md's two-collection log: users (id 0) and orders (id 1), a batch across.

    It is built from the format's own functions (the catalog, bodies and frames), so it
    is exactly the layout FORMAT.md's "Collections" section describes.
    """
    users: Codec[str, int] = Codec(str, int)
    orders: Codec[int, bool] = Codec(int, bool)
    catalog = _catalog.database(
        [
            _catalog.CollectionMeta("users", 0, decode_metadata(users.metadata(1))),
            _catalog.CollectionMeta("orders", 1, decode_metadata(orders.metadata(1))),
        ]
    )

    def user(name: str, spent: int) -> bytes:
        return _format.insert_body(users.encode_key(name)[1], users.encode_value(spent)[1])

    def order(number: int, paid: bool) -> bytes:
        body = _format.insert_body(orders.encode_key(number)[1], orders.encode_value(paid)[1])
        return _format.collection_body(1, body)

    bodies = [
        user("ada", 0),
        order(1, False),
        _format.batch_body([order(1, True), user("ada", 30)]),
    ]
    return b"".join(live_chunks(_format.encode_header(packb(catalog.to_meta())), bodies))


# -- docs/FORMAT.md ---------------------------------------------------------------------------


def test_format_basic_example_is_the_log_the_library_writes(tmp_path: Path) -> None:
    """The annotated hex dump of the three-record log equals the library's output byte for byte."""
    basic, _ = write_format_example(tmp_path)
    start, documented = parse_hex_dump(block_after_marker(FORMAT, "hex-example: basic"))
    assert start == 0
    assert documented == basic


def test_format_batch_example_is_the_frame_the_library_appends(tmp_path: Path) -> None:
    """The annotated batch frame equals what a committed transaction appends to that log."""
    basic, full = write_format_example(tmp_path)
    start, documented = parse_hex_dump(block_after_marker(FORMAT, "hex-example: batch"))
    assert start == len(basic)
    assert basic + documented == full


def test_format_states_the_example_sizes(tmp_path: Path) -> None:
    """The sizes FORMAT.md gives for the example log are the real ones."""
    basic, full = write_format_example(tmp_path)
    assert f"is {len(basic)} bytes long" in FORMAT
    assert f"The log is now {len(full)} bytes" in FORMAT


def test_format_collections_example_is_the_log_of_the_format(tmp_path: Path) -> None:
    """The annotated two-collection log equals the bytes the format's functions build."""
    start, documented = parse_hex_dump(block_after_marker(FORMAT, "hex-example: collections"))
    assert start == 0
    assert documented == write_collections_example()
    assert f"is {len(documented)} bytes long and replays to" in FORMAT


def test_format_collections_example_reads_as_documented(tmp_path: Path) -> None:
    """The command line reads the example log as FORMAT.md says: two collections, one batch."""
    path = tmp_path / "shop.log"
    path.write_bytes(write_collections_example())
    scan = _inspect.scan_log(path, path.read_bytes())
    contents = _inspect.read_contents(scan)
    assert _inspect.check(scan).status == "clean"
    live = {
        (entry.collection, msgpack.unpackb(entry.key)): msgpack.unpackb(entry.value)
        for entry in contents.entries.values()
    }
    assert live == {(0, "ada"): 30, (1, 1): True}
    assert [meta.name for meta in contents.catalog.collections] == ["users", "orders"]


def test_format_collections_example_cut_inside_the_batch_keeps_neither_write(
    tmp_path: Path,
) -> None:
    """A cut inside the example's batch is a torn tail replaying to the state before it."""
    full = write_collections_example()
    batch = _format.read_frame(full, _format.read_frame(full, _format.decode_header(full)[1]))
    path = tmp_path / "cut.log"
    for cut in range(batch + 1, len(full)):
        path.write_bytes(full[:cut])
        scan = _inspect.scan_log(path, path.read_bytes())
        assert _inspect.check(scan).status == "torn_tail", cut
        values = [
            msgpack.unpackb(entry.value) for entry in _inspect.read_contents(scan).entries.values()
        ]
        assert values == [0, False], cut


def test_format_states_the_constants_of_the_code() -> None:
    """Magic, version and sanity bounds in FORMAT.md are the values _format uses."""
    assert f"`{_format.MAGIC.hex(' ')}`" in FORMAT
    assert f"# The typedstore log format, version {_format.FORMAT_VERSION}\n" in FORMAT
    assert f"| `MAX_META_BYTES` | {_format.MAX_META_BYTES} (" in FORMAT
    assert f"| `MAX_RECORD_BYTES` | {_format.MAX_RECORD_BYTES} (" in FORMAT
    for kind in _format.RecordKind:
        assert f"| `{kind.value:02x}` | {kind.name.lower()} |" in FORMAT


def test_record_beyond_the_length_bound_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record longer than MAX_RECORD_BYTES raises at the write instead of being dropped later."""
    monkeypatch.setattr(_format, "MAX_RECORD_BYTES", 64)
    path = tmp_path / "bound.log"
    with TypedStore.open(path, str, bytes) as store:
        with pytest.raises(EncodingError, match=r"MAX_RECORD_BYTES|exceeds|too large"):
            store["big"] = b"x" * 100
        assert "big" not in store
    with TypedStore.open(path, str, bytes, readonly=True) as store:
        assert store.recovery is None


# -- README.md --------------------------------------------------------------------------------


def test_readme_starts_with_the_two_commands() -> None:
    """Right after the title and the introduction, README's first block holds both commands."""
    first_block = FENCE.search(README)
    assert first_block is not None
    assert README.startswith("# typedstore\n")
    assert README.index(first_block[0]) < README.index("\n## ")
    lines = first_block[2].splitlines()
    assert QUICK_COMMAND in lines
    assert TEST_COMMAND in lines


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run runs exactly README's test command."""
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert TEST_COMMAND in ci_lines


def test_readme_shows_the_quickstart_output(tmp_path: Path) -> None:
    """The quickstart output README shows is what the example prints, byte counts aside."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    documented = block_after_marker(README, "quickstart-output")

    def mask(text: str) -> str:
        return re.sub(r"\d+ bytes", "N bytes", text)

    assert mask(result.stdout) == mask(documented)


def test_readme_errors_table_lists_every_public_error() -> None:
    """Every exception typedstore exports has a row in README's errors table."""
    errors = [name for name in typedstore.__all__ if name.endswith("Error")]
    assert len(errors) >= 8
    missing = [name for name in errors if f"\n| `{name}` |" not in README]
    assert missing == []


def test_readme_configuration_table_lists_every_field() -> None:
    """Every StoreConfig field has a row in README's configuration table, with its default."""
    documented: dict[str, object] = {}
    for field in dataclasses.fields(StoreConfig):
        match = re.search(rf"^\| `{field.name}` \| `([^`]+)`", README, re.MULTILINE)
        assert match is not None, field.name
        documented[field.name] = ast.literal_eval(match[1])
    assert documented == {field.name: field.default for field in dataclasses.fields(StoreConfig)}


def test_readme_python_blocks_were_found() -> None:
    """README has the runnable Python blocks this module executes."""
    assert len(fenced_blocks(README, "python")) >= 4


@pytest.mark.parametrize("index", range(len(fenced_blocks(README, "python"))))
def test_readme_python_block_runs_and_prints_what_it_says(
    index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each README Python block runs on its own and prints what its ``# comments`` say."""
    code = fenced_blocks(README, "python")[index]
    expected = re.findall(r"^\s*print\(.*\)  # (.*)$", code, re.MULTILINE)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"README.md python block {index}", "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == expected


def test_format_states_where_torn_tails_begin(tmp_path: Path) -> None:
    """The offsets FORMAT.md gives for torn tails are the header's end and the first log's end."""
    basic, full = write_format_example(tmp_path)
    _, header_end = _format.decode_header(basic)
    assert f"at any offset after {header_end:#06x} leaves a torn tail" in FORMAT
    assert f"Cutting the file at any offset after\n{len(basic):#06x} and before its end" in FORMAT
    boundaries = {header_end}
    while max(boundaries) < len(full):
        boundaries.add(_format.read_frame(full, max(boundaries)))
    cut_log = tmp_path / "cut.log"
    for cut in sorted(set(range(header_end, len(full))) - boundaries):
        cut_log.write_bytes(full[:cut])
        with TypedStore.open(cut_log, str, int, readonly=True) as store:
            assert store.recovery is not None
            assert store.recovery.kind == "torn_tail"
