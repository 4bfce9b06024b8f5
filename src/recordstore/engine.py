"""Engines, SQLite settings, transactions and the translation of database errors.

Every database error leaves the library through :func:`translate_errors` as a
:class:`~recordstore.errors.StoreError` (or :class:`BusyError`), ``from`` the original.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, StaticPool

from .connections import configure_connection, default_db_path, is_url
from .errors import BusyError, StoreError, printable

__all__ = [
    "background_checkpoints",
    "close_engine",
    "configure_connection",
    "default_db_path",
    "durable_transaction",
    "in_memory",
    "open_engine",
    "placeholder",
    "refuse_if_closed",
    "sqlite_file",
    "translate_errors",
    "unchecked_foreign_keys",
    "write_transaction",
]

#: How long a statement waits for another connection's transaction (one batch) to end.
BUSY_TIMEOUT_S = 30.0


def to_url(target: str | os.PathLike[str]) -> URL:
    """The URL of a store's target (see :func:`is_url`): a file's path is the URL's
    database as it is written, never parsed as a URL's text (``report?v2.db`` would
    open ``report``, and ``caf%C3%A9.db`` ``café.db``). SQLite's own names are kept:
    ``:memory:`` is a database in memory, and a str ``file:...`` a SQLite URI (a path
    would make them files of those names in the working directory)."""
    if is_url(target):
        return make_url(os.fspath(target))
    text = os.fspath(target)
    if text == ":memory:":
        return URL.create("sqlite", database=text)
    if isinstance(target, str) and text.startswith("file:"):
        return URL.create("sqlite", database=text, query={"uri": "true"})
    return URL.create("sqlite", database=str(Path(text).expanduser().absolute()))


def in_memory(url: URL) -> bool:
    """Whether a SQLite URL's database lives in memory: ``sqlite://``, ``:memory:``, or
    a ``file:`` URI of ``:memory:`` or with ``mode=memory``. Each connection to one
    opens a database of its own."""
    database = url.database or ""
    modes = [url.query.get("mode")]
    if database.startswith("file:"):
        path, _, query = database.removeprefix("file:").partition("?")
        modes += parse_qs(query).get("mode", [])
        database = path
    return database in ("", ":memory:") or "memory" in modes


class _InTurn(StaticPool):
    """The one connection of an in-memory database, lent to one user at a time.

    All the store's connections must be that one (another would open an empty
    database), but SQLite gives a connection one transaction: shared by two users at
    once, one's BEGIN would fail and its ROLLBACK undo the other's batch, whose next
    statements would then commit one by one. So a user in another thread waits for its
    turn, like a file store's writer waits for SQLite's lock (BUSY_TIMEOUT_S at most),
    and one in the same thread, which would wait for itself, is refused."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._turn = threading.Condition()
        self._user: int | None = None  # the thread the connection is lent to

    def _do_get(self) -> ConnectionPoolEntry:
        me = threading.get_ident()
        with self._turn:
            if self._user == me:
                raise StoreError(
                    "an in-memory store serves one operation at a time, and this thread's is not done "
                    "(a query being iterated?): finish it first, or use a store file"
                )
            if not self._turn.wait_for(lambda: self._user is None, BUSY_TIMEOUT_S):
                raise BusyError(f"the store is busy: another thread has used the in-memory store for {BUSY_TIMEOUT_S:.0f} s")
            self._user = me
        try:
            return super()._do_get()
        except BaseException:
            self._do_return_conn(None)
            raise

    def _do_return_conn(self, record: ConnectionPoolEntry | None) -> None:
        with self._turn:
            self._user = None
            self._turn.notify()


def _uri_file(database: str) -> Path | None:
    """The file a SQLite URI (``file:x.db?mode=ro``, ``file:///abs/x.db``) names, its
    escapes decoded as SQLite decodes them; ``None`` for one naming another host."""
    rest = database.removeprefix("file:").partition("?")[0].partition("#")[0]
    if rest.startswith("//"):
        authority, _, rest = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            return None
        rest = "/" + rest
    return Path(unquote(rest)).absolute() if rest else None


def _empty(path: Path) -> bool:
    """Whether ``path`` is a file of no bytes, or no file at all."""
    try:
        return path.stat().st_size == 0
    except FileNotFoundError:
        return True


