"""The codec's promises: exact numbers, strictness, and the fast path never changing a value."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordstore import jsoncodec
from recordstore.jsoncodec import JSONError, decode, encode
from conftest import int_of_digits


@pytest.mark.parametrize(
    "text",
    [
        '{"n": 18446744073709551616}',  # 2**64: orjson alone makes this a float
        '{"n": -9223372036854775809}',
        '{"n": 123456789012345678901234567890123}',
        '[1, {"deep": [99999999999999999999999]}]',
    ],
)
def test_integers_beyond_64_bits_stay_exact_integers(text: str) -> None:
    assert decode(text) == json.loads(text)
    assert decode(text.encode()) == json.loads(text)
    value = decode(text)
    assert encode(value, None) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"x": {"a": 1, "b": {}, "a": 1}}',
        '{"a": 1, "a": "\\u003a"}',  # a duplicate hidden behind an escaped colon
        '{"a": "x:y", "a": "x:y"}',
        '[{"k": 1}, {"k": 1, "k": 1}]',
    ],
)
def test_duplicate_keys_are_rejected_by_name(text: str) -> None:
    with pytest.raises(JSONError, match="duplicate key"):
        decode(text)


@pytest.mark.parametrize("text", ["NaN", '{"x": Infinity}', '{"x": -Infinity}', '[NaN]'])
def test_nan_and_infinity_are_rejected(text: str) -> None:
    with pytest.raises(JSONError):
        decode(text)


def test_colons_in_keys_and_values_are_not_mistaken_for_duplicates() -> None:
    text = '{"a:b": "c:d:e", "t": "2026-05-02T15:20:11Z", "u": "\\u003a", "v": "\\\\u003a"}'
    assert decode(text) == json.loads(text)


def test_floats_unicode_order_and_lone_surrogates() -> None:
    text = '{"z": 0.1, "a": 1e-320, "m": 3.141592653589793, "s": "naïve ✓ 🚀", "lone": "\\ud800"}'
    value = decode(text)
    assert list(value) == ["z", "a", "m", "s", "lone"]
    assert value == json.loads(text)
    out = encode(value, 2)
    assert "\\ud800" in out and "naïve ✓ 🚀" not in out  # written back as escapes, valid UTF-8
    assert json.loads(out) == value
    out.encode("utf-8")


def test_encoding_refuses_what_json_cannot_hold() -> None:
    for bad in ({"x": float("nan")}, {"x": float("inf")}, {"x": {1, 2}}, {"x": object()}):
        with pytest.raises(JSONError, match="not representable"):
            encode(bad, None)


def test_invalid_utf8_and_bom_are_named() -> None:
    with pytest.raises(JSONError, match="invalid UTF-8 at byte 7"):
        decode(b'{"a": "\xff\xfe"}')
    with pytest.raises(JSONError, match="byte order mark"):
        decode("\ufeff{}")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=6), c, max_size=5),
    max_leaves=30,
)


@given(json_values)
def test_decode_of_encode_is_the_identity(value: object) -> None:
    for indent in (None, 2):
        text = encode(value, indent)
        assert decode(text) == value
        assert decode(text.encode("utf-8", "surrogatepass")) == value


@given(json_values)
def test_the_fast_path_agrees_with_the_exact_path(value: object) -> None:
    text = json.dumps(value)
    assert decode(text) == jsoncodec._decode_exact(text)


@pytest.mark.parametrize(
    "value",
    [
        {"when": __import__("datetime").date(2026, 1, 1)},
        {"t": (1, 2), "nan": float("nan")},
        {"big": 2**70, "inf": float("-inf")},
    ],
)
def test_the_fast_encoder_never_turns_a_value_into_another(value: dict) -> None:
    """orjson writes NaN as null and dates as strings; encode must refuse instead."""
    with pytest.raises(JSONError, match="not representable"):
        encode(value, 2)


def test_the_fast_encoder_writes_what_the_standard_library_would() -> None:
    value = {"a": [1, 2.5, "ü"], "b": {}, "c": [], "d": None, "e": True, "big": 2**70}
    for indent in (None, 2):
        separators = (",", ":") if indent is None else None
        assert encode(value, indent) == json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)


@given(json_values)
def test_utf8_encoding_is_the_text_encoding_as_bytes(value: object) -> None:
    """Migrations store what encode_utf8 gives; it must be exactly encode's text."""
    for indent in (None, 2, 4):
        assert jsoncodec.encode_utf8(value, indent) == encode(value, indent).encode("utf-8")


