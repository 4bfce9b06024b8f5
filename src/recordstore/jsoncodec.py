"""Lossless JSON decoding and encoding.

The rules, which every other module relies on:

* integers of any size survive exactly; floats survive as the IEEE double they denote;
* ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON and are rejected, both when
  decoding and when encoding a step's output (a fast codec would turn them into
  ``null`` silently);
* an object with the same key twice is rejected: every parser keeps a different one
  of the two values, so accepting it would change a value silently;
* key order is kept;
* strings holding lone surrogates (legal JSON escapes, not valid Unicode) are accepted
  and written back as escapes.

``orjson`` is the fast path. It turns integers beyond 64 bits into floats and keeps
the last of duplicate keys without a word, so its result is only used when a cheap
check proves neither can have happened (see :func:`decode`); otherwise the exact
standard-library path decides.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

import orjson

__all__ = ["JSONError", "decode", "decode_compact_lines", "encode", "encode_compact", "encode_utf8", "scan"]


class JSONError(ValueError):
    """Text that is not acceptable JSON; ``line`` is 1-based within the text."""

    def __init__(self, reason: str, line: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999: it would become Infinity
        raise ValueError(f"number {text[:40]} is too large for a double")
    return value


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in one object")
            seen.add(key)
    return obj


_exact = json.JSONDecoder(
    object_pairs_hook=_unique_pairs, parse_constant=_reject_constant, parse_float=_finite_float
)

def decode(data: bytes | str) -> Any:
    """Decode one JSON text strictly (see the module docstring); raise :class:`JSONError`.

    orjson parses; its result is trusted when encoding it again gives back the very same
    bytes (compact, or pretty with a 2-space indent: what serde_json, Python's json and
    most writers produce). That one comparison rules out both of orjson's silent changes:
    a dropped duplicate key would make the output shorter, and an integer turned into a
    float would come back with a '.' or an exponent. Anything else goes the exact way.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _decode_exact(data)
    pretty = raw[1:2] == b"\n" and raw[:1] in (b"{", b"[")
    if orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0) == raw:
        return value
    return _decode_exact(data)


def decode_compact_lines(lines: list[bytes]) -> list[Any] | None:
    """The values of many one-line JSON texts, decoded together: what :func:`decode`
    gives for each, when every text is exactly orjson's compact encoding of its value.
    ``None`` when any is not (a blank, broken or spaced-out line, a duplicate key, an
    integer beyond 64 bits): decode those one by one.

    One parse of the lines joined as an array, and one encoding per value, all in C.
    Comparing each line with its value's encoding is :func:`decode`'s own proof, line by
    line; it also rules out a line that is only part of a value (``[1`` then ``2]``)."""
    try:
        values: list[Any] = orjson.loads(b"[" + b",".join(lines) + b"]")
    except orjson.JSONDecodeError:
        return None
    if len(values) != len(lines):
        return None
    try:
        if list(map(orjson.dumps, values)) != lines:
            return None
    except orjson.JSONEncodeError:  # nested too deeply to encode: decide one by one
        return None
    return values


def _decode_exact(data: bytes | str) -> Any:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError(f"invalid UTF-8 at byte {exc.start}", _line_of(data, exc.start)) from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JSONError("starts with a UTF-8 byte order mark, which JSON forbids", 1)
    try:
        return _exact.decode(text)
    except json.JSONDecodeError as exc:
        return _raise(exc.msg, exc.lineno, exc.colno)
    except ValueError as exc:  # from the hooks: duplicates, NaN
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("nested too deeply") from None


def scan(text: str, pos: int) -> tuple[Any, int]:
    """Decode the one JSON value starting at ``text[pos]`` strictly; return it and its end.

    A syntax error carries its line. A value refused for what it holds (a duplicate key,
    NaN, a number too large, nesting too deep) carries none: the caller knows where the
    value began, and counting lines here for every refused element of a huge array
    would be quadratic."""
    try:
        value, end = _exact.raw_decode(text, pos)
        return value, int(end)
    except json.JSONDecodeError as exc:
        return _raise(exc.msg, exc.lineno, exc.colno)
    except ValueError as exc:
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("nested too deeply") from None


def _raise(msg: str, line: int, col: int) -> NoReturn:
    msg = msg.removesuffix(" at")  # "Invalid control character at" would read "at at line"
    raise JSONError(f"invalid JSON: {msg} at line {line} column {col}", line)


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8 (it holds no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_compact(value: Any) -> str:
    """One-line JSON, ``,``/``:`` separators, UTF-8 characters unescaped."""
    return encode(value, None)


def encode(value: Any, indent: int | None) -> str:
    """Encode ``value``; ``indent=None`` is compact, otherwise pretty with ``": "``.

    Raises :class:`JSONError` for values JSON cannot hold exactly (NaN, sets, ...)."""
    fast = _encode_fast(value, indent)
    return fast.decode("utf-8") if fast is not None else _encode_exact(value, indent)


def encode_utf8(value: Any, indent: int | None) -> bytes:
    """:func:`encode`, as UTF-8 bytes (what orjson writes: nothing to convert)."""
    fast = _encode_fast(value, indent)
    return fast if fast is not None else _encode_exact(value, indent).encode("utf-8")


def _encode_fast(value: Any, indent: int | None) -> bytes | None:
    """orjson's encoding, or ``None`` when the exact path must decide. orjson writes
    compact and 2-space text fast, but writes NaN and Infinity as ``null`` and turns
    dates and dataclasses into other types: its output is used only when decoding it
    gives back an equal value."""
    if indent not in (None, 2):
        return None
    try:
        out = orjson.dumps(value, option=orjson.OPT_INDENT_2 if indent else 0)
    except (TypeError, orjson.JSONEncodeError):
        return None  # integers beyond 64 bits, lone surrogates, non-string keys, ...
    try:
        same = bool(orjson.loads(out) == value)
    except (TypeError, ValueError, RecursionError):
        same = False
    return out if same else None


def _encode_exact(value: Any, indent: int | None) -> str:
    try:
        if indent is None:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        else:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False, indent=indent)
    except (TypeError, ValueError) as exc:
        raise JSONError(f"not representable as JSON: {exc}") from None
    except RecursionError:
        raise JSONError("nested too deeply to encode") from None
    if not is_utf8(text):
        # Lone surrogates: keep them as \\u escapes, the form they arrived in.
        separators = (",", ":") if indent is None else None
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, indent=indent, separators=separators)
    return text
