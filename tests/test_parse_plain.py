"""The lean parse of plain files (parsing._parse_plain) gives exactly what the general
parser (FileParse) gives, and leaves every other file to it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordstore import parsing
from recordstore.parsing import DomainSpec, Outcome, Task

SPEC = DomainSpec("note", 3, "schema_version")
#: An integer beyond Python's limit on int(str) (4,300 digits by default).
HUGE = b"7" + b"1234567890" * 500

versions = st.one_of(
    st.integers(min_value=1, max_value=3),
    st.sampled_from([0, 4, -1, 2**70, True, 1.0, "2", None]),
)
leaves = st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=6) | st.floats(
    allow_nan=False, allow_infinity=False
)
values = st.recursive(
    leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3), max_leaves=8
)


@st.composite
def records(draw: st.DrawFn) -> bytes:
    """One record's text: usually a good object, sometimes anything else."""
    body: object = draw(st.dictionaries(st.text(max_size=4), values, max_size=3))
    if draw(st.booleans()):
        assert isinstance(body, dict)
        body["schema_version"] = draw(versions)
    kind = draw(st.sampled_from(["compact", "compact", "pretty", "ascii", "value", "broken", "duplicate", "huge", "tiny"]))
    if kind == "value":
        body = draw(values)
    if kind == "pretty":
        text = json.dumps(body, indent=draw(st.sampled_from([2, 4])), ensure_ascii=False)
    else:
        text = json.dumps(body, ensure_ascii=kind == "ascii", separators=(",", ":"))
    if kind == "broken":
        text = text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))]
    if kind == "duplicate":
        text = '{"a":1,"a":2}'
    if kind == "huge":  # kept exactly
        return b'{"n":-' + HUGE + b"}"
    if kind == "tiny":  # refused: it would become 0
        text = '{"x":1e-400}'
    return text.encode("utf-8")


@st.composite
def object_files(draw: st.DrawFn) -> bytes:
    before = draw(st.sampled_from([b"", b"", b"\n", b" ", b"\xef\xbb\xbf"]))
    after = draw(st.sampled_from([b"", b"\n", b"\n\n", b" \n", b"\r\n", b"\t"]))
    return before + draw(records()) + after


@st.composite
def line_files(draw: st.DrawFn) -> bytes:
    lines = [r.replace(b"\n", b"") for r in draw(st.lists(records(), max_size=5))]
    lines += draw(st.lists(st.sampled_from([b"", b"  ", b"\t"]), max_size=2))
    order = draw(st.permutations(lines))
    newline = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    bom = draw(st.sampled_from([b"", b"", b"\xef\xbb\xbf"]))
    return bom + newline.join(order) + draw(st.sampled_from([newline, b""]))


def general(task: Task, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    with monkeypatch.context() as m:
        m.setattr(parsing, "_parse_plain", lambda task, read: None)
        return parsing.parse_task(task)


def check(tmp_path: Path, name: str, data: bytes, monkeypatch: pytest.MonkeyPatch) -> Outcome | None:
    path = tmp_path / name
    path.write_bytes(data)
    task = Task(str(path), name, SPEC, None)
    lean = parsing._parse_plain(task, parsing.read_file(str(path)))
    if lean is not None:
        assert lean == general(task, monkeypatch)
        assert not lean.problems and lean.kind == "parsed"
    return lean


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@pytest.mark.parametrize(("name", "files"), [("n.json", object_files()), ("n.jsonl", line_files())])
@given(drawn=st.data())
def test_a_file_parsed_lean_is_parsed_as_the_general_parser_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: st.SearchStrategy[bytes], drawn: st.DataObject
) -> None:
    check(tmp_path, name, drawn.draw(files), monkeypatch)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("n.json", b'{"schema_version": 2, "n": 123456789012345678901234567890}\n'),
        ("n.json", b'{\n  "a": [1, 2.5, "\\u00e9"]\n}'),
        ("n.jsonl", b'{"a":1}\n\n{"schema_version":3}\n  \n'),
        ("n.jsonl", b""),
        ("n.json", b'{"schema_version": 2, "n": -' + HUGE + b"}\n"),  # an integer of 5,001 digits
        ("n.jsonl", b'{"n":' + HUGE + b'}\n{"m":[1,' + HUGE + b"]}\n"),
        ("n.json", b'{"zeros": [0, -0.0, 0e5, 0.000e-999], "least": 5e-324}'),
    ],
)
def test_plain_files_take_the_lean_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes) -> None:
    assert check(tmp_path, name, data, monkeypatch) is not None


