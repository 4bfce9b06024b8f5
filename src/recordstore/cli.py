"""The ``store`` command: a thin shell over :class:`recordstore.Store`.

Each command parses its options, calls one ``Store`` method, renders the result and
maps errors to one line on stderr and an exit code:

    0  done, nothing refused
    1  done, but some records were rejected or failed (or a restore conflicted)
    2  usage error
    3  error: registry, store, query or input problem (one line says which)
    4  busy: another writer holds the store
    5  the store was written by a newer recordstore
    70 internal error (a bug: please report it with the output of --debug)
    130 interrupted

A reader closing the output early (``store query ... | head``) ends the command quietly
with click's code for it, 1.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import re
import signal
import sys
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, Optional

import typer
from rich.console import Console

from . import jsoncodec
from .connections import INT_MAX, default_db_path, is_url
from .workers import MAX_JOBS
from .errors import RecordStoreError, StoreError, printable

if TYPE_CHECKING:
    from rich.progress import Progress

    from .store import Store

def _click_module() -> Any:
    """The click Typer parses with: its own copy in newer versions, click itself before."""
    import importlib

    from typer import core

    return getattr(core, "_click", None) or importlib.import_module("click")


_NoSuchOption: Any = _click_module().exceptions.NoSuchOption


def _option_names(command: Any) -> set[str]:
    return {name for param in command.params for name in (*param.opts, *param.secondary_opts)}


def _misplaced_global(option: str, ctx: Any) -> str | None:
    """What to say of ``option``, unknown to the command of ``ctx``, when it is a global
    option: those come before the command's name."""
    root = ctx.find_root()
    for param in root.command.params if ctx is not root else ():
        if option in (*param.opts, *param.secondary_opts):
            given = option if param.is_flag else f"{option} {param.metavar or param.name.upper()}"
            command = ctx.command_path.split(" ", 1)[1]
            return (
                f"No such option for '{ctx.command_path}': {option}. It is a global option: give it before "
                f"the command's name ({root.info_name} {given} {command} ...)"
            )
    return None


