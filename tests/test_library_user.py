"""The library as a new user's programs meet it: paths the system cannot take, a value
that is no record, a page of no records, and the README's own example, type-checked."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import EXAMPLE_HOME, ROOT, mypy_strict
from recordstore import InputError, RecordStoreError, Registry, RegistryError, Store, StoreError, load_registry, migrate_value

#: A file name longer than any file system takes (255 bytes at most): the system refuses it.
TOO_LONG = "x" * 300


@pytest.fixture
def registry() -> Registry:
    """One domain, ``note``, at version 2, whose step adds a field."""
    reg = Registry()
    note = reg.domain("note", version=2, files="notes/*.json")

    @note.step(1)
    def seen(record: dict[str, object]) -> None:
        record["seen"] = True

    return reg


@pytest.fixture
def filled(db_path: Path, registry: Registry, tmp_path: Path) -> Iterator[Store]:
    home = tmp_path / "home"
    (home / "notes").mkdir(parents=True)
    for n in range(3):
        (home / "notes" / f"{n}.json").write_text(json.dumps({"schema_version": 1, "n": n}))
    with Store(db_path, registry=registry) as store:
        assert store.import_paths(home).ok
        yield store


@pytest.mark.parametrize(
    "name, reason",
    [(TOO_LONG, "File name too long"), ("a\x00b.db", "NUL")],
    ids=["too-long", "nul"],
)
@pytest.mark.parametrize("create", [True, False])
@pytest.mark.parametrize("form", ["path", "uri", "url"])
def test_a_store_path_the_system_refuses_is_a_store_error(
    tmp_path: Path, name: str, reason: str, create: bool, form: str
) -> None:
    """``Store(path)`` with a file name too long, or holding a NUL, raised the bare
    OSError or ValueError of the file system (or of sqlite3), which ``except
    RecordStoreError`` let through: a StoreError now, naming the path and the reason
    (a SQLite URI's missing file too long a name is no store there)."""
    target = {"path": str(tmp_path / name), "uri": f"file:{tmp_path / name}", "url": f"sqlite:///{tmp_path / name}"}[form]
    if form == "uri" and name == TOO_LONG:
        reason = "no store at" if not create else "cannot open the store file"
    with pytest.raises(StoreError, match=reason) as caught:
        Store(target, create=create)
    assert "\x00" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, reason",
    [(TOO_LONG, "File name too long"), ("a\x00b", "NUL")],
    ids=["too-long", "nul"],
)
def test_an_export_directory_the_system_refuses_is_the_librarys_error(
    filled: Store, tmp_path: Path, name: str, reason: str
) -> None:
    """``export_to`` a directory whose name is too long raised OSError (while it worked
    out what to say of it), and one holding a NUL raised ValueError: an error of the
    tree now, naming the directory, and nothing written."""
    before = sorted(tmp_path.iterdir())
    with pytest.raises(RecordStoreError, match=reason) as caught:
        filled.export_to(tmp_path / name)
    assert "\x00" not in str(caught.value)
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.parametrize("value", [[1], "text", None, 5], ids=["list", "str", "None", "int"])
@pytest.mark.parametrize("version", [1, 2], ids=["v1", "current"])
def test_migrate_value_refuses_a_value_that_is_no_json_object(registry: Registry, value: object, version: int) -> None:
    """``migrate_value`` is documented to return the migrated dict; given a list at the
    domain's current version it returned the list as it was (no step ran to notice), and
    given one at an older version the step's own TypeError came back as a failed step.
    Either way an InputError now, naming the key and what the value is."""
    with pytest.raises(InputError, match=r"^notes/a\.json: a record must be a JSON object \(a dict\), not "):
        migrate_value(registry["note"], "notes/a.json", value, version)
    assert migrate_value(registry["note"], "notes/a.json", {"schema_version": 2}, 2) == {"schema_version": 2}


def test_migrate_value_refuses_a_key_that_is_no_string(registry: Registry) -> None:
    """A key other than a string was taken (and an error would have named the record
    ``1``); refused as every other argument of the wrong type is, naming the parameter."""
    with pytest.raises(RecordStoreError, match=r"^key must be a string \(the record's key, which errors name\), not 1$"):
        migrate_value(registry["note"], 1, {"schema_version": 1}, 1)  # type: ignore[arg-type]


def test_first_of_a_page_of_no_records_is_none(filled: Store) -> None:
    """``first()`` of a query limited to 0 records (a page size of 0) returned a record;
    there is none in such a page."""
    query = filled.query("note").order_by("n")
    assert query.limit(0).all() == []
    assert query.limit(0).first() is None
    first = query.limit(2).first()
    assert first is not None and first.data["n"] == 0
    second = query.offset(1).limit(5).first()
    assert second is not None and second.data["n"] == 1


