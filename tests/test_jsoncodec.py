"""The codec's promises: exact numbers, strictness, and the fast path never changing a value."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordstore import jsoncodec
from recordstore.jsoncodec import JSONError, decode, encode


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