def _create_private_file(path: Path) -> None:
    """Create the store file owner-only before SQLite does (its -wal/-shm files
    inherit these permissions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def open_engine(target: str | os.PathLike[str], *, create: bool = True) -> Engine:
    """An engine on ``target``, a store file or a SQLAlchemy URL (``create``: make a
    missing store file, else refuse it)."""
    if not os.fspath(target).strip():
        raise StoreError("the store path is empty")
    try:
        url = to_url(target)
    except sa_exc.ArgumentError as exc:
        raise StoreError(f"{target} is neither a file path nor a database URL: {exc}") from exc
    if url.get_backend_name() != "sqlite":
        try:
            engine = create_engine(url)
        except sa_exc.NoSuchModuleError as exc:
            raise StoreError(f"{url.render_as_string()}: SQLAlchemy has no dialect {url.drivername!r}") from exc
        except ImportError as exc:  # the dialect's driver
            raise StoreError(f"{url.render_as_string()}: the {url.drivername!r} driver is not installed ({exc})") from exc
        _track_uses(engine)
        return engine
    database = url.database or ""
    if "\x00" in database:
        # No file has such a name: os and sqlite3 say so with a ValueError, which no caller expects.
        raise StoreError(f"{printable(database)}: a store path cannot hold a NUL character")
    memory = in_memory(url)
    if not memory and not database.startswith("file:"):
        path = Path(database)
        try:
            if path.is_dir():
                raise StoreError(f"{path} is a directory, not a store file: name the file (such as {path / 'store.db'})")
            if create:
                try:
                    _create_private_file(path)
                except OSError as exc:
                    raise StoreError(f"cannot create store {path}: {exc.strerror or exc}") from exc
            elif not path.exists():
                raise StoreError(f"no store at {path}: an import creates one (is the path right?)")
            elif _empty(path) and _empty(Path(f"{path}-wal")):
                # SQLite would take it for a new database, and this command would make it a store.
                raise StoreError(f"no store at {path}: the file is empty; an import makes it a store (is the path right?)")
        except OSError as exc:  # a name too long, say: pathlib's checks pass on only "no such file"
            raise StoreError(f"cannot open store {path}: {exc.strerror or exc}") from exc
    elif not memory and not create:
        # A SQLite URI's file: SQLite would create it (its default mode is rwc).
        named = _uri_file(database)
        if named is not None and not os.path.exists(named):  # (False of a name too long, where pathlib raises)
            raise StoreError(f"no store at {named}: an import creates one (is the path right?)")
    if memory:
        engine = create_engine(url, poolclass=_InTurn, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    _configure_sqlite(engine)
    _track_uses(engine)
    return engine


class _Uses:
    """The connections an engine has lent out and their cursors, and, once it is closed
    for good, the message every use of it raises."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lent: dict[ConnectionPoolEntry, PoolProxiedConnection] = {}
        self.cursors: weakref.WeakSet[Any] = weakref.WeakSet()
        self.closed: str | None = None


#: Of every engine :func:`open_engine` made.
_USES: weakref.WeakKeyDictionary[Engine, _Uses] = weakref.WeakKeyDictionary()


