"""What a reviewer found a user would notice: a home that is not there shown as a
domain, an export that counted the files it left alone as written, and hidden files
imported with --domain."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest

from conftest import Cli
from recordstore import InputError, Store

# --------------------------------------------------------------------------- a home that is not there


def test_an_import_of_a_home_that_is_not_there_makes_no_store_and_no_run(tmp_path: Path, cli: Cli, db_path: Path) -> None:
    """The README's `store import ~/.deepseek` after the application moved its home to
    ~/.codewhale printed a table with a domain "(none)" failing 1, made a store and
    recorded a run; now one line, exit 1, and no store."""
    moved = tmp_path / ".deepseek"
    for args in (["import", moved], ["import", "--json", moved]):
        res: Any = cli(*args)
        assert res.exit_code == 1, res.output
        assert res.stdout == ""
        assert res.stderr == f"store: error: {moved}: no such file or directory: nothing to import\n"
    assert not db_path.exists()


def test_a_library_import_of_nothing_there_is_an_input_error_and_no_run(tmp_path: Path, store: Store) -> None:
    with pytest.raises(InputError) as caught:
        store.import_paths([tmp_path / "a", tmp_path / "b"])
    assert caught.value.path == str(tmp_path / "a")
    assert caught.value.reason == "no such file or directory (nor is any other path given): nothing to import"
    assert store.history() == []


def test_a_path_not_there_beside_a_home_is_no_domain_and_the_home_is_imported(home: Path, tmp_path: Path, cli: Cli) -> None:
    moved = tmp_path / ".codewhale"
    res: Any = cli("import", "--json", home, moved)
    assert res.exit_code == 1
    assert res.stderr == f"store: {moved}: no such file or directory\n"
    summary = json.loads(res.stdout)
    assert "(none)" not in summary["domains"]
    assert summary["domains"]["session"]["imported"] == 5
    assert summary["problem_count"] == 1 and summary["run"] == 1
    res = cli("import", home, moved)  # the table
    assert res.exit_code == 1
    assert "(none)" not in res.stdout and "session" in res.stdout
    assert res.stdout.splitlines()[-1] == "25 file(s) read, 4 skipped (no domain); run 2"


# --------------------------------------------------------------------------- what an export over the home wrote


def test_an_export_over_the_home_says_how_many_files_it_replaced(home: Path, cli: Cli, db_path: Path) -> None:
    """After a migration, `store export --force HOME` printed "wrote 37 record(s) in 25
    file(s)" when it had replaced 5 (the migrated ones) and kept the 20 others as they
    were; now it says both."""
    assert cli("import", home).exit_code == 0  # type: ignore[attr-defined]
    assert cli("migrate").exit_code == 0  # type: ignore[attr-defined]
    res: Any = cli("export", "--force", home)
    assert res.exit_code == 0, res.output
    assert res.stdout == f"wrote 37 record(s) in 25 file(s) to {home}: 5 replaced or new, 20 already as the store has them\n"
    res = cli("export", "--force", "--json", home)  # again: every file is as the store has it
    summary = json.loads(res.stdout)
    assert (summary["files"], summary["unchanged"], summary["records"]) == (25, 25, 37)
    with Store(db_path) as store:
        fresh = store.export_to(home.parent / "out")
    assert (fresh.files, fresh.unchanged) == (25, 0)


# --------------------------------------------------------------------------- hidden files with --domain


def test_an_import_of_a_directory_into_a_domain_skips_hidden_files(tmp_path: Path, cli: Cli) -> None:
    """`store import DIR --domain D` took every JSON file below DIR: a macOS ._x.json
    fork or an application's .tmpA.json temp file was reported as a bad record (exit 1).
    Now they are skipped and counted, as the built-in registry's patterns skip them; a
    hidden file given by itself is still put in the domain."""
    logs = tmp_path / "logs"
    (logs / "old").mkdir(parents=True)
    (logs / ".cache").mkdir()
    (logs / "events.jsonl").write_text('{"schema_version": 2, "seq": 1}\n')
    (logs / "old" / "events.jsonl").write_text('{"schema_version": 2, "seq": 2}\n')
    (logs / "._events.jsonl").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    (logs / ".tmpA.json").write_text('{"schema_version": 2, "se')  # half-written
    (logs / ".cache" / "events.jsonl").write_text("not JSON\n")
    res: Any = cli("import", "--json", logs, "--domain", "runtime")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert (summary["files"], summary["skipped"], summary["problem_count"]) == (2, 3, 0)
    assert summary["domains"]["runtime"]["imported"] == 2
    hidden = tmp_path / ".lone.jsonl"
    hidden.write_text('{"schema_version": 2, "seq": 3}\n')
    res = cli("import", hidden, "--domain", "runtime")
    assert res.exit_code == 0, res.output
    with Store(cli.db) as store:
        assert sorted(r.key for r in store.query("runtime")) == [".lone.jsonl:1", "events.jsonl:1", "old/events.jsonl:1"]


def test_a_hidden_directory_that_cannot_be_read_is_no_problem_with_domain(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its files would be skipped anyway, as where no pattern of the registry reaches."""
    logs = tmp_path / "logs"
    (logs / ".cache").mkdir(parents=True)
    (logs / "events.jsonl").write_text('{"schema_version": 2, "seq": 1}\n')
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        if os.fspath(path).endswith(".cache"):  # as a sandbox leaves it to another user: unreadable
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = store.import_paths(logs, domain="runtime", jobs=0)
    assert result.problems == [] and result.files == 1


def test_a_home_given_with_a_tilde_the_shell_left_is_imported(home: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """`store import '~/.deepseek'` (quoted, or from a setting): the import expands it,
    so the check that the path is there must too."""
    monkeypatch.setenv("HOME", str(home.parent))
    res: Any = cli("import", "~/.deepseek")
    assert res.exit_code == 0, res.output
    res = cli("import", "~/.codewhale")
    assert res.exit_code == 1 and res.stderr == f"store: error: {home.parent / '.codewhale'}: no such file or directory: nothing to import\n"


# --------------------------------------------------------------------------- the registry by the application's new name


def test_the_built_in_registry_answers_to_the_application_s_new_name(cli: Cli, home: Path, db_path: Path) -> None:
    """The README calls it the DeepSeek TUI / CodeWhale registry, and the application
    now keeps its home in ``~/.codewhale``: ``--registry codewhale`` said "no module
    'codewhale'"."""
    from recordstore import load_registry

    assert load_registry("codewhale").fingerprints() == load_registry(None).fingerprints()
    res = cli("import", home, registry="codewhale")
    assert res.exit_code == 0, res.stdout + res.stderr
    with Store(db_path) as store:
        assert sum(d.total for d in store.status().domains.values()) == 37  # the example home, whole
