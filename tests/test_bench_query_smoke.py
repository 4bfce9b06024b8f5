"""scripts/bench_query.py and scripts/bench_reimport.py run end to end at a tiny scale
(figures only, no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _script(tmp_path: Path, name: str, *args: str) -> tuple[str, Any]:
    """Run ``scripts/NAME`` with ``args``: what it printed, and the figures it wrote as JSON."""
    out = tmp_path / "figures.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *args, "--json", str(out)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout, json.loads(out.read_text())


def test_query_benchmark_runs_and_reports_both_paths(tmp_path: Path) -> None:
    printed, found = _script(tmp_path, "bench_query.py", "--records", "3000", "--repeat", "2")
    figures = found["figures"]
    assert set(figures) == {"status", "checklist.owner"}
    for f in figures.values():
        assert f["unindexed_ms"] > 0 and f["indexed_ms"] > 0
    assert "status" in printed and "ratio" in printed


def test_reimport_benchmark_runs_and_reports_both_imports(tmp_path: Path) -> None:
    printed, figures = _script(tmp_path, "bench_reimport.py", "--files", "200", "--repeat", "1")
    assert figures["files"] == 200 and figures["first_import_s"] > 0 and figures["reimport_s"] > 0
    assert "ratio re-import/first import" in printed
