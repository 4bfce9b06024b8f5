"""Huge records in bounded memory: a DeepSeek TUI session is one JSON object in one
file, and a long one with tool outputs runs to tens of MB. Each command holds such a
record a few times over at most, never a copy for every step it goes through.

Memory is measured as a fresh process's peak RSS above what it held once recordstore
was imported (the record's bytes, its decoded value and SQLite's copies included, which
tracemalloc would not see), with a generous margin; never time.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from recordstore import Store

KEY = "sessions/3f1c9a52-8d4e-4b7a-9c21-6e0f2d8b7a10.json"
SIZE = 20 * 1024 * 1024


#: Words of a session in other scripts: Python holds its text at 4 bytes a character
#: (an emoji is beyond the BMP), where UTF-8 takes 1 to 4.
UNICODE_WORDS = ["Привет", "мир", "你好世界", "こんにちは", "données", "größe", "ünïcödé", "😀"]


def _session(size: int, seed: int = 1, words: list[str] | None = None) -> bytes:
    """A session of about ``size`` bytes, as DeepSeek TUI writes one: many messages with
    long text blocks and tool results, pretty with a 2-space indent."""
    rnd = random.Random(seed)
    words = words or ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "tempor"]
    messages, total, i = [], 0, 0
    while total < size:
        text = " ".join(rnd.choice(words) for _ in range(rnd.randint(300, 9000)))
        block = (
            {"type": "tool_result", "tool_use_id": f"call_{i}", "content": text + "\nexit 0"}
            if i % 3 == 2
            else {"type": "text", "text": text}
        )
        tool = {"type": "tool_use", "id": f"c{i}", "name": "read_file", "input": {"path": f"src/f{i}.rs"}}
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": [block, tool]})
        total += len(text.encode()) + 200
        i += 1
    record = {
        "schema_version": 1,
        "metadata": {"id": "3f1c9a52", "title": "long", "message_count": len(messages), "total_tokens": 18446744073709551615},
        "messages": messages,
        "system_prompt": None,
    }
    return json.dumps(record, indent=2, ensure_ascii=False).encode("utf-8")


@pytest.fixture(scope="module")
def huge_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("huge") / ".deepseek"
    (home / "sessions").mkdir(parents=True)
    (home / KEY).write_bytes(_session(SIZE))
    return home


def _growth(script: str, *args: str) -> int:
    """How far above its start (recordstore imported) a fresh process's peak RSS went
    while it ran ``script`` (with ``args`` as ``sys.argv[1:]``), in bytes."""
    # VmHWM, not getrusage's ru_maxrss: that one keeps the peak of the process that
    # started this one (this test's, which made the record) across fork and exec.
    prelude = textwrap.dedent(
        """
        import sys
        import recordstore, recordstore.cli
        from recordstore import Store
        def _peak():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        _start = _peak()
        """
    )
    coda = "\nprint(_peak() - _start, file=sys.__stderr__)\n"
    # A fixed threshold for glibc's malloc to map large blocks of their own: else it
    # raises it as such blocks are freed (up to 32 MB), and a 20 MB copy made and freed
    # stays in its heap, counted as held, which a 110 MB one never is.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script) + coda, *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stderr.strip().splitlines()[-1]) * 1024  # in KiB


pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="peak RSS read from /proc/self/status, as Linux has it")


def test_a_huge_session_is_imported_in_bounded_memory(huge_home: Path, tmp_path: Path) -> None:
    size = (huge_home / KEY).stat().st_size
    grew = _growth(
        """
        with Store(sys.argv[1]) as store:
            result = store.import_paths([sys.argv[2]], jobs=0)
        assert result.ok and result.counts("session").imported == 1, result.as_dict()
        """,
        str(tmp_path / "s.db"),
        str(huge_home),
    )
    # Its bytes, its value while decoded and SQLite's copies while written: 3.5
    # times its size (it was 5.5: a str of the whole file, and its value kept while it
    # was written).
    assert grew < 4.5 * size, f"{grew / size:.1f} times the record's size"
    with Store(tmp_path / "s.db") as store:
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / KEY).read_bytes() == (huge_home / KEY).read_bytes()


@pytest.fixture(scope="module")
def huge_store(huge_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("huge-store") / "s.db"
    with Store(db) as store:
        assert store.import_paths([huge_home], jobs=0).ok
    return db


@pytest.fixture(scope="module", params=["ascii", "unicode"])
def huge_stored(request: pytest.FixtureRequest, huge_home: Path, huge_store: Path) -> tuple[Path, Path]:
    """A home and its store, holding a huge session mostly ASCII, or mostly not."""
    if request.param == "ascii":
        return huge_home, huge_store
    home = request.getfixturevalue("tmp_path_factory").mktemp("huge-unicode") / ".deepseek"
    (home / "sessions").mkdir(parents=True)
    (home / KEY).write_bytes(_session(SIZE, words=UNICODE_WORDS))
    db = home.parent / "s.db"
    with Store(db) as store:
        assert store.import_paths([home], jobs=0).ok
    return home, db


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store whose session is small: what a command costs whatever the record."""
    home = tmp_path_factory.mktemp("small") / ".deepseek"
    (home / "sessions").mkdir(parents=True)
    (home / KEY).write_bytes(_session(10_000))
    db = home.parent / "s.db"
    with Store(db) as store:
        assert store.import_paths([home], jobs=0).ok
    return db


