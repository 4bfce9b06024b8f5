"""Lossless JSON decoding and encoding.

The rules, which every other module relies on:

* integers of any size survive exactly, in both directions (also beyond the digit
  limit Python puts on ``int(str)`` and ``str(int)``, which is lifted here only for
  the integers that need it, never interpreter-wide); floats survive as the IEEE
  double they denote, and a number no double can hold (``1e999``, which would become
  Infinity, or ``1e-400``, which would become 0) is rejected;
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

import contextlib
import itertools
import json
import math
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn

import orjson

__all__ = ["JSONError", "decode", "decode_compact_lines", "encode", "encode_compact", "encode_utf8", "scan"]


class JSONError(ValueError):
    """Text that is not acceptable JSON; ``line`` is 1-based within the text, and
    ``column`` (1-based, in characters, set for syntax errors) within that line."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column

    def reason_at(self, line: int | None, column: int | None) -> str:
        """The reason with a syntax error's position (``... at line L column C``) given
        as ``line`` and ``column`` instead: the position in the file, when the text was
        part of one. ``line=None`` gives the column alone, for a text that is one line
        of a file (a JSON line), whose line the file's report names. Any other reason
        is returned as it is."""
        suffix = f" at line {self.line} column {self.column}"
        if self.column is None or column is None or not self.reason.endswith(suffix):
            return self.reason
        where = f" at column {column}" if line is None else f" at line {line} column {column}"
        return self.reason[: -len(suffix)] + where


class _Refused(ValueError):
    """Raised by the exact decoder's hooks: well-formed JSON refused for what it holds."""


def _reject_constant(name: str) -> Any:
    raise _Refused(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e999: it would become Infinity
        raise _Refused(f"number {quoted_number(text)} is too large for a double")
    if not value and _NONZERO_MANTISSA.match(text):  # 1e-400: it would become 0
        raise _Refused(f"number {quoted_number(text)} is too small for a double (it would become 0)")
    return value


#: A number literal longer than this is quoted cut, marked as such.
NUMBER_SHOWN = 40


def quoted_number(text: str) -> str:
    """A number literal as a message shows it: whole, or its first NUMBER_SHOWN
    characters, an ellipsis and how many digits it has (a cut number never passes for
    another one)."""
    if len(text) <= NUMBER_SHOWN:
        return text
    return f"{text[:NUMBER_SHOWN]}… ({sum(c.isdigit() for c in text)} digits)"


#: A number literal whose digits before the exponent are not all zeros (so it is not 0).
_NONZERO_MANTISSA = re.compile(r"-?[0.]*[1-9]")


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused(f"duplicate key {key!r} in one object")
            seen.add(key)
    return obj


#: Digits converted by one int() or str() call when an integer is beyond Python's limit
#: on them (4,300 by default; an application may lower it, but never below 640).
_CHUNK_DIGITS = 600
_CHUNK_LIMIT = 10**_CHUNK_DIGITS


def _int_of(text: str) -> int:
    """A JSON integer literal's value, whatever its length: ``int(text)``, or (beyond the
    interpreter's digit limit) the value put together from chunks of digits."""
    try:
        return int(text)
    except ValueError:
        pass
    digits = text.lstrip("-")
    value = _int_of_digits(digits)
    return -value if len(digits) != len(text) else value


def _int_of_digits(digits: str) -> int:
    if len(digits) <= _CHUNK_DIGITS:
        return int(digits)
    low = len(digits) // 2
    scale: int = 10**low
    return _int_of_digits(digits[:-low]) * scale + _int_of_digits(digits[-low:])


def int_text(value: int) -> str:
    """An integer's decimal digits, whatever its size (``str`` refuses an integer beyond
    the interpreter's digit limit): what JSON holds for it."""
    try:
        return int.__repr__(value)
    except ValueError:
        pass
    return ("-" if value < 0 else "") + _digits_of(abs(int(value)))


def _digits_of(value: int) -> str:
    if value < _CHUNK_LIMIT:
        return str(value)
    low = value.bit_length() * 3 // 20  # about half its digits (log10(2) is about 0.3)
    scale: int = 10**low
    high, rest = divmod(value, scale)
    return _digits_of(high) + _digits_of(rest).zfill(low)


_exact = json.JSONDecoder(
    object_pairs_hook=_unique_pairs, parse_constant=_reject_constant, parse_float=_finite_float
)
#: The same, for a text holding an integer beyond the digit limit of int(): every
#: integer then costs a Python call, so it is used only after _exact met one.
_exact_big = json.JSONDecoder(
    object_pairs_hook=_unique_pairs, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_int_of
)

def decode(data: bytes | str) -> Any:
    """Decode one JSON text strictly (see the module docstring); raise :class:`JSONError`.

    orjson parses; its result is trusted when encoding it again gives back the very same
    bytes (compact, or pretty with a 2-space indent: what serde_json, Python's json and
    most writers produce). That one comparison rules out both of orjson's silent changes:
    a dropped duplicate key would make the output shorter, and an integer turned into a
    float would come back with a '.' or an exponent. Anything else goes the exact way.
    """
    # An ASCII str is read as it is, its characters being its UTF-8 bytes: a huge
    # record's text (a query's, a migration's) is not copied to be read.
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) and not data.isascii() else data
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(_TOO_DEEP):
            raise JSONError("nested too deeply") from None
        return _decode_exact(data)
    if isinstance(raw, str):
        pretty = raw[1:2] == "\n" and raw[:1] in ("{", "[")
    else:
        pretty = raw[1:2] == b"\n" and raw[:1] in (b"{", b"[")
    try:
        if _same_text(orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0), raw):
            return value
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (255 levels)
        pass
    return _decode_exact(data)


