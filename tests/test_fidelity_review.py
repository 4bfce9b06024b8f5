"""Round-trip fidelity, reviewed with files that are odd but valid: what an import then
an export (with a migration between, or not) gives back, compared with the files' bytes
and with what the README promises."""

from __future__ import annotations

import json
from pathlib import Path

from recordstore import RestoreConflictError, Store


def _home(root: Path, files: dict[str, bytes]) -> Path:
    home = root / "home"
    for rel, data in files.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(data)
    return home


def _migrated_export(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """Import ``files`` (a DeepSeek home's), export them unmigrated (each must come back
    as it was), migrate, and export again: the migrated export's directory."""
    home = _home(tmp_path, files)
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home], jobs=0).ok
        store.export_to(tmp_path / "as-imported")
        for rel, data in files.items():
            assert (tmp_path / "as-imported" / rel).read_bytes() == data
        done = store.migrate(jobs=0)
        assert done.migrated and not done.failures
        store.export_to(tmp_path / "migrated")
    return tmp_path / "migrated"


def test_a_record_pretty_without_indent_stays_pretty_once_migrated(tmp_path: Path) -> None:
    """``json.dumps(value, indent=0)`` writes a record over many lines, none indented: a
    migrated one came back squeezed onto one compact line, as if it had been one."""
    task = {"id": "task_1", "checklist": {"items": [1]}}
    out = _migrated_export(
        tmp_path,
        {
            "tasks/tasks/one.json": json.dumps(task, indent=0).encode(),
            "tasks/tasks/many.json": json.dumps([task, task], indent=0).encode(),
        },
    )
    pretty = '{\n"schema_version": 2,\n"id": "task_1",\n"checklist": {\n"items": [\n1\n]\n}\n}'
    assert (out / "tasks/tasks/one.json").read_text() == pretty
    assert (out / "tasks/tasks/many.json").read_text() == f"[\n{pretty},\n{pretty}\n]"


def test_a_record_whose_lines_end_in_cr_alone_keeps_them_once_migrated(tmp_path: Path) -> None:
    """Lines ended by a CR alone (classic Mac OS) are whitespace to JSON and line ends to
    an editor: a migrated record came back on one line, its CRs gone."""
    text = json.dumps({"id": "task_1", "status": "done"}, indent=2).replace("\n", "\r") + "\r"
    out = _migrated_export(tmp_path, {"tasks/tasks/mac.json": text.encode()})
    assert (out / "tasks/tasks/mac.json").read_bytes() == (
        b'{\r  "schema_version": 2,\r  "id": "task_1",\r  "status": "done"\r}\r'
    )


def test_a_blank_line_within_an_array_element_comes_back_as_it_was(tmp_path: Path) -> None:
    """An editor that trims trailing whitespace leaves a blank line within an indented
    element without its indent: the element was stored with its indent, which export
    then added again (every line of it indented twice), and an export over the home
    rewrote a file whose records had not changed."""
    text = (
        b'[\n  {\n    "id": "task_1",\n\n    "status": "done"\n  },\n'
        b'  {\n    "id": "task_2",\n    \n    "status": "done"\n  }\r\n]\n'
    )
    home = _home(tmp_path, {"tasks/tasks/all.json": text})
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home], jobs=0).ok
        assert [r.data for r in store.query("task")] == [{"id": "task_1", "status": "done"}, {"id": "task_2", "status": "done"}]
        store.export_to(tmp_path / "out")
        assert (tmp_path / "out/tasks/tasks/all.json").read_bytes() == text
        # Migrated, exported over the home and imported again (the file's layout is now
        # the migrated file's, without blank lines), then the migration undone: the
        # records put back hold their blank lines, and go back as they were.
        done = store.migrate(jobs=0)
        store.export_to(home, overwrite=True)
        again = store.import_paths([home], jobs=0)
        assert (again.domains["task"].unchanged, again.domains["task"].updated) == (2, 0)
        store.restore(run=done.run_id)
        store.export_to(tmp_path / "restored")
    assert (tmp_path / "restored/tasks/tasks/all.json").read_bytes() == text


def test_a_log_whose_lines_end_otherwise_than_its_first_comes_back_as_it_was(tmp_path: Path) -> None:
    """A log begun with LF line ends and appended to with CRLF ones (by a tool on
    another system) kept each CRLF as an odd gap of its own, up to 64 KiB of them: past
    some 6,500 lines the rest came back with LF, though no record had changed."""
    lines = [b'{"seq":%d}' % n for n in range(8000)]
    text = lines[0] + b"\n" + b"".join(line + b"\r\n" for line in lines[1:])
    events = "tasks/runtime/events/thr_1.jsonl"
    out = _migrated_export(tmp_path, {events: text})
    migrated = [b'{"schema_version":2,"seq":%d}' % n for n in range(8000)]
    assert (out / events).read_bytes() == migrated[0] + b"\n" + b"".join(line + b"\r\n" for line in migrated[1:])


def test_a_migrated_element_keeps_the_indent_of_its_closing_bracket(tmp_path: Path) -> None:
    """An element that starts on the array's bracket line is kept with the indent of its
    lines (there is none to take off), and one in a file whose lines end in a CR alone
    too: once migrated, its closing brace came back at the start of its line, out of
    line with its neighbours."""
    out = _migrated_export(
        tmp_path,
        {
            "tasks/tasks/first.json": b'[{\n    "id": "a"\n  },\n  {\n    "id": "b"\n  }\n]',
            "tasks/tasks/mac.json": b'[\r  {\r    "id": "a"\r  }\r]',
        },
    )
    assert (out / "tasks/tasks/first.json").read_bytes() == (
        b'[{\n    "schema_version": 2,\n    "id": "a"\n  },\n  {\n    "schema_version": 2,\n    "id": "b"\n  }\n]'
    )
    assert (out / "tasks/tasks/mac.json").read_bytes() == b'[\r  {\r    "schema_version": 2,\r    "id": "a"\r  }\r]'


def test_restoring_a_line_whose_place_a_line_below_took_is_a_conflict(tmp_path: Path) -> None:
    """A log's second line made blank: the import gives its place to the third line's
    record (each record keeps its slot). Restoring the second line by its key replaced
    that record, and restoring the third put its old row back beside it: the export then
    lost a line of the log, or wrote one twice. Each is a conflict now; forced, the
    record in the way is backed up and removed, and the file comes back as the log is."""
    events = "tasks/runtime/events/thr_1.jsonl"
    home = _home(tmp_path, {events: b'{"seq":1}\n{"seq":2}\n{"seq":3}\n'})
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home], jobs=0).ok
        (home / events).write_bytes(b'{"seq":1}\n\n{"seq":3}\n')
        assert store.import_paths([home], jobs=0).ok
        for line in (2, 3):
            try:
                store.restore(domain="runtime", key=f"{events}:{line}")
            except RestoreConflictError as exc:
                assert exc.keys == [("runtime", f"{events}:{line}")]
            else:
                raise AssertionError(f"line {line} restored over the record of another line")
        store.export_to(tmp_path / "out")
        assert (tmp_path / "out" / events).read_bytes() == b'{"seq":1}\n\n{"seq":3}\n'
        forced = store.restore(domain="runtime", key=f"{events}:3", force=True)
        assert forced.restored == {"runtime": 1} and forced.displaced == {"runtime": 1}
        store.export_to(tmp_path / "forced")
    assert (tmp_path / "forced" / events).read_bytes() == b'{"seq":1}\n\n{"seq":3}\n'
