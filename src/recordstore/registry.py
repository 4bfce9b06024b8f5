"""Registries: which files hold which domain's records, and how each version moves on.

A registry is Python. A user module (or ``.py`` file) exposes a module-level
``registry``; :func:`load_registry` finds it by path or dotted name and validates it.

    registry = Registry()
    session = registry.domain("session", version=3, files=["sessions/*.json"])

    @session.step(1)            # migrates v1 -> v2
    def rename_model(record):
        record["metadata"]["model_id"] = record["metadata"].pop("model")
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import marshal
import os
import re
import reprlib
import sys
import types
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import RegistryError, describe, one_line

__all__ = ["Domain", "Registry", "Step", "StepFunction", "load_registry"]

StepFunction = Callable[[dict[str, Any]], "dict[str, Any] | None"]
#: A step as its author typed it (``-> dict[str, Any]``, say): the decorator keeps it.
StepT = TypeVar("StepT", bound=StepFunction)

DEFAULT_VERSION_FIELD = "schema_version"


def glob_to_regex(pattern: str) -> re.Pattern[str]:
    """Compile a glob where ``*``, ``?`` and ``[...]`` stay within one path segment and
    ``**/`` matches any number of whole directories. Brackets read as glob and fnmatch
    read them: a ``]`` first in them (``[]]``, ``[!]]``) is one of their characters, a
    ``[`` with no ``]`` after it is itself."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = i + 1
            if pattern[end : end + 1] == "!":
                end += 1
            if pattern[end : end + 1] == "]":
                end += 1
            end = pattern.find("]", end)
            if end == -1:
                out.append(re.escape(ch))
            else:
                out.append(_bracket(pattern[i + 1 : end]))
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _bracket(inside: str) -> str:
    """The regex of a glob's ``[inside]``, as :func:`fnmatch.translate` makes it (a range
    from a higher character to a lower one is left out, as a regex refuses it), but
    never matching ``/``."""
    if "-" not in inside:
        body = inside.replace("\\", "\\\\")
    else:
        chunks = []
        start, k = 0, 2 if inside.startswith("!") else 1  # a "-" first is itself
        while (k := inside.find("-", k)) >= 0:
            chunks.append(inside[start:k])
            start, k = k + 1, k + 3
        if inside[start:]:
            chunks.append(inside[start:])
        else:
            chunks[-1] += "-"  # a "-" last is itself
        for k in range(len(chunks) - 1, 0, -1):
            if chunks[k - 1][-1] > chunks[k][0]:  # an empty range: gone
                chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
                del chunks[k]
        body = "-".join(c.replace("\\", "\\\\").replace("-", "\\-") for c in chunks)
    body = re.sub(r"([&~|\]])", r"\\\1", body)  # a "]" first is itself; "&&" and the like are no set operations
    if not body:
        return "(?!)"  # nothing left: matches nothing
    if body == "!":
        return "[^/]"
    if body[0] == "!":
        return "[^/" + body[1:] + "]"
    if body[0] in "^[":
        body = "\\" + body
    return "(?!/)[" + body + "]"


@dataclass(frozen=True)
class Step:
    """One registered migration: ``func`` turns a record of ``from_version`` into the next."""

    domain: str
    from_version: int
    func: StepFunction

    @property
    def to_version(self) -> int:
        """The version the step brings a record to: ``from_version + 1``."""
        return self.from_version + 1

    @property
    def name(self) -> str:
        """The step's function's qualified name, as failures and ``store check`` name it."""
        # The code alone: what it was made with is not shown (and its repr, a large table
        # captured, say, is no cost to pay for each record that fails).
        code = _code(self.func)
        return getattr(code, "__qualname__", None) or type(code).__qualname__

    @property
    def fingerprint(self) -> str:
        """A digest of the step's code (for a ``functools.partial``, of its function and
        arguments; for a callable object, of its class and attributes): it changes when
        the step's source or the values it was made with change, and only then (never
        with where in memory the step is, nor with the process's hash seed)."""
        code, arguments = _code_of(self.func)
        try:
            material = inspect.getsource(code).encode()
        except (OSError, TypeError):
            body = getattr(code, "__code__", None)
            material = marshal.dumps(body.co_code) if body is not None else getattr(code, "__qualname__", "").encode()
        return hashlib.sha256(material + arguments.encode()).hexdigest()[:16]


