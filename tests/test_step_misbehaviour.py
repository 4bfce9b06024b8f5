"""Migration steps as registry authors write them, wrongly: each misbehaving step fails
its own record in one line, the other records migrate, every original row is kept, and
the dry run, the real run, with workers and without, all say the same."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from recordstore import Registry, Store

#: Workers are forked: a registry built in code is theirs too.
needs_fork = pytest.mark.skipif(
    "fork" not in __import__("multiprocessing").get_all_start_methods(), reason="workers are forked"
)


def _home(tmp_path: Path, lines: list[str]) -> Path:
    home = tmp_path / "home"
    (home / "r").mkdir(parents=True)
    (home / "r" / "log.jsonl").write_text("".join(line + "\n" for line in lines))
    return home


def _registry(step: Callable[[dict[str, Any]], Any]) -> Registry:
    registry = Registry()
    registry.domain("rec", version=2, files=["r/*.jsonl"]).add_step(1, step)
    return registry


def _rows(db: Path) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT key, version, payload FROM records ORDER BY id").fetchall()
    finally:
        conn.close()


def _summary(result: Any) -> tuple[Any, ...]:
    return (result.counts, [(f.key, f.step, f.reason, getattr(f, "source", None)) for f in result.failures])


def _outcomes(tmp_path: Path, registry: Registry, lines: list[str], jobs: int, **options: Any) -> tuple[Any, Any, Any]:
    """The dry run's and the real run's summaries, and the records after the real run."""
    home = _home(tmp_path / f"jobs{jobs}", lines)
    db = tmp_path / f"jobs{jobs}" / "s.db"
    with Store(db, registry=registry) as store:
        assert store.import_paths([home], jobs=0).ok
        planned = store.migrate(dry_run=True, jobs=jobs, **options)
        done = store.migrate(jobs=jobs, **options)
    return planned, done, _rows(db)


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_step_quoting_a_lone_surrogate_of_its_record_fails_only_that_record(tmp_path: Path, jobs: int) -> None:
    """A step whose error quoted a record's string holding "\\ud800" (JSON allows it, and
    the store keeps it) ended the whole migration, and its dry run, with an internal
    error (exit 70): the message could not be made one printable line."""

    def step(record: dict[str, Any]) -> None:
        if record["title"] != "fine":
            raise ValueError(f"bad title {record['title']}")

    lines = ['{"schema_version":1,"title":"fine"}', '{"schema_version":1,"title":"\\ud800 half"}']
    planned, done, rows = _outcomes(tmp_path, _registry(step), lines, jobs)
    for result in (planned, done):
        assert result.counts == {"rec": {"1->2": 1}}
        [failure] = result.failures
        assert (failure.key, failure.reason) == ("r/log.jsonl:2", "ValueError: bad title \\ud800 half")
        assert str(failure) == f"rec r/log.jsonl:2: v1 -> v2 ({failure.step}) failed: ValueError: bad title \\ud800 half"
    assert [r[:2] for r in rows] == [("r/log.jsonl:1", 2), ("r/log.jsonl:2", 1)]
    assert rows[1][2] == lines[1]  # kept exactly


def _nest(record: dict[str, Any]) -> None:
    """Nests the record ``record["levels"]`` deep in all (the record itself is one level)."""
    inner: Any = []
    for _ in range(record["levels"] - 2):
        inner = {"a": inner}
    record["deep"] = inner


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_step_nesting_a_record_deeper_than_the_store_reads_fails_that_record(tmp_path: Path, jobs: int) -> None:
    """A step nesting a record 1,025 to ~1,100 levels deep (beyond what any decoder here
    reads, within what the encoder's budget writes) migrated it: the record was then
    unreadable ("its stored payload cannot be read" from every query, and its exported
    file refused by the next import). 1,024 levels, the most a record may have, migrate."""
    lines = [f'{{"schema_version":1,"levels":{n}}}' for n in (1024, 1025, 1060, 1100)]
    planned, done, rows = _outcomes(tmp_path, _registry(_nest), lines, jobs)
    for result in (planned, done):
        assert result.counts == {"rec": {"1->2": 1}}
        assert [(f.key, f.reason) for f in result.failures] == [
            (f"r/log.jsonl:{n}", "nested too deeply to encode (more than 1024 levels, which could not be read back)")
            for n in (2, 3, 4)
        ]
    assert [r[2] for r in rows[1:]] == lines[1:]  # kept exactly
    with Store(tmp_path / f"jobs{jobs}" / "s.db", registry=_registry(_nest)) as store:
        [migrated] = [r for r in store.query("rec") if r.version == 2]
        assert migrated.data["levels"] == 1024 and len(list(store.query("rec"))) == 4


def test_a_record_as_deep_as_a_record_may_be_is_shown_by_query_json(tmp_path: Path) -> None:
    """`store query --json` wraps each record in an object of its own, which nests it two
    levels deeper than it is: a record of 1,024 levels, which a step may make, is shown.
    migrate_value refuses, as a migration does, a record nested deeper."""
    from conftest import Cli

    from recordstore import MigrationError, migrate_value

    registry = tmp_path / "nesting.py"
    registry.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_step_misbehaviour import _nest, _registry\n"
        "registry = _registry(_nest)\n"
    )
    cli = Cli(tmp_path / "s.db")
    assert cli("import", _home(tmp_path, ['{"schema_version":1,"levels":1024}']), registry=str(registry)).exit_code == 0
    assert cli("migrate", registry=str(registry)).exit_code == 0
    shown = cli("query", "rec", "--json", registry=str(registry))
    assert shown.exit_code == 0, shown.stderr  # (a line 1,026 levels deep: no decoder here reads it back)
    assert shown.stdout.startswith('{"key":"r/log.jsonl:1","version":2,"record":{"schema_version":2,"levels":1024,')
    domain = _registry(_nest)["rec"]
    assert migrate_value(domain, "k", {"schema_version": 1, "levels": 1024}, 1)["levels"] == 1024
    with pytest.raises(MigrationError, match="more than 1024 levels"):
        migrate_value(domain, "k", {"schema_version": 1, "levels": 1025}, 1)


def _fail_some(record: dict[str, Any]) -> None:
    if record.get("fail"):
        raise ValueError("asked to fail")


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_an_atomic_dry_run_says_the_real_run_would_roll_back(tmp_path: Path, jobs: int) -> None:
    """`migrate --dry-run --atomic` (plan with atomic=True) said it would migrate every
    record but the failing one, where the real --atomic run migrates none (rolled back)."""
    lines = ['{"schema_version":1}', '{"schema_version":1,"fail":true}', '{"schema_version":1}']
    planned, done, rows = _outcomes(tmp_path, _registry(_fail_some), lines, jobs, atomic=True)
    assert done.rolled_back and done.counts == {} and done.migrated == 0
    assert (planned.rolled_back, planned.counts, planned.migrated) == (True, {}, 0)
    assert _summary(planned) == _summary(done)
    assert [r[2] for r in rows] == lines


def test_cli_atomic_dry_run_prints_what_the_real_run_prints(tmp_path: Path) -> None:
    from conftest import Cli

    registry = tmp_path / "failing.py"
    registry.write_text(
        "from recordstore import Registry\n"
        "registry = Registry()\n"
        "rec = registry.domain('rec', version=2, files=['r/*.jsonl'])\n"
        "@rec.step(1)\n"
        "def fail_some(record):\n"
        "    if record.get('fail'):\n"
        "        raise ValueError('asked to fail')\n"
    )
    cli = Cli(tmp_path / "s.db")
    home = _home(tmp_path, ['{"schema_version":1}', '{"schema_version":1,"fail":true}'])
    assert cli("import", home, registry=str(registry)).exit_code == 0
    dry = cli("migrate", "--dry-run", "--atomic", "--json", registry=str(registry))
    real = cli("migrate", "--atomic", "--json", registry=str(registry))
    assert dry.exit_code == real.exit_code == 1
    planned, done = json.loads(dry.stdout), json.loads(real.stdout)
    for key in ("migrated", "counts", "failures", "rolled_back"):
        assert planned[key] == done[key], key
    text = cli("migrate", "--dry-run", "--atomic", registry=str(registry))
    assert "would migrate 0 record(s), 1 failed (would be rolled back: --atomic and a record failed" in text.stdout


def _interrupting(record: dict[str, Any]) -> None:
    if record.get("fail"):
        raise KeyboardInterrupt("the step's own")


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_step_raising_keyboard_interrupt_itself_fails_only_its_record(tmp_path: Path, jobs: int) -> None:
    """A step raising KeyboardInterrupt with no Ctrl-C pressed (a library's timeout, a
    leftover ``raise KeyboardInterrupt``) stopped the whole migration and its dry run as
    "interrupted" (exit 130), naming no record, and every rerun again: the migration
    could never finish. Ctrl-C is held to the next record while a run works, so a
    KeyboardInterrupt out of a step is the step's own: its record fails, as with any
    exception. (Ctrl-C itself still stops the run: tests/test_store_safety.py.)"""
    lines = ['{"schema_version":1}', '{"schema_version":1,"fail":true}', '{"schema_version":1}']
    try:
        planned, done, rows = _outcomes(tmp_path, _registry(_interrupting), lines, jobs)
    except KeyboardInterrupt:  # (not let out: pytest would stop the whole session)
        pytest.fail("the step's KeyboardInterrupt stopped the migration")
    assert _summary(planned) == _summary(done)
    assert done.counts == {"rec": {"1->2": 2}}
    assert [(f.key, f.reason) for f in done.failures] == [("r/log.jsonl:2", "KeyboardInterrupt: the step's own")]
    assert [(r[1], r[2]) for r in rows] == [(2, '{"schema_version":2}'), (1, lines[1]), (2, '{"schema_version":2}')]
    import signal

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # as the dry run found it


async def _async_step(record: dict[str, Any]) -> None:
    record["x"] = 1


async def _async_generator_step(record: dict[str, Any]) -> Any:
    yield record


def _generator_step(record: dict[str, Any]) -> Any:
    yield record


class _AsyncCallable:
    async def __call__(self, record: dict[str, Any]) -> None:
        pass


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (_async_step, "an async function"),
        (_async_generator_step, "an async function"),
        (_generator_step, "a generator function"),
        (__import__("functools").partial(_async_step), "an async function"),
        (_AsyncCallable(), "an async function"),
    ],
    ids=["async", "async-generator", "generator", "partial-of-async", "async-call"],
)
def test_an_async_or_generator_step_is_refused_when_the_registry_loads(step: Any, kind: str) -> None:
    """An `async def` or generator step was taken, and then failed every record, one by
    one ("step returned coroutine"), with a RuntimeWarning over several lines on stderr
    naming recordstore's own code: its body never runs. It cannot be a step, as one
    needing two arguments cannot: refused when registered, naming domain and step."""
    from recordstore import RegistryError

    domain = Registry().domain("rec", version=2, files=["r/*.jsonl"])
    with pytest.raises(RegistryError, match=f"^domain 'rec': step 1 -> 2 \\(.+\\) is {kind}") as caught:
        domain.add_step(1, step)
    assert "never a record" in str(caught.value) and caught.value.step == 1 and not domain.steps


def test_a_step_returning_a_coroutine_fails_its_record_without_a_warning(tmp_path: Path) -> None:
    """A plain function handing back an async one's coroutine fails its record; the
    coroutine, never awaited, is closed rather than left to warn on stderr."""
    import gc
    import warnings

    lines = ['{"schema_version":1}']
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        planned, done, rows = _outcomes(tmp_path, _registry(lambda record: _async_step(record)), lines, 0)
        gc.collect()
    assert [f.reason for f in done.failures] == ["step returned coroutine, not a JSON object (dict)"]
    assert _summary(planned) == _summary(done) and rows[0][2] == lines[0]
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_domain_named_twice_is_migrated_once(tmp_path: Path, jobs: int) -> None:
    """`migrate --domain rec --domain rec` (migrate(["rec", "rec"])) ran the steps of
    every failing record twice and reported each failure twice; its dry run said it
    would migrate twice the records the real run migrated."""
    lines = ['{"schema_version":1}', '{"schema_version":1,"fail":true}']
    planned, done, rows = _outcomes(tmp_path, _registry(_fail_some), lines, jobs, domains=["rec", "rec"])
    for result in (planned, done):
        assert result.counts == {"rec": {"1->2": 1}}
        assert [f.key for f in result.failures] == ["r/log.jsonl:2"]
    assert [r[1] for r in rows] == [2, 1]


EXITING_MESSAGE_REGISTRY = """
import sys

from recordstore import Registry

registry = Registry()
rec = registry.domain("rec", version=2, files=["r/*.jsonl"])


class Unprintable(Exception):
    def __str__(self):
        sys.exit(4)  # (a leftover exit in a library's error, say)


@rec.step(1)
def check(record):
    if record.get("fail"):
        raise Unprintable()
"""


def test_a_step_error_whose_message_exits_fails_only_its_record(tmp_path: Path) -> None:
    """A step's exception whose message calls sys.exit() ended `store migrate` and its dry
    run at once, silently, with that exit code (4: "busy"), the run "interrupted"."""
    from conftest import Cli

    registry = tmp_path / "exiting.py"
    registry.write_text(EXITING_MESSAGE_REGISTRY)
    cli = Cli(tmp_path / "s.db")
    lines = ['{"schema_version":1}', '{"schema_version":1,"fail":true}']
    assert cli("import", _home(tmp_path, lines), registry=str(registry)).exit_code == 0
    for dry in (["--dry-run"], []):
        res = cli("migrate", "--jobs", "0", *dry, registry=str(registry))
        assert res.exit_code == 1
        assert res.stderr.splitlines() == [
            (
                "store: failed: rec r/log.jsonl:2: v1 -> v2 (check) failed: "
                "Unprintable: (its message could not be shown: SystemExit)"
            )
        ]
        assert "1 record(s), 1 failed" in res.stdout
    assert [r[1] for r in _rows(tmp_path / "s.db")] == [2, 1]


class _Strict(str):
    """A string type refusing to be compared with anything but its own kind."""

    def __eq__(self, other: object) -> bool:
        if type(other) is not _Strict:
            raise RuntimeError("compared with a plain value")
        return str.__eq__(self, other)

    __hash__ = str.__hash__


class _StrictFloat(float):
    def __eq__(self, other: object) -> bool:
        raise RuntimeError("compared")

    __hash__ = float.__hash__


def _strict_values(record: dict[str, Any]) -> None:
    if record.get("strict"):
        record["name"] = _Strict("x")
    else:
        record["ratio"] = _StrictFloat(0.5)  # written by the one-line encoder; the pretty one compares it


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_value_whose_code_raises_while_encoded_fails_only_its_record(tmp_path: Path, jobs: int) -> None:
    """A step's value of a str subclass whose == raises ended the whole migration (and
    its dry run) with an internal error (exit 70) while its record was encoded; and a
    float subclass the one-line encoder writes, which the pretty one compares, made the
    dry run's --diff crash where the real run migrates the record."""
    lines = ['{"schema_version":1}', '{"schema_version":1,"strict":true}']
    planned, done, rows = _outcomes(tmp_path, _registry(_strict_values), lines, jobs, diff=5)
    for result in (planned, done):
        assert result.counts == {"rec": {"1->2": 1}}
        assert [(f.key, f.reason) for f in result.failures] == [
            ("r/log.jsonl:2", "not representable as JSON: RuntimeError: compared with a plain value")
        ]
    assert [d.after for d in planned.diffs] == ['{\n  "schema_version": 2,\n  "ratio": 0.5\n}']
    assert [(r[1], r[2]) for r in rows] == [(2, '{"schema_version":2,"ratio":0.5}'), (1, lines[1])]