@given(json_values, st.sampled_from([None, 2, 4]))
def test_the_indent_of_a_payload_is_the_same_read_from_its_bytes(value: object, indent: int | None) -> None:
    from recordstore.parsing import indent_of

    text = encode(value, indent)
    assert indent_of(text.encode("utf-8")) == indent_of(text)
    if isinstance(value, (dict, list)) and value and indent:
        assert indent_of(text) == indent


@given(st.lists(json_values, max_size=6), st.booleans())
def test_lines_decoded_together_are_what_decode_gives_each(values: list[object], spaced: bool) -> None:
    """Either every line is decoded exactly as decode would, or None (one by one)."""
    lines = [(json.dumps(v) if spaced else encode(v, None)).encode("utf-8", "surrogatepass") for v in values]
    together = jsoncodec.decode_compact_lines(lines)
    if together is not None:
        assert together == [decode(line) for line in lines]


def test_compact_lines_as_applications_write_them_are_decoded_together() -> None:
    lines = [
        b'{"schema_version":2,"id":"t-1","role":"user","content":[{"type":"text","text":"h\xc3\xa9llo"}]}',
        b'{"schema_version":1,"n":-12,"x":0.5,"ok":true,"none":null,"list":[],"obj":{}}',
        b'{"schema_version":1,"emoji":"\xf0\x9f\x99\x82","big":9223372036854775807}',
    ]
    assert jsoncodec.decode_compact_lines(lines) == [decode(line) for line in lines]


@pytest.mark.parametrize(
    "lines",
    [
        [b"[1", b"2],3"],  # no line is a value, yet the array parses to as many values
        [b'{"a":1,"a":2}'],  # orjson keeps one of the two: the lines must be decided one by one
        [b'{"n":123456789012345678901234567890}'],  # orjson would make it a float
        [b'{"a": 1}'],  # spaced: the exact path decides
        [b'{"a":1}', b""],  # a blank line
        [b"{}", b"nul"],
        [b'{"a":1.0}'],  # written back as 1.0? only if orjson agrees byte for byte
    ],
)
def test_lines_that_are_not_exactly_compact_are_left_to_decode(lines: list[bytes]) -> None:
    together = jsoncodec.decode_compact_lines(lines)
    assert together is None or together == [decode(line) for line in lines]
    if lines != [b'{"a":1.0}']:
        assert together is None


# --------------------------------------------------------------------------- huge integers

#: Integers beyond Python's limit on int(str) and str(int) (4,300 digits by default).
DIGITS_5000 = "8" + "0123456789" * 499 + "123456789"
DIGITS_20000 = "9" + "9876543210" * 1999 + "876543210"
#: An integer json.dumps writes itself, standing in for a huge one in expected texts.
STAND_IN = 1234567890123456789012345678901


def with_stand_in(value: object, huge: int) -> object:
    """``value`` with ``huge`` (and -huge) replaced by STAND_IN, as values and keys."""
    if isinstance(value, dict):
        return {with_stand_in(k, huge): with_stand_in(v, huge) for k, v in value.items()}
    if isinstance(value, list):
        return [with_stand_in(v, huge) for v in value]
    if isinstance(value, int) and abs(value) == huge:
        return STAND_IN if value > 0 else -STAND_IN
    return value


SHAPES = [
    ("N", lambda n: n),
    ('{"n": N}', lambda n: {"n": n}),
    ("[1, N, 2.5]", lambda n: [1, n, 2.5]),
    ('{"a": [{"b": N}], "c": "N"}', lambda n: {"a": [{"b": n}], "c": "N"}),
    ('{\n  "n": [\n    N\n  ]\n}', lambda n: {"n": [n]}),
]


@pytest.mark.parametrize("digits", [DIGITS_5000, DIGITS_20000], ids=["5000-digits", "20000-digits"])
@pytest.mark.parametrize("sign", ["", "-"], ids=["positive", "negative"])
@pytest.mark.parametrize(("shape", "build"), SHAPES, ids=["standalone", "in-object", "in-array", "nested", "pretty"])
def test_integers_of_thousands_of_digits_decode_and_encode_digit_for_digit(
    digits: str, sign: str, shape: str, build: Callable[[int], object]
) -> None:
    literal = sign + digits
    text = shape.replace("N", literal, 1)
    huge = int_of_digits(digits)
    expected = build(-huge if sign else huge)
    assert decode(text) == expected
    assert decode(text.encode("utf-8")) == expected
    assert jsoncodec.scan(" " + text + " ", 1) == (expected, len(text) + 1)
    for indent in (None, 2, 4):
        separators = (",", ":") if indent is None else None
        written = json.dumps(with_stand_in(expected, huge), indent=indent, separators=separators)
        out = encode(decode(text), indent)
        assert out == written.replace(str(STAND_IN), digits)
        assert jsoncodec.encode_utf8(expected, indent) == out.encode("utf-8")
        assert decode(out) == expected