#: Where in memory an object is, as its repr shows it: never part of a fingerprint.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _code(func: Any) -> Any:
    """The function or class whose code a step runs, as :func:`_code_of` finds it."""
    while isinstance(func, functools.partial):
        func = func.func
    if callable(func) and not (inspect.ismethod(func) or inspect.isroutine(func) or inspect.isclass(func)):
        return type(func)  # an object with __call__: its class holds the code
    return func


def _code_of(func: Any) -> tuple[Any, str]:
    """The function or class whose code a step runs, and the values it is given beside
    its source: the arguments a ``functools.partial`` gives it, the values a function
    made by a factory captured (``make_step("alpha")``) or bound as defaults
    (``lambda record, field=field: ...``), and the attributes of a callable object
    (``Rename("a", "b")``) or of the object whose method the step is."""
    given: list[Any] = []
    while isinstance(func, functools.partial):
        given.append((func.args, sorted(func.keywords.items())))
        func = func.func
    owner = None
    if inspect.ismethod(func):
        owner = func.__self__
    elif callable(func) and not (inspect.isroutine(func) or inspect.isclass(func)):
        owner, func = func, type(func)  # an object with __call__: its class holds the code
    for cell in getattr(func, "__closure__", None) or ():
        try:
            given.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            given.append(None)
    extras = {
        "defaults": getattr(func, "__defaults__", None),
        "keyword defaults": getattr(func, "__kwdefaults__", None),
        "attributes": _attributes(owner),
    }
    # Only those a step has, so that a step with none keeps the digest it always had.
    given.extend((label, values) for label, values in extras.items() if values)
    return func, "".join(map(_shown, given))


def _shown(value: Any) -> str:
    """:func:`_stable_repr` of one value a step was made with; one nested too deeply to
    show (a captured tree thousands of levels deep) by its type, rather than no migration."""
    try:
        return _stable_repr(value)
    except RecursionError:
        kind = type(value)
        return f"<{kind.__module__}.{kind.__qualname__} nested too deeply to show>"


def _attributes(owner: Any) -> dict[str, Any] | None:
    """The values an object holds (its ``__dict__`` and slots), which its class's source
    does not show; ``None`` for a class or a module, whose source does."""
    if owner is None or inspect.isclass(owner) or inspect.ismodule(owner):
        return None
    found = dict(getattr(owner, "__dict__", None) or {})
    for klass in type(owner).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in [slots] if isinstance(slots, str) else slots:
            if name.startswith("__") and not name.endswith("__"):
                name = f"_{klass.__name__.lstrip('_')}{name}"  # as Python mangles a private slot
            if name not in ("__dict__", "__weakref__") and name not in found and hasattr(owner, name):
                found[name] = getattr(owner, name)
    return found