class _Group(typer.core.TyperGroup):
    """The ``store`` group: an option given on the wrong side of a command's name
    (``store --json status``, ``store status --db x``) is said to be there, instead of
    click's "No such option" with a guess among the options of the other side (``--json``:
    "Possible options: --version")."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _NoSuchOption as exc:
            option, path = exc.option_name, [ctx.command_path]
            command: Any = self
            for word in args:  # the command (and subcommand) named after the option
                sub = command.commands.get(word) if isinstance(command, typer.core.TyperGroup) else None
                if sub is not None:
                    path.append(word)
                    command = sub
            named = " ".join(path)
            if option in _option_names(command):
                said = f"It is an option of '{named}': give it after the command's name ({named} {option} ...)"
            elif len(path) == 1 and any(option in _option_names(c) for c in _commands(self)):
                said = f"It is an option of a command: give it after the command's name ({named} COMMAND {option} ...)"
            else:
                raise
            exc.message, exc.possibilities = f"No such option: {option}. {said}", None
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _NoSuchOption as exc:
            said = _misplaced_global(exc.option_name, exc.ctx) if ctx.parent is None and exc.ctx is not None else None
            if said is not None:
                exc.message, exc.possibilities = said, None
            raise


def _commands(group: Any) -> Iterator[Any]:
    """The commands of ``group``, those of its groups included."""
    for command in group.commands.values():
        yield command
        if isinstance(command, typer.core.TyperGroup):
            yield from _commands(command)


app = typer.Typer(
    name="store",
    cls=_Group,
    help="A SQLite-backed versioned record store: import JSON records, migrate them, export them back.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are paragraphs, wrapped to the terminal (Rich markup mode keeps the
    # docstrings' own line breaks, which a terminal narrower than them breaks again).
    rich_markup_mode=None,
)
index_app = typer.Typer(
    cls=_Group, help="JSON-path indexes that make filters fast.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(index_app, name="index")

# No markup: what is printed holds names the user chose (an export directory "out[old]",
# a domain, a JSON path), which rich would read as style tags.
out = Console(highlight=False, soft_wrap=True, markup=False, emoji=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

WAIT_SECONDS = 24 * 3600.0
#: The --wait option of every writing command.
_Wait = Annotated[bool, typer.Option("--wait", help="Wait for another writer instead of failing.")]


def _whole(least: int, most: int = INT_MAX) -> Any:
    """A parser of whole numbers from ``least`` to ``most`` (a number beyond what the
    store's integers hold is refused as usage, not met later as an overflow). Used
    instead of click's ranges, which print their bounds into every help line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a whole number") from None
        if value < least:
            raise typer.BadParameter(f"{value} is too small: it must be at least {least}")
        if value > most:
            raise typer.BadParameter(f"{value} is too large: it must be at most {most}")
        return value

    return parse


class Options:
    def __init__(self, db: str | None, registry: str | None, debug: bool, quiet: bool):
        self.db = db
        self.registry = registry
        self.debug = debug
        self.quiet = quiet
        self.opened: Store | None = None

    def open(self, wait: bool = False, *, create: bool = False, registry: bool = True) -> Store:
        """The store; only an import (``create``) makes one where there is none, so a
        mistyped --db is an error, not an empty store. Without ``registry`` (commands
        that never look at records' domains), the registry is not loaded: a broken one
        does not stop them."""
        from .registry import Registry
        from .store import Store  # SQLAlchemy, loaded only by the commands that open a store

        with _user_code_prints_to_stderr():  # the registry is loaded, and runs its module's code
            self.opened = Store(
                self.db, registry=self.registry if registry else Registry(), wait=WAIT_SECONDS if wait else None, create=create
            )
        return self.opened

    @property
    def where(self) -> str:
        return self.db if self.db is not None else str(default_db_path())


@contextlib.contextmanager
def _user_code_prints_to_stderr() -> Iterator[None]:
    """What the registry's code prints (a debugging ``print`` in a step, or at its top
    level) goes to stderr while it runs: stdout holds the command's own output alone,
    which may be a --json document. Also what C code or a subprocess writes straight to
    file descriptor 1, which then points where 2 does. Worker processes forked meanwhile
    inherit both."""
    with contextlib.redirect_stdout(sys.stderr), _fd_pointed(1, at=2):
        yield


@contextlib.contextmanager
def _fd_pointed(fd: int, *, at: int) -> Iterator[None]:
    """File descriptor ``fd`` points where ``at`` does for a while (as it was, if either is closed)."""
    if sys.__stdout__ is not None:
        sys.__stdout__.flush()  # what this process wrote to fd 1 so far goes there first
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    try:
        try:
            os.dup2(at, fd)
        except OSError:
            pass
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _print_version(value: bool) -> None:
    if value:
        import recordstore

        out.print(f"recordstore {recordstore.__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        Optional[str],
        typer.Option(
            "--db",
            metavar="PATH_OR_URL",
            envvar="STORE_DB",
            help="Store file or SQLAlchemy URL (default: $XDG_DATA_HOME/recordstore/store.db, or "
            "~/.local/share/recordstore/store.db when XDG_DATA_HOME is not set).",
            show_default=False,
        ),
    ] = None,
    registry: Annotated[
        Optional[str],
        typer.Option(
            "--registry",
            metavar="SPEC",
            envvar="STORE_REGISTRY",
            help="Registry: a .py file or module exposing `registry` (default: built-in DeepSeek TUI).",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
) -> None:
    ctx.obj = Options(db, registry, debug, quiet)


#: What an interrupted command left, by command (a reader leaves nothing to say).
_WRITER_INTERRUPTED = "; what it had committed is kept: run the command again to finish"
_WHOLE_INTERRUPTED = "; it is one transaction: nothing of it was written"
_INTERRUPTED = {
    **dict.fromkeys(("import", "migrate"), _WRITER_INTERRUPTED),
    **dict.fromkeys(("restore", "prune-backups", "add", "drop"), _WHOLE_INTERRUPTED),
    "export": "; every file written so far is whole, and no temporary file is left: run the export again "
    "(with --force) to finish",
}


@contextlib.contextmanager
def _errors(ctx: typer.Context) -> Iterator[None]:
    try:
        yield
    except RecordStoreError as exc:
        if ctx.obj.debug:
            traceback.print_exc()
        message = str(exc)
        where = ctx.obj.where
        if isinstance(exc, StoreError) and not is_url(where) and where not in message:
            message = f"{where}: {message}"  # which store file, when it does not say (a URL may hold a password)
        err.print(f"store: error: {message}", markup=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        dry = bool(ctx.params.get("dry_run"))  # (a dry run writes nothing)
        said = _WHOLE_INTERRUPTED if ctx.params.get("atomic") else _INTERRUPTED.get(ctx.info_name or "", "")
        finished = ctx.obj.opened.finished_run if ctx.obj.opened is not None else None
        if finished is not None:  # pressed once the run had ended (the store closing): nothing was stopped
            err.print(f"store: interrupted after run {finished} finished: all of its work is kept")
        else:
            err.print(f"store: interrupted{'' if dry else said}")
        raise typer.Exit(130) from None
    except (typer.Exit, typer.Abort, typer.BadParameter, BrokenPipeError):
        raise  # a closed pipe (| head): click ends the command quietly
    except OSError as exc:  # the system's refusal (the output on a full disk): not a bug of ours
        if ctx.obj.debug:
            traceback.print_exc()
        where = f"{exc.filename}" if exc.filename else "cannot write the output"
        err.print(f"store: error: {where}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(3) from None
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if ctx.obj.debug:
            traceback.print_exc()
        err.print(f"store: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", markup=False)
        raise typer.Exit(70) from None


class _Bar:
    """A rich progress bar (on a terminal). It is drawn at the first step forward: its
    refresh thread would rule out forking the worker processes a command starts after
    ``start``."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None
        self._waiting: tuple[int | None, str] | None = None

    def start(self, total: int | None, label: str) -> None:
        self._waiting = (total, label)

    def _show(self, total: int | None, label: str) -> None:
        if self.progress is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=err,
                transient=True,
            )
            self.progress.start()
        self.task = self.progress.add_task(label, total=total)

    def advance(self, n: int) -> None:
        if self._waiting is not None:
            self._show(*self._waiting)
            self._waiting = None
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, n)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@contextlib.contextmanager
def _bar(ctx: typer.Context, json_out: bool = False) -> Iterator[_Bar | None]:
    """A progress bar on a terminal, else ``None``: without a bar, an import does not
    list its files before it starts (memory would grow with their number)."""
    if not err.is_terminal or ctx.obj.quiet or json_out:
        yield None
        return
    bar = _Bar()
    try:
        yield bar
    finally:
        bar.stop()


class _Table:
    """Rows of plain text under column headings, printed as rich prints a table: heavy
    head, bold headings on a terminal, and on a terminal too narrow for it the widest
    columns narrowed and their cells folded onto more lines (words kept whole where
    they fit). Rich measures and lays out every cell as rich text, 0.4-1 ms a row: the
    history of a store with 5,000 runs took 2-6 s to print. A table that fits is the
    same characters as rich's; one that does not is folded much as rich folds it."""

    def __init__(self, *columns: str):
        self.columns = columns
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def print(self) -> None:
        from rich.cells import cell_len
        from rich.text import Text

        if any(_CONTROL.search(cell) for row in (self.columns, *self.rows) for cell in row):
            return self._print_rich()
        widths = [max(cell_len(row[i]) for row in (self.columns, *self.rows)) for i in range(len(self.columns))]
        room = out.width - 3 * len(widths) - 1
        while sum(widths) > room and max(widths) > 1:  # the widest narrowed first, as rich does
            widths[widths.index(max(widths))] -= 1

        def rule(left: str, fill: str, mid: str, right: str) -> str:
            return left + mid.join(fill * (w + 2) for w in widths) + right

        def lines(cells: tuple[str, ...]) -> list[list[str]]:
            """Each line of a row: its cells' pieces, padded to their columns."""
            folded = [_fold(c, w) for c, w in zip(cells, widths)]
            return [
                [f" {piece}{' ' * (w - cell_len(piece))} " for piece, w in zip((f[i] if i < len(f) else "" for f in folded), widths)]
                for i in range(max(map(len, folded)))
            ]

        heading = Text()
        for parts in lines(self.columns):  # (bold on a terminal, as rich's headings are)
            heading.append("┃")
            for part in parts:
                heading.append(part, style="bold")
                heading.append("┃")
            heading.append("\n")
        heading.rstrip()
        out.print(rule("┏", "━", "┳", "┓"))
        out.print(heading)
        body = ["│" + "│".join(parts) + "│" for r in self.rows for parts in lines(r)]
        out.print("\n".join([rule("┡", "━", "╇", "┩"), *body, rule("└", "─", "┴", "┘")]))

    def _print_rich(self) -> None:
        from rich.table import Column, Table

        table = Table(*(Column(name, overflow="fold") for name in self.columns))
        for r in self.rows:
            table.add_row(*r)
        out.print(table)


def _fold(text: str, width: int) -> list[str]:
    """``text`` on lines of at most ``width`` cells: broken at spaces, and a word
    longer than a line cut into pieces (folded, not cut short: "automation" and
    "automation_run" cut to "au…" could not be told apart)."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return [text]
    out_lines: list[str] = []
    line = ""
    for word in text.split(" "):
        joined = f"{line} {word}" if line else word
        if cell_len(joined) <= width:
            line = joined
            continue
        if line:
            out_lines.append(line)
        line = ""
        for ch in word:  # a word too long for a line of its own: folded
            if cell_len(line + ch) > width and line:
                out_lines.append(line)
                line = ""
            line += ch
    out_lines.append(line)
    return out_lines


#: Control characters, which rich lays out otherwise than as written (a line break
#: starts a line in its cell): a table holding one is left to rich.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _emit_json(value: Any) -> None:
    # jsoncodec writes what a record may hold: integers of any size, lone surrogates
    # (as escapes, the only form UTF-8 output can carry).
    sys.stdout.write(_held(jsoncodec.encode(value, 2)) + "\n")


#: A record whose stored JSON is longer than this is written by ``store query`` as bytes.
HUGE_RECORD = 1 << 20


def _stdout_codec() -> str:
    """The codec stdout writes with, as Python names it ("" for one it does not know)."""
    import codecs

    try:
        return codecs.lookup(sys.stdout.encoding or "utf-8").name
    except LookupError:
        return ""


def _utf8_stdout() -> BinaryIO | None:
    """stdout's bytes, when it writes UTF-8 (``None`` otherwise, or when it has none)."""
    raw = getattr(sys.stdout, "buffer", None)
    return raw if _stdout_codec() == "utf-8" else None


def _unicode_stdout() -> bool:
    return _stdout_codec().startswith(("utf-8", "utf-16", "utf-32"))


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # as a JSON escape: a surrogate pair
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _held(json_text: str) -> str:
    """JSON text as stdout can carry it: on an output whose encoding is not Unicode (a
    Windows file or console, PYTHONIOENCODING=ascii), its non-ASCII characters (all in
    its strings) as \\u escapes, the same JSON; they made the command fail with an
    internal error."""
    return json_text if _unicode_stdout() else _NON_ASCII.sub(_escaped, json_text)


#: Of an export's problems with one same reason (every file of a home exported over
#: it: "exists in the export directory and differs"), how many are printed before one line counts
#: the rest (``--json`` lists the first 200, and counts each reason).
ALIKE_SHOWN = 10


def _err_lines(lines: Iterable[str]) -> None:
    """``lines`` to stderr as they are, in one write: rich's print costs ~60 µs a line
    (40,000 failures of a migration took 2-3 s to print, against 0.02 s)."""
    text = "".join(f"{line}\n" for line in lines)
    if text:
        err.file.write(text)
        err.file.flush()


def _problems(problems: list[Any], *, alike: int | None = None, reasons: dict[str, int] | None = None) -> None:
    """Each problem on a line of its own; ``alike``: of those with one same reason, that
    many, then one line saying how many more there were (``reasons``: how many had
    each, when ``problems`` holds only the first ones)."""
    shown: dict[str, int] = {}
    lines = []
    for problem in problems:
        reason = getattr(problem, "reason", None)
        if alike is not None and reason is not None:
            if shown.get(reason, 0) == alike:
                continue
            shown[reason] = shown.get(reason, 0) + 1
        lines.append(f"store: {problem}")
    if alike is not None:
        counted = reasons if reasons is not None else Counter(getattr(p, "reason", None) for p in problems)
        more = [(r, n - shown.get(r, 0)) for r, n in counted.items() if r is not None and n > shown.get(r, 0)]
        lines += [f"store: ... and {n} more file(s): {r}" for r, n in more]
    _err_lines(lines)


def _not_shown(n: int, what: str, run_id: int | None) -> None:
    """The line after the first problems of a run, when ``n`` more were counted but not
    kept (a result holds the first ones only: a million bad records held gigabytes of
    them); the run's are all in the store (a dry run's: nowhere)."""
    if n:
        where = (
            f"store history {run_id} lists every one" if run_id is not None
            else "a dry run records none: the real run's are all listed by store history RUN"
        )
        _err_lines([f"store: ... and {n} more {what}; {where}"])


# --------------------------------------------------------------------------- commands


@app.command("import")
def import_(
    ctx: typer.Context,
    paths: Annotated[list[str], typer.Argument(metavar="PATH...", help="Files and directories to import.", show_default=False)],
    domain: Annotated[
        Optional[str],
        typer.Option(
            "--domain",
            metavar="DOMAIN",
            help="Put the given files in this domain, whatever their paths (of a directory given, the .json, "
            ".jsonl and .ndjson files below it, except those whose name, or a directory's on the way, starts with '.').",
        ),
    ] = None,
    wait: _Wait = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    jobs: Annotated[
        Optional[int],
        typer.Option(
            "--jobs",
            metavar="N",
            parser=_whole(0, MAX_JOBS),
            help="Worker processes that read and parse files, and write them into a store that has "
            "none yet (default, from 512 files: one per CPU into such a store, else one per CPU "
            "but one, at most 8, none on one CPU; 0: none).",
        ),
    ] = None,
) -> None:
    """Import records from JSON files (objects, arrays, JSON lines) into the store.

    Unchanged files are skipped; changed records are updated and their previous rows kept
    as backups. Files in no domain are skipped and counted. Bad files and records are
    reported one per line; everything else goes in. Exit code 1 if anything was refused.
    """
    if any(not path.strip() for path in paths):
        raise typer.BadParameter("a PATH is empty (an unset variable?); give a file or directory, '.' for this one", param_hint="PATH")
    from .parsing import check_given

    with _errors(ctx):
        check_given(paths)  # before the store is opened: none of them there, no store is made for them
    with _errors(ctx), ctx.obj.open(wait, create=True) as store, _bar(ctx, json_out) as bar:
        result = store.import_paths(paths, domain=domain, progress=bar, jobs=jobs)
    _problems(result.problems)
    _not_shown(result.problems_not_kept, "problem(s)", result.run_id)
    if json_out:
        _emit_json(result.as_dict())
    else:
        table = _Table("domain", "imported", "unchanged", "updated", "removed", "rejected", "failed")
        order = {name: n for n, name in enumerate(store.registry.domains)}  # as status lists them
        for name, c in sorted(result.domains.items(), key=lambda item: (order.get(item[0], len(order)), item[0])):
            table.add_row(name, *(str(v) for v in c.as_dict().values()))
        if result.domains:  # (a table of headings alone says nothing)
            table.print()
        # Files the application removed or renamed meanwhile: said only when there were some.
        gone = f", {result.vanished} gone before they were read (removed or renamed meanwhile)" if result.vanished else ""
        out.print(f"{result.files} file(s) read, {result.skipped} skipped (no domain){gone}; run {result.run_id}")
        if result.skipped and not result.files and not result.vanished and domain is not None:
            out.print(
                "no JSON file (.json, .jsonl, .ndjson) was below the directories given (those named with a "
                f"leading '.' are skipped); name a file itself to put it in {domain!r} whatever its name"
            )
        elif result.skipped and not result.files and not result.vanished:  # (files gone were in one)
            out.print(
                "no file was in a domain: domains match paths from the directory given, so give the "
                "application's home directory itself, or put files in a domain with --domain"
            )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def status(
    ctx: typer.Context,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Per domain: the current version and how many records are stored at each version.

    Also how many refused records the store keeps as their files held them (export
    writes them back).
    """
    with _errors(ctx), ctx.obj.open() as store:
        st = store.status()
    if json_out:
        _emit_json(st.as_dict())
        return
    table = _Table("domain", "current", "records", "by version", "pending", "newer", "refused")
    for name, d in st.domains.items():
        by_version = ", ".join(f"v{v}: {n}" for v, n in sorted(d.versions.items())) or "-"
        current = "?" if d.current_version is None else str(d.current_version)
        table.add_row(name, current, str(d.total), by_version, str(d.pending), str(d.newer), str(d.refused))
    table.print()
    if any(d.refused for d in st.domains.values()):
        out.print("refused: records an import refused, kept as their files held them; export writes them back")


@app.command()
def export(
    ctx: typer.Context,
    out_dir: Annotated[str, typer.Argument(metavar="OUT", help="Directory to write the files into.")],
    domain: Annotated[Optional[list[str]], typer.Option("--domain", metavar="DOMAIN", help="Only these domains (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist in OUT.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Write every record back to OUT/<its source path>, in the layout it came from.

    A record the import refused (newer than the registry, not valid JSON) is
    written back as its file held it, in its place. Each file is written
    atomically; nothing is ever written outside OUT; existing files are
    refused unless --force, and one holding what the store imported and more
    (lines the application appended since the import) is never replaced.
    """
    if not out_dir.strip():
        raise typer.BadParameter("OUT is empty (an unset variable?); give a directory, '.' for this one", param_hint="OUT")
    with _errors(ctx), ctx.obj.open() as store, _bar(ctx, json_out) as bar:
        result = store.export_to(out_dir, domains=domain, overwrite=force, progress=bar)
    _problems(result.problems, alike=ALIKE_SHOWN, reasons=result.reasons)
    if json_out:
        _emit_json(result.as_dict())
    else:
        kept = f" (and {result.refused} refused record(s), as their files held them)" if result.refused else ""
        # Files already holding what the store has are kept as they were: said, so that an
        # export over the home tells how many it really replaced.
        written = result.files - result.unchanged
        alike = f": {written} replaced or new, {result.unchanged} already as the store has them" if result.unchanged else ""
        out.print(f"wrote {result.records} record(s) in {result.files} file(s) to {out_dir}{kept}{alike}")
    if not result.ok:
        raise typer.Exit(1)


def _parse_value(text: str, op: str = "=") -> Any:
    """A --where value: its JSON value if it is JSON, else the text itself; a JSON
    number no double holds (``1e400``) is refused rather than compared as text, and so
    is a list for ``in`` that is not JSON (``[1, 1e400]``, ``[1,]``), which as text was
    said to be no list."""
    try:
        return jsoncodec.decode(text)
    except jsoncodec.JSONError as exc:
        listed = op.lower().strip() in ("in", "not in") and text.lstrip().startswith("[")
        if listed or jsoncodec.NUMBER.fullmatch(text.strip()):
            raise typer.BadParameter(f"{text}: {exc.reason}", param_hint="--where") from None
        return text


#: Operators that take no value (or true/false): ``--where PATH exists``.
NO_VALUE = ("exists", "missing")
#: The operators a one-word filter may hold (``--where status=completed``), longest first.
_SYMBOLS = ("!=", "==", "<=", ">=", "=", "<", ">")
#: Every operator, as query.OPERATORS (not imported from there: it loads SQLAlchemy).
_OPERATORS = (*_SYMBOLS, "in", "not in", *NO_VALUE)


def _one_word_filter(word: str) -> tuple[str, str, str] | None:
    """``PATH OP VALUE`` written as one word (``status=completed``, ``'seq >= 40'``):
    split at its first operator outside a quoted key; ``None`` when it holds none (or
    nothing on one side of it)."""
    quoted = escaped = False
    for at, char in enumerate(word):
        if quoted:
            quoted, escaped = (char != '"' or escaped), (char == "\\" and not escaped)
        elif char == '"':
            quoted = True
        elif char in "=!<>":
            op = next((o for o in _SYMBOLS if word.startswith(o, at)), None)
            path, value = word[:at].strip(), word[at + len(op or "") :].strip()
            return (path, op, value) if op and path and value else None
    return None


def _where_filters(ctx: typer.Context) -> list[tuple[str, str, Any]]:
    """``--where PATH OP VALUE`` filters from the command's extra arguments (Typer has
    no repeatable option of three values); ``exists`` and ``missing`` take no value,
    or true/false."""
    args = ctx.args
    found: list[tuple[str, str, Any]] = []
    i = 0
    while i < len(args):
        if args[i] != "--where":
            option = args[i].split("=", 1)[0]
            said = _misplaced_global(option, ctx) if option.startswith("-") else None
            if said is not None:
                raise _NoSuchOption(option, said, ctx=ctx)
            raise typer.BadParameter(f"unexpected argument {args[i]!r}", param_hint="query")
        one_word = _one_word_filter(args[i + 1]) if i + 1 < len(args) else None
        if one_word is not None and (i + 2 >= len(args) or args[i + 2].lower().strip() not in _OPERATORS):
            # (Followed by an operator, it is the path of three words: refused as one.)
            found.append((one_word[0], one_word[1], _parse_value(one_word[2])))
            i += 2
            continue
        if len(args) - i < 3:
            raise typer.BadParameter(
                "--where takes PATH OP VALUE, as three words or as one (status=completed, 'seq>=40'), "
                "or PATH exists, PATH missing",
                param_hint="--where",
            )
        path, op = args[i + 1], args[i + 2]
        i += 3
        if op.lower().strip() in NO_VALUE:
            value = None
            if i < len(args) and args[i] in ("true", "false"):
                value, i = args[i] == "true", i + 1
            found.append((path, op, value))
            continue
        if i >= len(args):
            raise typer.BadParameter(f"--where {path} {op} needs a VALUE", param_hint="--where")
        found.append((path, op, _parse_value(args[i], op)))
        i += 1
    return found


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def query(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(metavar="DOMAIN", help="The domain to query.")],
    version: Annotated[
        Optional[int], typer.Option("--version", metavar="N", parser=_whole(1), help="Only records at this version.")
    ] = None,
    order_by: Annotated[Optional[str], typer.Option("--order-by", metavar="KEY_OR_PATH", help="'key' or a JSON path.")] = None,
    desc: Annotated[bool, typer.Option("--desc", help="Descending order (by key, without --order-by).")] = False,
    limit: Annotated[Optional[int], typer.Option("--limit", metavar="N", parser=_whole(0), help="At most N records.")] = None,
    offset: Annotated[int, typer.Option("--offset", metavar="N", parser=_whole(0), help="Skip N records.")] = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print each record as one JSON line.")] = False,
) -> None:
    """Print the records of DOMAIN that match every filter, one per line.

    Filter with --where PATH OP VALUE (repeatable): a JSON path such as metadata.model
    or messages[0].role; an operator: = != < <= > >= in "not in", or exists and missing,
    which take no value; a value read as JSON when it parses (5, true, null, ["a","b"])
    and as text otherwise. With = != < <= > >= it may be one word: --where
    status=completed, --where 'seq>=40'.
    """
    if domain == "--where":
        # Given before DOMAIN, --where (no option click knows) took DOMAIN's place:
        # `store query --where k exists task` said "unexpected argument 'k'". (A domain
        # named "--where", given after --, is not worth that confusion.)
        raise typer.BadParameter("DOMAIN comes first: store query DOMAIN --where PATH OP VALUE ...", param_hint="DOMAIN")
    where = _where_filters(ctx)
    with _errors(ctx), ctx.obj.open() as store:
        q = store.query(domain)
        for path, op, value in where:
            q = q.where(path, op, value)
        if version is not None:
            q = q.version(version)
        if order_by is not None or desc:  # --desc alone: by key, descending
            q = q.order_by("key" if order_by is None else order_by, descending=desc)
        q = q.limit(limit).offset(offset)
        held = _held if not _unicode_stdout() else str  # (asked once, not for every record)
        raw_out = _utf8_stdout()
        unreadable = 0
        for record in q:
            try:
                data = record.data
            except StoreError as exc:  # a payload an older recordstore stored: said, and the listing goes on
                err.print(f"store: {exc}", markup=False)
                unreadable += 1
                continue
            if raw_out is not None and len(record.payload) > HUGE_RECORD:
                # A huge record (a session): its encoding written as the bytes it is, not
                # also made a str, joined to its key and encoded again by stdout.
                line = {"key": record.key, "version": record.version, "record": data} if json_out else data
                out = jsoncodec.encode_utf8(line, None)
                sys.stdout.flush()
                if not json_out:
                    raw_out.write(f"{printable(record.key)}\tv{record.version}\t".encode())
                raw_out.write(out)
                raw_out.write(b"\n")
                del line, out
            elif json_out:
                line = {"key": record.key, "version": record.version, "record": data}
                sys.stdout.write(held(jsoncodec.encode_compact(line)) + "\n")
            else:
                # The key escaped, as everywhere else: a line break or tab in a file's name
                # must not break the line of its record, nor add a column.
                key = held(printable(record.key))
                sys.stdout.write(f"{key}\tv{record.version}\t{held(jsoncodec.encode_compact(data))}\n")
    if unreadable:
        raise typer.Exit(1)


@app.command()
def migrate(
    ctx: typer.Context,
    domain: Annotated[Optional[list[str]], typer.Option("--domain", metavar="DOMAIN", help="Only these domains (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Run every step, write nothing, report.")] = False,
    diff: Annotated[
        int, typer.Option("--diff", metavar="N", parser=_whole(0), help="With --dry-run: show N records before/after.")
    ] = 0,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first failing record.")] = False,
    atomic: Annotated[bool, typer.Option("--atomic", help="One transaction: all records or none.")] = False,
    wait: _Wait = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    jobs: Annotated[
        Optional[int],
        typer.Option(
            "--jobs",
            metavar="N",
            parser=_whole(0, MAX_JOBS),
            help="Worker processes that run the steps (default: one per CPU but one, up to 4, once "
            "20,000 records are pending; 0: none).",
        ),
    ] = None,
) -> None:
    """Bring every record below its domain's current version up to it, step by step.

    Each batch commits its records together with backups of the originals. A failing
    record stays exactly as it was and is reported (the first 200, then how many more:
    store history RUN lists them all); the exit code is then 1.
    """
    if diff and not dry_run:
        raise typer.BadParameter("--diff shows what a --dry-run would change; add --dry-run", param_hint="--diff")
    # (The bar inside: a terminal's bar hands stdout back, when it stops, as it found it.)
    with _errors(ctx), ctx.obj.open(wait) as store, _user_code_prints_to_stderr(), _bar(ctx, json_out) as bar:
        result = store.migrate(
            domain, dry_run=dry_run, fail_fast=fail_fast, atomic=atomic, diff=diff, progress=bar, jobs=jobs
        )
    if json_out:
        _emit_json(result.as_dict())
    else:
        _render_migration(result)
    if not result.ok:
        raise typer.Exit(1)


def _render_migration(result: Any) -> None:
    import difflib

    for d in result.diffs:
        out.print(f"--- {d.domain} {printable(d.key)} v{d.from_version}", markup=False)
        out.print(f"+++ {d.domain} {printable(d.key)} v{d.to_version}", markup=False)
        # Split at line feeds only: a string may hold U+2028, U+2029 or U+0085 as they
        # are (JSON needs no escape for them), which splitlines() would break a line at.
        lines = difflib.unified_diff(d.before.split("\n"), d.after.split("\n"), lineterm="", n=2)
        for line in list(lines)[2:]:
            out.print(line, markup=False)
    _err_lines(f"store: failed: {f}" for f in result.failures)  # (its key names its file: not named again)
    _not_shown(result.failures_not_kept, "failed", result.run_id)
    verb = "would migrate" if result.dry_run else "migrated"
    if result.counts:
        table = _Table("domain", "from -> to", "records")
        for name, steps in sorted(result.counts.items()):
            for span, n in sorted(steps.items()):
                table.add_row(name, span.replace("->", " -> "), str(n))
        table.print()
    for name, n in sorted(result.newer.items()):
        out.print(f"{name}: {n} record(s) newer than the current version, left untouched")
    tail = ""
    if result.rolled_back and result.dry_run:
        tail = " (would be rolled back: --atomic and a record failed; nothing would change)"
    elif result.rolled_back:
        tail = " (rolled back: --atomic and a record failed; nothing was changed)"
    elif result.stopped_early:
        tail = " (stopped at the first failure: --fail-fast)"
    run = f"; run {result.run_id}" if result.run_id else ""
    out.print(f"{verb} {result.migrated} record(s), {result.failure_count} failed{tail}{run}")


@app.command()
def history(
    ctx: typer.Context,
    run: Annotated[Optional[int], typer.Argument(metavar="RUN", parser=_whole(0), help="Show this run with its failures.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON list of runs.")] = False,
) -> None:
    """List the runs (import, migrate, restore, prune, index), or show one with its failures."""
    if run is not None and not json_out:
        _show_run(ctx, run)
        return
    if json_out:
        _emit_runs_json(ctx, run)
        return
    with _errors(ctx), ctx.obj.open(registry=False) as store:
        runs = store.history(run, failure_limit=0)
    table = _Table("run", "kind", "started", "finished", "outcome", "counts", "failures")
    for r in runs:
        table.add_row(
            str(r.id), r.kind, r.started_at, r.finished_at or "-", r.outcome, _short_counts(r), str(r.failure_count)
        )
    table.print()


def _emit_runs_json(ctx: typer.Context, run: int | None) -> None:
    """``history --json``: the JSON list _emit_json would print, written a run at a time
    and each run's failures a page at a time: with 100,000 failures it held them all,
    as objects and as one text (~200 MB)."""
    with _errors(ctx), ctx.obj.open(registry=False) as store:
        runs = store.history(run, failure_limit=0)
        if not runs:
            sys.stdout.write("[]\n")
            return
        mark = f"failures-{os.urandom(16).hex()}"  # stands for the list, spliced in as it is read
        for i, r in enumerate(runs):
            head, tail = _indented(jsoncodec.encode({**r.as_dict(), "failures": mark}, 2), 2).split(f'"{mark}"')
            sys.stdout.write(("[\n" if i == 0 else ",\n") + _held(head))
            page: list[dict[str, Any]] = []
            written = False
            for f in store.failures(r.id) if r.failure_count else ():
                page.append(f)
                if len(page) == 1000:
                    # A page encoded as a list, without its brackets: its items, in place.
                    items = _indented(jsoncodec.encode(page, 2)[2:-2], 4)
                    sys.stdout.write(("[\n" if not written else ",\n") + _held(items))
                    page, written = [], True
            if page:
                items = _indented(jsoncodec.encode(page, 2)[2:-2], 4)
                sys.stdout.write(("[\n" if not written else ",\n") + _held(items))
                written = True
            sys.stdout.write(("\n    ]" if written else "[]") + _held(tail))
        sys.stdout.write("\n]\n")


def _indented(text: str, by: int) -> str:
    """JSON text moved right by ``by`` spaces (none of its strings holds a newline)."""
    return "\n".join(" " * by + line for line in text.split("\n"))


def _show_run(ctx: typer.Context, run: int) -> None:
    """One run with its failures, read and printed a page at a time: a run with 100,000
    failures took seconds and ~100 MB held at once, printing a line at a time."""
    with _errors(ctx), ctx.obj.open(registry=False) as store:
        r = store.history(run, failure_limit=0)[0]
        out.print(f"run {r.id}: {r.kind}, {r.outcome}, {r.started_at} -> {r.finished_at or '-'}", markup=False)
        out.print(f"counts: {json.dumps(r.counts, ensure_ascii=False)}", markup=False)
        if r.message:
            out.print(f"message: {r.message}", markup=False)
        lines: list[str] = []
        for f in store.failures(run):
            parts = [f.get("domain") or "", printable(f.get("key") or f.get("source") or "")]
            if f.get("from_version") is not None and r.kind == "migrate":
                parts.append(f"v{f['from_version']} -> v{f['to_version']}")
            if f.get("step"):
                parts.append(f["step"])
            line = f":{f['line']}" if f.get("line") else ""
            lines.append(" ".join(p for p in parts if p) + line + ": " + printable(f["reason"]))
            if len(lines) == 1000:
                out.print("\n".join(lines), markup=False)
                lines.clear()
        if lines:
            out.print("\n".join(lines), markup=False)


def _short_counts(r: Any) -> str:
    c = r.counts
    if r.kind == "migrate":
        return ", ".join(
            f"{d} {span}: {n}" for d, steps in sorted((c.get("migrated") or {}).items()) for span, n in steps.items()
        ) or "-"
    if r.kind == "import" and "stored" in c:  # stopped before finishing
        return f"stored {sum(c['stored'].values())} before it stopped"
    if r.kind == "import" and "domains" not in c:  # killed: it could not say what it did
        return "-"
    if r.kind == "import":
        total = {k: 0 for k in ("imported", "updated", "unchanged", "removed")}
        for per in (c.get("domains") or {}).values():
            for k in total:
                total[k] += per.get(k, 0)
        return ", ".join(f"{k} {v}" for k, v in total.items())
    if r.kind == "restore":
        restored = ", ".join(f"{d}: {n}" for d, n in sorted((c.get("restored") or {}).items()))
        removed = sum((c.get("removed") or {}).values()) + sum((c.get("displaced") or {}).values())
        # A restore of an import only removes what it added: "removed 37", not "-; removed 37".
        said = "; ".join(part for part in (restored, f"removed {removed}" if removed else "") if part) or "-"
        # Which run it undid (restore --run), so the list alone tells an undo from an undo of it.
        undid = c.get("from_run")
        return f"run {undid}: {said}" if undid is not None else said
    if r.kind == "prune":
        return f"pruned {c.get('pruned', 0)} before run {c.get('before', '?')}"
    if r.kind == "index":
        o = r.options
        return f"{o.get('action', '?')} {o.get('domain', '?')} {o.get('path', '?')}"
    return json.dumps(c)


@app.command()
def restore(
    ctx: typer.Context,
    run: Annotated[
        Optional[int], typer.Option("--run", metavar="RUN", parser=_whole(0), help="Put back every row this run changed.")
    ] = None,
    domain: Annotated[Optional[str], typer.Option("--domain", metavar="DOMAIN", help="Restore the latest backups of this domain.")] = None,
    key: Annotated[Optional[str], typer.Option("--key", metavar="KEY", help="With --domain: only this record.")] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Restore even records a later run changed again, or whose place in their file now holds something else.",
        ),
    ] = False,
    wait: _Wait = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Put back original rows from the backups. The restore is itself a run, and can be undone.

    Either every row one run changed (--run), or the latest backups of a domain's
    records (--domain, and --key for one record).
    """
    if run is None and domain is None:
        ctx.fail("restore of a key needs its domain too (--domain)" if key is not None else "restore needs a run (--run) or a domain (--domain)")
    if run is not None and (domain is not None or key is not None):
        ctx.fail(
            f"restore --run {run} puts back every row run {run} changed, in any domain; --domain and --key choose "
            "the latest backups instead: give one or the other"
        )
    with _errors(ctx), ctx.obj.open(wait) as store:
        result = store.restore(run=run, domain=domain, key=key, force=force)
    if json_out:
        _emit_json(result.as_dict())
    else:
        detail = ", ".join(f"{d}: {n}" for d, n in sorted(result.restored.items()))
        removed = sum(result.removed.values())
        again = f"; removed {removed} record(s) that run {run} had added" if removed else ""
        displaced = sum(result.displaced.values())
        if displaced:
            again += f"; removed {displaced} record(s) from the places they went back to (backed up)"
        out.print(f"restored {result.total} record(s){' (' + detail + ')' if detail else ''}{again}; run {result.run_id}")


@app.command()
def unlock(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also release a writer on another host, which cannot be told gone from here: only when it "
            "no longer runs (its machine or container is gone).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print what was released as JSON.")] = False,
) -> None:
    """Release the store from a writer that is gone; its run is marked interrupted.

    A writer killed on this host is taken over by the next one anyway. One that ran on
    another host (a shared volume) stays busy until released here with --force. A writer
    still running is never released (exit code 4).
    """
    with _errors(ctx), ctx.obj.open(registry=False) as store:
        held = store.unlock(force=force)
    if json_out:
        _emit_json({"released": held})
    elif held is None:
        out.print("the store is not locked: no writer holds it")
    else:
        out.print(
            f"released the store from {held['operation']} (run {held['run']}), process {held['pid']} on "
            f"{printable(held['host'])} since {held['since']}; run {held['run']} is marked interrupted",
            markup=False,
        )


@app.command("prune-backups")
def prune_backups(
    ctx: typer.Context,
    before: Annotated[
        int, typer.Option("--before", metavar="RUN", parser=_whole(0), help="Delete backups written by runs before this run.")
    ],
    wait: _Wait = False,
) -> None:
    """Delete old backups (only when asked; says how many)."""
    with _errors(ctx), ctx.obj.open(wait) as store:
        n = store.prune_backups(before)
    out.print(f"deleted {n} backup(s) written before run {before}")


@app.command()
def check(ctx: typer.Context) -> None:
    """Check the registry and the store, and report every problem.

    Steps whose code changed after they migrated records, broken step chains, records
    newer than the registry, payloads that are not JSON or disagree with their version
    column, JSON-path indexes gone, a writer that left the store held, a place in a
    file holding both a record and a refused text, and SQLite integrity problems.
    """
    with _errors(ctx), ctx.obj.open() as store:
        result = store.check()
    for problem in result.problems:
        out.print(f"problem: {problem}", markup=False)
    if not result.ok:
        raise typer.Exit(1)
    out.print("ok: registry chains valid, steps unchanged since use, store intact")


@index_app.command("add")
def index_add(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain.")],
    path: Annotated[str, typer.Argument(metavar="PATH", help="JSON path, e.g. metadata.model.")],
    wait: _Wait = False,
) -> None:
    """Index a JSON path, so filters on it stop scanning every record."""
    with _errors(ctx), ctx.obj.open(wait) as store:
        store.add_index(domain, path)
    out.print(f"indexed {domain} {path}")


@index_app.command("list")
def index_list(ctx: typer.Context) -> None:
    """List the JSON-path indexes."""
    from .query import typed_path  # SQLAlchemy's, loaded once a store is open

    with _errors(ctx), ctx.obj.open() as store:
        # Each path as it was given (and as --where and `index drop` take it), not as
        # SQLite spells it: `index add task status` is listed as status, not $.status.
        # Written as `store query` writes its lines: rich turned the tab into spaces,
        # which `cut -f2` could not split.
        for domain, path in store.indexes():
            sys.stdout.write(f"{printable(domain)}\t{typed_path(path)}\n")


@index_app.command("drop")
def index_drop(
    ctx: typer.Context,
    domain: Annotated[str, typer.Argument(metavar="DOMAIN", help="Domain.")],
    path: Annotated[str, typer.Argument(metavar="PATH", help="JSON path.")],
    wait: _Wait = False,
) -> None:
    """Drop a JSON-path index."""
    with _errors(ctx), ctx.obj.open(wait) as store:
        store.drop_index(domain, path)
    out.print(f"dropped index {domain} {path}")


def main() -> None:
    # What the imports built (Typer, rich; SQLAlchemy once a command opens a store) lives
    # until exit: frozen, it is skipped by every collection, the one at exit included
    # (~40 ms of teardown with SQLAlchemy loaded), and workers forked leave it shared.
    gc.freeze()
    if not _unicode_stdout() and isinstance(sys.stdout, io.TextIOWrapper):
        # What no JSON document carries (a table, a key in a message) is escaped rather
        # than failing (--json output is escaped as JSON, see _held).
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        app(prog_name="store")
    except KeyboardInterrupt:  # before a command's own handling began (Typer reading its options)
        err.print("store: interrupted")
        raise SystemExit(130) from None
    finally:
        gc.freeze()
        # The command is over, its output out. A Ctrl-C from here on is ignored: once
        # Python's teardown gives SIGINT back its default, one would kill the process,
        # which then exits by the signal (-2, no message) after a complete run.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