def test_compact_json_lines_are_decoded_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The common JSON-lines file is decoded in one go, not line by line."""
    data = b'{"a":1}\n{"schema_version":3,"b":[1,2.5,"\xc3\xa9"]}\n{"c":null}'
    expected = check(tmp_path, "n.jsonl", data, monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(parsing, "_plain_version", lambda text, domain: pytest.fail("decoded line by line"))
        assert check(tmp_path, "n.jsonl", data, monkeypatch) == expected
    assert expected is not None and expected.versions == (1, 3, 1) and expected.keys == ("n.jsonl:1", "n.jsonl:2", "n.jsonl:3")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("n.json", b'[{"a": 1}]'),  # an array
        ("n.json", b'\xef\xbb\xbf{"a": 1}'),  # a BOM
        ("n.json", b'{"a": 1, "a": 2}'),  # a duplicate key: refused
        ("n.json", b'{"schema_version": 4}'),  # newer than the registry
        ("n.json", b'{"a": 1}\n{"a": 2}\n'),  # JSON lines in a .json file
        ("n.jsonl", b'{"a":1}\r\n'),  # CRLF
        ("n.jsonl", b'{"a":1}\n[1]\n'),  # a line that is not an object
        ("n.jsonl", b'{"a":1}\n{"a":\n'),  # a broken line
        # compact lines, decoded together, with a version the domain does not accept:
        ("n.jsonl", b'{"a":1}\n{"schema_version":true}\n'),
        ("n.jsonl", b'{"schema_version":0}\n{"a":1}\n'),
        ("n.jsonl", b'{"a":1}\n{"schema_version":4}'),
        ("n.jsonl", b'{"schema_version":"2"}\n'),
        ("n.jsonl", b'{"schema_version":2.0}\n'),
        ("n.json", b'{"a": 1e-400}'),  # a number that would become 0: refused
        ("n.jsonl", b'{"a":1}\n{"a":-1e-400}\n'),
    ],
)
def test_anything_unusual_is_left_to_the_general_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, data: bytes
) -> None:
    assert check(tmp_path, name, data, monkeypatch) is None


def test_tasks_and_outcomes_cross_to_workers_and_back_unchanged(tmp_path: Path) -> None:
    """What a worker returns, rebuilt by the writer, is what parsing here gives: for
    parsed, refused, unchanged, unreadable, vanished and large files alike."""
    files = {
        "a.json": b'{"schema_version": 2, "x": 1}\n',
        "b.jsonl": b'{"a":1}\n{"schema_version":9}\nnot json\n',
        "c.json": b'[\n  {"a": 1},\n  {"a": 2}\n]\n',
        "big.jsonl": b'{"a":1}\n' * (parsing.TASK_MAX_BYTES // 8 + 1),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tasks: list[Task | None] = [Task(str(tmp_path / name), name, SPEC, None) for name in files]
    unchanged = parsing.read_file(str(tmp_path / "a.json")).digest
    (tmp_path / "dangling.json").symlink_to("nowhere.json")
    tasks += [Task(str(tmp_path / "a.json"), "a.json", SPEC, unchanged), Task(str(tmp_path / "dangling.json"), "dangling.json", SPEC, None)]
    tasks += [Task(str(tmp_path / "gone.json"), "gone.json", SPEC, None), None]
    here = parsing.parse_tasks(tasks)
    assert [o.kind if o else None for o in here] == ["parsed", "parsed", "parsed", "large", "unchanged", "unreadable", "vanished", None]
    back = parsing.from_wire(parsing.parse_wire(parsing.to_wire(tasks)))
    def shown(outcomes: list[Outcome | None]) -> list[object]:
        return [None if o is None else (*o[:8], [str(p) for p in o.problems], *o[9:]) for o in outcomes]

    assert shown(back) == shown(here)
    assert all(o is None or o.layout is None or type(o.layout) is parsing.FileLayout for o in back)