def _stable_repr(value: Any, _within: frozenset[int] = frozenset()) -> str:
    """``repr``, but the same in every process: the items of a set in one order (a set
    of strings comes in another order in every process), also where the set is inside
    an object whose repr shows it as it comes (a dataclass, a namedtuple, a
    ``defaultdict(set)``), and no memory addresses."""
    kind = type(value)
    if kind in (set, frozenset, list, tuple, dict):
        if id(value) in _within:
            return "..."  # a container inside itself, as repr shows it
        within = _within | {id(value)}
        if kind in (set, frozenset):
            items = ", ".join(sorted(_stable_repr(v, within) for v in value))
            return (f"{{{items}}}" if items else "set()") if kind is set else f"frozenset({{{items}}})"
        if kind is list:
            return "[" + ", ".join(_stable_repr(v, within) for v in value) + "]"
        if kind is tuple:
            return "(" + ", ".join(_stable_repr(v, within) for v in value) + ("," if len(value) == 1 else "") + ")"
        return "{" + ", ".join(f"{_stable_repr(k, within)}: {_stable_repr(v, within)}" for k, v in value.items()) + "}"
    parts = _parts_of(value)
    # Any other value keeps its repr (and the digest it always had) unless it shows a set.
    if parts is not None and id(value) not in _within and _holds_a_set(parts, _within | {id(value)}):
        return f"{kind.__module__}.{kind.__qualname__}({_stable_repr(parts, _within | {id(value)})})"
    try:
        shown = repr(value)
    except Exception:  # (a client object's, say): its type stands for it, rather than no migration at all
        return f"<{kind.__module__}.{kind.__qualname__} whose repr failed>"
    return _ADDRESS.sub("", shown)


