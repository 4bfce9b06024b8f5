"""Registry edges that exploratory testing found: a string as the file patterns, a
registry that calls sys.exit(), fingerprints, steps that cannot take a record, glob
brackets, migrate_value's versions, registry specs, and the types users see."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import mypy_strict
from recordstore import (
    Domain,
    InputError,
    MigrationError,
    NewerVersionError,
    Registry,
    RegistryError,
    Step,
    Store,
    load_registry,
    migrate_value,
)
from recordstore import registry as registry_module
from recordstore.registry import StepFunction


def test_one_pattern_given_as_a_string_is_one_pattern(tmp_path: Path) -> None:
    reg = Registry()
    session = reg.domain("session", version=1, files="sessions/*.json")
    assert session.files == ["sessions/*.json"]
    home = tmp_path / "home"
    (home / "sessions").mkdir(parents=True)
    (home / "sessions" / "s1.json").write_text('{"schema_version": 1, "id": "s1"}')
    (home / "settings.json").write_text('{"theme": "dark"}')
    with Store(tmp_path / "s.db", registry=reg) as store:
        store.import_paths(home)
        assert [r.key for r in store.query("session")] == ["sessions/s1.json"]
    # Two such domains are no longer "given the same pattern 's'".
    reg.domain("task", version=1, files="tasks/*.json")
    reg.validate()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (None, r"^domain 'note': files must be a glob pattern or a list of them, not None$"),
        (
            ["notes/*.json", Path("memos/*.json")],
            r"^domain 'note': file pattern PosixPath\('memos/\*\.json'\) is not a string$",
        ),
    ],
    ids=["None", "a Path among them"],
)
def test_files_that_are_not_patterns_are_a_registry_error(files: object, message: str) -> None:
    with pytest.raises(RegistryError, match=message) as info:
        Registry().domain("note", version=1, files=files)  # type: ignore[arg-type]
    assert info.value.domain == "note"


@pytest.mark.parametrize("pattern", ["./notes/*.json", "/notes/*.json", "notes//*.json", "notes/../notes/*.json", "notes/"])
def test_a_pattern_no_relative_path_can_match_is_a_registry_error(pattern: str, tmp_path: Path) -> None:
    """``files="./notes/*.json"`` (or ``/notes/...``, ``notes/``) loaded, and every
    import skipped every file as "no domain": a file is known by its path relative to
    the import root, which has no such part."""
    with pytest.raises(RegistryError, match=r"^domain 'note': file pattern .* can match no file: patterns are relative to the import root") as info:
        Registry().domain("note", version=1, files=["other/*.json", pattern])
    assert info.value.domain == "note"


@pytest.mark.parametrize("field", [None, 5, "", b"schema_version"], ids=["None", "an int", "empty", "bytes"])
def test_a_version_field_that_is_no_name_is_a_registry_error(field: object, tmp_path: Path) -> None:
    """``version_field=5`` (or an empty or unset setting) was taken: every record read
    as version 1, and a migration stamped a new key ``"5"`` into each."""
    with pytest.raises(RegistryError, match=r"^domain 'note': version_field must be a non-empty string") as info:
        Registry().domain("note", version=2, files="notes/*.json", version_field=field)  # type: ignore[arg-type]
    assert info.value.domain == "note"


@pytest.mark.parametrize("call", ["sys.exit(0)", "sys.exit()", "sys.exit('usage: x')"])
def test_a_registry_calling_sys_exit_is_a_registry_error_not_an_exit(tmp_path: Path, cli: Any, call: str) -> None:
    path = tmp_path / "reg_exit.py"
    path.write_text(
        "import sys\nfrom recordstore import Registry\nregistry = Registry()\n"
        f"registry.domain('thing', version=1, files=['things/*.json'])\n{call}\n"
    )
    with pytest.raises(RegistryError, match=rf"^cannot load registry .*reg_exit\.py: it called {re.escape(call)} while loading$"):
        Store(tmp_path / "lib.db", registry=str(path))
    (tmp_path / "home" / "things").mkdir(parents=True)
    (tmp_path / "home" / "things" / "a.json").write_text('{"schema_version": 1}')
    res = cli("import", tmp_path / "home", registry=str(path))
    assert res.exit_code == 3  # it was the registry's own code: 0, a success that did nothing
    assert f"it called {call} while loading" in res.stderr
    assert not cli.db.exists()


def test_a_registry_raising_a_base_exception_while_loading_is_one_line(tmp_path: Path, cli: Any) -> None:
    """asyncio's CancelledError at a registry's top level (a BaseException) was a
    52-line traceback with exit 1, not the one line naming the registry."""
    path = tmp_path / "reg_cancelled.py"
    path.write_text("import asyncio\nraise asyncio.CancelledError('the settings service timed out')\n")
    message = r"^cannot load registry .*reg_cancelled\.py: CancelledError: the settings service timed out$"
    with pytest.raises(RegistryError, match=message):
        load_registry(str(path))
    res = cli("status", registry=str(path))
    assert res.exit_code == 3
    assert res.stderr == f"store: error: cannot load registry {path}: CancelledError: the settings service timed out\n"


def test_a_registry_failing_with_a_message_of_several_lines_is_one_line(tmp_path: Path, cli: Any) -> None:
    """configparser (as pydantic, SQLAlchemy) puts line breaks in its messages: the
    registry's error took three lines of stderr."""
    path = tmp_path / "reg_settings.py"
    path.write_text(
        "import configparser\nsettings = configparser.ConfigParser()\n"
        "settings.read_string('model = v4\\n', source='settings.ini')  # no [section] header\n"
    )
    reason = r"MissingSectionHeaderError: File contains no section headers\. file: 'settings\.ini', line: 1 'model = v4\\n'"
    with pytest.raises(RegistryError, match=rf"^cannot load registry .*reg_settings\.py: {reason}$"):
        load_registry(str(path))
    res = cli("status", registry=str(path))
    assert res.exit_code == 3 and len(res.stderr.splitlines()) == 1, res.stderr
    assert re.fullmatch(rf"store: error: cannot load registry .*: {reason}\n", res.stderr), res.stderr