def test_a_huge_integer_as_a_key_or_beside_a_lone_surrogate_is_written_as_its_digits() -> None:
    """Keys a migration step made integers are written as json.dumps writes them."""
    huge = int_of_digits(DIGITS_5000)
    assert encode({huge: [huge]}, None) == f'{{"{DIGITS_5000}":[{DIGITS_5000}]}}'
    assert encode({"lone": "\ud800", "n": -huge}, None) == f'{{"lone":"\\ud800","n":-{DIGITS_5000}}}'
    # A string that looks like the placeholders used on the way is only a string.
    assert encode(["recordstore-int-", huge, '"recordstore-int-0"'], None) == (
        f'["recordstore-int-",{DIGITS_5000},"\\"recordstore-int-0\\""]'
    )


def test_encoding_a_huge_integer_still_refuses_nan_and_cycles_beside_it() -> None:
    huge = int_of_digits(DIGITS_5000)
    with pytest.raises(JSONError, match="not representable as JSON: Out of range float"):
        encode([huge, float("nan")], None)
    cycle: list[object] = [huge]
    cycle.append(cycle)
    with pytest.raises(JSONError, match="not representable as JSON: Circular reference detected"):
        encode(cycle, None)


def test_huge_integers_leave_the_interpreters_digit_limit_as_it_was() -> None:
    """A library must not change interpreter-wide state: the limit is worked around."""
    before = sys.get_int_max_str_digits()
    value = decode("[" + DIGITS_20000 + "]")
    assert encode(value, None) == "[" + DIGITS_20000 + "]"
    assert sys.get_int_max_str_digits() == before
    with pytest.raises(ValueError):
        str(value[0])


def test_an_applications_lower_digit_limit_is_worked_around_too() -> None:
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)  # the lowest an application may set
    try:
        text = '{"n":' + DIGITS_5000[:641] + "}"
        assert encode(decode(text), None) == text
        assert encode(decode(text.encode()), None) == text
    finally:
        sys.set_int_max_str_digits(before)


# --------------------------------------------------------------------------- doubles


def _refused_by_both(text: str) -> str:
    """Why ``decode`` and ``scan`` refuse ``text`` (they must say the same)."""
    with pytest.raises(JSONError) as by_decode:
        decode(text)
    with pytest.raises(JSONError) as by_scan:
        jsoncodec.scan(text, 0)
    assert by_scan.value.reason == by_decode.value.reason
    return by_decode.value.reason


@pytest.mark.parametrize("literal", ["1e-400", "-1e-400", "2e-324", "-2.4e-324", "0.00001e-320", "1E-999", "100e-326"])
def test_a_number_that_would_become_0_is_refused_as_one_that_would_become_infinity_is(literal: str) -> None:
    for text in (literal, '{"a": ' + literal + "}", '{"a":[' + literal + "]}", "[\n  " + literal + "\n]"):
        assert _refused_by_both(text) == f"number {literal} is too small for a double (it would become 0)"


@pytest.mark.parametrize(
    ("literal", "shown"),
    [
        ("1" + "0" * 400 + ".5", "1" + "0" * 39 + "… (402 digits) is too large for a double"),
        ("-0." + "0" * 500 + "1", "-0." + "0" * 37 + "… (502 digits) is too small for a double (it would become 0)"),
        ("1" * 40 + "e999", "1" * 40 + "… (43 digits) is too large for a double"),
        ("1" * 36 + "e999", "1" * 36 + "e999 is too large for a double"),  # 40 characters: whole
    ],
    ids=["too-large", "too-small", "exponent-cut-off", "40-characters-whole"],
)
def test_a_long_refused_number_is_shown_cut_with_an_ellipsis_and_its_length(literal: str, shown: str) -> None:
    """Not its first 40 characters alone, which read as another number (10**39, which a
    double holds) and hid that the message quotes only part of it."""
    for text in ('{"a": ' + literal + "}", "[\n  " + literal + "\n]"):
        assert _refused_by_both(text) == f"number {shown}"