def _parts_of(value: Any) -> Any:
    """What the repr of a value holding other values shows of them, as plain
    containers; ``None`` for any other value (its repr is all there is of it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    names = getattr(value, "_fields", None)
    if isinstance(value, tuple) and isinstance(names, tuple):  # a namedtuple
        return dict(zip(names, value))
    if isinstance(value, (set, frozenset)):
        return frozenset(value)
    if isinstance(value, collections.defaultdict):
        return (value.default_factory, dict(value))
    if isinstance(value, (dict, types.MappingProxyType)):
        return dict(value)
    if isinstance(value, (list, tuple, collections.deque)):
        return list(value)
    if isinstance(value, types.SimpleNamespace):
        return dict(vars(value))
    return None


def _holds_a_set(value: Any, within: frozenset[int]) -> bool:
    """Whether a set is among the values ``value`` shows in its repr, however deep."""
    if id(value) in within:
        return False
    if isinstance(value, (set, frozenset)):
        return True
    kind = type(value)
    if kind in (list, tuple):
        items: Iterable[Any] = value
    elif kind is dict:
        items = (*value.keys(), *value.values())
    else:
        parts = _parts_of(value)
        items = () if parts is None else (parts,)
    within = within | {id(value)}
    return any(_holds_a_set(item, within) for item in items)


def _check_takes_one_record(step: Step) -> None:
    """A step that cannot be called with one record would fail every record, one by one,
    at migrate time: it is refused when it is registered."""
    where = f"domain {step.domain!r}: step {step.from_version} -> {step.to_version}"
    if not callable(step.func):
        raise RegistryError(
            f"{where} must be a function taking one record, not {reprlib.repr(step.func)}",
            domain=step.domain,
            step=step.from_version,
        )
    # Called, an async or a generator function runs none of its body: it gives a
    # coroutine or a generator, never the record, and would fail every record.
    code = step.func
    if not (inspect.isroutine(code) or inspect.isclass(code) or isinstance(code, functools.partial)):
        code = type(code).__call__  # a callable object: its __call__ (it is callable: checked above)
    if inspect.iscoroutinefunction(code) or inspect.isasyncgenfunction(code):
        kind = "an async function: called, it gives a coroutine"
    elif inspect.isgeneratorfunction(code):
        kind = "a generator function (it yields): called, it gives a generator"
    else:
        kind = ""
    if kind:
        raise RegistryError(
            f"{where} ({step.name}) is {kind}, never a record: a step must be a plain function",
            domain=step.domain,
            step=step.from_version,
        )
    try:
        signature = inspect.signature(step.func)
    except (TypeError, ValueError):  # a builtin may have no signature to show: given the benefit of the doubt
        return
    try:
        signature.bind({})
    except TypeError as exc:
        raise RegistryError(
            f"{where} ({step.name}) cannot be called with one record: {exc}", domain=step.domain, step=step.from_version
        ) from None


def _patterns_given(domain: str, files: str | Iterable[str]) -> list[str]:
    """The patterns ``files`` names: a string is one pattern (a list of its characters
    would make ``*`` one of them, which claims every top-level file)."""
    if isinstance(files, str):
        return [files]
    try:
        patterns = list(files)
    except TypeError:
        raise RegistryError(
            f"domain {domain!r}: files must be a glob pattern or a list of them, not {files!r}", domain=domain
        ) from None
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise RegistryError(f"domain {domain!r}: file pattern {pattern!r} is not a string", domain=domain)
    return patterns


@dataclass
class Domain:
    """A kind of record with its own version line, file patterns and steps."""

    name: str
    version: int
    files: list[str]
    version_field: str = DEFAULT_VERSION_FIELD
    steps: dict[int, Step] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.version_field, str) or not self.version_field:
            raise RegistryError(
                f"domain {self.name!r}: version_field must be a non-empty string, not {self.version_field!r}",
                domain=self.name,
            )
        self.files = _patterns_given(self.name, self.files)
        self._patterns = []
        for pattern in self.files:
            if any(part in ("", ".", "..") for part in pattern.split("/")):
                # A file is known by its path relative to the import root: never "./x",
                # "/x", "x//y", "../x" or a directory's "x/".
                raise RegistryError(
                    f"domain {self.name!r}: file pattern {pattern!r} can match no file: patterns are relative "
                    "to the import root, without '.', '..' or empty parts (as 'sessions/*.json')",
                    domain=self.name,
                )
            try:
                self._patterns.append(glob_to_regex(pattern))
            except re.error as exc:
                raise RegistryError(
                    f"domain {self.name!r}: file pattern {pattern!r} cannot be used: {exc}", domain=self.name
                ) from exc

    def step(self, from_version: int) -> Callable[[StepT], StepT]:
        """Register the decorated function as the step from ``from_version`` to the next."""

        def register(func: StepT) -> StepT:
            self.add_step(from_version, func)
            return func

        return register

    def add_step(self, from_version: int, func: StepFunction) -> Step:
        """Register ``func`` as the step from ``from_version`` to the next (what
        :meth:`step` does as a decorator); a step registered twice, or one that cannot be
        called with one record, is a :class:`RegistryError`."""
        if isinstance(from_version, bool) or not isinstance(from_version, int) or from_version < 1:
            raise RegistryError(
                f"domain {self.name!r}: step {from_version!r} must be a version >= 1",
                domain=self.name,
            )
        step = Step(self.name, from_version, func)
        _check_takes_one_record(step)
        if from_version in self.steps:
            raise RegistryError(
                f"domain {self.name!r}: step {from_version} -> {from_version + 1} is registered twice "
                f"({self.steps[from_version].name} and {getattr(func, '__qualname__', func)})",
                domain=self.name,
                step=from_version,
            )
        self.steps[from_version] = step
        return step

    def matches(self, relpath: str) -> bool:
        """Whether a file at ``relpath`` (relative to the import root) matches one of
        the domain's patterns."""
        return any(p.match(relpath) for p in self._patterns)

    def validate(self) -> None:
        """The chain must be dense from 1 to ``version``: no gap, nothing beyond."""
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise RegistryError(
                f"domain {self.name!r}: current version must be an integer >= 1, not {self.version!r}",
                domain=self.name,
            )
        for n in sorted(self.steps):
            if n >= self.version:
                raise RegistryError(
                    f"domain {self.name!r}: step {n} -> {n + 1} goes beyond current version {self.version}",
                    domain=self.name,
                    step=n,
                )
        for n in range(1, self.version):
            if n not in self.steps:
                raise RegistryError(
                    f"domain {self.name!r}: no step {n} -> {n + 1}, so the chain cannot reach "
                    f"current version {self.version}",
                    domain=self.name,
                    step=n,
                )

    def chain(self, from_version: int) -> list[Step]:
        """The steps that bring a record of ``from_version`` up to the current version."""
        return [self.steps[n] for n in range(from_version, self.version)]