class _FrozenDict(dict):  # type: ignore[type-arg]
    """A read-only dict, as some libraries hand out."""

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("this dict is read-only")


@pytest.mark.parametrize("jobs", [0, pytest.param(2, marks=needs_fork)], ids=["in-process", "workers"])
def test_a_step_returning_a_read_only_dict_migrates_its_record(tmp_path: Path, jobs: int) -> None:
    """A step returning a read-only dict subclass (a JSON object, as the contract asks)
    ended the whole migration and its dry run with an internal error (exit 70): stamping
    its version used the subclass's own __setitem__."""
    lines = ['{"schema_version":1,"a":1}', '{"a":2}']
    planned, done, rows = _outcomes(tmp_path, _registry(lambda record: _FrozenDict(record, b=True)), lines, jobs)
    for result in (planned, done):
        assert result.counts == {"rec": {"1->2": 2}} and result.failures == []
    assert [r[2] for r in rows] == ['{"schema_version":2,"a":1,"b":true}', '{"schema_version":2,"a":2,"b":true}']


class _Client:
    """A service client a step uses, whose repr fails (it is not connected, say)."""

    def __repr__(self) -> str:
        raise RuntimeError("not connected")


def _using(client: _Client) -> Callable[[dict[str, Any]], None]:
    def step(record: dict[str, Any]) -> None:
        record["checked"] = client is not None

    return step


