"""scripts/bench_reimport.py runs end to end at a tiny scale (figures only, no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reimport_benchmark_runs_and_reports_both_imports(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_reimport.py"), "--files", "200", "--repeat", "1", "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    figures = json.loads(out.read_text())
    assert figures["files"] == 200 and figures["first_import_s"] > 0 and figures["reimport_s"] > 0
    assert "ratio re-import/first import" in res.stdout