class Registry:
    """The set of domains; the first domain whose pattern matches a file owns it."""

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = {}
        self._matcher: tuple[re.Pattern[str], list[str]] | None = None

    def domain(
        self,
        name: str,
        *,
        version: int,
        files: str | Iterable[str] = (),
        version_field: str = DEFAULT_VERSION_FIELD,
    ) -> Domain:
        """Declare a domain; a name already declared is an error (give all of a domain's
        file patterns in one declaration). ``files`` is one pattern or several."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"a domain needs a non-empty name, not {name!r}")
        if name in self.domains:
            raise RegistryError(f"domain {name!r} is declared twice", domain=name)
        dom = Domain(name, version, _patterns_given(name, files), version_field)
        self.domains[name] = dom
        self._matcher = None
        return dom

    def __getitem__(self, name: str) -> Domain:
        try:
            return self.domains[name]
        except (KeyError, TypeError):  # (TypeError: a list, say, which no name is)
            known = ", ".join(sorted(self.domains)) or "none"
            raise RegistryError(f"unknown domain {name!r} (known: {known})", domain=name) from None

    def __iter__(self) -> Iterator[Domain]:
        return iter(self.domains.values())

    def may_match_below(self, reldir: str) -> bool:
        """Whether a file below the directory at ``reldir`` (relative to the import
        root, ``""`` for the root itself) could match one of the patterns."""
        parts = reldir.split("/") if reldir else []
        for dom in self.domains.values():
            for pattern in dom.files:
                segments = pattern.split("/")
                for i, part in enumerate(parts):
                    if "**" in segments[i]:  # crosses any number of directories
                        return True
                    if i == len(segments) - 1 or not glob_to_regex(segments[i]).match(part):
                        break  # the pattern names files at this depth, or another directory
                else:
                    return True
        return False

    def match(self, relpath: str) -> Domain | None:
        """The first domain (in declaration order) with a pattern matching ``relpath``."""
        if self._matcher is None:
            # One regex for all patterns: one match call per file instead of one per pattern.
            names = [d.name for d in self.domains.values() for _ in d._patterns]
            alternatives = [
                f"(?P<d{i}>{pattern.pattern[:-2]})"  # each pattern ends with \\Z
                for i, pattern in enumerate(p for d in self.domains.values() for p in d._patterns)
            ]
            self._matcher = (re.compile("(?:" + "|".join(alternatives) + r")\Z", re.DOTALL), names)
        regex, names = self._matcher
        found = regex.match(relpath)
        if found is None or found.lastgroup is None:
            return None
        return self.domains[names[int(found.lastgroup[1:])]]

    def validate(self) -> Registry:
        """Each domain's chain is dense, and no file pattern is given to two domains."""
        owners: dict[str, str] = {}
        for dom in self.domains.values():
            dom.validate()
            for pattern in dom.files:
                owner = owners.setdefault(pattern, dom.name)
                if owner != dom.name:
                    raise RegistryError(
                        f"file pattern {pattern!r} is given to two domains, {owner!r} and {dom.name!r}",
                        domain=dom.name,
                    )
        return self

    def fingerprints(self) -> dict[str, dict[str, str]]:
        """Each domain's steps' fingerprints, by starting version: what a migration
        records, and ``store check`` compares with the code it finds later."""
        return {
            d.name: {str(n): s.fingerprint for n, s in sorted(d.steps.items())} for d in self.domains.values()
        }