def test_a_step_capturing_a_value_whose_repr_fails_can_migrate(tmp_path: Path) -> None:
    """A step made by a factory, capturing a client whose repr raises, made `store
    migrate` and `store check` end with an internal error (exit 70) before any record,
    while the dry run said every record would migrate: a step's fingerprint is made of
    the values it captured, shown by their repr."""
    registry = _registry(_using(_Client()))
    planned, done, rows = _outcomes(tmp_path, registry, ['{"schema_version":1}'], 0)
    assert _summary(planned) == _summary(done) == ({"rec": {"1->2": 1}}, [])
    assert rows[0][2] == '{"schema_version":2,"checked":true}'
    with Store(tmp_path / "jobs0" / "s.db", registry=_registry(_using(_Client()))) as store:
        assert store.check().ok, store.check().problems  # the same fingerprint, made again


def test_a_value_of_a_type_named_over_two_lines_fails_in_one_line(tmp_path: Path) -> None:
    """What JSON cannot hold is named by its type, whose name a step may make as it likes:
    one with a line break took two lines of `store migrate`'s report."""
    odd = type("Made\nUp", (), {})

    def step(record: dict[str, Any]) -> None:
        record["x"] = odd()

    planned, done, _ = _outcomes(tmp_path, _registry(step), ['{"schema_version":1}'], 0)
    for result in (planned, done):
        assert [f.reason for f in result.failures] == [
            "not representable as JSON: Object of type Made Up is not JSON serializable"
        ]
        assert "\n" not in str(result.failures[0])