@pytest.mark.parametrize(
    "literal",
    ["0", "-0", "0.0", "-0.0", "0e5", "0E-5", "-0e+0", "0.000e-999", "0.0000000000", "5e-324", "-5e-324",
     "3e-324", "2.5e-324", "4.9406564584124654e-324", "2.2250738585072014e-308", "1e-323"],
)
def test_zeros_and_subnormal_numbers_are_kept(literal: str) -> None:
    """Only a nonzero literal that would become 0 is refused: zeros are zeros, and the
    smallest doubles (subnormals) are doubles."""
    expected = json.loads(literal)
    for text in (literal, '{"a": ' + literal + "}", '{"a":' + literal + "}"):
        value = decode(text)
        got = value if text == literal else value["a"]
        assert got == expected and type(got) is type(expected)
        assert math.copysign(1, got) == math.copysign(1, expected)


# --------------------------------------------------------------------------- where a refusal stands


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{\n  "a": 1,\n  "a": 2\n}', 3, "duplicate key 'a' in one object"),
        ('{\n  "a": 1,\n  "b": {\n    "c": 1,\n    "c": 2,\n    "d": 3\n  },\n  "a": 4\n}', 5, "duplicate key 'c' in one object"),
        ('{\n  "a": {"x": 1},\n  "b": 2,\n  "b": 3,\n  "c": {"d": 1, "d": 2}\n}', 5, "duplicate key 'd' in one object"),
        ('{\n  "ab": 1,\n  "a\\u0062": 2\n}', 3, "duplicate key 'ab' in one object"),
        ('{\n  "k": "\\"k\\": 1,",\n  "s": "NaN and 1e999",\n  "k": 2\n}', 4, "duplicate key 'k' in one object"),
        ('[\n  {"a": 1},\n  [NaN]\n]', 3, "NaN is not valid JSON"),
        ('{\n  "a":\n\n    -Infinity\n}', 4, "-Infinity is not valid JSON"),
        ('{\n  "a": 1,\n  "a": 2,\n  "b": NaN\n}', 4, "NaN is not valid JSON"),  # NaN comes before the object ends
        ('[\n  1.5,\n  1e999\n]', 3, "number 1e999 is too large for a double"),
        ('[\n  1.5,\n  -1e-400\n]', 3, "number -1e-400 is too small for a double (it would become 0)"),
        ('{"a": 1, "a": 2}', 1, "duplicate key 'a' in one object"),
    ],
)
def test_a_refused_value_names_the_line_it_stands_on(text: str, line: int, reason: str) -> None:
    for data in (text, text.encode("utf-8")):
        with pytest.raises(JSONError) as raised:
            decode(data)
        assert (raised.value.reason, raised.value.line) == (reason, line)


KEYS = st.text(alphabet="abc\"\\é", max_size=3)  # never "dup", nor a placeholder below
SAFE_TEXT = st.text(alphabet=st.characters(blacklist_characters="@"), max_size=8)
containers = st.recursive(
    st.lists(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | SAFE_TEXT, max_size=3)
    | st.dictionaries(KEYS, st.none() | st.integers() | SAFE_TEXT, max_size=3),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(KEYS, c, max_size=3),
    max_leaves=12,
)


def _all_containers(value: object) -> list[object]:
    found: list[object] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list)):
            found.append(item)
            stack.extend(item.values() if isinstance(item, dict) else item)
    return found


@given(
    value=containers,
    refusal=st.sampled_from(["dup", "NaN", "-Infinity", "1e999", "-2.5e-400"]),
    indent=st.sampled_from([None, 1, 2, 4]),
    window=st.sampled_from([1 << 20, 1, 10]),
    data=st.data(),
)
def test_the_line_named_for_a_refused_value_is_the_line_it_stands_on(
    value: object, refusal: str, indent: int | None, window: int, data: st.DataObject
) -> None:
    """One refused thing put anywhere in a pretty text: the line named is its line (for a
    duplicate key, the line of the key's second occurrence), however the text is cut
    into windows to find it."""
    target = data.draw(st.sampled_from(_all_containers(value)))
    if refusal == "dup":
        if not isinstance(target, dict):
            target.append({})  # type: ignore[union-attr]
            target = target[-1]  # type: ignore[index]
        assert isinstance(target, dict)
        items = list(target.items())
        for mark in ("@@K1", "@@K2"):
            items.insert(data.draw(st.integers(0, len(items))), (mark, data.draw(st.integers())))
        target.clear()
        target.update(items)
    elif isinstance(target, dict):
        target["@key"] = "@@V"
    else:
        assert isinstance(target, list)
        target.insert(data.draw(st.integers(0, len(target))), "@@V")
    text = json.dumps(value, indent=indent, ensure_ascii=data.draw(st.booleans()))
    if refusal == "dup":  # refused at the second occurrence of the key
        line = text.count("\n", 0, max(text.index('"@@K1"'), text.index('"@@K2"'))) + 1
        text = text.replace('"@@K1"', '"dup"').replace('"@@K2"', '"dup"')
        reason = "duplicate key 'dup' in one object"
    else:
        line = text.count("\n", 0, text.index('"@@V"')) + 1
        text = text.replace('"@@V"', refusal)
        reason = {
            "1e999": "number 1e999 is too large for a double",
            "-2.5e-400": "number -2.5e-400 is too small for a double (it would become 0)",
        }.get(refusal, f"{refusal} is not valid JSON")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(jsoncodec, "_WINDOW", window)
        with pytest.raises(JSONError) as raised:
            decode(text)
    assert (raised.value.reason, raised.value.line) == (reason, line), text


