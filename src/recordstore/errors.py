"""The one exception tree of recordstore.

Every error the library raises derives from :class:`RecordStoreError`; lower-layer
errors (``sqlalchemy.exc``, ``sqlite3``, ``OSError``, JSON decoding) are translated at
the boundary with ``raise ... from exc``. Each class carries its context as attributes
and an ``exit_code`` the CLI uses::

    RecordStoreError                 exit 3
    ├── RegistryError                exit 3   .domain .step
    ├── InputError                   exit 1   .path .line .reason
    │   └── NewerVersionError        exit 1   .domain .version .current_version .version_field
    ├── MigrationError               exit 1   .domain .key .from_version .to_version .step .reason
    ├── ExportError                  exit 1   .path .reason
    │   └── ExportDirectoryError     exit 3   OUT itself unusable: nothing exported
    ├── QueryError                   exit 3
    └── StoreError                   exit 3   problems with the store itself
        ├── StoreVersionError        exit 5   written by a newer recordstore
        ├── BusyError                exit 4   .holder
        └── RestoreConflictError     exit 1   .keys .count

This module imports nothing of recordstore, so every other module may import it.
"""

from __future__ import annotations

import copy
import re
import sys
from typing import Any, TypeVar

_T = TypeVar("_T")


#: How many problems the result of an import or an export holds: the first ones. It
#: counts them all (``problem_count``); holding them all took ~0.8 kB a bad line, 80 MB
#: for 100,000 bad lines, and ~0.8 kB a file an export could not write.
PROBLEMS_KEPT = 200