def test_the_readme_library_quickstart_type_checks(tmp_path: Path) -> None:
    """The README's library Quickstart, copied into a program checked with ``mypy
    --strict`` (the package ships py.typed): it said that ``rec``, a Record in the loop,
    was then given ``store.get``'s ``Record | None``, and that ``done.run_id`` (``None``
    for a dry run) may be None where ``failures`` takes a run number."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    after = readme[readme.index("## Quickstart: the library") :]
    found = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert found is not None
    said = mypy_strict(tmp_path, "quickstart", found.group(1))
    assert said.startswith("Success"), said


def test_an_import_path_the_system_refuses_is_one_problem_and_the_rest_goes_in(tmp_path: Path) -> None:
    """A path given to import whose name is too long for the system raised OSError out
    of import_paths (the CLI: exit 3, nothing imported, beside a home that was fine); it
    is now one problem naming it, as a path that does not exist is."""
    too_long = str(tmp_path / ("x" * 300))
    with Store(tmp_path / "s.db") as store:
        done = store.import_paths([too_long, EXAMPLE_HOME])
        assert [str(p) for p in done.problems] == [f"{too_long}: file name too long"]
        assert done.files > 20 and store.query("task").count() == 3


def test_a_domain_the_registry_dropped_still_names_its_records(tmp_path: Path, cli: Any) -> None:
    """Records of a domain the registry no longer declares stay in the store (status
    lists them), but query, get, export and restore refused the name ("unknown
    domain"): they could not be read or written back. A name neither the registry nor
    the store knows is still refused."""
    cli("import", EXAMPLE_HOME)
    (tmp_path / "sessions_only.py").write_text(
        "from recordstore import Registry\nregistry = Registry()\nregistry.domain('session', version=1, files=['sessions/*.json'])\n"
    )
    with Store(cli.db, registry=load_registry(tmp_path / "sessions_only.py")) as store:
        tasks = store.query("task").all()
        assert len(tasks) == 3 and store.get("task", tasks[0].key) == tasks[0]
        done = store.export_to(tmp_path / "out", domains=["task"])
        assert done.ok and sorted(p.name for p in (tmp_path / "out").rglob("*.json")) == sorted(
            Path(t.source).name for t in tasks
        )
        with pytest.raises(RegistryError, match="unknown domain 'nosuch'"):
            store.query("nosuch")
    res = cli("query", "task", registry=str(tmp_path / "sessions_only.py"))
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3


def test_an_import_s_run_number_is_a_run_number_to_the_type_checker(tmp_path: Path) -> None:
    """``ImportResult.run_id`` was typed ``int | None``, though an import always has a
    run: ``store.history(store.import_paths(home).run_id)`` failed ``mypy --strict``."""
    program = """
from recordstore import Store

with Store("s.db") as store:
    done = store.import_paths("home")
    for run in store.history(done.run_id):
        print(run.kind, run.counts)
    print(list(store.failures(done.run_id)))
"""
    said = mypy_strict(tmp_path, "import_run", program)
    assert said.startswith("Success"), said


@pytest.mark.parametrize(
    "args, kwargs, said",
    [
        ((999,), {}, "no run 999 in this store"),
        (("1",), {}, r"run must be a run number \(an integer\), not '1'"),
        ((True,), {}, r"run must be a run number \(an integer\), not True"),
        ((1,), {"batch": 0}, "batch must be between 1 and"),
    ],
    ids=["unknown-run", "str-run", "bool-run", "batch-0"],
)
def test_failures_refuses_a_bad_run_when_called(filled: Store, args: tuple[object, ...], kwargs: dict[str, int], said: str) -> None:
    """``store.failures(999)`` returned a generator, and said nothing of the unknown run
    until the first failure was asked for, past the ``try`` a program put around the
    call (as around ``history(999)``, which raises): it raises at the call now."""
    with pytest.raises(RecordStoreError, match=said):
        filled.failures(*args, **kwargs)  # type: ignore[arg-type]


def test_failures_of_a_closed_store_are_refused_when_called(filled: Store) -> None:
    """As every other use of a closed store: a StoreError at the call, not at the first
    failure read."""
    filled.close()
    with pytest.raises(StoreError, match="the store is closed"):
        filled.failures(1)


def test_failures_are_still_read_a_page_at_a_time(db_path: Path, tmp_path: Path) -> None:
    """The failures of a run with more of them than a page, in order, and each once."""
    reg = Registry()
    reg.domain("note", version=2, files="notes/*.json").add_step(1, lambda record: {"bad": {1, 2}})
    home = tmp_path / "many"
    (home / "notes").mkdir(parents=True)
    for n in range(7):
        (home / "notes" / f"{n}.json").write_text(json.dumps({"schema_version": 1}))
    with Store(db_path, registry=reg) as store:
        store.import_paths(home)
        run = store.migrate(jobs=0).run_id
        assert run is not None
        pages = store.failures(run, batch=3)
        assert [f["key"] for f in pages] == [f"notes/{n}.json" for n in range(7)]


@pytest.mark.parametrize(
    "source, said",
    [
        ("registry = 5\n", r": its module-level `registry` is 5, not a recordstore\.Registry$"),
        (
            "from recordstore import Registry\nregistry = Registry\n",
            r": its module-level `registry` is the class Registry: make one, registry = Registry\(\)$",
        ),
        ("registry = None\n", r" has no module-level `registry` \(a recordstore\.Registry\)$"),
        ("x = 1\n", r" has no module-level `registry` \(a recordstore\.Registry\)$"),
    ],
    ids=["int", "the-class", "None", "none"],
)
def test_a_registry_of_the_wrong_kind_is_said_to_be_one(tmp_path: Path, source: str, said: str) -> None:
    """A registry file whose ``registry`` is not a Registry (``registry = Registry``,
    the parentheses forgotten) was said to have no module-level ``registry`` at all,
    sending the user to look for a name that is there: it says what it is now."""
    (tmp_path / "mine.py").write_text(source)
    with pytest.raises(RegistryError, match=r"^registry \S*mine\.py" + said):
        Store(":memory:", registry=tmp_path / "mine.py")