def test_ctrl_c_while_a_registry_loads_is_not_turned_into_an_error(tmp_path: Path) -> None:
    path = tmp_path / "reg_interrupted.py"
    path.write_text("raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_registry(str(path))


FINGERPRINTED = """\
import collections, dataclasses, types
from recordstore import Registry

registry = Registry()
thing = registry.domain("thing", version=6, files=["things/*.json"])

@dataclasses.dataclass(frozen=True)
class Config:
    drop: frozenset

Point = collections.namedtuple("Point", "names other")

def make(value):
    def step(record):
        record["made_with"] = repr(value)
    return step

def helper(record):
    pass

table = collections.defaultdict(set)
table["m"].update({"n", "nn", "nnn", "nnnn"})
thing.add_step(1, make(Config(frozenset({"alpha", "beta", "gamma", "delta", "eps"}))))
thing.add_step(2, make(table))
thing.add_step(3, make([Point({"x", "y", "z", "w"}, 1), types.SimpleNamespace(keep={"k", "kk", "kkk"})]))
thing.add_step(4, make({helper, make, print}))  # functions, shown with their addresses

def keyword_default(record, *, fields=frozenset({"a", "b", "c", "d"})):
    pass

thing.add_step(5, keyword_default)
"""


def test_fingerprints_are_the_same_in_every_process(tmp_path: Path) -> None:
    """A step that captured an object holding a set was reported by `store check` as
    changed in every process whose hash seed differed from the migration's."""
    path = tmp_path / "fingerprinted.py"
    path.write_text(FINGERPRINTED)
    code = f"from recordstore import load_registry; print(load_registry({str(path)!r}).fingerprints())"
    seen = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        seen.add(run.stdout)
    assert len(seen) == 1, seen


class Rename:
    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def __call__(self, record: dict[str, Any]) -> None:
        record[self.new] = record.pop(self.old, None)

    def method(self, record: dict[str, Any]) -> None:
        record[self.new] = record.pop(self.old, None)


class SlottedRename:
    __slots__ = ("new", "__old")

    def __init__(self, old: str, new: str):
        self.__old, self.new = old, new

    def __call__(self, record: dict[str, Any]) -> None:
        record[self.new] = record.pop(self.__old, None)


def bound_as_default(new: str) -> StepFunction:
    def step(record: dict[str, Any], new: str = new) -> None:
        record[new] = record.pop("x", None)

    return step


def bound_as_keyword_default(new: str) -> StepFunction:
    def step(record: dict[str, Any], *, new: str = new) -> None:
        record[new] = record.pop("x", None)

    return step


def bound_by_lambda(new: str) -> StepFunction:
    return lambda record, new=new: record.update({new: record.pop("x", None)})


@pytest.mark.parametrize(
    "make",
    [
        Rename,
        SlottedRename,
        lambda old, new: Rename(old, new).method,
        lambda old, new: bound_as_default(new),
        lambda old, new: bound_as_keyword_default(new),
        lambda old, new: bound_by_lambda(new),
    ],
    ids=["callable object", "object with slots", "bound method", "default", "keyword default", "lambda default"],
)
def test_a_step_changed_through_the_values_it_was_made_with_gets_another_fingerprint(
    make: Callable[[str, str], StepFunction],
) -> None:
    """`store check` said nothing when a step's values were held as defaults or as a
    callable object's attributes (a closure's or a partial's values were noticed)."""

    def fingerprint(new: str) -> str:
        return Step("thing", 1, make("a", new)).fingerprint

    assert fingerprint("a_b") == fingerprint("a_b")
    assert fingerprint("a_b") != fingerprint("a_c")


def two_arguments(record: dict[str, Any], version: int) -> None: ...


def no_argument() -> None: ...


def keyword_needed(record: dict[str, Any], *, strict: bool) -> None: ...


def prefix_then_record(prefix: str, record: dict[str, Any], *, strict: bool = False) -> None: ...


@pytest.mark.parametrize(
    ("func", "message"),
    [
        (None, r"^domain 'thing': step 1 -> 2 must be a function taking one record, not None$"),
        ("not a function", r"^domain 'thing': step 1 -> 2 must be a function taking one record, not 'not a function'$"),
        (
            two_arguments,
            r"^domain 'thing': step 1 -> 2 \(two_arguments\) cannot be called with one record: "
            r"missing a required argument: 'version'$",
        ),
        (no_argument, r"\(no_argument\) cannot be called with one record: too many positional arguments$"),
        (keyword_needed, r"\(keyword_needed\) cannot be called with one record: missing a required argument: 'strict'$"),
        (functools.partial(prefix_then_record), r"\(prefix_then_record\) cannot be called with one record"),
    ],
    ids=["None", "a string", "two arguments", "no argument", "a required keyword", "a partial short of one"],
)
def test_a_step_that_cannot_take_one_record_is_refused_when_registered(func: Any, message: str) -> None:
    """It passed validation and `store check` ("registry chains valid"), then failed
    every record at migrate time."""
    dom = Registry().domain("thing", version=2, files=["things/*.json"])
    with pytest.raises(RegistryError, match=message) as info:
        dom.add_step(1, func)
    assert (info.value.domain, info.value.step) == ("thing", 1)
    assert dom.steps == {}


@pytest.mark.parametrize(
    "func",
    [
        dict.copy,
        max,
        functools.partial(prefix_then_record, "p"),
        functools.partial(two_arguments, version=2),
        Rename("a", "b"),
        lambda record, *rest: None,
    ],
    ids=["a method of dict", "a builtin without a signature", "a partial", "a partial by keyword", "a callable object", "*args"],
)
def test_builtins_partials_and_objects_taking_one_record_are_steps(func: Any) -> None:
    dom = Registry().domain("thing", version=2, files=["things/*.json"])
    assert dom.add_step(1, func).func is func


def test_a_registry_file_with_a_step_that_cannot_take_a_record_does_not_load(tmp_path: Path, cli: Any) -> None:
    path = tmp_path / "reg.py"
    path.write_text(
        "from recordstore import Registry\nregistry = Registry()\n"
        "d = registry.domain('thing', version=3, files=['things/*.json'])\n"
        "@d.step(1)\ndef one(record): pass\n"
        "@d.step(2)\ndef two(record, version):\n    return record\n"
    )
    Store(cli.db).close()
    res = cli("check", registry=str(path))
    assert res.exit_code == 3  # it said "ok: registry chains valid"
    assert res.stderr.strip().endswith(
        "domain 'thing': step 2 -> 3 (two) cannot be called with one record: missing a required argument: 'version'"
    )


@pytest.mark.parametrize(
    ("pattern", "path", "matched"),
    [
        ("x/[]]*.json", "x/]a.json", True),
        ("x/[]]*.json", "x/^^^.json", False),  # "[]]*" took the rest of the pattern as one class
        ("x/[]]a.json", "x/]a.json", True),  # was re.error: bad escape \Z
        ("x/[!]]x.json", "x/ax.json", True),
        ("x/[!]]x.json", "x/]x.json", False),
        ("x/[z-a]b.json", "x/ab.json", False),  # an empty range matches nothing, as in fnmatch
        ("x/[a&&b]", "x/&", True),
        ("x/a[!b]c.json", "x/a/c.json", False),  # brackets stay within one directory, as * does
        ("x/a[.-0]c.json", "x/a/c.json", False),
        ("x/a[.-0]c.json", "x/a.c.json", True),
        ("x/[a.json", "x/[a.json", True),
    ],
)
def test_brackets_read_as_glob_reads_them(pattern: str, path: str, matched: bool) -> None:
    reg = Registry()
    reg.domain("thing", version=1, files=[pattern])
    reg.domain("other", version=1, files=["**"])
    found = reg.validate().match(path)
    assert found is not None and found.name == ("thing" if matched else "other")


def test_a_pattern_that_cannot_be_compiled_names_the_domain_and_the_pattern(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pattern: str) -> re.Pattern[str]:
        raise re.error("bad escape \\Z", pattern, 13)

    monkeypatch.setattr(registry_module, "glob_to_regex", refuse)
    message = r"^domain 'thing': file pattern 'things/\?\.json' cannot be used: bad escape"
    with pytest.raises(RegistryError, match=message) as info:
        Registry().domain("thing", version=1, files=["things/?.json"])
    assert info.value.domain == "thing"


def _versioned(field: str = "schema_version") -> Domain:
    dom = Registry().domain("thing", version=2, files=["things/*.json"], version_field=field)
    dom.add_step(1, lambda record: {**record, "two": True})
    return dom


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_migrate_value_refuses_what_is_no_version(version: Any) -> None:
    """Version 0 raised a raw KeyError."""
    message = rf"^notes/a\.json: schema_version must be a positive integer, not {re.escape(repr(version))}$"
    with pytest.raises(InputError, match=message):
        migrate_value(_versioned(), "notes/a.json", {"x": 1}, version)


@pytest.mark.parametrize("field", ["schema_version", "v"])
def test_migrate_value_refuses_a_version_newer_than_current_naming_the_field(field: str) -> None:
    """A newer version came back unchanged, as if it were migrated."""
    message = rf"^k: {field} 5 is newer than current version 2 of domain 'thing'$"
    with pytest.raises(NewerVersionError, match=message) as info:
        migrate_value(_versioned(field), "k", {field: 5}, 5)
    assert (info.value.version, info.value.current_version, info.value.version_field) == (5, 2, field)
    assert migrate_value(_versioned(field), "k", {field: 1}, 1) == {field: 2, "two": True}
    assert migrate_value(_versioned(field), "k", {field: 2}, 2) == {field: 2}


def test_migrate_value_with_a_broken_chain_is_a_registry_error() -> None:
    dom = Registry().domain("thing", version=3, files=["things/*.json"])
    dom.add_step(2, lambda record: None)
    with pytest.raises(RegistryError, match=r"^domain 'thing': no step 1 -> 2"):
        migrate_value(dom, "k", {}, 1)


def add_two(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "two": True}


def add_made(made: dict[Any, Any], record: dict[str, Any]) -> dict[str, Any]:
    return {**record, **made}


@pytest.mark.parametrize(
    ("made", "reason"),
    [
        ({"tags": {"a"}}, "not representable as JSON: Object of type set is not JSON serializable"),
        ({"ratio": float("nan")}, "not representable as JSON: Out of range float values are not JSON compliant"),
        ({(1, 2): "pair"}, "not representable as JSON: keys must be str, int, float, bool or None, not tuple"),
        ({"raw": b"bytes"}, "not representable as JSON: Object of type bytes is not JSON serializable"),
    ],
    ids=["set", "NaN", "tuple key", "bytes"],
)
def test_migrate_value_refuses_what_the_store_could_not_write_naming_the_step(
    tmp_path: Path, made: dict[Any, Any], reason: str
) -> None:
    """The value came back as the step made it (a set, NaN, a tuple key), though `store
    migrate` fails that record: json.dumps then wrote NaN, or failed far from the step."""
    registry = Registry()
    dom = registry.domain("thing", version=3, files=["things/*.json"])
    dom.add_step(1, add_two)
    dom.add_step(2, functools.partial(add_made, made))
    with pytest.raises(MigrationError) as info:
        migrate_value(dom, "things/a.json", {"schema_version": 1}, 1)
    assert (info.value.reason, info.value.from_version, info.value.to_version) == (reason, 1, 3)
    assert info.value.step == "add_two, add_made"
    (tmp_path / "home" / "things").mkdir(parents=True)
    (tmp_path / "home" / "things" / "a.json").write_text('{"schema_version": 1}')
    with Store(tmp_path / "s.db", registry=registry) as store:  # the same failure, from the same steps
        store.import_paths(tmp_path / "home")
        (failure,) = store.migrate(jobs=0).failures
    assert str(failure) == str(info.value)


REGISTRY_SOURCE = (
    "from recordstore import Registry\nregistry = Registry()\nregistry.domain('thing', version=1, files=['things/*.json'])\n"
)


@pytest.fixture
def beside(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding reg.py and a package directory, neither of them on the
    Python path (as for the installed `store`); HOME is that directory too. (Loading a
    registry file puts its directory on the path: other tests' are left out.)"""
    (tmp_path / "reg.py").write_text(REGISTRY_SOURCE)
    (tmp_path / "pkgdir").mkdir()
    (tmp_path / "pkgdir" / "__init__.py").write_text(REGISTRY_SOURCE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    temporary = str(tmp_path_factory.getbasetemp())
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".") and not p.startswith(temporary)])
    for name in ("reg", "pkgdir"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return tmp_path


def test_a_registry_is_found_by_a_path_object_and_by_a_path_from_home(beside: Path) -> None:
    """A Path was an internal AttributeError ('PosixPath' object has no attribute
    'endswith'); '~/reg.py' was a file that "does not exist"."""
    assert list(load_registry(beside / "reg.py").domains) == ["thing"]
    assert list(load_registry("~/reg.py").domains) == ["thing"]
    with Store(beside / "s.db", registry=beside / "reg.py") as store:  # type: ignore[arg-type]
        assert list(store.registry.domains) == ["thing"]


@pytest.mark.parametrize("given", [sys, 5, ["reg.py"]], ids=["a module object", "an int", "a list"])
def test_a_registry_given_as_neither_a_registry_nor_a_spec_is_a_registry_error(beside: Path, given: Any) -> None:
    """``Store(registry=my_registry)`` (the module imported, not its path or name) was a
    TypeError from os.fspath, outside the error tree."""
    with pytest.raises(RegistryError, match=r"^a registry is a Registry, a \.py file or a module name, not "):
        load_registry(given)
    with pytest.raises(RegistryError, match=r"^a registry is a Registry"):
        Store(beside / "s.db", registry=given)
    assert not (beside / "s.db").exists()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("reg.py:registry", r"^registry reg\.py:registry: give reg\.py alone, without ':registry' \(a registry is a \.py file"),
        (
            "./pkgdir",
            r"^registry \./pkgdir is a directory, not a \.py file: give the file that defines `registry`, "
            r"or a package's module name$",
        ),
        ("pkgdir", r"^cannot load registry pkgdir: no file of that name, and no module 'pkgdir' on the Python path; a directory"),
        ("reg", r"^cannot load registry reg: no file .* on the Python path; a file reg\.py is here: give its path, reg\.py$"),
        ("~/nope.py", r"^registry file ~/nope\.py \(/.*/nope\.py\) does not exist$"),
        ("my-reg", r"^registry my-reg is neither a file nor a module name$"),
        ("no_such.sub", r"^cannot load registry no_such\.sub: no file of that name, and no module 'no_such\.sub' on the Python path$"),
    ],
)
def test_a_registry_spec_that_names_nothing_says_what_was_tried(beside: Path, spec: str, message: str) -> None:
    """`reg.py:registry` said "No module named 'reg'" and a package directory that it
    "does not exist"."""
    with pytest.raises(RegistryError, match=message):
        load_registry(spec)