def load_registry(spec: str | os.PathLike[str] | None = None) -> Registry:
    """Load and validate a registry: ``None`` for the built-in DeepSeek TUI one (also
    named ``deepseek``, ``codewhale``, the application's new name, and ``builtin``), a
    path to a ``.py`` file (a string or a path object; ``~`` is expanded), or a dotted
    module name, each exposing ``registry``."""
    if spec is None or spec in ("", "deepseek", "codewhale", "builtin"):
        spec = "recordstore.domains.deepseek"
    text = os.fspath(spec) if isinstance(spec, (str, os.PathLike)) else None
    if not isinstance(text, str):  # a module object, bytes, anything else
        raise RegistryError(f"a registry is a Registry, a .py file or a module name, not {reprlib.repr(spec)}")
    path = Path(text).expanduser()
    head, colon, attribute = text.rpartition(":")
    try:
        if colon and head and attribute.isidentifier() and not path.exists():  # as entry points name an object
            raise RegistryError(
                f"registry {text}: give {head} alone, without ':{attribute}' "
                "(a registry is a .py file or a module name, and its module-level `registry` is loaded)"
            )
        if isinstance(spec, os.PathLike) or text.endswith(".py") or "/" in text or text.startswith("~") or path.is_file():
            module = _load_file(text, path)
        else:
            module = _import_module(text)
    except (RegistryError, KeyboardInterrupt):  # Ctrl-C while it loads stops the caller
        raise
    except SystemExit as exc:  # argparse or a leftover check in the module must not end the caller's process
        called = "sys.exit()" if exc.code is None else f"sys.exit({exc.code!r})"
        raise RegistryError(f"cannot load registry {text}: it called {called} while loading") from exc
    except BaseException as exc:  # the user's module may raise anything while importing (CancelledError too)
        # One line, as a step's failure: a library's message may span several (configparser's).
        raise RegistryError(f"cannot load registry {text}: {one_line(describe(exc))}") from exc
    registry = getattr(module, "registry", None)
    if not isinstance(registry, Registry):
        if getattr(module, "__file__", None) is None and hasattr(module, "__path__"):  # a directory on the path
            raise RegistryError(
                f"registry {text} is a directory with no __init__.py, not a module: give the .py file that defines `registry`"
            )
        if registry is None:
            raise RegistryError(f"registry {text} has no module-level `registry` (a recordstore.Registry)")
        # It has one, of another kind: "has none" sent the user looking for a name that is there.
        if registry is Registry:
            raise RegistryError(f"registry {text}: its module-level `registry` is the class Registry: make one, registry = Registry()")
        raise RegistryError(
            f"registry {text}: its module-level `registry` is {one_line(reprlib.repr(registry))}, not a recordstore.Registry"
        )
    return registry.validate()


def _load_file(text: str, path: Path) -> types.ModuleType:
    """Run the registry file at ``path`` (``text`` as the user gave it) as a module."""
    shown = f"{text} ({path})" if text.startswith("~") else text
    if path.is_dir():
        raise RegistryError(
            f"registry {shown} is a directory, not a .py file: give the file that defines `registry`, "
            "or a package's module name"
        )
    if not path.is_file():
        raise RegistryError(f"registry file {shown} does not exist")
    # As Python runs a script: modules beside the file can be imported by it.
    where = str(path.resolve().parent)
    if where not in sys.path:
        sys.path.insert(0, where)
    name = f"_recordstore_registry_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    mod_spec = importlib.util.spec_from_file_location(name, path)
    if mod_spec is None or mod_spec.loader is None:
        raise RegistryError(f"registry file {shown} is not a Python module (a .py file)")
    module = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = module
    try:
        mod_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)  # as an import that fails leaves no module behind
        raise
    return module


def _import_module(name: str) -> types.ModuleType:
    """Import the registry module ``name``; a name that is not one, or not found, says
    what was tried."""
    beside = ""
    if Path(f"{name}.py").is_file():
        beside = f"; a file {name}.py is here: give its path, {name}.py"
    elif Path(name).is_dir():
        beside = f"; a directory {name} is here, but this directory is not on the Python path"
    if not all(part.isidentifier() for part in name.split(".")):
        raise RegistryError(f"registry {name} is neither a file nor a module name{beside}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise RegistryError(
                f"cannot load registry {name}: no file of that name, and no module {name!r} on the Python path{beside}"
            ) from None
        raise  # a module the registry itself imports: reported with the registry's name
