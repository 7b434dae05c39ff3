"""What each ``typedstore`` command reports, as JSON data and as lines of text.

Pure functions from what ``_inspect`` and ``_inspect_rewrite`` found to what
``docs/CLI.md`` shows: a command prints the JSON report with ``--json`` and the lines
otherwise. Keys and values are the data msgpack holds, rendered by
``_render.to_json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from . import _format, _inspect
from ._catalog import Catalog, CollectionMeta
from ._cli_exit import CommandFailed, ExitCode, Failure
from ._codec import RecordDecodeError, decode_metadata, unpack
from ._inspect_rewrite import Rewrite
from ._render import JSONValue, dumps, to_json

# -- info -----------------------------------------------------------------------------------


def info_report(scan: _inspect.LogScan) -> dict[str, JSONValue]:
    """Return ``info``'s report: format version, sizes, counts, state, metadata, collections."""
    total = scan.records
    contents = _inspect.read_contents(scan)
    catalogs = _catalogs(scan)
    live = len(contents.entries)
    meta, meta_error = _metadata(scan.meta)
    return {
        "path": str(scan.path),
        "format_version": None if scan.meta is None else _format.FORMAT_VERSION,
        "file_size": scan.size,
        "header_size": scan.start,
        "records": len(scan.frames),
        "operations": total,
        "live_entries": live,
        "dead_operations": total - live,
        "dead_ratio": round((total - live) / total, 4) if total else 0.0,
        "state": _state(_inspect.check(scan)),
        "schema_versions": _schema_versions(catalogs),
        "metadata": meta,
        "metadata_error": meta_error,
        "collections": _collections_report(catalogs, contents),
    }


def _catalogs(scan: _inspect.LogScan) -> list[Catalog]:
    """Return the header's catalog and each schema record's, in log order."""
    if scan.meta is None:
        return []
    header = _inspect.read_log_catalog(scan.path, scan.meta, 0)
    schemas = (frame.catalog for frame in scan.frames if frame.schema is not None)
    return [header, *(catalog for catalog in schemas if catalog is not None)]


def _schema_versions(catalogs: list[Catalog], collection: int | None = None) -> list[JSONValue]:
    """Return the schema versions the log's records (of ``collection``) were written at.

    In log order, each once; every collection of a catalog counts when ``collection``
    is None.
    """
    versions: list[JSONValue] = []
    for catalog in catalogs:
        for meta in catalog.collections:
            if collection in (None, meta.id) and meta.version not in versions:
                versions.append(meta.version)
    return versions


def _collections_report(catalogs: list[Catalog], contents: _inspect.Contents) -> list[JSONValue]:
    """Return one report per collection the log holds now, in its catalog's order."""
    return [
        {
            "name": meta.name,
            "id": meta.id,
            "operations": contents.operations.get(meta.id, 0),
            "live_entries": len(contents.live(meta.id)),
            "key_type": to_json(meta.schema.get("key_type")),
            "value_type": to_json(meta.schema.get("value_type")),
            "version": meta.version,
            "schema_versions": _schema_versions(catalogs, meta.id),
            "fingerprint": meta.fingerprint or None,
        }
        for meta in contents.catalog.collections
    ]


def _metadata(meta: bytes | None) -> tuple[JSONValue, JSONValue]:
    if meta is None:
        return None, None
    try:
        return to_json(decode_metadata(meta)), None
    except RecordDecodeError as exc:
        return None, str(exc)


def _state(finding: _inspect.Finding) -> dict[str, JSONValue]:
    return {"status": finding.status, "offset": finding.offset, "reason": finding.reason}


def info_lines(report: dict[str, JSONValue]) -> list[str]:
    """Return ``info``'s report as aligned ``name: value`` lines."""
    rows = [
        ("path", report["path"]),
        ("format version", report["format_version"] or "none (empty file, no header yet)"),
        ("file size", f"{report['file_size']:,} bytes (header {report['header_size']:,})"),
        ("records", f"{report['records']:,} ({report['operations']:,} operations)"),
        ("live entries", f"{report['live_entries']:,}"),
        (
            "dead ratio",
            f"{report['dead_ratio']:.1%} ({report['dead_operations']:,} dead operations)",
        ),
        ("state", _state_line(report["state"])),
        ("schema versions", _versions_text(report["schema_versions"])),
    ]
    meta = report["metadata"]
    if isinstance(meta, dict) and "collections" not in meta:  # a database's: listed below
        rows.extend((name.replace("_", " "), _meta_text(value)) for name, value in meta.items())
    elif report["metadata_error"] is not None:
        rows.append(("metadata", f"undecodable ({report['metadata_error']})"))
    collections = report["collections"]
    assert isinstance(collections, list)
    rows.append(("collections", f"{len(collections):,}"))
    rows.extend(("collection", _collection_text(item)) for item in collections)
    return [f"{name + ':':<15} {value}" for name, value in rows]