class RecordStoreError(Exception):
    """Root of every error recordstore raises; ``str()`` is one line a user can act on."""

    exit_code = 3

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled with its attributes (an import's problems travel back from its worker
        # processes); the subclasses' keyword-only constructors are bypassed.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[RecordStoreError], args: tuple[Any, ...], state: dict[str, Any]) -> RecordStoreError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class RegistryError(RecordStoreError):
    """A registry that cannot be loaded or whose step chains are broken."""

    def __init__(self, message: str, *, domain: str | None = None, step: int | None = None):
        super().__init__(message)
        self.domain = domain
        self.step = step


class InputError(RecordStoreError):
    """A file, line or record that cannot be imported; names where and why."""

    exit_code = 1

    def __init__(self, path: str, reason: str, *, line: int | None = None):
        self.path = path
        self.line = line
        self.reason = reason
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {reason}")

    def naming(self, path: str) -> InputError:
        """This problem (of its class, with its attributes), naming its file ``path``."""
        error = copy.copy(self)
        error.path = path
        where = f"{path}:{self.line}" if self.line is not None else path
        error.args = (f"{where}: {self.reason}",)
        return error


class NewerVersionError(InputError):
    """A record whose version is newer than its domain's current version; the message
    names the field the domain reads the version from (``schema_version`` unless the
    domain has its own)."""

    def __init__(
        self,
        path: str,
        *,
        domain: str,
        version: int,
        current_version: int,
        line: int | None = None,
        version_field: str = "schema_version",
    ):
        self.domain = domain
        self.version = version
        self.current_version = current_version
        self.version_field = version_field
        super().__init__(
            path,
            f"{version_field} {version} is newer than current version {current_version} "
            f"of domain {domain!r}",
            line=line,
        )


class MigrationError(RecordStoreError):
    """A step that failed on one record; the record is left exactly as it was."""

    exit_code = 1

    def __init__(
        self,
        reason: str,
        *,
        domain: str,
        key: str,
        from_version: int,
        to_version: int,
        step: str | None = None,
    ):
        self.domain = domain
        self.key = key
        self.from_version = from_version
        self.to_version = to_version
        self.step = step
        self.reason = reason
        named = f" ({step})" if step else ""
        # The key escaped, as import shows a file's name: a newline in it must not break the line.
        super().__init__(f"{domain} {printable(key)}: v{from_version} -> v{to_version}{named} failed: {reason}")


class ExportError(RecordStoreError):
    """A record that cannot be written safely (for instance, a path escaping OUT)."""

    exit_code = 1

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ExportDirectoryError(ExportError):
    """The export directory itself (``path``) cannot be made or written into, or its
    path is not one: nothing was exported. An error (exit 3), not an export with some
    files refused (exit 1)."""

    exit_code = 3


class QueryError(RecordStoreError):
    """A query that cannot be run: unknown operator, malformed JSON path, bad value."""


class StoreError(RecordStoreError):
    """The store itself cannot be opened, read or written."""


class StoreVersionError(StoreError):
    """The store was written by a newer recordstore; it is never modified."""

    exit_code = 5


class BusyError(StoreError):
    """Another writer holds the store; ``holder`` describes it."""

    exit_code = 4

    def __init__(self, message: str, *, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.holder = holder or {}


class RestoreConflictError(StoreError):
    """A restore that would overwrite records a later run changed again (or put records
    back where they cannot go). ``keys``: the domain and key of the first of them (a few
    hundred at most, so memory stays bounded however many conflict); ``count``: how many
    in all."""

    exit_code = 1

    def __init__(self, message: str, *, keys: list[tuple[str, str]], count: int | None = None):
        super().__init__(message)
        self.keys = keys
        self.count = len(keys) if count is None else count


#: What a parameter of each type takes, as :func:`checked` says it.
_TAKES: dict[Any, str] = {bool: "True or False", int: "an integer", str: "a string", (int, float): "a number"}


def checked(
    name: str,
    value: _T,
    takes: type[Any] | tuple[type[Any], ...],
    *,
    what: str | None = None,
    least: float | None = None,
    most: float | None = None,
    optional: bool = False,
    error: type[RecordStoreError] = RecordStoreError,
) -> _T:
    """``value``, if it is what the parameter ``name`` of a public method takes: an
    instance of ``takes`` (``None`` too, if ``optional``), from ``least`` to ``most``. A
    bool is not an int here (SQL reads ``True`` as 1). Otherwise ``error``, one line
    naming the parameter and what it takes, raised where the library meets its caller,
    before any run begins; the CLI, which calls the same methods, says the same."""
    if value is None and optional:
        return value
    if isinstance(value, bool) and takes is not bool or not isinstance(value, takes):
        raise error(f"{name} must be {what or _TAKES[takes]}, not {shown(value)}")
    number: Any = value
    if least is not None and not number >= least or most is not None and not number <= most:  # NaN is neither
        bounds = f"between {least} and {most}" if least is not None and most is not None else (
            f"at least {least}" if least is not None else f"at most {most}"
        )
        raise error(f"{name} must be {bounds}, not {shown(value)}")
    return value


def shown(value: Any) -> str:
    """``repr(value)`` for a message: an integer past Python's digit limit, whose
    ``repr`` raises ValueError (a record may hold one, so a caller may pass one on), is
    said to be one."""
    try:
        return repr(value)
    except ValueError:
        if not isinstance(value, int):
            raise
    return f"an integer of more than {sys.get_int_max_str_digits()} digits"


def describe(exc: BaseException) -> str:
    """``Type: message`` for an exception raised by code outside the store (a step), even
    one whose message cannot be made (its ``__str__`` raises)."""
    try:
        message = str(exc)
    except BaseException as broken:  # (a ``sys.exit()`` there too: it must not end the caller, saying nothing)
        message = f"(its message could not be shown: {type(broken).__name__})"
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


#: Lone surrogates, but those ``os`` makes of the bytes of a name that are not UTF-8.
_NO_BYTE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def printable(text: str) -> str:
    """``text`` as one printable line: control characters (a line break, a terminal's
    escape) and bytes that are not UTF-8 (``os`` hands them over as lone surrogates)
    become backslash escapes."""
    if text.isprintable():
        return text
    # A lone surrogate that stands for no byte (a step's message quoting a record's
    # "\ud800", which JSON allows) cannot be encoded even so: its escape, as JSON writes it.
    text = _NO_BYTE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    escaped = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in escaped)


def one_line(message: str) -> str:
    """An exception's ``message`` (a library's may span lines) folded to one printable line."""
    return printable(" ".join(message.split()))