def test_a_directory_found_on_the_python_path_is_named_as_a_directory(beside: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m recordstore --registry regs` (the current directory on the path) said
    "registry regs has no module-level `registry`": the directory was imported as a
    namespace package."""
    (beside / "regs").mkdir()
    (beside / "regs" / "reg.py").write_text(REGISTRY_SOURCE)
    monkeypatch.syspath_prepend(str(beside))
    monkeypatch.delitem(sys.modules, "regs", raising=False)
    with pytest.raises(RegistryError, match=r"^registry regs is a directory with no __init__\.py, not a module: give the \.py file"):
        load_registry("regs")
    assert list(load_registry("regs/reg.py").domains) == ["thing"]


def test_a_module_the_registry_imports_is_named_as_the_missing_one(beside: Path) -> None:
    (beside / "needs.py").write_text("import recordstore_no_such_dependency\n")
    message = r"^cannot load registry needs\.py: ModuleNotFoundError: No module named 'recordstore_no_such_dependency'$"
    with pytest.raises(RegistryError, match=message):
        load_registry("needs.py")
    assert not [m for m in sys.modules.values() if getattr(m, "__file__", None) == str(beside / "needs.py")]


TYPED_USE = """\
from typing import Any

from recordstore import Registry

registry = Registry()
session = registry.domain("session", version=2, files=["sessions/*.json"])


@session.step(1)
def add_field(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "x": 1}


def test_add_field() -> None:
    out = add_field({"a": 1})
    assert out["x"] == 1


for dom in registry:
    reveal_type(dom)
"""


def test_a_decorated_step_keeps_its_own_type_and_a_registry_iterates_domains(tmp_path: Path) -> None:
    """Under mypy --strict, the decorated step became `(dict) -> dict | None` (its result
    "is not indexable") and iterating a registry gave Any."""
    said = mypy_strict(tmp_path, "typed_use", TYPED_USE)
    assert "error" not in said, said
    assert 'Revealed type is "recordstore.registry.Domain"' in said, said


def test_migrate_value_and_registry_lookup_given_no_domain_name_say_so() -> None:
    """``migrate_value("d", ...)`` (a name where a Domain goes) raised AttributeError, and
    ``registry[["d"]]`` TypeError, outside the error tree."""
    from recordstore import Registry, RegistryError, migrate_value

    registry = Registry()
    registry.domain("d", version=2, files=["d/*.json"]).step(1)(lambda record: None)
    with pytest.raises(RegistryError, match="domain must be a Domain"):
        migrate_value("d", "k", {}, 1)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match=r"unknown domain \['d'\]"):
        registry[["d"]]  # type: ignore[index]
    assert migrate_value(registry["d"], "k", {}, 1) == {"schema_version": 2}
