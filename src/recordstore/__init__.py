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

from __future__ import annotations

# Nothing is imported here but when asked for: the ``store`` command imports this
# package before its own code can take Ctrl-C (recordstore._command), so whatever this
# module loaded (the registry's modules took ~40 ms) was a window in which Ctrl-C gave
# a traceback instead of its one line. ``if TYPE_CHECKING`` without importing typing
# (~8 ms), as type checkers allow.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .errors import (
        BusyError,
        ExportDirectoryError,
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

#: What is loaded when first asked for (PEP 562), with SQLAlchemy (~0.2 s): so that
#: ``store --help``, a mistyped option and a registry file that imports recordstore do
#: not wait for it.
_LAZY = {
    "BusyError": "errors",
    "ExportDirectoryError": "errors",
    "ExportError": "errors",
    "InputError": "errors",
    "MigrationError": "errors",
    "NewerVersionError": "errors",
    "QueryError": "errors",
    "RecordStoreError": "errors",
    "RegistryError": "errors",
    "RestoreConflictError": "errors",
    "StoreError": "errors",
    "StoreVersionError": "errors",
    "Domain": "registry",
    "Registry": "registry",
    "Step": "registry",
    "load_registry": "registry",
    "ExportResult": "exporter",
    "DomainCounts": "importer",
    "ImportResult": "importer",
    "MigrationResult": "migrator",
    "RecordDiff": "migrator",
    "RestoreResult": "migrator",
    "migrate_value": "migrator",
    "Query": "query",
    "Record": "query",
    "RunInfo": "runs",
    "CheckResult": "store",
    "DomainStatus": "store",
    "Progress": "store",
    "Store": "store",
    "StoreStatus": "store",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        import importlib

        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    # Looked up when asked for: importlib.metadata takes ~40 ms to import, on every command.
    if name == "__version__":
        from importlib import metadata

        try:
            return metadata.version("recordstore")
        except metadata.PackageNotFoundError:  # a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'recordstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "BusyError",
    "CheckResult",
    "Domain",
    "DomainCounts",
    "DomainStatus",
    "ExportDirectoryError",
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