class _Table(dict):  # type: ignore[type-arg]
    """A lookup table a step captures, counting how often it is shown (repr)."""

    shown = 0

    def __repr__(self) -> str:
        _Table.shown += 1
        return dict.__repr__(self)


def test_each_failing_record_does_not_show_what_its_step_captured(tmp_path: Path) -> None:
    """Each failing record named its step by a digest-making walk of every value the step
    captured: a step holding a table of 100,000 entries took about 0.3 s a failure (2,000
    failing records: over 10 minutes, in the dry run as in the real run). The name is the
    code's; what the step captured is shown once a run, for its fingerprint."""
    table = _Table(a=1)

    def make() -> Callable[[dict[str, Any]], None]:
        def lookup(record: dict[str, Any]) -> None:
            record["v"] = table[record["k"]]  # KeyError for every record but "a"

        return lookup

    lines = ['{"schema_version":1,"k":"a"}'] + [f'{{"schema_version":1,"k":"x{i}"}}' for i in range(100)]
    _Table.shown = 0
    planned, done, _ = _outcomes(tmp_path, _registry(make()), lines, 0)
    assert _summary(planned) == _summary(done)
    assert len(done.failures) == 100 and {f.step for f in done.failures} == {
        "test_each_failing_record_does_not_show_what_its_step_captured.<locals>.make.<locals>.lookup"
    }
    assert _Table.shown <= 3  # the real run's fingerprint, not one a failure