def _collection_text(item: JSONValue) -> str:
    """Return one collection of ``info`` on one line: name, id, counts, types, version."""
    assert isinstance(item, dict)
    live = _live(item["live_entries"])
    operations = _count(_int(item["operations"]), "operation")
    types = f"key {_meta_text(item['key_type'])}, value {_meta_text(item['value_type'])}"
    return (
        f"{item['name']} (id {item['id']}): {live}, {operations}; {types}; "
        f"schema version {item['version']}"
    )


def _int(value: JSONValue) -> int:
    assert isinstance(value, int)
    return value


def _live(value: JSONValue) -> str:
    return _count(_int(value), "live entry", "live entries")


def _versions_text(versions: JSONValue) -> str:
    if isinstance(versions, list) and versions:
        return ", ".join(str(version) for version in versions)
    return "none"


def _meta_text(value: JSONValue) -> str:
    return value if isinstance(value, str) else dumps(value)


def _state_line(state: JSONValue) -> str:
    assert isinstance(state, dict)
    offset = state["offset"]
    if state["status"] == "clean":
        return "clean"
    if state["status"] == "torn_tail":
        return f"torn tail at byte offset {offset} (a writable open drops it)"
    return f"damaged at byte offset {offset} ({state['reason']}); see 'typedstore verify'"


# -- verify ---------------------------------------------------------------------------------


def verify_report(path: Path, size: int, finding: _inspect.Finding) -> dict[str, JSONValue]:
    """Return ``verify``'s verdict on the log at ``path``, ``size`` bytes long."""
    return {
        "path": str(path),
        "status": finding.status,
        "offset": finding.offset,
        "reason": finding.reason,
        "file_size": size,
        "records": finding.frames,
        "records_after": finding.frames_after,
    }


def verify_line(path: Path, size: int, finding: _inspect.Finding) -> str:
    """Return ``verify``'s verdict as one line: where the damage is and what open does."""
    if finding.status == "clean":
        records = _count(finding.frames, "record")
        return f"{path}: clean: {records}, {size:,} bytes, every checksum valid"
    offset = finding.offset or 0
    if finding.status == "torn_tail":
        return (
            f"{path}: torn tail at byte offset {offset}: the last {size - offset:,} bytes are "
            f"an incomplete record; {_intact(finding.frames)} (a writable open drops the tail)"
        )
    return (
        f"{path}: damaged at byte offset {offset} ({finding.reason}); "
        f"{_count(finding.frames_after, 'readable record')} after it; opening the store raises "
        "CorruptLogError (see 'typedstore repair')"
    )


def _intact(records: int) -> str:
    verb = "is" if records == 1 else "are"
    return f"the {_count(records, 'record')} before it {verb} intact"


def check_collection(scan: _inspect.LogScan, name: str) -> JSONValue:
    """Decode the live entries of the collection ``name``; report how many there are.

    The name is looked up in the catalog at the end of the readable records; an unknown
    name is a usage error listing the log's collections.
    """
    contents = _inspect.read_contents(scan)
    meta = collection_named(scan.path, contents.catalog, name)
    entries = contents.live(meta.id)
    for entry in entries:  # what dump --collection would print must decode
        unpack(entry.key)
        unpack(entry.value)
    return {"name": meta.name, "id": meta.id, "live_entries": len(entries)}


def checked_text(checked: JSONValue) -> str:
    """Return the end of ``verify``'s line for ``--collection``: what was decoded."""
    assert isinstance(checked, dict)
    return f"collection {checked['name']}: {_live(checked['live_entries'])} decoded"


def collection_named(path: Path, catalog: Catalog, name: str) -> CollectionMeta:
    """Return the collection ``name`` of ``catalog``; a usage error listing the names if none."""
    meta = catalog.by_name(name)
    if meta is not None:
        return meta
    names = ", ".join(repr(item.name) for item in catalog.collections) or "none (no header yet)"
    message = f"{path}: no collection named {name!r}; the log's collections: {names}"
    raise CommandFailed(Failure(ExitCode.USAGE, message))


# -- dump -----------------------------------------------------------------------------------


def entry_line(entry: _inspect.Entry) -> dict[str, JSONValue]:
    """Return a live entry as ``dump`` prints it: its key and value."""
    return _pair(entry.key, entry.value)


def _pair(key: bytes, value: bytes) -> dict[str, JSONValue]:
    return {"key": _blob_to_json(key), "value": _blob_to_json(value)}


def _blob_to_json(blob: bytes) -> JSONValue:
    """Render the msgpack in ``blob``, which the scan already decoded once."""
    return to_json(unpack(blob))


