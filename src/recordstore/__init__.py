"""recordstore: a SQLite-backed versioned record store.

Import JSON records from files into SQLite, migrate them forward step by step with
backups, export them back to the files they came from, and query them::

    from recordstore import Store

    with Store("records.db") as store:
        store.import_paths(["~/.deepseek"])
        store.migrate()
        for record in store.query("task").where("status", "=", "completed"):
            print(record.key, record.data["prompt"])
"""

from .errors import (
    BusyError,
    ExportError,
    InputError,
    MigrationError,
    NewerVersionError,
    QueryError,
    RecordStoreError,
    RegistryError,
    RestoreConflictError,
    StoreError,
    StoreVersionError,
)
from .exporter import ExportResult
from .importer import DomainCounts, ImportResult
from .migrator import MigrationResult, RecordDiff, RestoreResult, migrate_value
from .query import Query, Record
from .registry import Domain, Registry, Step, load_registry
from .runs import RunInfo
from .store import CheckResult, DomainStatus, Progress, Store, StoreStatus



def __getattr__(name: str) -> str:
    # Looked up when asked for: importlib.metadata takes ~40 ms to import, on every command.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("recordstore")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'recordstore' has no attribute {name!r}")

__all__ = [
    "BusyError",
    "CheckResult",
    "Domain",
    "DomainCounts",
    "DomainStatus",
    "ExportError",
    "ExportResult",
    "ImportResult",
    "InputError",
    "MigrationError",
    "MigrationResult",
    "NewerVersionError",
    "Progress",
    "Query",
    "QueryError",
    "Record",
    "RecordDiff",
    "RecordStoreError",
    "Registry",
    "RegistryError",
    "RestoreConflictError",
    "RestoreResult",
    "RunInfo",
    "Step",
    "Store",
    "StoreError",
    "StoreStatus",
    "StoreVersionError",
    "__version__",
    "load_registry",
    "migrate_value",
]
