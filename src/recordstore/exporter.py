"""Writing records back to files, in the layout they came from, atomically and only
inside the target directory."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import itertools
import json
import operator
import os
import re
import secrets
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import Connection, func, or_, select

from .engine import sqlite_file
from .errors import PROBLEMS_KEPT, ExportDirectoryError, ExportError
from .parsing import BLANK_LINES, OWN_INDENTS, OddGaps, broken_link, display_path, element_prefix, indent_lines, own_prefix
from .tables import files, records, refused

__all__ = ["ExportResult", "export_records", "safe_target"]


@dataclass
class ExportResult:
    """The outcome of :meth:`Store.export_to`."""

    out: Path
    #: Files the export stands behind: written (new, or replacing one that differed)
    #: or already holding exactly what it would write (``unchanged``).
    files: int = 0
    #: Of ``files``, those already holding what the export writes, kept as they were
    #: (an export over the home it came from replaces only the files that differ).
    unchanged: int = 0
    records: int = 0
    refused: int = 0  # refused records written back as their files held them
    domains: dict[str, int] = field(default_factory=dict)
    #: The first PROBLEMS_KEPT files not written, in order (an export over the home
    #: without --force refuses each file that differs: 38,347 of them took 31 MB more).
    problems: list[ExportError] = field(default_factory=list)
    #: How many files were not written: ``problems`` and those past them.
    problem_count: int = 0
    #: How many files were not written for each reason.
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether every file was written (``store export`` exits 1 otherwise)."""
        return not (self.problem_count or self.problems)

    def add_problem(self, problem: ExportError) -> None:
        """Count ``problem``, keeping it while fewer than PROBLEMS_KEPT are kept."""
        self.problem_count += 1
        self.reasons[problem.reason] = self.reasons.get(problem.reason, 0) + 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(problem)

    def as_dict(self) -> dict[str, Any]:
        """As ``store export --json`` prints it: the first PROBLEMS_KEPT problems as a line
        each, how many there were in all, and how many of each reason."""
        return {
            "out": str(self.out),
            "files": self.files,
            "unchanged": self.unchanged,
            "records": self.records,
            "refused": self.refused,
            "domains": dict(sorted(self.domains.items())),
            "problems": [str(p) for p in self.problems],
            "problem_count": self.problem_count,
            "reasons": self.reasons,
        }


def safe_target(out_real: Path, relpath: str) -> Path:
    """The path for ``relpath`` inside ``out_real``, or :class:`ExportError` if it could
    land anywhere else (absolute paths, ``..``, NUL, empty parts; on Windows, where they
    are separators, backslashes and drive letters too)."""
    return out_real.joinpath(*_safe_parts(relpath))


#: Whether backslashes and drive letters in a stored path would lead somewhere else here
#: (on POSIX they are ordinary characters of a name, as the imported file had them).
WINDOWS_PATHS = os.name == "nt"


def _safe_parts(relpath: str) -> list[str]:
    if not relpath or "\x00" in relpath:
        raise ExportError(repr(relpath), "unsafe source path (empty or contains NUL)")
    if WINDOWS_PATHS and ("\\" in relpath or (len(relpath) >= 2 and relpath[1] == ":")):
        raise ExportError(relpath, "unsafe source path (backslash or drive letter)")
    parts = relpath.split("/")
    if any(part in ("..", ".", "") for part in parts):  # "" also catches a leading "/"
        raise ExportError(relpath, "unsafe source path (absolute or contains '..')")
    return parts


#: Files written (not yet visible) before they are synced together and renamed into place.
STAGE_FILES = 2000
STAGE_BYTES = 64 * 1024 * 1024


#: A file's text is encoded and written in pieces of about this many characters.
WRITE_CHARS = 1 << 20

#: Why a file already in the export directory was not written: the CLI's flag and the
#: library's parameter, for whoever reads it.
EXISTS = "exists in the export directory and differs (use --force, or overwrite=True, to overwrite)"
#: Why a file is not replaced: written to while the export compared it and wrote its own.
CHANGED = "it changed while being exported (the application writing it?), so it was not replaced; import again, then export"
#: Why a file is not replaced, even with --force (see _appended).
APPENDED = (
    "not replaced: it holds what the store imported from it and more, written since (by the "
    "application, still writing?), which the store does not have; import again, then export"
)