def _same_text(out: bytes, raw: bytes | str) -> bool:
    """Whether ``out`` is ``raw``: its bytes, or the characters of an ASCII str (compared
    a window at a time, never copied whole)."""
    if isinstance(raw, bytes):
        return out == raw
    if len(out) != len(raw):
        return False
    return all(out[i : i + _WINDOW] == raw[i : i + _WINDOW].encode("ascii") for i in range(0, len(raw), _WINDOW))


#: How orjson's error for a value nested deeper than MAX_NESTING begins.
_TOO_DEEP = "depth limit exceeded"


def _too_deep(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]``, which the exact decoder took, nests deeper than
    MAX_NESTING (as orjson counts, which it then says first)."""
    if text.count("[", start, end) + text.count("{", start, end) <= MAX_NESTING:
        return False
    raw = text[start:end].encode("utf-8", "surrogatepass")
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith(_TOO_DEEP):
            return True
        # orjson stopped before the depth (at a number no double holds, say, which the
        # exact decoder takes): count the levels itself.
        return too_deep_to_read(raw)
    return False


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


#: The deepest a value may nest: orjson's limit, which it applies alike in any process.
#: (Python's own limit counts the frames of whoever calls the decoder too, so the same
#: record was taken by an import without workers and refused by one with them, or by a
#: migration.) The exact decoder and encoder get NESTING_BUDGET frames beyond their
#: caller: enough for any value within the limit.
MAX_NESTING = 1024
NESTING_BUDGET = MAX_NESTING + 100
_budget_held = threading.RLock()


@contextlib.contextmanager
def _nesting_budget() -> Iterator[None]:
    """Python's recursion limit raised, while the block runs, to NESTING_BUDGET frames
    beyond this one (never lowered: another thread may be deeper). One thread at a
    time: the limit is the interpreter's."""
    with _budget_held:
        frame: FrameType | None = sys._getframe()
        depth = 0
        while frame is not None:
            depth, frame = depth + 1, frame.f_back
        before = sys.getrecursionlimit()
        sys.setrecursionlimit(max(before, depth + NESTING_BUDGET))
        try:
            yield
        finally:
            sys.setrecursionlimit(before)


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
        with _nesting_budget():
            try:
                value = _exact.decode(text)
            except (json.JSONDecodeError, _Refused):
                raise
            except ValueError:  # an integer beyond the digit limit of int(): go again, in chunks
                value = _exact_big.decode(text)
        # Python's budget goes a little deeper than orjson's limit, which a text that
        # orjson could not read (a number no double holds) was never held to.
        if _too_deep(text, 0, len(text)):
            raise RecursionError
        return value
    except json.JSONDecodeError as exc:
        return _raise(exc.msg, exc.lineno, exc.colno)
    except _Refused as exc:  # from the hooks: duplicates, NaN, a number no double holds
        reason = str(exc)
        raise JSONError(reason, _refusal_line(text, reason)) from None
    except ValueError as exc:
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("nested too deeply") from None


