"""The settings of every SQLite connection to a store, where the default store is,
which targets are URLs, and the bound of its integers.

Apart from :mod:`recordstore.engine` so that what does not load SQLAlchemy can use them:
import's workers, which write with :mod:`sqlite3` directly, and the command line until
it opens a store.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

__all__ = ["INT_MAX", "configure_connection", "default_db_path", "is_url"]

#: The largest integer an INTEGER column holds (SQLite's, and a BIGINT elsewhere): the
#: bound of every id, version, run number and count the store is asked about.
INT_MAX = 2**63 - 1


def default_db_path() -> Path:
    """``$XDG_DATA_HOME/recordstore/store.db``, else ``~/.local/share/recordstore/store.db``
    (also when ``$XDG_DATA_HOME`` is relative, which the XDG specification says to ignore)."""
    base = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".local" / "share")
    return Path(base) / "recordstore" / "store.db"


#: A URL's scheme: ``name://`` or ``name+driver://`` (as SQLAlchemy reads a dialect).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\+[A-Za-z0-9_]+)?://")


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether a store's target is a SQLAlchemy URL rather than a file's path: a str
    that begins with a scheme. A path is never one (``Path("a?b.db")``), and ``?`` or
    ``%`` in a path are letters of a file name, not a query or an escape; nor is a
    SQLite URI (``file:///abs/x.db``)."""
    return isinstance(target, str) and _SCHEME.match(target) is not None and not target.startswith("file:")


#: The page size of a new store, and how much the WAL may hold before a commit copies it
#: into the database file.
PAGE_SIZE = 16384
WAL_CHECKPOINT_BYTES = 64 * 1024 * 1024


def configure_connection(dbapi_conn: sqlite3.Connection) -> None:
    """The settings of every connection to a SQLite store (the engine's, and those of
    import workers that write their own batches)."""
    # Let SQLAlchemy's "begin" issue BEGIN, so writers can ask for IMMEDIATE.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    # Only a new, empty store takes it (before the WAL header is written): 16 KiB pages
    # instead of 4 KiB, a quarter of the pages to write, log, checkpoint and read.
    # 246,423 records imported by two writing workers, ten runs each interleaved: 2.63 s
    # median, 4.17 s of CPU, against 2.93 s and 4.51 s.
    cur.execute(f"PRAGMA page_size={PAGE_SIZE}")
    try:
        cur.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # read-only file systems: keep whatever mode the file has
    # NORMAL in WAL mode: each batch commits atomically (a killed process loses
    # nothing committed); the WAL is synced when a run finishes (durable_transaction),
    # which makes every batch of the run durable with one sync instead of one each.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA cache_size=-8192")
    # Checkpoint the WAL every ~64 MB rather than every 1,000 pages: fewer syncs of the
    # database file during a long run. (A store made before 16 KiB pages keeps 4 KiB.)
    page_size = cur.execute("PRAGMA page_size").fetchone()[0]
    cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_BYTES // page_size}")
    # Sorts larger than the cache (building an index after a bulk import of
    # millions of records) spill to a temporary file, not to memory.
    cur.execute("PRAGMA temp_store=FILE")
    cur.close()
