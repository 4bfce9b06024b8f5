"""The registry contract: chains validated on load, patterns, loading by path or module."""

from __future__ import annotations

from pathlib import Path

import pytest

from recordstore import Registry, RegistryError, load_registry
from recordstore.domains import deepseek
from recordstore.registry import glob_to_regex


def noop(record: dict) -> None:
    return None


def test_a_gap_in_the_chain_names_the_domain_and_the_missing_step() -> None:
    reg = Registry()
    d = reg.domain("session", version=4, files=["s/*.json"])
    d.add_step(1, noop)
    d.add_step(3, noop)
    with pytest.raises(RegistryError, match=r"'session'.*no step 2 -> 3") as info:
        reg.validate()
    assert (info.value.domain, info.value.step) == ("session", 2)


def test_a_current_version_the_chain_does_not_reach_is_an_error() -> None:
    reg = Registry()
    reg.domain("task", version=2, files=["t/*.json"])
    with pytest.raises(RegistryError, match=r"'task'.*no step 1 -> 2"):
        reg.validate()


def test_a_step_registered_twice_is_an_error_at_once() -> None:
    reg = Registry()
    d = reg.domain("task", version=3)

    @d.step(1)
    def first(record: dict) -> None: ...

    with pytest.raises(RegistryError, match=r"'task'.*step 1 -> 2 is registered twice") as info:

        @d.step(1)
        def second(record: dict) -> None: ...

    assert info.value.step == 1


def test_a_step_beyond_the_current_version_is_an_error() -> None:
    reg = Registry()
    d = reg.domain("task", version=2)
    d.add_step(1, noop)
    d.add_step(2, noop)
    with pytest.raises(RegistryError, match=r"step 2 -> 3 goes beyond current version 2"):
        reg.validate()


def test_a_domain_declared_twice_is_an_error_naming_it() -> None:
    reg = Registry()
    reg.domain("note", version=1, files=["notes/*.json"])
    with pytest.raises(RegistryError, match=r"^domain 'note' is declared twice$") as info:
        reg.domain("note", version=1, files=["more-notes/*.json"])
    assert info.value.domain == "note"
    assert reg["note"].files == ["notes/*.json"]


def test_two_domains_with_the_same_file_pattern_are_an_error_naming_the_pattern_and_both() -> None:
    reg = Registry()
    reg.domain("note", version=1, files=["notes/*.json"])
    reg.domain("memo", version=1, files=["memos/*.json", "notes/*.json"])
    with pytest.raises(
        RegistryError, match=r"^file pattern 'notes/\*\.json' is given to two domains, 'note' and 'memo'$"
    ) as info:
        reg.validate()
    assert info.value.domain == "memo"


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5])
def test_versions_and_steps_must_be_positive_integers(bad: object) -> None:
    reg = Registry()
    reg.domain("task", version=bad)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="current version must be an integer >= 1"):
        reg.validate()
    with pytest.raises(RegistryError, match="must be a version >= 1"):
        Registry().domain("x", version=3).add_step(bad, noop)  # type: ignore[arg-type]


def test_star_stays_within_one_directory_and_double_star_crosses() -> None:
    assert glob_to_regex("sessions/*.json").match("sessions/a.json")
    assert not glob_to_regex("sessions/*.json").match("sessions/checkpoints/latest.json")
    assert glob_to_regex("runs/*/*.json").match("runs/a/b.json")
    assert glob_to_regex("**/*.json").match("a/b/c.json")
    assert glob_to_regex("**/*.json").match("c.json")
    assert glob_to_regex("data[0-9].json").match("data7.json")
    assert not glob_to_regex("data?.json").match("data/.json")


def test_the_builtin_registry_describes_the_deepseek_home() -> None:
    reg = load_registry(None)
    assert {d.name: d.version for d in reg} == {
        "session": 1,
        "offline_queue": 1,
        "runtime": 2,
        "task": 2,
        "automation": 1,
        "automation_run": 1,
    }
    # The additive v1 -> v2 bumps still have their (no-op) steps.
    for name in ("runtime", "task"):
        record = {"schema_version": 1, "id": "x"}
        assert reg[name].chain(1)[0].func(dict(record)) is None
    cases = {
        "sessions/3f1c.json": "session",
        "sessions/checkpoints/latest.json": "session",
        "sessions/checkpoints/offline_queue.json": "offline_queue",
        "tasks/runtime/threads/thr_1.json": "runtime",
        "tasks/runtime/turns/turn_1.json": "runtime",
        "tasks/runtime/items/item_1.json": "runtime",
        "tasks/runtime/state.json": "runtime",
        "tasks/runtime/events/thr_1.jsonl": "runtime",
        "tasks/tasks/task_1.json": "task",
        "automations/automations/a.json": "automation",
        "automations/runs/a/b.json": "automation_run",
    }
    for path, domain in cases.items():
        found = reg.match(path)
        assert found is not None and found.name == domain, path
    for path in ("tasks/queue.json", "tasks/artifacts/t/output.txt", "config.toml", "settings.json"):
        assert reg.match(path) is None, path
    assert reg is deepseek.registry


def test_a_registry_loads_from_a_file_path(tmp_path: Path) -> None:
    path = tmp_path / "myreg.py"
    path.write_text(
        "from recordstore import Registry\n"
        "registry = Registry()\n"
        "notes = registry.domain('note', version=2, files=['notes/*.json'])\n"
        "@notes.step(1)\n"
        "def add_title(record):\n"
        "    record.setdefault('title', '')\n"
    )
    reg = load_registry(str(path))
    assert reg["note"].version == 2
    assert reg["note"].chain(1)[0].name == "add_title"


def test_a_registry_loads_from_a_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "myapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "records.py").write_text(
        "from recordstore import Registry\nregistry = Registry()\nregistry.domain('note', version=1, files=['*.json'])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(load_registry("myapp.records").domains) == ["note"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 1\n", "no module-level `registry`"),
        ("raise RuntimeError('boom')\n", "cannot load registry .*RuntimeError: boom"),
        (
            "from recordstore import Registry\nregistry = Registry()\nregistry.domain('a', version=3)\n",
            "'a'.*no step 1 -> 2",
        ),
        (
            "from recordstore import Registry\nregistry = Registry()\n"
            "registry.domain('a', version=1, files=['a/*.json'])\n"
            "registry.domain('a', version=1, files=['b/*.json'])\n",
            r"^domain 'a' is declared twice$",
        ),
        (
            "from recordstore import Registry\nregistry = Registry()\n"
            "registry.domain('a', version=1, files=['*.json'])\n"
            "registry.domain('b', version=1, files=['*.json'])\n",
            r"^file pattern '\*\.json' is given to two domains, 'a' and 'b'$",
        ),
    ],
)
def test_a_broken_registry_file_is_one_clear_error(tmp_path: Path, source: str, message: str) -> None:
    path = tmp_path / "broken.py"
    path.write_text(source)
    with pytest.raises(RegistryError, match=message):
        load_registry(str(path))


def test_a_missing_registry_file_or_module_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        load_registry(str(tmp_path / "nope.py"))
    with pytest.raises(RegistryError, match="cannot load registry"):
        load_registry("no_such_module_for_recordstore")
