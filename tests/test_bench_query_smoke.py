"""scripts/bench_query.py runs end to end at a tiny scale (figures only, no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_query_benchmark_runs_and_reports_both_paths(tmp_path: Path) -> None:
    out = tmp_path / "q.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_query.py"), "--records", "3000", "--repeat", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {"status", "checklist.owner"}
    for f in figures.values():
        assert f["unindexed_ms"] > 0 and f["indexed_ms"] > 0
    assert "status" in res.stdout and "ratio" in res.stdout