def _utf8(text: str) -> bytes:
    try:
        # A refused text that is not UTF-8 comes back as the bytes it was (see _merged).
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


#: The surrogates that "surrogateescape" cannot write (it writes U+DC80 to U+DCFF only).
_NOT_ESCAPED = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def _write_utf8(fh: Any, text: str) -> int:
    """Write ``text`` as :func:`_utf8` encodes it; a text over WRITE_CHARS characters (a
    huge record) a slice at a time, so that it is never held encoded whole too."""
    if len(text) <= WRITE_CHARS:
        return int(fh.write(_utf8(text)))
    errors = "surrogatepass" if _NOT_ESCAPED.search(text) else "surrogateescape"  # as _utf8 would choose
    return sum(int(fh.write(text[i : i + WRITE_CHARS].encode("utf-8", errors))) for i in range(0, len(text), WRITE_CHARS))


class _Writer:
    def __init__(self, out: Path, overwrite: bool, limit: int | None = None):
        # ``limit``: the permission bits no new file may exceed (the store file's: an
        # export is never readable by more than its store); its directories get x where
        # they get r. None: 0o666 and 0o777, less the umask, as any new file.
        self.limit = limit
        self.dir_mode = 0o777 if limit is None else limit | (limit & 0o444) >> 2
        out.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
        self.out_real = out.resolve()
        # In every temp file's name: no earlier process with the same pid (pid 1 in a
        # container, a reused pid) made one by the same name; and the temps of this
        # process that do not hold a live export's token are stale.
        self.token = secrets.token_hex(TOKEN_BYTES)
        _LIVE_TOKENS.add(self.token)
        _remove_stale_temps(self.out_real)
        self.overwrite = overwrite
        # Where files really land, whatever links in OUT lead there: each directory
        # checked (as the records name it) -> (its identity: st_dev and st_ino, its
        # index among the names that lead to it, in ``via``); looked up once a directory.
        out_key = self.out_key = _identity(os.stat(self.out_real))
        self.checked: dict[Path, tuple[_Key, int]] = {self.out_real: (out_key, 0)}
        self.via: dict[_Key, list[str]] = {out_key: [""]}  # the names (relative to OUT)
        # The files of the batch being staged, by directory and name -> which of the
        # directory's names it was written through; and each directory that records
        # need, by its parent and name -> the first record that needed it. A file of an
        # earlier batch is on disk, changed since this export began (_written_here):
        # memory does not grow with the files written.
        self.staged_files: dict[tuple[_Key, str], int] = {}
        self.dirs_in: dict[tuple[_Key, str], str] = {}
        self.began_ns = self._now_on_disk()
        self.created: set[Path] = set()  # directories this export made: nothing else is in them
        self.dirty_dirs: set[Path] = set()
        self.staged: list[tuple[str, Path, Path]] = []
        self.kept: list[tuple[str, Path]] = []  # files already there, holding what was to be written
        # The file each staged one replaces, as it was looked at before its bytes were
        # compared (_stamp): one the application wrote since is not replaced.
        self.replacing: dict[Path, tuple[int, int, int]] = {}
        self.staged_bytes = 0
        self.counter = 0

    def _ensure_dir(self, directory: Path, relpath: str) -> None:
        """Create ``directory`` one part at a time, refusing any part that is (or leads
        through) a link out of OUT."""
        if directory in self.checked:
            return
        parent = directory.parent
        self._ensure_dir(parent, relpath)
        parent_key, parent_via = self.checked[parent]
        file_there = self.staged_files.get((parent_key, directory.name))
        if file_there is None and self._written_here(directory):
            file_there = parent_via
        if file_there is not None:  # the store holds both x.json and x.json/...
            first = self._name(parent_key, file_there, directory.name)
            raise ExportError(relpath, f"not written: {first} is a record's file, it cannot also be a directory")
        if directory.is_symlink() or directory.exists():
            try:
                real = directory.resolve()
            except RuntimeError:  # Python < 3.13 raises this (not OSError) for a link loop
                raise ExportError(relpath, f"refused: {directory} is a symbolic link loop") from None
            if real != self.out_real and self.out_real not in real.parents:
                raise ExportError(relpath, f"refused: {directory} leads outside the export directory")
            try:
                st = os.stat(real)
            except OSError:  # a dangling link, or one through a file
                st = None
            if st is None or not stat.S_ISDIR(st.st_mode):
                raise ExportError(relpath, f"refused: {directory} exists and is not a directory")
            _remove_stale_temps(directory)
        else:
            directory.mkdir(mode=self.dir_mode)
            st = os.stat(directory)
            self.created.add(directory)
            self.dirty_dirs.add(parent)
        self.dirs_in.setdefault((parent_key, directory.name), relpath)
        names = self.via.setdefault(_identity(st), [])
        self.checked[directory] = (_identity(st), len(names))
        names.append(directory.relative_to(self.out_real).as_posix())

    def _now_on_disk(self) -> int:
        """The file system's time now, as it stamps a file it changes (its clock may lag
        Python's by a tick): a probe file's change time."""
        probe = self.out_real / f".recordstore-began.{os.getpid()}.{self.token}.0.rstmp"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            if exc.errno == errno.EROFS:  # no file of the export could be written: one line, not one a file
                raise
            return time.time_ns()  # (OUT not writable: its subdirectories may be, and each file says)
        try:
            return os.fstat(fd).st_ctime_ns
        finally:
            os.close(fd)
            os.unlink(probe)

    def _written_here(self, path: Path) -> bool:
        """Whether ``path`` is a file this export wrote: in an earlier batch, renamed into
        place after that batch's sync, later than this export began; a file that was
        there before is older."""
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and st.st_ctime_ns > self.began_ns

    def _name(self, key: _Key, via: int, name: str) -> str:
        """The source path of the file ``name`` in the directory ``key``, as the record
        written there named it (through its ``via``-th name)."""
        directory = self.via[key][via]
        return f"{directory}/{name}" if directory else name

    def write(self, relpath: str, pieces: Iterable[str]) -> None:
        """Write a file's text, given in pieces, to a temporary file beside the target,
        about WRITE_CHARS characters at a time (a file of any size takes bounded
        memory); it is renamed into place by :meth:`flush`, once its data is durable."""
        target = safe_target(self.out_real, relpath)
        self._ensure_dir(target.parent, relpath)
        # Two records may name one file, through a link in OUT to a directory in OUT:
        # the first is written, never replaced by the second.
        key, via = self.checked[target.parent]
        first = self.staged_files.get((key, target.name))
        names = self.via[key]
        if first is None and len(names) > 1 and self._written_here(target):  # through another name
            first = next(i for i in range(len(names)) if i != via)
        if first is not None:
            raise ExportError(relpath, f"not written: it lands on the same file as {self._name(key, first, target.name)}")
        below = self.dirs_in.get((key, target.name))
        if below is not None:  # the store holds both x.json and x.json/...
            raise ExportError(relpath, f"not written: {below} needs it to be a directory")
        # (In a directory this export made, only another process could have put a file:
        # placing by hard link still refuses to replace it.)
        mode, there, replaceable = None, False, False  # a new file's (see below); no file there
        appended = False
        if target.parent not in self.created:
            mode, there, replaceable = self._replaced_mode(target, relpath)
        self.counter += 1
        tmp = target.parent / f".{target.name[:40]}.{os.getpid()}.{self.token}.{self.counter}.rstmp"
        # The limit (0o666 without one) less the umask, unless it replaces a file (whose
        # mode it takes); O_EXCL: never through a planted link.
        # Staged before it exists, so that discard() removes it even when Ctrl-C lands
        # just as it is made; unstaged if it cannot be made (it is not ours).
        self.staged.append((relpath, tmp, target))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if self.limit is None else self.limit)
        except OSError as exc:
            self.staged.pop()
            if isinstance(exc, FileExistsError):  # planted: the target is not the one that exists
                raise ExportError(relpath, f"cannot write: its temporary file {tmp.name} already exists") from None
            raise
        size = 0
        try:
            with os.fdopen(fd, "wb") as fh:
                if mode is not None:  # before it is renamed into place: never wider for a moment
                    os.fchmod(fd, mode)
                buffered: list[str] = []
                held = 0
                for piece in pieces:
                    if len(piece) > WRITE_CHARS:  # a huge record: not joined to what comes before
                        size += _write_utf8(fh, "".join(buffered)) + _write_utf8(fh, piece)
                        buffered, held = [], 0
                        continue
                    buffered.append(piece)
                    held += len(piece)
                    if held >= WRITE_CHARS:
                        size += fh.write(_utf8("".join(buffered)))
                        buffered, held = [], 0
                size += fh.write(_utf8("".join(buffered)))
            # A file already there that holds these very bytes is kept as it is (a
            # killed export run again, an export run twice, one over the home it came
            # from), made durable with the files written: replaced, it would be another
            # file, and an application appending to the one it has open would write
            # into a file no longer there. Without overwrite, any other is refused.
            same = there and _same_bytes(tmp, target, size)
            # An events log the application appended to since the import, a file it
            # finished writing: replaced, what the store never read would be lost,
            # --force or not.
            if there and replaceable and not same:
                # (A JSON-lines file's row has the digest of what was imported from it,
                # "" if that import had a problem.)
                row = getattr(pieces, "row", None)
                digest = row.digest if row is not None and row.container == "lines" else ""
                appended = _appended(tmp, target, digest)
        except BaseException:
            self.staged.pop()
            with _suppress():
                os.unlink(tmp)
            raise
        if same or appended or (there and not replaceable):
            os.unlink(tmp)
            self.staged.pop()
            if appended:
                raise ExportError(relpath, APPENDED)
            if not same:
                raise ExportError(relpath, EXISTS)
            self.kept.append((relpath, target))
        self.staged_bytes += size
        self.staged_files[key, target.name] = via

    def _replaced_mode(self, target: Path, relpath: str) -> tuple[int | None, bool, bool]:
        """The permission bits of the file ``target`` replaces, which the new one keeps
        (an owner-only file stays owner-only; None if there is none), whether it is a
        file to compare the new text with (kept if it holds it), and whether it may be
        replaced if it does not (overwrite). Refuses a target that cannot be replaced."""
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            return None, False, False
        if stat.S_ISDIR(st.st_mode):  # --force would not help
            raise ExportError(relpath, f"refused: {target} exists and is a directory")
        if not self.overwrite:
            if not stat.S_ISREG(st.st_mode):  # (a link is never written through)
                raise ExportError(relpath, EXISTS)
            return None, True, False
        if stat.S_ISLNK(st.st_mode):  # the link is replaced: the file it led to tells the mode
            try:
                st = os.stat(target)
            except OSError:  # dangling, or a loop
                return None, False, False
            return (stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else None), False, False
        regular = stat.S_ISREG(st.st_mode)
        if regular:
            self.replacing[target] = _stamp(st)
        return (stat.S_IMODE(st.st_mode) & 0o777 if regular else None), regular, True

    def full(self) -> bool:
        return len(self.staged) + len(self.kept) >= STAGE_FILES or self.staged_bytes >= STAGE_BYTES

    def flush(self) -> list[tuple[str, OSError | None, bool]]:
        """Make every staged file durable with one sync, then rename each into place
        and sync the directories. Returns (relpath, error or None, whether it was kept
        as it was) per staged file, and per file kept as it was (synced with them)."""
        staged, kept = self.staged, self.kept
        if not staged and not kept:
            return []
        synced = _sync_all([tmp for _rel, tmp, _target in staged] + [target for _rel, target in kept], self.out_real)
        done: list[tuple[str, OSError | None, bool]] = [
            (rel, error, True) for (rel, _target), error in zip(kept, synced[len(staged) :])
        ]
        self.kept = []
        for (rel, tmp, target), error in zip(staged, synced):
            if error is None and _written_since(target, self.replacing.pop(target, None)):
                error = OSError(errno.EAGAIN, CHANGED)
            if error is None:
                try:
                    self._place(tmp, target)
                except OSError as exc:
                    error = exc
                else:
                    self.dirty_dirs.add(target.parent)
            if error is not None:
                with _suppress():
                    os.unlink(tmp)
            done.append((rel, error, False))
        # Only now: stopped before (Ctrl-C during the sync), discard() removes them all.
        self.staged, self.staged_bytes, self.staged_files, self.replacing = [], 0, {}, {}
        self.sync_dirs()
        return done

    def _place(self, tmp: Path, target: Path) -> None:
        """Rename ``tmp`` to ``target``. Without overwrite, a hard link is the atomic
        'create only if absent': a file that appeared since the check is never replaced."""
        if self.overwrite:
            os.replace(tmp, target)  # replaces a link itself, never writes through it
            return
        try:
            os.link(tmp, target, follow_symlinks=False)
        except FileExistsError:
            raise FileExistsError(errno.EEXIST, EXISTS) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            os.replace(tmp, target)  # no hard links on this file system: checked above
            return
        os.unlink(tmp)

    def discard(self) -> None:
        for _rel, tmp, _target in self.staged:
            with _suppress():
                os.unlink(tmp)
        self.staged, self.staged_files = [], {}

    def close(self) -> None:
        """The export is over: its temp files, if any were left, are stale from now on."""
        _LIVE_TOKENS.discard(self.token)

    def out_gone(self) -> bool:
        """Whether OUT was removed, or replaced by another directory, since the export
        began (its files then fail one after the other: that is what to say)."""
        try:
            return _identity(os.stat(self.out_real)) != self.out_key
        except OSError:
            return True

    def sync_dirs(self) -> None:
        for directory in sorted(self.dirty_dirs):
            try:
                fd = os.open(directory, os.O_RDONLY)
            except (FileNotFoundError, NotADirectoryError):
                continue  # removed since (by whoever removed its files too): nothing to sync
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.dirty_dirs.clear()