#: JSON's tokens, as far as finding what the exact decoder refused needs them: strings
#: (keys among them), numbers, NaN and Infinity, and punctuation; literals are skipped.
#: A JSON number's text.
NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|NaN|-?Infinity|' + NUMBER.pattern + r"|[{}\[\],:]")
#: Characters of text tokenized at once (the tokens of one window are held as a list).
_WINDOW = 1 << 20


def _refusal_line(text: str, reason: str) -> int | None:
    """The line of what the exact decoder refused with ``reason`` (a duplicate key, NaN
    or Infinity, a number no double holds); ``None`` if it cannot be told.

    Only for errors: it follows the text's tokens as the decoder met them, up to what
    it refused (a duplicate key is refused where its object ends, at the first key seen
    twice in it), and the reason found there must be ``reason``."""
    if "\n" not in text:
        return 1
    objects: list[tuple[set[str], list[tuple[str, int, int]]]] = []  # keys, first repeated
    nesting: list[bool] = []  # True for an object, False for an array
    expect_key = False
    found: tuple[str, int, int] | None = None  # reason, window, token index in it
    for window, index, token in _tokens(text):
        first = token[0]
        if first == '"':
            if expect_key:
                keys, repeated = objects[-1]
                key = json.loads(token) if "\\" in token else token[1:-1]
                if key in keys and not repeated:
                    repeated.append((key, window, index))
                keys.add(key)
                expect_key = False
        elif first == "{":
            objects.append((set(), []))
            nesting.append(True)
            expect_key = True
        elif first == "[":
            nesting.append(False)
        elif first == "}" or first == "]":
            if nesting.pop():
                _, repeated = objects.pop()
                if repeated:
                    key, window, index = repeated[0]
                    found = (f"duplicate key {key!r} in one object", window, index)
                    break
            if not nesting:
                break  # the value ended, and nothing in it was refused
        elif first == ",":
            expect_key = nesting[-1]
        elif first == ":":
            expect_key = False
        elif first == "N" or token[-1] == "y":  # NaN, Infinity, -Infinity
            found = (f"{token} is not valid JSON", window, index)
            break
        elif token.strip("-0123456789"):  # a fraction or an exponent: a double
            try:
                _finite_float(token)
            except _Refused as exc:
                found = (str(exc), window, index)
                break
    if found is None or found[0] != reason:
        return None
    _, window, index = found
    match = next(itertools.islice(_TOKEN.finditer(text, window), index, None))
    return text.count("\n", 0, match.start()) + 1


