"""The benchmark's registry: the DeepSeek TUI layout with real migration work.

Used by ``scripts/bench.py`` twice, so both sides run the very same step functions:

* recordstore loads it with ``store --registry scripts/bench_registry.py``, which reads
  the module-level ``registry`` (a :class:`recordstore.Registry`);
* the standard-library baseline reads ``STEPS``, ``CURRENT``, ``FILES`` and
  ``VERSION_FIELD`` and never touches ``registry``.

``registry`` is built on first access (PEP 562 module ``__getattr__``), so loading this
module does not import recordstore (nor SQLAlchemy): the baseline's start-up time and
peak RSS stay its own.

Versions and steps (``STEPS[domain][i]`` migrates version ``i + 1`` to ``i + 2``):

* session v3: 1 -> 2 renames ``metadata.model`` to ``metadata.model_id``; 2 -> 3 turns
  each text block ``{"type": "text", "text": s}`` into ``{"type": "text", "parts": [s]}``
  (also inside ``tool_result`` blocks whose content is a list of blocks);
* task v2: 1 -> 2 adds ``checklist`` and ``github_events``;
* runtime v2: 1 -> 2 adds one field per record kind (thread, turn, item, event);
* offline_queue, automation, automation_run: v1, no steps.
"""

from __future__ import annotations

from typing import Any

VERSION_FIELD = "schema_version"

#: Domain -> file patterns, relative to the home (the same as recordstore.domains.deepseek).
FILES: dict[str, list[str]] = {
    "session": ["sessions/*.json", "sessions/checkpoints/latest.json"],
    "offline_queue": ["sessions/checkpoints/offline_queue.json"],
    "runtime": [
        "tasks/runtime/threads/*.json",
        "tasks/runtime/turns/*.json",
        "tasks/runtime/items/*.json",
        "tasks/runtime/state.json",
        "tasks/runtime/events/*.jsonl",
    ],
    "task": ["tasks/tasks/*.json"],
    "automation": ["automations/automations/*.json"],
    "automation_run": ["automations/runs/*/*.json"],
}


# --------------------------------------------------------------------------- session


def session_rename_model(record: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: ``metadata.model`` is now ``metadata.model_id``."""
    meta = record["metadata"]
    meta["model_id"] = meta.pop("model")
    return record


def _text_parts(blocks: list[Any]) -> None:
    for i, block in enumerate(blocks):
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" and "text" in block:
            rest = {k: v for k, v in block.items() if k not in ("type", "text")}
            blocks[i] = {"type": "text", "parts": [block["text"]], **rest}
        elif kind == "tool_result" and isinstance(block.get("content"), list):
            _text_parts(block["content"])


def session_text_parts(record: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: each text block ``{"type": "text", "text": s}`` becomes
    ``{"type": "text", "parts": [s]}``."""
    for message in record.get("messages") or ():
        content = message.get("content")
        if isinstance(content, list):
            _text_parts(content)
    return record


# --------------------------------------------------------------------------- task


def task_add_checklist(record: dict[str, Any]) -> None:
    """v1 -> v2: tasks gained a checklist and their GitHub events (empty by default)."""
    record.setdefault("checklist", {"items": [], "completion_pct": 0, "in_progress_id": None, "updated_at": None})
    record.setdefault("github_events", [])


# --------------------------------------------------------------------------- runtime


def runtime_add_fields(record: dict[str, Any]) -> None:
    """v1 -> v2: one new field per kind of runtime record, defaulted."""
    if "event" in record:
        record.setdefault("origin", "local")
    elif "latest_turn_id" in record:
        record.setdefault("coherence_state", "healthy")
    elif "item_ids" in record:
        record.setdefault("steer_count", 0)
    elif "kind" in record:
        record.setdefault("artifact_refs", [])
    else:  # state.json
        record.setdefault("next_seq", 0)


#: Domain -> step functions; ``STEPS[d][i]`` migrates version ``i + 1`` to ``i + 2``.
STEPS: dict[str, list[Any]] = {
    "session": [session_rename_model, session_text_parts],
    "offline_queue": [],
    "runtime": [runtime_add_fields],
    "task": [task_add_checklist],
    "automation": [],
    "automation_run": [],
}

#: Domain -> current version.
CURRENT: dict[str, int] = {name: len(steps) + 1 for name, steps in STEPS.items()}


def _build_registry() -> Any:
    from recordstore import Registry

    reg = Registry()
    for name, patterns in FILES.items():
        dom = reg.domain(name, version=CURRENT[name], files=patterns, version_field=VERSION_FIELD)
        for i, func in enumerate(STEPS[name], start=1):
            dom.add_step(i, func)
    return reg.validate()


def __getattr__(name: str) -> Any:
    if name == "registry":
        global registry
        registry = _build_registry()
        return registry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