def test_a_syntax_errors_position_is_given_as_the_files() -> None:
    """What the parser of a file does with a reason: a JSON line names its column alone;
    an object file after blank lines, its line in the file."""
    with pytest.raises(JSONError) as raised:
        decode(b'{"a": 1} x')
    error = raised.value
    assert (error.reason, error.line, error.column) == ("invalid JSON: Extra data at line 1 column 10", 1, 10)
    assert error.reason_at(None, 10) == "invalid JSON: Extra data at column 10"
    assert error.reason_at(3, 12) == "invalid JSON: Extra data at line 3 column 12"
    refused = JSONError("NaN is not valid JSON", 2)
    assert refused.reason_at(None, None) == refused.reason_at(4, 1) == "NaN is not valid JSON"


def test_keys_that_would_be_written_alike_are_refused_not_written_twice() -> None:
    """Non-string keys are written as json.dumps writes them; two keys that would come
    out as the same string are refused, and the error shows even a huge one, cut short."""
    assert encode({2: "a", True: "b", None: "c", 1.5: "d"}, None) == '{"2":"a","true":"b","null":"c","1.5":"d"}'
    with pytest.raises(JSONError, match=r"^not representable as JSON: keys '1' and 1 would both be written as '1'$"):
        encode({"nested": [{"1": "a", 1: "b"}]}, 2)
    huge = int_of_digits(DIGITS_5000)
    with pytest.raises(JSONError, match=rf"^not representable as JSON: keys {DIGITS_5000[:40]}\.\.\. and '{DIGITS_5000[:39]}\.\.\. would"):
        encode({huge: 1, DIGITS_5000: 2}, None)


def _deepest(make: Callable[[int], str], accepts: Callable[[str], object]) -> int:
    """The deepest nesting ``accepts`` takes (it raises JSONError beyond)."""
    low, high = 1, 3000
    while low < high:
        mid = (low + high + 1) // 2
        try:
            accepts(make(mid))
            low = mid
        except JSONError:
            high = mid - 1
    return low


def _called_from(frames: int, fn: Callable[[], int]) -> int:
    return fn() if frames == 0 else _called_from(frames - 1, fn)


@pytest.mark.parametrize(
    ("make", "deepest", "element"),
    [(lambda n: '{"a": ' + "[" * n + "]" * n + "}", 1023, False),  # the object is a level too
     (lambda n: '{"a": ' * n + "1" + "}" * n, 1024, False),
     (lambda n: "[" + '{"a": ' + "[" * n + "]" * n + "}]", 1023, True)],  # an array's element, on its own
    ids=["arrays", "objects", "element"],
)
def test_how_deep_a_record_may_nest_does_not_depend_on_who_reads_it(
    make: Callable[[int], str], deepest: int, element: bool
) -> None:
    """A record ~990 levels deep was taken by an import in one process and refused by
    one with workers (their stacks differ), and taken ones could fail to migrate: the
    limit was Python's, counted from the bottom of whatever stack read it. It is now
    1,024 levels from any depth of caller, and what is decoded can be encoded again."""
    limit = sys.getrecursionlimit()
    read = (lambda text: jsoncodec.scan(text, 1)[0]) if element else decode
    assert _deepest(make, read) == deepest
    assert _called_from(300, lambda: _deepest(make, read)) == deepest
    assert _called_from(600, lambda: _deepest(make, read)) == deepest
    assert _deepest(make, lambda text: encode(read(text), 4)) == deepest
    assert sys.getrecursionlimit() == limit  # as the interpreter had it
