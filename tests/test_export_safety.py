"""Export never writes outside OUT, never leaves a temp or half-written file, refuses
existing files unless asked, and still writes every good file (guarantee 6).

Import never produces a hostile source path, so the tests import a good home normally
and then rewrite ``files.path`` in the store directly.
"""

from __future__ import annotations

from typing import Any

import errno
import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

import hostile
from conftest import Cli, tree
from hostile import Home, build_home
from recordstore import ExportError, RecordStoreError, Store
from recordstore import exporter as exporter_module

VICTIM = f"{hostile.TASKS}/task_good_2.json"  # the row whose path the tests rewrite
UNSAFE = r"^unsafe source path \(absolute or contains '\.\.'\)$"
WINDOWS = r"^unsafe source path \(backslash or drive letter\)$"
EMPTY_OR_NUL = r"^unsafe source path \(empty or contains NUL\)$"
TOO_LONG = r"^cannot write: File name too long$"


@pytest.fixture
def world(tmp_path: Path, store: Store) -> tuple[Home, Path, Path]:
    """(home imported into ``store``, OUT, a sibling of OUT that must stay empty)."""
    home = build_home(tmp_path / "home")
    assert store.import_paths([home.root]).ok
    area = tmp_path / "export"
    sibling = area / "sibling"
    sibling.mkdir(parents=True)
    return home, area / "out", sibling


def set_path(db: Path, old: str, new: str) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE files SET path = ? WHERE path = ?", (new, old)).rowcount == 1
    conn.close()