def _track_uses(engine: Engine) -> None:
    uses = _USES[engine] = _Uses()

    @event.listens_for(engine, "checkout")
    def _lent(_dbapi_conn: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        with uses.lock:
            uses.lent[record] = proxy

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        with uses.lock:
            uses.lent.pop(record, None)

    @event.listens_for(engine, "after_cursor_execute")
    def _reading(_conn: Any, cursor: Any, *_args: Any) -> None:
        with uses.lock:
            uses.cursors.add(cursor)

    @event.listens_for(engine, "do_connect")
    def _refuse(*_args: Any) -> None:
        if uses.closed is not None:
            raise StoreError(uses.closed)

    @event.listens_for(engine, "handle_error")
    def _closed_under(_context: Any) -> StoreError | None:
        # A query being iterated when its connection was closed: SQLite's "Cannot
        # operate on a closed database" would say nothing of why.
        return StoreError(uses.closed) if uses.closed is not None else None


def close_engine(engine: Engine, closed: str) -> None:
    """Close ``engine`` for good. ``engine.dispose()`` only empties its pool: its next
    use opens new connections, which nothing would close (a :class:`Query` holds the
    engine, not its store). Any later use raises :class:`StoreError` ``closed``
    instead, and the connections lent out are closed too: a query being iterated
    raises it at its next read. Their cursors are closed first: a statement still
    being read would keep SQLite's connection, and its files, open."""
    uses = _USES.get(engine)
    if uses is not None:
        with uses.lock:
            uses.closed = closed
            lent = list(uses.lent.values())
            cursors = list(uses.cursors)
        for proxy in lent:
            if not proxy.is_valid:
                continue
            for cursor in cursors:
                if getattr(cursor, "connection", None) is proxy.driver_connection:
                    with contextlib.suppress(Exception):
                        cursor.close()
            proxy.invalidate()
    engine.dispose()


def refuse_if_closed(engine: Engine) -> None:
    """:class:`StoreError` if ``engine`` was closed by :func:`close_engine`."""
    uses = _USES.get(engine)
    if uses is not None and uses.closed is not None:
        raise StoreError(uses.closed)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        configure_connection(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


#: How often the checkpointing thread copies what the WAL holds into the database file.
CHECKPOINT_EVERY_S = 0.05


@contextlib.contextmanager
def background_checkpoints(engine: Engine) -> Iterator[None]:
    """While a run writes batch after batch, a thread of its own copies the WAL into the
    database file (a PASSIVE checkpoint: it never blocks the writer). SQLite releases
    the GIL for the whole checkpoint, so the copying and its syncs overlap the run's
    work, where the writer's commits would otherwise stop to checkpoint every
    ``wal_autocheckpoint`` pages (they still do if this thread falls behind).

    Start it after any worker processes are forked: the thread rules fork out."""
    database = sqlite_file(engine)
    if database is None:
        yield
        return
    stop = threading.Event()

    def checkpoint() -> None:
        with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(database, timeout=0)) as conn:
            conn.execute("PRAGMA synchronous=NORMAL")  # as the writer: sync at each checkpoint, not more
            while not stop.wait(CHECKPOINT_EVERY_S):
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    thread = threading.Thread(target=checkpoint, name="recordstore-checkpoint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def sqlite_file(engine: Engine) -> str | None:
    """The path of the engine's SQLite database file (``None``: not SQLite, or not a
    file other connections can open by its name)."""
    database = engine.url.database if is_sqlite(engine) else None
    if not database or in_memory(engine.url) or database.startswith("file:"):
        return None
    return database


def is_sqlite(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "sqlite"


def placeholder(conn: Connection) -> str:
    """The driver's parameter marker, for statements written as SQL text."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


@contextlib.contextmanager
def write_transaction(
    engine: Engine, *, busy_timeout: float | None = None, durable: bool = False
) -> Iterator[Connection]:
    """A transaction that takes SQLite's write lock at once (BEGIN IMMEDIATE), waiting
    at most ``busy_timeout`` seconds for it (default: BUSY_TIMEOUT_S). ``durable``: its
    commit syncs the WAL to disk, and with it every transaction committed before it."""
    with translate_errors(), engine.connect() as conn:
        settings = {}
        if busy_timeout is not None:
            settings["busy_timeout"] = (str(int(busy_timeout * 1000)), str(int(BUSY_TIMEOUT_S * 1000)))
        if durable:
            settings["synchronous"] = ("FULL", "NORMAL")
        with _pragmas(conn, settings):
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn


def durable_transaction(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """A write transaction whose commit makes the whole run durable (see write_transaction)."""
    return write_transaction(engine, durable=True)


def unchecked_foreign_keys(conn: Connection) -> contextlib.AbstractContextManager[None]:
    """Foreign keys not checked on this connection for a while (on SQLite), for a run
    whose every key it writes is its own run's id: one lookup saved per row written
    (~0.4 s of 2.6 s for a migration of 195,604 records). `store check` verifies every
    key."""
    return _pragmas(conn, {"foreign_keys": ("OFF", "ON")})


@contextlib.contextmanager
def _pragmas(conn: Connection, settings: dict[str, tuple[str, str]]) -> Iterator[None]:
    """Set SQLite pragmas (name: (during, after)) on this connection for a while. Set on
    the driver connection, outside any transaction, as SQLite requires for some (inside
    one they are ignored: a connection left in a transaction is discarded, not pooled
    with the settings of the while)."""
    # Not in memory: there is no other connection to wait for nor a file to sync, and
    # discarding the connection would discard the database.
    raw = conn.connection.driver_connection if settings and is_sqlite(conn) and not in_memory(conn.engine.url) else None
    if raw is not None:
        for name, (during, _after) in settings.items():
            raw.execute(f"PRAGMA {name}={during}")
    try:
        yield
    finally:
        if raw is not None:
            if raw.in_transaction:
                conn.invalidate()
            else:
                for name, (_during, after) in settings.items():
                    raw.execute(f"PRAGMA {name}={after}")


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    try:
        yield
    except sa_exc.DBAPIError as exc:
        raise _translate(exc.orig if exc.orig is not None else exc) from exc
    except sqlite3.Error as exc:
        raise _translate(exc) from exc


def _translate(orig: BaseException) -> StoreError:
    text = str(orig)
    low = text.lower()
    if "database is locked" in low or "database is busy" in low:
        return BusyError("the store is busy: another process holds its write lock")
    if "readonly" in low or "read-only" in low:
        return StoreError("the store is read-only: nothing was changed")
    if "disk is full" in low or "disk full" in low:
        return StoreError("the disk is full: the last batch was rolled back, nothing was lost")
    if "not a database" in low:
        return StoreError("the file is not a recordstore database (not SQLite)")
    if "unable to open" in low:
        return StoreError("cannot open the store file (missing directory or no permission)")
    if "malformed" in low:
        return StoreError(f"the store file is damaged: {text}")
    return StoreError(f"database error: {text}")