def _tokens(text: str) -> Iterator[tuple[int, int, str]]:
    """The tokens of ``text`` with where each window of them starts and their index in
    it. Up to what the exact decoder refused the text is valid JSON, whose strings hold
    no raw newline: it is tokenized a window of whole lines at a time, so the memory
    held stays bounded however long the text."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + _WINDOW)
        end = len(text) if end == -1 else end + 1
        for index, token in enumerate(_TOKEN.findall(text, start, end)):
            yield start, index, token
        start = end


def scan(text: str, pos: int) -> tuple[Any, int]:
    """Decode the one JSON value starting at ``text[pos]`` strictly; return it and its end.

    A syntax error carries its line. A value refused for what it holds (a duplicate key,
    NaN, a number too large, nesting too deep) carries none: the caller knows where the
    value began, and counting lines here for every refused element of a huge array
    would be quadratic."""
    try:
        with _nesting_budget():
            try:
                value, end = _exact.raw_decode(text, pos)
            except (json.JSONDecodeError, _Refused):
                raise
            except ValueError:  # an integer beyond the digit limit of int(): go again, in chunks
                value, end = _exact_big.raw_decode(text, pos)
        if _too_deep(text, pos, end):
            raise RecursionError
        return value, int(end)
    except json.JSONDecodeError as exc:
        return _raise(exc.msg, exc.lineno, exc.colno)
    except ValueError as exc:
        raise JSONError(str(exc)) from None
    except RecursionError:
        raise JSONError("nested too deeply") from None


def _raise(msg: str, line: int, col: int) -> NoReturn:
    msg = msg.removesuffix(" at")  # "Invalid control character at" would read "at at line"
    raise JSONError(f"invalid JSON: {msg} at line {line} column {col}", line, col)


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
    if len(out) > WALK_FROM:
        # A huge record (a session): decoding it again to compare would hold a second
        # copy of it. Its types prove the same, each value being one whose encoding by
        # orjson is exact (orjson refused the cycles and the nesting too deep to walk).
        return out if _plain_json(value) else None
    try:
        same = bool(orjson.loads(out) == value)
    except (TypeError, ValueError, RecursionError):
        same = False
    return out if same else None


#: Encodings longer than this are proved by :func:`_plain_json` rather than decoded again.
WALK_FROM = 1 << 20
_SCALARS = frozenset([str, int, bool, type(None)])


def _plain_json(value: Any) -> bool:
    """Whether ``value`` holds nothing but dicts with str keys, lists, strs, ints, bools,
    None and finite floats (each of exactly that type): JSON's own values, which orjson
    writes exactly (it refuses integers beyond 64 bits and lone surrogates itself)."""
    scalars, isfinite = _SCALARS, math.isfinite
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if not isfinite(item):
                return False
        elif kind not in scalars:
            return False
    return True


def _encode_exact(value: Any, indent: int | None) -> str:
    separators = (",", ":") if indent is None else None
    _refuse_colliding_keys(value)
    try:
        with _nesting_budget():
            text = _dumps(value, False, indent, separators)
            if not is_utf8(text):
                # Lone surrogates: keep them as \\u escapes, the form they arrived in.
                text = _dumps(value, True, indent, separators)
    except (TypeError, ValueError) as exc:
        raise JSONError(f"not representable as JSON: {exc}") from None
    except RecursionError:
        raise JSONError("nested too deeply to encode") from None
    return text


#: In JSON text: a string (skipped whole), or a bracket outside any string.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def too_deep_to_read(text: bytes) -> bool:
    """Whether the JSON ``text`` nests arrays and objects deeper than MAX_NESTING, which
    :func:`decode` refuses. The encoder, within its budget, writes a little deeper (what
    holds a record, as a query's JSON output, must be written): a record that deep, a
    step's output, could never be read back from the store."""
    if len(text) <= 2 * MAX_NESTING or text.count(b"[") + text.count(b"{") <= MAX_NESTING:
        return False
    depth = 0
    for found in _STRING_OR_BRACKET.finditer(text):
        token = found.group()
        if token == b"[" or token == b"{":
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif token == b"]" or token == b"}":
            depth -= 1
    return False


def _refuse_colliding_keys(value: Any) -> None:
    """Raise :class:`JSONError` for an object two of whose keys would be written as the
    same string: ``json.dumps`` writes the keys ``1``, ``True`` and ``None`` as ``"1"``,
    ``"true"`` and ``"null"`` (as this module does, for a step that keys a dict by
    number), so ``{1: "a", "1": "b"}`` would come out with one key twice, and which of
    the two a reader keeps is anyone's guess. Walked without recursion, each container
    once (a cycle is left to ``json.dumps``, which refuses it)."""
    stack, seen = [value], set()
    while stack:
        item = stack.pop()
        if not isinstance(item, (dict, list, tuple)) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            if not all(type(key) is str for key in item):
                written: dict[str, Any] = {}
                for key in item:
                    name = _key_text(key)
                    if name in written:
                        a, b = (_key_shown(k) for k in (written[name], key))
                        raise JSONError(f"not representable as JSON: keys {a} and {b} would both be written as {name[:40]!r}")
                    written[name] = key
            stack.extend(item.values())
        else:
            stack.extend(item)


def _key_shown(key: Any) -> str:
    """A key as an error shows it (an integer of thousands of digits, cut short)."""
    text = int_text(key) if isinstance(key, int) and not isinstance(key, bool) else repr(key)
    return text if len(text) <= 40 else text[:40] + "..."


def _key_text(key: Any) -> str:
    """A dict key as ``json.dumps`` writes it (the types it refuses, as themselves: it
    refuses them after this)."""
    if isinstance(key, str) or key is None or isinstance(key, bool):
        return key if isinstance(key, str) else json.dumps(key)
    if isinstance(key, int):
        return int_text(key)
    if isinstance(key, float):
        return float.__repr__(key)
    return repr(key)


def _dumps(value: Any, ensure_ascii: bool, indent: int | None, separators: tuple[str, str] | None) -> str:
    """``json.dumps``, strict, also for integers beyond the digit limit of ``str()``
    (which it refuses): those are written as placeholder strings, then replaced by
    their digits."""
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=False, indent=indent, separators=separators)
    except ValueError as exc:
        original = exc
    while True:
        nonce = f"recordstore-int-{uuid.uuid4().hex}-"
        digits: list[str] = []
        swapped = _swap_huge_ints(value, nonce, digits, set())
        if not digits:  # none to swap: the error stands
            raise original
        text = json.dumps(swapped, ensure_ascii=ensure_ascii, allow_nan=False, indent=indent, separators=separators)
        if text.count(nonce) == len(digits):  # else a string held the nonce: a new one
            placeholder = re.compile('"' + re.escape(nonce) + '([0-9]+)"')
            return placeholder.sub(lambda m: digits[int(m.group(1))], text)


