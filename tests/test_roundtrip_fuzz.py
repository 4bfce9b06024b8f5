"""Round trips of hostile-but-valid file texts: import then export gives every file back
byte for byte, an exported tree imports to the same records, and a second export is the
first. The texts are written token by token (escapes, number spellings, whitespace of
every JSON kind), which json.dumps never does."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordstore import Store, parsing
from conftest import tree

#: Few examples in the suite; ROUNDTRIP_EXAMPLES=2000 (with --hypothesis-seed) to hunt.
EXAMPLES = int(os.environ.get("ROUNDTRIP_EXAMPLES", "20"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --------------------------------------------------------------------------- JSON texts

_ws = st.text(alphabet=" \t\n\r", max_size=3)
_inline_ws = st.text(alphabet=" \t", max_size=2)  # what a JSON line may hold between tokens
# Whitespace to Python (str.strip, bytes.isspace) that JSON does not take, and bytes that
# are not UTF-8 (written by surrogateescape).
_odd = st.text(alphabet="\x0b\x0c\x1c\x1f\x85\xa0\u2028\u3000\udcff\udc80 \t", min_size=1, max_size=3)


def _escape(c: str) -> str:
    return f"\\u{ord(c):04x}"


_string_piece = st.one_of(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\').filter(lambda c: ord(c) >= 0x20),
    st.sampled_from(['\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u00e9", "\\u00E9",
                     "\\ud83d\\ude00", "\\uD83D\\uDE00", "\\u2028", "\\ufeff", "\\ud800", "\\udfff", "😀", "é", "\u2028"]),
    st.characters(min_codepoint=0, max_codepoint=0xFFFF).map(_escape),
)
strings = st.lists(_string_piece, max_size=6).map(lambda p: '"' + "".join(p) + '"')

_digits = st.text(alphabet="0123456789", min_size=1, max_size=4)
_int_part = st.one_of(st.just("0"), st.tuples(st.sampled_from("123456789"), st.text(alphabet="0123456789", max_size=30)).map("".join))
numbers = st.one_of(
    st.sampled_from(["0", "-0", "0.10", "1e-7", "1E+400", "-0.0", "1E+308", "2.5e-324", "4.9e-324", "1e-400",
                     "18446744073709551615", "-9223372036854775809", "1.0", "1E2", "1e+2", "0e0", "-0E-0",
                     "123456789012345678901234567890.5", "0.1000000000000000055511151231257827"]),
    st.tuples(
        st.sampled_from(["", "-"]),
        _int_part,
        st.one_of(st.just(""), _digits.map(lambda d: "." + d)),
        st.one_of(st.just(""), st.tuples(st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), _digits).map("".join)),
    ).map("".join),
)
# Integers past Python's int(str) limit, and nesting about orjson's limit of 1,024.
_huge = st.tuples(st.sampled_from(["", "-"]), st.integers(4290, 4310), st.integers(1, 9)).map(
    lambda t: t[0] + str(t[2]) + "7" * t[1]
)
_deep = st.tuples(st.integers(1015, 1030), st.sampled_from(["[", '{"k":'])).map(
    lambda t: t[1] * t[0] + "0" + ("]" if t[1] == "[" else "}") * t[0]
)
scalars = st.one_of(st.sampled_from(["true", "false", "null"]), numbers, numbers, strings, strings, _huge, _deep)


def _texts(ws: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        arrays = st.tuples(ws, st.lists(st.tuples(children, ws, ws), max_size=4)).map(
            lambda t: "[" + t[0] + ",".join(a + w1 for a, w1, _ in t[1]) + "]"
        )
        members = st.lists(st.tuples(ws, strings, ws, ws, children, ws), max_size=4)
        objects = members.map(lambda ms: "{" + ",".join(a + k + b + ":" + c + v + d for a, k, b, c, v, d in ms) + "}"
                              if ms else "{}")
        return arrays | objects

    return st.recursive(scalars, containers, max_leaves=12)


def _object(ws: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    values = _texts(ws)
    members = st.lists(st.tuples(ws, strings, ws, ws, values, ws), max_size=5)
    version = st.sampled_from(["", '"schema_version":1', '"schema_version" : 2', '"schema_version":3',
                               '"schema_version":"2"', '"schema_version":1.0', '"schema_version":0'])
    return st.tuples(members, version, ws).map(
        lambda t: "{" + ",".join([*(a + k + b + ":" + c + v + d for a, k, b, c, v, d in t[0]), *([t[1]] if t[1] else [])])
        + t[2] + "}"
    )


objects = _object(_ws)
line_objects = _object(_inline_ws)
# Not records: refused, and kept in their slots.
_non_records = st.sampled_from(["[]", "[1, 2]", "1", '"x"', "null", "{", '{"a":1,"a":2}', "{'a': 1}", "NaN", "[[{}]]",
                                '{"a": 1e999}', '{"a":Infinity}', "{}x", '{"a":"\\x"}'])
elements = st.one_of(objects, objects, objects, _non_records)
# One-record files that are no record: two objects (on their lines or not), something
# around the object that JSON does not take, nothing at all.
_not_one_record = st.one_of(
    st.tuples(line_objects, st.sampled_from(["\n", "\r\n", "", " "]), line_objects, _ws).map("".join),
    st.tuples(_odd, objects).map("".join),
    st.tuples(objects, _odd).map("".join),
    _non_records,
    _ws,
)

_bom = st.sampled_from(["", "", "\ufeff"])


@st.composite
def object_files(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 3)) == 0:
        return draw(_bom) + draw(_not_one_record)
    return draw(_bom) + draw(_ws) + draw(objects) + draw(_ws)


_indents = st.sampled_from(["", " ", "  ", "\t", "\t ", " \t", "    ", "\r "])


@st.composite
def array_files(draw: st.DrawFn) -> str:
    """An array, its elements set apart anyhow. Each line of an element is indented
    like the line it starts on, its own indent (README: an element's line indented less
    comes back indented like it); an element starting on the bracket's line, or after a
    separator that does not break the line, is indented like the first."""
    items = draw(st.lists(st.tuples(elements, _ws), min_size=0, max_size=5))
    if not items:
        return draw(_bom) + draw(_ws) + "[" + draw(_ws) + "]" + draw(_ws)
    first = draw(st.one_of(st.text(alphabet=" \t\r", max_size=3), _indents.map(lambda i: "\n" + i)))
    first_indent = first[first.rfind("\n") + 1 :] if "\n" in first else ""
    body, sep = first, ""
    for i, (element, after) in enumerate(items):
        own = first_indent
        if i:
            before = draw(st.one_of(_ws, _ws.map(lambda w: w + "\n"), st.just("\n")))
            indent = draw(_indents) if "\n" in before else ""
            body += "," + before + indent
            sep += "," + before + indent
            if "\n" in sep:  # the line it starts on: its indent, or none after a comma
                last = sep[sep.rfind("\n") + 1 :]
                own = "" if last.strip(" \t\r") else last
        body += element.replace("\n", "\n" + own) + after
        sep = after
    return draw(_bom) + draw(_ws) + "[" + body + "]" + draw(_ws)


_line_ends = st.sampled_from(["\n", "\r\n", "\n", "\r\n", "\r"])


@st.composite
def line_files(draw: st.DrawFn) -> str:
    lines = draw(st.lists(st.one_of(
        st.tuples(_inline_ws, line_objects, _inline_ws).map("".join),
        st.tuples(_inline_ws, line_objects, _inline_ws).map("".join),
        _inline_ws,  # blank or whitespace-only
        _odd,
        st.tuples(_odd, line_objects).map("".join),
        st.tuples(line_objects, _odd).map("".join),
        _non_records,
        objects,  # may span lines: each of its lines is then refused
    ), min_size=1, max_size=6))
    ends = draw(st.lists(_line_ends, min_size=len(lines), max_size=len(lines)))
    last = draw(st.sampled_from(["", "\n", "\r\n", "\r", "\n\n", " \n", "\n \t\n"]))
    return draw(_bom) + "".join(l + e for l, e in zip(lines[:-1], ends)) + lines[-1] + last


# --------------------------------------------------------------------------- properties

FILES = {
    "tasks/tasks/one.json": object_files(),
    "tasks/tasks/two.json": array_files(),
    "tasks/runtime/events/e.jsonl": line_files(),
}


def _content(db: Path) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    with sqlite3.connect(db) as conn:
        records = conn.execute(
            "SELECT r.domain, r.key, r.version, r.payload, f.path, r.position FROM records r JOIN files f ON f.id = r.file_id ORDER BY r.key"
        ).fetchall()
        refused = conn.execute(
            "SELECT x.key, x.text, f.path, x.position FROM refused x JOIN files f ON f.id = x.file_id ORDER BY x.key"
        ).fetchall()
    conn.close()
    return records, refused


def _round_trip(root: Path, texts: dict[str, str], streamed: bool) -> None:
    home = root / "home"
    for rel, text in texts.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.MonkeyPatch.context() as patch:
        if streamed:
            patch.setattr(parsing, "STREAM_THRESHOLD", 0)
        with Store(root / "a.db") as store:
            store.import_paths([home], jobs=0)
            store.export_to(root / "out")
            store.export_to(root / "again")
        assert tree(root / "out") == tree(home)
        assert tree(root / "again") == tree(home)
        with Store(root / "b.db") as store:
            store.import_paths([root / "out"], jobs=0)
            store.export_to(root / "third")
        assert tree(root / "third") == tree(home)
        if not streamed:  # the lean parser and the general one store the same
            patch.setattr(parsing, "STREAM_THRESHOLD", 0)
            with Store(root / "c.db") as store:
                store.import_paths([home], jobs=0)
            assert _content(root / "c.db") == _content(root / "a.db")
            assert _layouts(root / "c.db") == _layouts(root / "a.db")
    assert _content(root / "b.db") == _content(root / "a.db")


@SETTINGS
@given(texts=st.fixed_dictionaries(FILES), streamed=st.booleans())
def test_hostile_files_come_back_byte_for_byte(tmp_path_factory: pytest.TempPathFactory, texts: dict[str, str], streamed: bool) -> None:
    _round_trip(tmp_path_factory.mktemp("fuzz"), texts, streamed)


def _layouts(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT path, container, head, sep, tail, gaps FROM files ORDER BY path").fetchall()
    conn.close()
    return rows


def _migrated_round_trip(root: Path, texts: dict[str, str]) -> None:
    home = root / "home"
    for rel, text in texts.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(text.encode("utf-8", "surrogateescape"))
    with Store(root / "a.db") as store:
        store.import_paths([home], jobs=0)
        before = {r.key: r.text for r in store.query("task")} | {r.key: r.text for r in store.query("runtime")}
        pending = store.query("task").version(1).count() + store.query("runtime").version(1).count()
        migrated = store.migrate(jobs=0)
        after = {r.key: (r.text, r.data) for r in store.query("task")} | {r.key: (r.text, r.data) for r in store.query("runtime")}
        # The layouts below are kept by a migration that did its work: every record at v2.
        assert migrated.migrated == pending and not migrated.failures
        assert all(data["schema_version"] == 2 for _text, data in after.values()), after
        store.export_to(root / "out")
        # The exported tree imported again into the same store is what it holds.
        again_here = store.import_paths([root / "out"], jobs=0)
        for counts in again_here.domains.values():
            assert (counts.imported, counts.updated, counts.removed) == (0, 0, 0), again_here.as_dict()
        store.export_to(root / "twice")
        # Undoing the migration gives the files back as they were.
        store.restore(run=migrated.run_id)
        store.export_to(root / "restored")
    assert tree(root / "twice") == tree(root / "out")
    assert tree(root / "restored") == tree(home)
    assert after.keys() == before.keys()
    with Store(root / "b.db") as store:
        store.import_paths([root / "out"], jobs=0)
        again = {r.key: (r.text, r.data) for r in store.query("task")} | {r.key: (r.text, r.data) for r in store.query("runtime")}
        store.export_to(root / "again")
    assert {k: d for k, (_t, d) in again.items()} == {k: d for k, (_t, d) in after.items()}
    assert _content(root / "b.db")[1] == _content(root / "a.db")[1]  # the refused texts, in their slots
    assert _layouts(root / "b.db") == _layouts(root / "a.db")
    assert tree(root / "again") == tree(root / "out")


@SETTINGS
@given(texts=st.fixed_dictionaries(FILES))
def test_a_migration_keeps_each_files_layout(tmp_path_factory: pytest.TempPathFactory, texts: dict[str, str]) -> None:
    _migrated_round_trip(tmp_path_factory.mktemp("fuzz"), texts)


# --------------------------------------------------------------------------- found by the properties


def _home(root: Path, files: dict[str, str]) -> Path:
    home = root / "home"
    for rel, text in files.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_bytes(text.encode("utf-8"))
    return home


def test_an_array_whose_bracket_starts_a_line_keeps_its_elements_intact(tmp_path: Path) -> None:
    """A newline before the ``[`` (and none after it) is no indent: the bracket was taken
    for one, cut off the element's lines in the store (the record could be neither
    queried nor migrated) and written into them on export (invalid JSON)."""
    home = _home(tmp_path, {"tasks/tasks/a.json": '\n[{"a":\n[1]}]', "tasks/tasks/b.json": '\n[{},{"":{}\n}]'})
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home]).ok
        assert [r.data for r in store.query("task")] == [{"a": [1]}, {}, {"": {}}]
        store.export_to(tmp_path / "out")
        assert tree(tmp_path / "out") == tree(home)
        result = store.migrate()
        assert result.migrated == 3 and not result.failures


def test_array_elements_indented_each_its_own_way_come_back_as_they_were(tmp_path: Path) -> None:
    """Each element of a pretty array keeps the indent of its own line: one indented with
    a tab after one indented with spaces, or less deeply, was written back with the
    first's indent added to its lines (``  \\t\\t"b": 2``)."""
    files = {
        "tasks/tasks/mixed.json": '[\n  {\n    "a": 1\n  },\n\t{\n\t\t"b": 2\n\t}\n]\n',
        "tasks/tasks/less.json": '[\n    {\n      "a": 1\n    },\n  {\n    "b": [\n      2\n    ]\n  }, {\n      "c": 3\n    }]',
    }
    home = _home(tmp_path, files)
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home]).ok
        assert [r.data for r in store.query("task")] == [{"a": 1}, {"b": [2]}, {"c": 3}, {"a": 1}, {"b": 2}]
        store.export_to(tmp_path / "out")
        assert tree(tmp_path / "out") == tree(home)
        assert store.migrate().migrated == 5
        store.export_to(tmp_path / "migrated")
    assert (tmp_path / "migrated/tasks/tasks/mixed.json").read_text() == (
        '[\n  {\n    "schema_version": 2,\n    "a": 1\n  },\n\t{\n\t\t"schema_version": 2,\n\t\t"b": 2\n\t}\n]\n'
    )


def test_an_array_imported_before_elements_kept_their_own_indents_comes_back_as_it_was(tmp_path: Path) -> None:
    """A store an older recordstore imported holds every element of an array without the
    first element's indent, and no word in the file's gaps that they have their own: its
    export gives the file back as it always did (deeper elements were indented twice)."""
    text = '[\n  {\n    "a": 1\n  },\n    {\n      "b": 2\n    }\n]'
    home = _home(tmp_path, {"tasks/tasks/deeper.json": text})
    with Store(tmp_path / "s.db") as store:
        assert store.import_paths([home]).ok
    with sqlite3.connect(tmp_path / "s.db") as conn:  # as the older recordstore left it
        conn.execute("UPDATE files SET gaps = NULL")
        conn.execute("UPDATE records SET payload = ? WHERE key LIKE '%[1]'", ('{\n    "b": 2\n  }',))
    conn.close()
    with Store(tmp_path / "s.db") as store:
        assert [r.data for r in store.query("task")] == [{"a": 1}, {"b": 2}]
        store.export_to(tmp_path / "out")
    assert tree(tmp_path / "out") == tree(home)