def _sync_all(paths: list[Path], out: Path) -> list[OSError | None]:
    """Make the data of ``paths`` (files in ``out``) durable; an error per path or None.

    On Linux, one ``syncfs`` of OUT's file system writes back and flushes all of them
    at once (an error fails the whole group: none of them is renamed into place).
    Elsewhere, or when OUT spans file systems (a mount inside it), each file is fsynced,
    many at once, so the file system commits their journal entries together."""
    devices = {_device(p) for p in {p.parent for p in paths}} | {_device(out)}
    # (A directory removed meanwhile has no device: each file then says what became of it.)
    if _syncfs is not None and len(devices) == 1 and None not in devices:
        fd = os.open(out, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return [None] * len(paths)
            code = ctypes.get_errno()
        finally:
            os.close(fd)
        error = OSError(code, os.strerror(code))
        return [error] * len(paths)
    # Threads for this group only: none is left running to rule out forking workers later.
    with ThreadPoolExecutor(max_workers=max(1, min(32, len(paths))), thread_name_prefix="recordstore-fsync") as pool:
        return list(pool.map(_fsync_path, paths))


def _same_bytes(written: Path, there: Path, size: int) -> bool:
    """Whether the file ``there`` holds exactly the ``size`` bytes of ``written``."""
    try:
        if os.stat(there).st_size != size:
            return False
        with open(written, "rb") as new, open(there, "rb") as old:
            while chunk := new.read(1 << 20):
                if old.read(len(chunk)) != chunk:
                    return False
            return not old.read(1)
    except OSError:
        return False


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


def _written_since(target: Path, stamp: tuple[int, int, int] | None) -> bool:
    """Whether the file ``target``, looked at as ``stamp`` before export compared it
    with what it writes, was written or replaced since (the application writing it).
    One removed since is not: the rename puts it back, or says why it cannot."""
    if stamp is None:
        return False
    try:
        return _stamp(os.lstat(target)) != stamp
    except OSError:
        return False


def _appended(written: Path, there: Path, digest: str) -> bool:
    """Whether the file ``there`` is longer than what the store holds for it and begins
    with it: with the bytes of ``written`` (the store's records as they were
    imported: a log, or a record the import found cut short, written on since), or, for
    a JSON-lines file, up to the end of one of its lines, with the bytes the store last
    imported from it (``digest``: its records migrated since). The rest was written
    since the import, and the store does not have it."""
    try:
        with open(there, "rb") as old, open(written, "rb") as new:
            hashed = hashlib.sha256()
            ours = True  # so far, the bytes of ``written``
            while chunk := old.read(1 << 20):
                if ours:
                    mine = new.read(len(chunk))
                    if chunk[: len(mine)] != mine:
                        ours = False
                    elif len(mine) < len(chunk):  # past its end: ``written`` begins it
                        return True
                if digest:
                    start = 0
                    while (end := chunk.find(b"\n", start)) != -1:
                        hashed.update(chunk[start : end + 1])
                        start = end + 1
                        if hashed.hexdigest() == digest and (start < len(chunk) or old.peek(1)):
                            return True
                    hashed.update(chunk[start:])
                elif not ours:
                    return False
            return False
    except OSError:
        return False


def _device(path: Path) -> int | None:
    try:
        return os.stat(path).st_dev
    except OSError:
        return None


def _load_syncfs() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


_syncfs = _load_syncfs()


def _fsync_path(path: Path) -> OSError | None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        return exc
    return None


#: The random token in a temp file's name (``.NAME.PID.TOKEN.N.rstmp``), in bytes.
TOKEN_BYTES = 8

#: The tokens of the exports running in this process (a library caller may run several).
_LIVE_TOKENS: set[str] = set()

_TOKEN = re.compile(f"[0-9a-f]{{{2 * TOKEN_BYTES}}}")
_NUMBER = re.compile("[0-9]+")  # (not str.isdigit: int() refuses "²")


#: A directory's identity: (st_dev, st_ino).
_Key = tuple[int, int]


def _identity(st: os.stat_result) -> _Key:
    return st.st_dev, st.st_ino


def _remove_stale_temps(directory: Path) -> None:
    """Temp files of an export that was killed before renaming them: never at a target
    path, but litter. Only ours (``.NAME.PID.TOKEN.N.rstmp``, or ``.NAME.PID.N.rstmp``
    as they were named before) of a process that is gone, or of this process's pid but
    not of an export running in it: an earlier process had that pid (pid 1 in a
    container, or a reused one)."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".rstmp")]
    except OSError:
        return
    me = os.getpid()
    for name in names:
        parts = name.rsplit(".", 4)
        if len(parts) == 5 and parts[0][:1] == "." and _NUMBER.fullmatch(parts[1]) and _TOKEN.fullmatch(parts[2]) and _NUMBER.fullmatch(parts[3]):
            pid, token = int(parts[1]), parts[2]
        else:
            parts = name.rsplit(".", 3)
            if len(parts) != 4 or parts[0][:1] != "." or not (_NUMBER.fullmatch(parts[1]) and _NUMBER.fullmatch(parts[2])):
                continue  # not one of ours: a user's file
            pid, token = int(parts[1]), None
        if (token not in _LIVE_TOKENS) if pid == me else not _alive(pid):
            with _suppress():
                os.unlink(directory / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True


#: Files whose rows are read together: memory does not grow with the files stored (all
#: of them at once took 13 MB more at 197,507 records than at 49,703).
FILE_WINDOW = 2000


def _of_domains(query: Any, domains: list[str] | None) -> Any:
    """``query`` over the files of ``domains`` (all: ``None``)."""
    return query if domains is None else query.where(files.c.domain.in_(domains))


def _file_rows(conn: Connection, domains: list[str] | None) -> Iterator[Any]:
    """The rows of the files to export, in id order, FILE_WINDOW at a time."""
    last = 0
    columns = select(
        files.c.id, files.c.path, files.c.domain, files.c.container, files.c.head, files.c.sep, files.c.tail, files.c.digest,
        files.c.gaps,
    )
    while rows := conn.execute(_of_domains(columns, domains).where(files.c.id > last).order_by(files.c.id).limit(FILE_WINDOW)).all():
        yield from rows
        last = rows[-1].id


class _Group(NamedTuple):
    """What a file holds, slot by slot, streamed: its (file id, position, key, text)
    rows, to be read before the next group is asked for; ``refused_in`` counts, once
    they have been read, the refused records' texts among them, by file id."""

    file_id: int | None
    rows: Iterator[Any]
    refused_in: dict[int, int]


def _grouped(conn: Connection, domains: list[str] | None) -> Iterator[_Group]:
    """What each file (of ``domains``: all with ``None``) holds (see _Group), in file id
    order, streaming: a file's slots are never all held at once, however many it has."""
    stream = conn.execution_options(stream_results=True, yield_per=200)
    held_query = select(refused.c.file_id, refused.c.position, refused.c.key, refused.c.text)
    query = select(records.c.file_id, records.c.position, records.c.key, records.c.payload)
    if domains is not None:
        # Only those files' slots, found by their file ids: the export of one small
        # domain read every record of the store (a million others: ~1 s, every payload).
        wanted = _of_domains(select(files.c.id), domains)
        held_query = held_query.where(refused.c.file_id.in_(wanted))
        query = query.where(records.c.file_id.in_(wanted))
    held = stream.execute(held_query.order_by(refused.c.file_id, refused.c.position))
    first = next(held, None)
    slots: Iterable[Any] = stream.execute(query.order_by(records.c.file_id, records.c.position))
    refused_in: dict[int, int] = {}  # of the files being read
    if first is not None:
        slots = _merged(slots, itertools.chain([first], held), refused_in)
    previous = 0  # (file ids start at 1)
    for file_id, rows in itertools.groupby(slots, key=operator.itemgetter(0)):
        refused_in.pop(previous, None)  # read by now, or never to be (a file not exported)
        yield _Group(file_id, rows, refused_in)
        previous = file_id


def _merged(slots: Iterable[Any], held: Iterator[Any], refused_in: dict[int, int]) -> Iterator[tuple[int, int, str, str]]:
    """The records' slots with the refused texts put in among them (both in file id and
    position order), counting the refused texts of each file in ``refused_in``."""
    kept = next(held, None)

    def take() -> tuple[int, int, str, str]:
        nonlocal kept
        assert kept is not None
        file_id, position, key, text = kept
        refused_in[file_id] = refused_in.get(file_id, 0) + 1
        kept = next(held, None)
        # Bytes that are not UTF-8 (a broken JSON line) go back as they were (see _Writer).
        return file_id, position, key, text.decode("utf-8", "surrogateescape")

    for slot in slots:
        while kept is not None and (kept[0], kept[1]) < (slot[0], slot[1]):
            yield take()
        yield slot
    while kept is not None:
        yield take()


def _files_to_write(conn: Connection, domains: list[str] | None) -> Iterator[tuple[Any, _Group]]:
    """(file row, what it holds) for each file to export, in file order: the records and
    refused texts, streamed, matched with the files' rows, read alongside. A file that
    holds nothing is written too (an empty JSON-lines file, ``[]``) when it was imported
    whole; not when its import had a problem with it (it has no digest then), which
    would give back an empty file where the source held something the store does not."""
    rows = _file_rows(conn, domains)
    row = next(rows, None)
    for group in itertools.chain(_grouped(conn, domains), [_Group(None, iter(()), {})]):
        while row is not None and (group.file_id is None or row.id < group.file_id):  # a file holding nothing
            if row.digest:
                yield row, _Group(row.id, iter(()), {})
            row = next(rows, None)
        if row is None:
            return
        if row.id == group.file_id:  # else a file not exported (another domain)
            yield row, group
            row = next(rows, None)


#: A file's slots are read, and its text made, this many at a time.
SLOTS_AT_ONCE = 2048


class _FileText:
    """A file's text from its layout and its slots' rows, in pieces of up to
    SLOTS_AT_ONCE slots (so a file of any size takes bounded memory); ``slots``: how
    many it has read.

    Between two slots goes the file's separator, or the gap its layout kept for the
    second (``gaps``, by position). In a JSON-lines file, each record (or refused text)
    goes on the line its key names, an empty line for each line between that held
    neither (a blank line; or a refused one, in a store made before refused texts were
    kept); so the records' keys, which are their line numbers, stay true for the
    exported file."""

    def __init__(self, row: Any, rows: Iterator[Any]):
        self.row, self.rows, self.slots = row, rows, 0

    def __iter__(self) -> Iterator[str]:
        head, sep, lines = self.row.head, self.row.sep, self.row.container == "lines"
        gaps: dict[str, str] = json.loads(self.row.gaps) if self.row.gaps else {}
        # An array's elements were stored without the indent of their lines, which goes
        # back here: the first's, or each its own (that of the line its separator leaves
        # it on) when its gaps say so.
        array = head.rstrip(" \t\r\n").endswith("[")
        first = element_prefix(head) if array else ""
        own = array and gaps.pop(OWN_INDENTS, None) is not None
        blanks = array and gaps.pop(BLANK_LINES, None) is not None
        odd = OddGaps(gaps)
        prefix = own_prefix(sep, first) if own else first
        yield head
        line = 0  # of the last slot written, in a JSON-lines file
        while chunk := list(itertools.islice(self.rows, SLOTS_AT_ONCE)):
            texts = [r[3] for r in chunk]
            if prefix or first:
                texts = [indent_lines(t, prefix, blanks) for t in texts]
                if first != prefix and not self.slots:
                    texts[0] = indent_lines(chunk[0][3], first, blanks)
            if not (lines or odd):  # an array, each element after the file's separator
                yield sep.join(texts) if not self.slots else sep + sep.join(texts)
                self.slots += len(chunk)
                continue
            pieces: list[str] = []
            for (_file_id, position, key, raw), text in zip(chunk, texts):
                gap = odd.get(position) if odd else None
                if own and gap is not None and own_prefix(gap, first) != prefix:
                    text = indent_lines(raw, own_prefix(gap, first), blanks)
                if lines:
                    number = key.rpartition(":")[2]  # the line the key names (path:LINE)
                    at = int(number) if number.isdigit() and number.isascii() and int(number) > line else line + 1
                    if gap is None:
                        gap = sep if at == line + 1 and self.slots else sep * (at - line - (0 if self.slots else 1))
                    line = at
                elif gap is None:
                    gap = sep if self.slots else ""
                pieces.append(gap)
                pieces.append(text)
                self.slots += 1
            yield "".join(pieces)
        yield self.row.tail


def _store_mode(conn: Connection) -> int | None:
    """The permission bits of the store's file (None: no file, or none to be read)."""
    store_file = sqlite_file(conn.engine)
    try:
        return stat.S_IMODE(os.stat(store_file).st_mode) & 0o666 if store_file is not None else None
    except OSError:
        return None


def _out_refused(out: Path, exc: OSError) -> str:
    """Why the export directory ``out`` could not be made or written into (``exc``), said
    of what is in its way (the system's "File exists" of a link to nothing, or "Not a
    directory" of a file among its parents, does not say what)."""
    # os.path's checks, not pathlib's: they say False of a name too long, where
    # pathlib's raised OSError again, out of the caller's handler.
    for path in (*reversed(out.parents), out):
        if not os.path.lexists(path) or os.path.isdir(path):
            continue
        it = "it" if path == out else display_path(str(path))
        broken = broken_link(path)
        return f"{it} exists and is not a directory" if broken is None else f"{it} is {broken}"
    return str(exc.strerror or exc)


def export_records(
    conn: Connection,
    out: Path,
    domains: Iterable[str] | None = None,
    *,
    overwrite: bool = False,
    progress: Any = None,
) -> ExportResult:
    result = ExportResult(out=out)
    try:
        writer = _Writer(out, overwrite, _store_mode(conn))
    except OSError as exc:  # nothing exported: the command's error, not one record's
        # os.path's checks, not pathlib's: they say False of a name too long, where
        # pathlib's raised OSError again, out of this handler.
        doing = "write into" if os.path.isdir(out) else "create"
        raise ExportDirectoryError(display_path(str(out)), f"cannot {doing} the export directory: {_out_refused(out, exc)}") from exc
    wanted = None if domains is None else list(domains)
    if progress is not None:
        # The files that will be written (see _files_to_write).
        holding = select(records.c.file_id).where(records.c.file_id == files.c.id).exists()
        keeping = select(refused.c.file_id).where(refused.c.file_id == files.c.id).exists()
        to_write = select(func.count()).select_from(files).where(or_(holding, keeping, files.c.digest != ""))
        total = conn.execute(_of_domains(to_write, wanted)).scalar()
        progress.start(total or 0, "export")
    sizes: dict[str, tuple[str, int, int]] = {}

    def out_gone() -> None:
        """After a file failed: the export stops, saying so, if OUT itself is gone."""
        if writer.out_gone():
            where = display_path(str(out))
            raise ExportDirectoryError(where, "cannot write into the export directory: it was removed or replaced while the export ran")

    def settle() -> None:
        for rel, error, unchanged in writer.flush():
            domain, n, n_refused = sizes.pop(rel)
            if error is not None:
                out_gone()
                result.add_problem(ExportError(display_path(rel), f"cannot write: {error.strerror or error}"))
                continue
            result.files += 1
            if unchanged:
                result.unchanged += 1
            result.records += n
            result.refused += n_refused
            result.domains[domain] = result.domains.get(domain, 0) + n

    try:
        for row, group in _files_to_write(conn, wanted):
            text = _FileText(row, group.rows)
            try:
                writer.write(row.path, text)
            except ExportError as exc:  # one line each, whatever the names hold
                result.add_problem(ExportError(display_path(exc.path), display_path(exc.reason)))
            except OSError as exc:
                out_gone()
                result.add_problem(ExportError(display_path(row.path), f"cannot write: {exc.strerror or exc}"))
            else:
                n_refused = group.refused_in.pop(row.id, 0)
                sizes[row.path] = (row.domain, text.slots - n_refused, n_refused)
            if writer.full():
                settle()
            if progress is not None:
                progress.advance(1)
        settle()
    except BaseException:
        writer.discard()  # nothing half-written stays behind, not even as a temp file
        raise
    finally:
        writer.close()
    return result
