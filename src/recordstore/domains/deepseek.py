"""The DeepSeek TUI (CodeWhale) home: ``~/.deepseek/`` or ``~/.codewhale/``.

Six domains, as the application writes them. runtime and task went from v1 to v2 by
adding fields only; their 1 -> 2 steps change nothing, but the chain must have them or
a real v1 file could never be brought to v2.

The application never names a record (a UUID, ``task_…``, ``thr_…``) or a directory of
them with a leading ``.``; what does lie there so is no record: an editor's lock (Emacs'
``.#name.json``, a link to nowhere), the ``._name.json`` resource forks a home copied
from macOS carries, a temporary file. ``[!.]`` keeps those out of every domain, so they
are skipped and counted like any other file in no domain, not refused as bad records.
"""

from __future__ import annotations

from typing import Any

from recordstore.registry import Registry

registry = Registry()

session = registry.domain(
    "session",
    version=1,
    files=["sessions/[!.]*.json", "sessions/checkpoints/latest.json"],
)
offline_queue = registry.domain(
    "offline_queue",
    version=1,
    files=["sessions/checkpoints/offline_queue.json"],
)
runtime = registry.domain(
    "runtime",
    version=2,
    files=[
        "tasks/runtime/threads/[!.]*.json",
        "tasks/runtime/turns/[!.]*.json",
        "tasks/runtime/items/[!.]*.json",
        "tasks/runtime/state.json",
        "tasks/runtime/events/[!.]*.jsonl",
    ],
)
task = registry.domain("task", version=2, files=["tasks/tasks/[!.]*.json"])
automation = registry.domain("automation", version=1, files=["automations/automations/[!.]*.json"])
automation_run = registry.domain("automation_run", version=1, files=["automations/runs/[!.]*/[!.]*.json"])


@runtime.step(1)
def runtime_v2_adds_fields(record: dict[str, Any]) -> None:
    """v2 only added optional fields, which the application defaults when absent."""


@task.step(1)
def task_v2_adds_fields(record: dict[str, Any]) -> None:
    """v2 only added optional fields, which the application defaults when absent."""