@pytest.mark.parametrize("as_json", [False, True], ids=["lines", "json"])
def test_a_huge_session_is_queried_in_bounded_memory(
    huge_stored: tuple[Path, Path], small_store: Path, as_json: bool
) -> None:
    huge_home, huge_store = huge_stored
    size = (huge_home / KEY).stat().st_size
    # The CLI itself, its output going to a file (whose bytes are checked after).
    script = """
        import io, os
        sys.stdout = io.TextIOWrapper(open(sys.argv[2], "wb"), encoding="utf-8")
        sys.argv = ["store", "--db", sys.argv[1], "query", "session", *sys.argv[3:]]
        try:
            recordstore.cli.main()
        except SystemExit as exc:
            assert not exc.code, exc.code
        sys.stdout.flush()
        """
    options = ["--json"] if as_json else []
    grew = _growth(script, str(huge_store), str(huge_store.parent / "out.txt"), *options)
    grew -= _growth(script, str(small_store), str(small_store.parent / "out.txt"), *options)
    # Its text, its value and its encoding: 3.5 times its size (it was 5.4: its text
    # encoded to be decoded, its value decoded again to check the encoding, which was
    # then made a str, joined to the key, and encoded again to be written). Mostly not
    # ASCII, its value's strings take 4 bytes a character: 5.6 (it was 7.8, its text
    # read as such a str too, then encoded to UTF-8 to be decoded).
    ascii = (huge_home / KEY).read_bytes().isascii()
    assert grew < (4.5 if ascii else 6.5) * size, f"{grew / size:.1f} times the record's size"
    printed = (huge_store.parent / "out.txt").read_bytes()
    value = json.loads(huge_home.joinpath(KEY).read_bytes())
    compact = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    if as_json:
        assert printed == b'{"key":"' + KEY.encode() + b'","version":1,"record":' + compact + b"}\n"
    else:
        assert printed == KEY.encode() + b"\tv1\t" + compact + b"\n"


def test_a_huge_session_is_read_by_get_in_bounded_memory(huge_stored: tuple[Path, Path], small_store: Path) -> None:
    huge_home, huge_store = huge_stored
    size = (huge_home / KEY).stat().st_size
    script = """
        with Store(sys.argv[1]) as store:
            record = store.get("session", sys.argv[2])
            assert record is not None and record.data["metadata"]["total_tokens"] == 18446744073709551615
        """
    grew = _growth(script, str(huge_store), KEY) - _growth(script, str(small_store), KEY)
    # Its bytes, and its value as orjson decodes it: 3.4 times its size (it was 4.4: the
    # text, ASCII, was read as a str and encoded to UTF-8 to be decoded). Mostly not
    # ASCII: 5.5 (it was 7.8: that str took 4 bytes a character).
    ascii = (huge_home / KEY).read_bytes().isascii()
    assert grew < (4 if ascii else 6.5) * size, f"{grew / size:.1f} times the record's size"