def _swap_huge_ints(value: Any, nonce: str, digits: list[str], active: set[int]) -> Any:
    """``value`` with each integer beyond the digit limit of ``str()`` (as a value or
    as a key) replaced by the placeholder string ``nonce`` + its index in ``digits``,
    where its JSON text is appended (a key's quoted). Containers become dicts and lists,
    as ``json.dumps`` writes them; one holding itself raises ValueError, as there."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            int.__repr__(value)
            return value
        except ValueError:
            digits.append(int_text(value))
            return f"{nonce}{len(digits) - 1}"
    if not isinstance(value, (dict, list, tuple)):
        return value
    if id(value) in active:
        raise ValueError("Circular reference detected")
    active.add(id(value))
    try:
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                new_key = _swap_huge_ints(key, nonce, digits, active)
                if new_key is not key and isinstance(new_key, str):  # a key: its digits quoted
                    digits[-1] = f'"{digits[-1]}"'
                out[new_key] = _swap_huge_ints(item, nonce, digits, active)
            return out
        # A loop, not a comprehension: Python 3.11 gives a comprehension a frame of its
        # own, and two frames a level spent the budget at half the depth a record may have.
        items: list[Any] = []
        for item in value:
            items.append(_swap_huge_ints(item, nonce, digits, active))
        return items
    finally:
        active.discard(id(value))
