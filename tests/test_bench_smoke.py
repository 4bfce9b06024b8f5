"""Smoke test of the benchmark (issue 4): it runs end to end at a tiny scale.

No timing assertions: only that every phase ran for every tool and produced figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"

ROWS = [
    ("import", "recordstore"),
    ("import", "baseline"),
    ("migrate", "recordstore"),
    ("migrate", "baseline"),
    ("export", "recordstore"),
    ("export", "baseline"),
    ("jsonl-ingest", "recordstore"),
    ("jsonl-ingest", "sqlite-utils"),
]


def test_bench_runs_at_tiny_scale(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--records", "500", "--workdir", str(tmp_path / "work"), "--json", str(figures)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for phase, tool in ROWS:
        assert any(line.split()[:2] == [phase, tool] for line in lines), f"no {phase} {tool} row in:\n{proc.stdout}"
    for phase, other in [("import", "baseline"), ("migrate", "baseline"), ("export", "baseline"), ("jsonl-ingest", "sqlite-utils")]:
        assert any(line.startswith(f"ratio {phase} ") and f"recordstore/{other}" in line for line in lines), proc.stdout
    assert "exports identical (recordstore vs baseline):" in proc.stdout

    data = json.loads(figures.read_text())
    rows = {(r["phase"], r["tool"]): r for r in data["rows"]}
    assert set(rows) == set(ROWS)
    for key, row in rows.items():
        assert row["records"] > 0, key
        assert row["records_per_s"] > 0, key
        assert row["peak_rss_mb"] > 0, key
    assert data["checks_failed"] == []
    assert data["exports_equal_json"] is True  # both exports hold the same records
    assert set(data["ratios"]) == {"import", "migrate", "export", "jsonl-ingest"}