def everything_below(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def assert_contained(out: Path, sibling: Path) -> None:
    """Nothing in the sibling, nothing beside the OUT directories (``out*``) and the
    sibling, no temp files in OUT."""
    assert everything_below(sibling) == set()
    assert all(p.name == sibling.name or p.name.startswith("out") for p in out.parent.iterdir())
    if out.exists():
        temps = [p for p in out.rglob("*") if re.fullmatch(r"\..*\.tmp", p.name)]
        assert temps == []


def assert_one_line_each(problems: list[ExportError]) -> None:
    for problem in problems:
        assert isinstance(problem, ExportError)
        assert "\n" not in str(problem) and "\r" not in str(problem), repr(str(problem))


def assert_good_files_written(home: Home, out: Path, but: set[str]) -> None:
    written = tree(out)
    for rel, data in home.exact.items():
        if rel not in but:
            assert written.get(rel) == data, f"{rel} was not written exactly"


def assert_cli_export(cli: Cli, out: Path, expected: list[str], *flags: str) -> None:
    """``expected``: a regex per stderr line."""
    result = cli("export", str(out), *flags)
    output = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in output
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(sorted(lines), sorted(expected)):
        assert re.search(pattern, line), (line, pattern)
    assert result.exit_code == (1 if expected else 0), output  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- hostile source paths

REFUSED = [
    ("dotdot", "../sibling/escape.json", UNSAFE),
    ("dotdot-inside", "tasks/../../sibling/escape.json", UNSAFE),
    ("dotdot-alone", "..", UNSAFE),
    ("dotdot-trailing", "tasks/..", UNSAFE),
    ("absolute", "{sibling}/absolute.json", UNSAFE),
    ("absolute-root-dotdot", "/../{sibling}/x.json", UNSAFE),
    ("dot", "./tasks/x.json", UNSAFE),
    ("double-slash", "tasks//x.json", UNSAFE),
    ("trailing-slash", "tasks/x/", UNSAFE),
    ("nul", "tasks/a\x00b.json", EMPTY_OR_NUL),
    ("nul-dotdot", "../sibling/\x00.json", EMPTY_OR_NUL),
    ("empty", "", EMPTY_OR_NUL),
    ("long-name", "tasks/" + "n" * 300 + ".json", TOO_LONG),
    ("long-path", "/".join(["d" * 200] * 25) + "/x.json", TOO_LONG),
]

#: Separators on Windows, refused there; elsewhere, characters of a name like any other.
WINDOWS_SEPARATORS = [
    ("drive-letter", "C:/sibling/x.json"),
    ("drive-relative", "c:x.json"),
    ("backslash-dotdot", "..\\sibling\\x.json"),
    ("unc", "\\\\server\\share\\x.json"),
]
REFUSED += [(f"{name}-on-windows", path, WINDOWS) for name, path in WINDOWS_SEPARATORS]

ACCEPTED = [  # odd but harmless: written as literal names inside OUT
    ("tilde", "~/x.json"),
    ("dollar", "$HOME/x.json"),
    ("three-dots", ".../x.json"),
    ("dotdot-in-name", "tasks/..x.json"),
    ("newline", "tasks/new\nline.json"),
    ("dotfile", ".hidden.json"),
    ("unicode", "tâches/日本 ✓.json"),
    ("name-255", "tasks/" + "n" * 250 + ".json"),
    *[(f"{name}-on-posix", path) for name, path in WINDOWS_SEPARATORS],
]


@pytest.mark.parametrize(("path", "reason"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_hostile_source_path_is_refused_and_the_rest_is_written(
    world: tuple[Home, Path, Path],
    store: Store,
    db_path: Path,
    cli: Cli,
    path: str,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home, out, sibling = world
    monkeypatch.setattr(exporter_module, "WINDOWS_PATHS", reason == WINDOWS)
    path = path.format(sibling=sibling)
    set_path(db_path, VICTIM, path)

    result = store.export_to(out)
    assert_one_line_each(result.problems)
    assert len(result.problems) == 1, result.problems
    assert re.search(reason, result.problems[0].reason)
    assert str(result.problems[0]).startswith(
        (exporter_module.display_path(path) + ": ", repr(path) + ": ")
    ), str(result.problems[0])
    assert result.files == len(home.exact) - 1
    assert_good_files_written(home, out, {VICTIM})
    assert_contained(out, sibling)

    assert_cli_export(cli, out.with_name("out-cli"), [reason.removeprefix("^")])
    assert_contained(out.with_name("out-cli"), sibling)


@pytest.mark.parametrize("path", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_an_odd_but_harmless_source_path_is_written_inside_out(
    world: tuple[Home, Path, Path], store: Store, db_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, out, sibling = world
    monkeypatch.setattr(exporter_module, "WINDOWS_PATHS", False)  # as on POSIX
    set_path(db_path, VICTIM, path)
    result = store.export_to(out)
    assert result.ok, result.problems
    assert (out / path).read_bytes() == home.exact[VICTIM]
    assert_good_files_written(home, out, {VICTIM})
    assert_contained(out, sibling)


# --------------------------------------------------------------------------- links in OUT


def test_a_link_in_out_to_a_directory_outside_is_never_written_through(
    world: tuple[Home, Path, Path], store: Store, cli: Cli
) -> None:
    home, out, sibling = world
    out.mkdir()
    (out / "tasks").symlink_to(sibling)
    (out / "sessions").symlink_to("../sibling")
    for overwrite in (False, True):
        result = store.export_to(out, overwrite=overwrite)
        assert_one_line_each(result.problems)
        refused = {p.path for p in result.problems}
        assert refused == set(home.exact), "every file below the two links is refused"
        assert all(re.search(r"leads outside the export directory$", p.reason) for p in result.problems)
        assert_contained(out, sibling)
    assert_cli_export(cli, out, [r"leads outside the export directory$"] * len(home.exact), "--force")
    assert_contained(out, sibling)


def test_a_link_in_out_to_a_file_outside_is_replaced_never_followed(
    world: tuple[Home, Path, Path], store: Store
) -> None:
    home, out, sibling = world
    rel = f"{hostile.TASKS}/task_good_1.json"
    victim = sibling / "victim.json"
    victim.write_bytes(b"victim")
    (out / hostile.TASKS).mkdir(parents=True)
    (out / rel).symlink_to(victim)
    dangling = f"{hostile.TASKS}/task_legacy.json"
    (out / dangling).symlink_to(sibling / "created.json")

    result = store.export_to(out)
    assert sorted(p.path for p in result.problems) == sorted([rel, dangling])
    assert all(p.reason == "exists in the export directory and differs (use --force, or overwrite=True, to overwrite)" for p in result.problems)
    assert_good_files_written(home, out, {rel, dangling})

    result = store.export_to(out, overwrite=True)
    assert result.ok, result.problems
    assert not (out / rel).is_symlink() and not (out / dangling).is_symlink()
    assert_good_files_written(home, out, set())
    assert victim.read_bytes() == b"victim"
    assert everything_below(sibling) == {"victim.json"}
    victim.unlink()
    assert_contained(out, sibling)


def test_a_link_loop_in_out_is_refused_in_one_line(world: tuple[Home, Path, Path], store: Store, cli: Cli) -> None:
    home, out, sibling = world
    out.mkdir()
    (out / "tasks").symlink_to("tasks")
    below = {rel for rel in home.exact if rel.startswith("tasks/")}
    result = store.export_to(out)
    assert_one_line_each(result.problems)
    assert {p.path for p in result.problems} == below
    assert all(p.reason.endswith("is a symbolic link loop") for p in result.problems)
    assert_good_files_written(home, out, below)
    assert_contained(out, sibling)
    assert_cli_export(cli, out, [r"is a symbolic link loop$"] * len(below), "--force")


def test_a_link_to_a_directory_inside_out_is_followed(world: tuple[Home, Path, Path], store: Store) -> None:
    home, out, sibling = world
    (out / "real").mkdir(parents=True)
    (out / "tasks").symlink_to("real")
    result = store.export_to(out)
    assert result.ok, result.problems
    assert (out / "real" / "tasks" / "task_good_1.json").read_bytes() == home.exact[f"{hostile.TASKS}/task_good_1.json"]
    assert_contained(out, sibling)


def test_a_file_where_a_directory_belongs_and_a_directory_where_a_file_belongs(
    world: tuple[Home, Path, Path], store: Store
) -> None:
    home, out, sibling = world
    out.mkdir()
    (out / "sessions").write_bytes(b"not a directory")
    target = out / hostile.TASKS / "task_good_1.json"
    target.mkdir(parents=True)
    result = store.export_to(out, overwrite=True)
    assert_one_line_each(result.problems)
    reasons = {p.path: p.reason for p in result.problems}
    assert reasons == {
        "sessions/s1.json": f"refused: {out.resolve() / 'sessions'} exists and is not a directory",
        f"{hostile.TASKS}/task_good_1.json": f"refused: {out.resolve() / hostile.TASKS / 'task_good_1.json'} exists and is a directory",
    }
    assert (out / "sessions").read_bytes() == b"not a directory" and target.is_dir()
    assert_good_files_written(home, out, set(reasons))
    assert_contained(out, sibling)


# --------------------------------------------------------------------------- existing files, failures


def test_existing_files_are_refused_unless_forced(world: tuple[Home, Path, Path], store: Store, cli: Cli) -> None:
    home, out, sibling = world
    assert store.export_to(out).ok
    edited = out / f"{hostile.TASKS}/task_good_1.json"
    edited.write_bytes(b"edited by hand")

    result = store.export_to(out)
    assert [p.path for p in result.problems] == [f"{hostile.TASKS}/task_good_1.json"]
    assert result.problems[0].reason == "exists in the export directory and differs (use --force, or overwrite=True, to overwrite)"
    assert edited.read_bytes() == b"edited by hand"
    assert_cli_export(cli, out, [r"task_good_1\.json: exists in the export directory and differs \(use --force, or overwrite=True, to overwrite\)$"])
    assert edited.read_bytes() == b"edited by hand"

    assert_cli_export(cli, out, [], "--force")
    assert_good_files_written(home, out, set())
    assert_contained(out, sibling)


def test_a_file_already_holding_what_export_writes_is_kept_and_counted(store: Store, home: Path, tmp_path: Path) -> None:
    """An export run twice into one OUT (or run again after it was killed) refused every
    file the first had written, "exists in the export directory", though each held the
    very bytes to write: one line a file, exit 1. Such a file is now kept as it is (not
    rewritten) and counted as exported; one that differs is still refused."""
    store.import_paths([home])
    out = tmp_path / "out"
    first = store.export_to(out)
    assert first.ok and first.files > 3
    before = {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    again = store.export_to(out)
    assert again.ok, again.problems
    assert (again.files, again.records, again.domains) == (first.files, first.records, first.domains)
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in out.rglob("*") if p.is_file()} == before  # not rewritten
    assert not [p for p in out.rglob("*.rstmp")]
    # Missing files are written, differing ones refused, the same ones kept.
    gone, changed = sorted(before)[0], sorted(before)[1]
    gone.unlink()
    changed.write_bytes(changed.read_bytes() + b" ")
    third = store.export_to(out)
    assert [p.path for p in third.problems] == [changed.relative_to(out).as_posix()]
    assert third.files == first.files - 1 and gone.read_bytes() == before[gone][1]


def test_files_refused_for_one_same_reason_are_counted_after_the_first_ten(cli: Cli, tmp_path: Path) -> None:
    """`store export ~/.deepseek`, over the home itself, printed "exists in the export
    directory" once for every file of the store: tens of thousands of alike lines. Ten
    are printed, then one line counts the rest; --json still lists every one."""
    from conftest import EXAMPLE_HOME

    assert cli("import", str(EXAMPLE_HOME)).exit_code == 0  # type: ignore[attr-defined]
    out = tmp_path / "out"
    assert cli("export", str(out)).exit_code == 0  # type: ignore[attr-defined]
    exported = [p for p in out.rglob("*") if p.is_file()]
    written = len(exported)
    assert written > 12
    for path in exported:  # (a file holding what export would write is kept, not refused)
        path.write_bytes(path.read_bytes() + b"\n")
    reason = "exists in the export directory and differs (use --force, or overwrite=True, to overwrite)"
    result = cli("export", str(out))
    lines = result.stderr.splitlines()  # type: ignore[attr-defined]
    assert result.exit_code == 1 and len(lines) == 11, lines  # type: ignore[attr-defined]
    assert all(line.startswith("store: ") and line.endswith(f": {reason}") for line in lines)
    assert lines[-1] == f"store: ... and {written - 10} more file(s): {reason}"
    result = cli("export", str(out), "--json")
    assert len(json.loads(result.stdout)["problems"]) == written  # type: ignore[attr-defined]


def test_out_that_is_a_file_is_one_clear_error(world: tuple[Home, Path, Path], store: Store, cli: Cli) -> None:
    home, out, sibling = world
    out.write_bytes(b"a file")
    message = f"{out}: cannot create the export directory: it exists and is not a directory"
    with pytest.raises(RecordStoreError, match=f"^{re.escape(message)}$"):
        store.export_to(out)
    result = cli("export", str(out))
    # Nothing was exported: an error (3), not a run with some records refused (1).
    assert result.exit_code == 3 and result.stderr == f"store: error: {message}\n"  # type: ignore[attr-defined]
    assert out.read_bytes() == b"a file"
    assert_contained(out.with_name("nothing"), sibling)


def test_a_write_that_fails_midway_leaves_no_temp_and_no_half_file(
    world: tuple[Home, Path, Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills while one file is written: that file is reported, never appears
    half-written, its temp file is gone, and the other files are written."""
    home, out, sibling = world
    rel = f"{hostile.TASKS}/task_good_1.json"
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, fh: Any) -> None:
            self.fh = fh

        def __enter__(self) -> "FullDisk":
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])  # half of it lands, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def failing_fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        fh = real_fdopen(fd, *args, **kwargs)
        return FullDisk(fh) if ".task_good_1.json." in os.readlink(f"/proc/self/fd/{fd}") else fh

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc/self/fd to recognise the temp file")
    monkeypatch.setattr(exporter_module.os, "fdopen", failing_fdopen)
    result = store.export_to(out)
    assert [str(p) for p in result.problems] == [f"{rel}: cannot write: No space left on device"]
    assert not (out / rel).exists()
    assert_good_files_written(home, out, {rel})
    assert_contained(out, sibling)


def test_an_export_into_a_read_only_file_system_is_one_line_not_one_a_file(
    world: tuple[Home, Path, Path], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`store export /mnt/ro/out` printed "cannot write: Read-only file system" once for
    every file of the store (48,000 lines for a DeepSeek home) and exited 1. The export
    now stops at once with one line, having written nothing."""
    home, out, sibling = world
    out.mkdir()
    real_open = os.open

    def read_only_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_CREAT and Path(path).is_relative_to(out):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(exporter_module.os, "open", read_only_open)
    with pytest.raises(RecordStoreError, match=rf"^{re.escape(str(out))}: cannot write into the export directory: Read-only file system$"):
        store.export_to(out)
    assert everything_below(out) == set()
    assert_contained(out, sibling)


def test_temp_files_of_a_killed_export_are_cleared_by_the_next(store: Store, home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    store.import_paths([home])
    out = tmp_path / "out"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    (out / "tasks" / "tasks").mkdir(parents=True)
    stale = [out / f".settings.json.{dead_pid}.1.rstmp", out / "tasks" / "tasks" / f".t.json.{dead_pid}.7.rstmp"]
    for path in stale:
        path.write_text("half")
    alive = out / f".x.json.{os.getppid()}.1.rstmp"  # a live process's: left alone
    alive.write_text("busy")
    # A user's files that only look a little like ours: left alone.
    users = [out / "notes.2024.final.rstmp", out / f"thesis.{dead_pid}.3.rstmp", out / f".draft.{dead_pid}.x.rstmp"]
    for path in users:
        path.write_text("mine")
    assert store.export_to(out).ok
    assert not any(p.exists() for p in stale)
    assert alive.exists()
    assert [p.read_text() for p in users] == ["mine"] * 3


def test_a_file_that_appears_during_export_is_never_replaced_without_force(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the existence check and the rename, another process creates a target:
    without --force it is kept, and that one file is reported."""
    home = build_home(tmp_path / "home")
    store.import_paths([home.root])
    out = tmp_path / "out"
    rel = f"{hostile.TASKS}/task_good_1.json"
    real_flush = exporter_module._Writer.flush

    def racing_flush(self: Any) -> Any:
        (out / rel).write_text("someone else's file")
        return real_flush(self)

    monkeypatch.setattr(exporter_module._Writer, "flush", racing_flush)
    result = store.export_to(out)
    assert [str(p) for p in result.problems] == [f"{rel}: cannot write: exists in the export directory and differs (use --force, or overwrite=True, to overwrite)"]
    assert (out / rel).read_text() == "someone else's file"
    assert not [p for p in out.rglob("*.rstmp")]


def test_no_file_is_renamed_into_place_before_its_data_is_synced(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export promises durability: each temp file is covered by a sync that returned
    before the temp file is linked or renamed to its target (several batches here)."""
    store.import_paths([home])
    monkeypatch.setattr(exporter_module, "STAGE_FILES", 3)
    events: list[tuple[str, str]] = []
    real_sync, real_link, real_replace = exporter_module._sync_all, os.link, os.replace

    def sync_all(paths: list[Path], out: Path) -> Any:
        out_ = real_sync(paths, out)
        events.extend(("synced", str(p)) for p in paths)
        return out_

    def link(src: Any, dst: Any, **kw: Any) -> None:
        events.append(("placed", str(src)))
        real_link(src, dst, **kw)

    def replace(src: Any, dst: Any) -> None:
        events.append(("placed", str(src)))
        real_replace(src, dst)

    monkeypatch.setattr(exporter_module, "_sync_all", sync_all)
    monkeypatch.setattr(exporter_module.os, "link", link)
    monkeypatch.setattr(exporter_module.os, "replace", replace)
    result = store.export_to(tmp_path / "out")
    assert result.ok and result.files > 3
    placed = [path for what, path in events if what == "placed"]
    assert len(placed) == result.files
    for i, (what, path) in enumerate(events):
        if what == "placed":
            assert ("synced", path) in events[:i], f"{path} placed before it was synced"


def test_a_failed_sync_places_none_of_its_files(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the sync of a batch fails (an I/O error on write-back), none of that batch
    reaches its target, each is reported in one line, and no temp file is left."""
    store.import_paths([home])
    monkeypatch.setattr(exporter_module, "_syncfs", lambda fd: -1)
    monkeypatch.setattr(exporter_module.ctypes, "get_errno", lambda: errno.EIO)
    monkeypatch.setattr(exporter_module, "_fsync_path", lambda path: OSError(errno.EIO, os.strerror(errno.EIO)))
    out = tmp_path / "out"
    result = store.export_to(out)
    assert result.files == 0 and result.problems
    assert all(str(p).endswith(": cannot write: Input/output error") for p in result.problems)
    assert [p for p in out.rglob("*") if p.is_file()] == []


_EXPORT_CHILD = """
import json, sys
from recordstore import Store
with Store(sys.argv[1]) as store:
    result = store.export_to(sys.argv[2])
with open("/proc/self/status") as fh:
    peak = [int(line.split()[1]) / 1024 for line in fh if line.startswith("VmHWM:")][0]
print(json.dumps({"records": result.records, "problems": len(result.problems), "peak_mb": peak}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the peak is read from /proc")
def test_a_huge_file_is_exported_in_bounded_memory(tmp_path: Path) -> None:
    """A 64 MB JSON-lines file is written back in pieces, never held whole: the export's
    peak memory stays near what an export of a small file takes (it took three to four
    times the file's size when the file's text was built whole, then encoded)."""
    import json
    import subprocess
    import sys

    rel = Path("tasks/runtime/events/thr_huge.jsonl")
    (tmp_path / "home" / rel).parent.mkdir(parents=True)
    line = {"schema_version": 2, "thread_id": "thr_huge", "event": "item.delta", "payload": {"text": "x" * 200}}
    with open(tmp_path / "home" / rel, "w") as fh:
        for seq in range(240_000):
            fh.write(json.dumps({**line, "seq": seq}, separators=(",", ":")) + "\n")
    size_mb = (tmp_path / "home" / rel).stat().st_size / (1 << 20)
    assert size_mb > 60
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([tmp_path / "home"]).problems == []
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_CHILD, str(tmp_path / "s.db"), str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert (figures["records"], figures["problems"]) == (240_000, 0)
    assert (tmp_path / "out" / rel).read_bytes() == (tmp_path / "home" / rel).read_bytes()
    print(f"export of a {size_mb:.0f} MB file: peak RSS {figures['peak_mb']:.0f} MB")
    assert figures["peak_mb"] < 100 + size_mb / 4, figures


@pytest.mark.parametrize("stop_at", ["sync", "write", "create"])
def test_an_interrupted_export_leaves_whole_files_and_no_temporary_one(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stop_at: str
) -> None:
    """Ctrl-C while a batch of files is being synced (the long part), while a file is
    being written, or just as a temporary file has been made: the files already in place
    are whole, and no temporary file stays."""
    store.import_paths([home])
    monkeypatch.setattr(exporter_module, "STAGE_FILES", 4)
    calls = {"sync": 0, "write": 0, "create": 0}
    real_sync, real_utf8, real_open = exporter_module._sync_all, exporter_module._utf8, os.open

    def open_(path: Any, flags: int, *args: Any) -> int:
        fd = real_open(path, flags, *args)
        if str(path).endswith(".rstmp"):
            calls["create"] += 1
            if stop_at == "create" and calls["create"] == 6:
                os.close(fd)
                raise KeyboardInterrupt  # as if pressed the moment the file was made
        return fd

    monkeypatch.setattr(exporter_module.os, "open", open_)

    def sync(paths: Any, out: Any) -> Any:
        calls["sync"] += 1
        if stop_at == "sync" and calls["sync"] == 3:
            raise KeyboardInterrupt
        return real_sync(paths, out)

    def utf8(text: str) -> bytes:
        calls["write"] += 1
        if stop_at == "write" and calls["write"] == 10:
            raise KeyboardInterrupt
        return real_utf8(text)

    monkeypatch.setattr(exporter_module, "_sync_all", sync)
    monkeypatch.setattr(exporter_module, "_utf8", utf8)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        store.export_to(out)
    left = [os.path.join(d, n) for d, _, names in os.walk(out) for n in names]
    assert left and not [p for p in left if p.endswith(".rstmp")], left
    for path in left:  # (the example home's files come back byte for byte)
        assert Path(path).read_bytes() == (home / os.path.relpath(path, out)).read_bytes(), path


def test_a_directory_in_the_way_of_a_file_is_named_as_such(store: Store, home: Path, tmp_path: Path) -> None:
    """Not "use --force", which then failed with "Is a directory": the same one line
    with or without --force, and the other files are written."""
    store.import_paths([home])
    out = tmp_path / "out"
    source = next(iter(store.query("task"))).source
    (out / source).mkdir(parents=True)
    for force in (False, True):
        result = store.export_to(out, overwrite=force)
        assert [str(p) for p in result.problems] == [
            f"{source}: refused: {out.resolve() / source} exists and is a directory"
        ]
        assert result.files > 1


def test_export_over_the_home_keeps_each_replaced_files_permissions(store: Store, home: Path) -> None:
    """An owner-only file stays owner-only when export --force writes it back (it
    became readable by everyone: 0o666 less the umask); a new file gets the store's
    own (owner-only) mode."""
    store.import_paths([home])
    sources = sorted({r.source for r in store.query("task")})
    private, shared, gone = (home / s for s in sources[:3])
    private.chmod(0o600)
    shared.chmod(0o640)
    gone.unlink()
    umask = os.umask(0o022)
    try:
        result = store.export_to(home, overwrite=True)
    finally:
        os.umask(umask)
    assert result.ok, result.problems
    assert stat_mode(private) == 0o600 and stat_mode(shared) == 0o640
    assert stat_mode(gone) == 0o600
    assert not list(home.rglob("*.rstmp"))


@pytest.mark.parametrize("store_mode", [0o600, 0o640, 0o644])
def test_an_export_is_never_readable_by_more_than_its_store(store: Store, home: Path, tmp_path: Path, store_mode: int) -> None:
    """The store is created owner-only, and an application's sessions may be too; an
    export into a new directory made every file readable by everyone (0o666 less the
    umask). New files and directories now take the store file's permissions (with x
    on directories where r is), never more than the umask allows."""
    store.import_paths([home])
    Path(store.engine.url.database or "").chmod(store_mode)
    umask = os.umask(0o022)
    try:
        result = store.export_to(tmp_path / "out" / "new")
    finally:
        os.umask(umask)
    assert result.ok and result.files > 3, result.problems
    written = [p for p in (tmp_path / "out").rglob("*")]
    assert {stat_mode(p) for p in written if p.is_file()} == {store_mode}
    assert {stat_mode(p) for p in written if p.is_dir()} == {store_mode | (store_mode & 0o444) >> 2}
    assert stat_mode(tmp_path / "out") == 0o755  # (a parent made on the way: the umask's)


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def test_temp_files_left_by_an_earlier_process_with_this_pid_are_cleared_by_the_next_export(
    store: Store, home: Path, tmp_path: Path
) -> None:
    """In a container every export runs as pid 1: a killed one's temps bear the pid of
    the next, which took them for its own, never cleared them, and failed on them with
    "File exists" (--force or not)."""
    store.import_paths([home])
    out = tmp_path / "out"
    source = next(iter(store.query("task"))).source
    (out / source).parent.mkdir(parents=True)
    me = os.getpid()
    stale = [
        out / f".settings.json.{me}.1.rstmp",  # as a killed export named them before
        (out / source).with_name(f".{Path(source).name}.{me}.1.rstmp"),
        out / f".settings.json.{me}.0123456789abcdef.1.rstmp",  # an earlier run's token
    ]
    for path in stale:
        path.write_text("half")
    for force in (False, True):
        result = store.export_to(out, overwrite=force)
        assert result.ok, result.problems
        assert not [p for p in out.rglob("*.rstmp")]


def test_a_temp_file_in_the_way_is_named_not_the_target(
    store: Store, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "File exists", which blamed a target that does not exist."""
    store.import_paths([home])
    out = tmp_path / "out"
    source = next(iter(store.query("task"))).source
    name = Path(source).name
    monkeypatch.setattr("secrets.token_hex", lambda n: "f" * 2 * n)
    (out / source).parent.mkdir(parents=True)
    # Planted under the very name its temp file gets, whatever its number (and as they
    # were named before temp names held a token).
    for n in range(1, 100):
        for planted in (f".{name}.{os.getpid()}.{'f' * 16}.{n}.rstmp", f".{name}.{os.getpid()}.{n}.rstmp"):
            (out / source).with_name(planted).write_text("someone's")
    result = store.export_to(out)
    assert len(result.problems) == 1, result.problems
    pattern = rf"{re.escape(source)}: cannot write: its temporary file \.{re.escape(name)}\.{os.getpid()}\.f{{16}}\.\d+\.rstmp already exists"
    assert re.fullmatch(pattern, str(result.problems[0])), str(result.problems[0])
    assert not (out / source).exists() and result.files > 1


@pytest.mark.parametrize("batch", [2000, 1], ids=["one-batch", "a-batch-each"])
@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_two_records_landing_on_one_file_through_a_link_in_out_write_the_first_only(
    world: tuple[Home, Path, Path], store: Store, db_path: Path, cli: Cli,
    monkeypatch: pytest.MonkeyPatch, batch: int, force: bool,
) -> None:  # fmt: skip
    """OUT has ``b -> a``: a/f.json and b/f.json are one file. --force wrote the second
    over the first and claimed both written; without it, the advice was to use --force."""
    home, out, sibling = world
    monkeypatch.setattr(exporter_module, "STAGE_FILES", batch)
    one, two = f"{hostile.TASKS}/task_good_1.json", f"{hostile.TASKS}/task_good_2.json"
    set_path(db_path, one, "a/f.json")
    set_path(db_path, two, "b/f.json")
    (out / "a").mkdir(parents=True)
    (out / "b").symlink_to("a")
    result = store.export_to(out, overwrite=force)
    assert [(p.path, p.reason) for p in result.problems] == [("b/f.json", "not written: it lands on the same file as a/f.json")]
    assert (out / "a" / "f.json").read_bytes() == home.exact[one]
    assert result.files == len(home.exact) - 1
    assert_good_files_written(home, out, {one, two})
    assert_contained(out, sibling)

    flags = ("--force",) if force else ()
    assert_cli_export(cli, out.with_name("out-cli"), [], *flags)  # (no link there)
    (out / "a" / "f.json").unlink()
    assert_cli_export(cli, out, [r"^store: b/f\.json: not written: it lands on the same file as a/f\.json$"], "--force")
    assert (out / "a" / "f.json").read_bytes() == home.exact[one]


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
@pytest.mark.parametrize("file_first", [True, False], ids=["file-first", "directory-first"])
def test_a_record_file_that_other_records_need_as_a_directory_is_named_as_such(
    world: tuple[Home, Path, Path], store: Store, db_path: Path, file_first: bool, force: bool
) -> None:
    """The store holds x.json and x.json/inner.json (the home made the file a directory
    between two imports): into an empty directory, export said x.json "exists in the
    export directory (use --force...)", or with --force "Is a directory". Whichever
    comes second is not written, in one line naming the other; the rest is."""
    home, out, sibling = world
    first, second = f"{hostile.TASKS}/task_good_1.json", f"{hostile.TASKS}/task_good_2.json"
    as_file, as_dir = (first, second) if file_first else (second, first)
    set_path(db_path, as_file, "x.json")
    set_path(db_path, as_dir, "x.json/inner.json")
    result = store.export_to(out, overwrite=force)
    if file_first:
        expected = [("x.json/inner.json", "not written: x.json is a record's file, it cannot also be a directory")]
        assert (out / "x.json").read_bytes() == home.exact[as_file]
    else:
        expected = [("x.json", "not written: x.json/inner.json needs it to be a directory")]
        assert (out / "x.json" / "inner.json").read_bytes() == home.exact[as_dir]
    assert [(p.path, p.reason) for p in result.problems] == expected
    assert result.files == len(home.exact) - 1
    assert_good_files_written(home, out, {first, second})
    assert_contained(out, sibling)