REGISTRY = '''
from recordstore import Registry

registry = Registry()
session = registry.domain("session", version=2, files=["sessions/[!.]*.json"])


@session.step(1)
def every_message_seen(record):
    record["metadata"]["model_id"] = record["metadata"].pop("title")
    for message in record["messages"]:
        message["seen"] = True
'''


@pytest.fixture
def store_to_migrate(huge_store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the huge store, and a registry whose step touches every message."""
    db = tmp_path / "s.db"
    db.write_bytes(huge_store.read_bytes())
    registry = tmp_path / "registry.py"
    registry.write_text(REGISTRY)
    return db, registry


@pytest.mark.parametrize("dry_run", [False, True], ids=["migrate", "dry-run"])
def test_a_huge_session_is_migrated_in_bounded_memory(
    huge_home: Path, store_to_migrate: tuple[Path, Path], dry_run: bool
) -> None:
    size = (huge_home / KEY).stat().st_size
    db, registry = store_to_migrate
    grew = _growth(
        """
        with Store(sys.argv[1], registry=sys.argv[2]) as store:
            result = store.plan() if sys.argv[3] == "dry" else store.migrate(jobs=0)
            assert result.ok and result.counts == {"session": {"1->2": 1}}, result.as_dict()
        """,
        str(db),
        str(registry),
        "dry" if dry_run else "wet",
    )
    # Its bytes, its value and its encoding (the record is written in the same
    # transaction as its backup, which SQLite copies): 4.4 times its size migrated, 3.7
    # in a dry run. It was 6.4 for both: the encoding was decoded again whole to check
    # it, and the text it replaces was decoded into a str to find its first line's end
    # and indent; the dry run kept the record decoded while it made it a diff.
    assert grew < (4 if dry_run else 5) * size, f"{grew / size:.1f} times the record's size"
    with Store(db, registry=registry) as store:
        record = store.get("session", KEY)
        assert record is not None and record.version == (1 if dry_run else 2)
        assert record.text.startswith('{\n  "schema_version": ')
        if not dry_run:
            assert all(message["seen"] for message in record.data["messages"])


def test_a_huge_session_changed_is_imported_again_in_bounded_memory(
    huge_home: Path, huge_store: Path, tmp_path: Path
) -> None:
    size = (huge_home / KEY).stat().st_size
    db = tmp_path / "s.db"
    db.write_bytes(huge_store.read_bytes())
    home = tmp_path / ".deepseek"
    (home / "sessions").mkdir(parents=True)
    changed = (huge_home / KEY).read_bytes().replace(b"lorem", b"LOREM", 1)
    (home / KEY).write_bytes(changed)
    grew = _growth(
        """
        with Store(sys.argv[1]) as store:
            result = store.import_paths([sys.argv[2]], jobs=0)
        assert result.ok and result.counts("session").updated == 1, result.as_dict()
        """,
        str(db),
        str(home),
    )
    # Its bytes and its value while decoded, then its bytes, the stored payload's
    # and SQLite's copies while compared and written: 3.5 times its size (it was 5.4:
    # the text, made a str to be compared with the stored payload, read as a str too).
    assert grew < 4.5 * size, f"{grew / size:.1f} times the record's size"
    with Store(db) as store:
        store.export_to(tmp_path / "out")
    assert (tmp_path / "out" / KEY).read_bytes() == changed


def test_a_huge_session_is_exported_in_bounded_memory(huge_home: Path, huge_store: Path, tmp_path: Path) -> None:
    size = (huge_home / KEY).stat().st_size
    grew = _growth(
        """
        with Store(sys.argv[1]) as store:
            result = store.export_to(sys.argv[2])
        assert result.records == 1 and not result.problems, result
        """,
        str(huge_store),
        str(tmp_path / "out"),
    )
    # Its text as read from the store, and a slice of it at a time encoded: 2.3 times
    # its size (it was 3.3: the text joined to the file's head, then encoded whole).
    assert grew < 2.8 * size, f"{grew / size:.1f} times the record's size"
    assert (tmp_path / "out" / KEY).read_bytes() == (huge_home / KEY).read_bytes()