def test_a_batch_s_failures_are_recorded_together(tmp_path: Path) -> None:
    """A step failing every record (a typo in it, say) made the real migration five to ten
    times slower than its dry run or than a migration that works (40,000 records: ~10 s
    against ~1 s): each failure was its own INSERT. A batch's failures now go in with one
    statement, kept in order, each with its source."""
    from sqlalchemy import event

    lines = [f'{{"schema_version":1,"i":{i}}}' for i in range(300)]
    home = _home(tmp_path, lines)
    with Store(tmp_path / "s.db", registry=_registry(_fail_some_by_number)) as store:
        assert store.import_paths([home], jobs=0).ok
        statements: list[str] = []

        def seen(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
            if statement.lstrip().upper().startswith("INSERT INTO FAILURES"):
                statements.append(statement)

        event.listen(store.engine, "before_cursor_execute", seen)
        done = store.migrate(jobs=0)
        event.remove(store.engine, "before_cursor_execute", seen)
        assert len(done.failures) == 200 and done.counts == {"rec": {"1->2": 100}}
        assert len(statements) == 1  # one batch (2,000 records at most), one statement
        [run] = store.history(done.run_id)
        assert [(f["key"], f["source"], f["reason"]) for f in run.failures] == [
            (f"r/log.jsonl:{i + 1}", "r/log.jsonl", "ValueError: not a multiple of 3") for i in range(300) if i % 3
        ]


def _fail_some_by_number(record: dict[str, Any]) -> None:
    if record["i"] % 3:
        raise ValueError("not a multiple of 3")


def test_a_step_capturing_a_deeply_nested_value_can_migrate(tmp_path: Path) -> None:
    """A step made by a factory, capturing a tree thousands of levels deep, made `store
    migrate` and `store check` end with an internal error (RecursionError, exit 70)
    while the dry run said every record would migrate: its fingerprint shows the values
    it captured."""
    tree: list[Any] = []
    for _ in range(5000):
        tree = [tree]

    def make(captured: list[Any]) -> Callable[[dict[str, Any]], None]:
        def step(record: dict[str, Any]) -> None:
            record["ok"] = captured is not None

        return step

    planned, done, rows = _outcomes(tmp_path, _registry(make(tree)), ['{"schema_version":1}'], 0)
    assert _summary(planned) == _summary(done) == ({"rec": {"1->2": 1}}, [])
    assert rows[0][2] == '{"schema_version":2,"ok":true}'
    with Store(tmp_path / "jobs0" / "s.db", registry=_registry(make(tree))) as store:
        assert store.check().ok, store.check().problems