def records(scan: _inspect.LogScan) -> Iterator[dict[str, JSONValue]]:
    """Yield every frame and damaged range of the log, in file order (``dump --all``)."""
    events: list[tuple[int, dict[str, JSONValue]]] = [
        (frame.offset, _frame_record(frame)) for frame in scan.frames
    ]
    ranges = [("damaged", item.start, item.end) for item in scan.damage]
    if scan.torn_tail is not None:
        ranges.append(("torn_tail", scan.torn_tail, scan.size))
    for kind, start, end in ranges:
        events.append((start, {"offset": start, "kind": kind, "length": end - start}))
    for _, record in sorted(events, key=lambda event: event[0]):
        yield record


def _frame_record(frame: _inspect.Frame) -> dict[str, JSONValue]:
    if frame.error is not None:
        body = to_json(frame.undecodable_body)
        return {"offset": frame.offset, "kind": "undecodable", "error": frame.error, "body": body}
    if frame.schema is not None:
        return {"offset": frame.offset, "kind": "schema", "metadata": _metadata(frame.schema)[0]}
    if frame.kind == _format.RecordKind.BATCH:
        ops: list[JSONValue] = [_op_record(op, frame.catalog) for op in frame.ops]
        return {"offset": frame.offset, "kind": "batch", "ops": ops}
    return {"offset": frame.offset, **_op_record(frame.ops[0], frame.catalog)}


def _op_record(op: _format.Op, catalog: Catalog | None) -> dict[str, JSONValue]:
    """Return one operation; in a database's log, with the name of its collection then."""
    named: dict[str, JSONValue] = {}
    if catalog is not None and not catalog.single:
        meta = catalog.by_id(op.collection)
        named["collection"] = None if meta is None else meta.name
    if op.value is None:
        return {**named, "kind": "remove", "key": _blob_to_json(op.key)}
    return {**named, "kind": "insert", **_pair(op.key, op.value)}


# -- compact and repair ---------------------------------------------------------------------


def compaction_lines(path: Path, result: Rewrite) -> list[str]:
    """Return what ``compact`` did as lines: the torn tail it dropped, the sizes."""
    scan = result.scan
    if scan.meta is None:
        return [f"{path}: empty log (no header yet); nothing to compact"]
    lines = []
    if scan.torn_tail is not None:
        lines.append(f"{path}: dropped a torn tail at byte offset {scan.torn_tail}")
    schemas = f" and {_count(result.schemas, 'schema record')}" if result.schemas else ""
    lines.append(
        f"{path}: compacted {_count(len(scan.frames), 'record')} "
        f"({_count(scan.records, 'operation')}) to {_count(result.live, 'record')}{schemas}; "
        f"{scan.size:,} -> {result.size:,} bytes"
    )
    return lines


def compaction_report(path: Path, result: Rewrite) -> dict[str, JSONValue]:
    """Return what ``compact`` did: the counts and sizes before and after."""
    scan = result.scan
    return {
        "path": str(path),
        "status": "empty" if scan.meta is None else "compacted",
        "records_before": len(scan.frames),
        "operations_before": scan.records,
        "records": result.live + result.schemas,
        "live_entries": result.live,
        "schema_records": result.schemas,
        "size_before": scan.size,
        "size": result.size if scan.meta is not None else scan.size,
        "torn_tail_dropped_at": scan.torn_tail,
    }


def repair_lines(path: Path, mode: str, result: Rewrite) -> list[str]:
    """Return what ``repair`` did as lines: the copy, the bytes and records dropped, the rest."""
    if result.backup is None:
        return [f"{path}: no damage found; nothing changed"]
    lines = [f"{path}: copied the original to {_beside(path, result.backup)}"]
    for start, end in result.dropped:
        lines.append(f"{path}: dropped bytes {start}-{end} ({end - start:,} bytes)")
    if result.dropped_frames:
        lost = _count(result.dropped_frames, "readable record")
        lines.append(f"{path}: dropped {lost} after the damage (the copy keeps them)")
    live = _count(result.live, "live entry", "live entries")
    lines.append(f"{path}: repaired ({mode}): {live} kept, {result.size:,} bytes")
    return lines


def repair_report(path: Path, mode: str, result: Rewrite) -> dict[str, JSONValue]:
    """Return what ``repair`` did: the copy, the ranges and records dropped, the rest."""
    backup = None if result.backup is None else str(_beside(path, result.backup))
    return {
        "path": str(path),
        "mode": mode,
        "status": "clean" if result.backup is None else "repaired",
        "backup": backup,
        "dropped": [[start, end] for start, end in result.dropped],
        "dropped_records": result.dropped_frames,
        "live_entries": result.live,
        "size": result.size,
    }


def _beside(path: Path, backup: Path) -> Path:
    """Name ``backup`` as the user named the log, unless that name is a link elsewhere."""
    named = path.with_name(backup.name)
    return named if named.resolve() == backup.resolve() else backup


def _count(number: int, singular: str, plural: str | None = None) -> str:
    """Return ``number`` with thousands separators and the noun that agrees with it."""
    return f"{number:,} {singular if number == 1 else plural or singular + 's'}"
