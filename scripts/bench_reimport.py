"""Re-import benchmark: a home whose files the application has all changed since.

Writes N task files (one JSON object each, as DeepSeek TUI keeps tasks), imports them
with the real CLI (`store import`, its own process), rewrites every file with one field
changed, and imports again: every file is compared record by record, its old row backed
up and replaced. Prints both times and the re-import/first-import ratio, as the median
of repeated runs (each on a new store). The first import is the baseline measured in
the same run.

    python scripts/bench_reimport.py [--files 20000] [--repeat 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_tasks(home: Path, files: int, status: str) -> None:
    tasks = home / "tasks" / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        task = {"schema_version": 2, "id": f"task_{i:08x}", "prompt": f"Run cargo test {i}", "status": status, "n": i}
        (tasks / f"task_{i:08x}.json").write_text(json.dumps(task, indent=2) + "\n", encoding="utf-8")


def timed_import(db: Path, home: Path) -> tuple[float, dict[str, object]]:
    """Seconds taken by `store import --json HOME` into ``db``, and its summary."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "recordstore", "--db", str(db), "--quiet", "import", "--json", str(home)],
        capture_output=True, text=True, check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"store import failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    first: list[float] = []
    again: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-reimport-") as tmp:
        home = Path(tmp) / "home"
        for run in range(args.repeat):
            db = Path(tmp) / f"store{run}.db"
            write_tasks(home, args.files, "queued")
            seconds, summary = timed_import(db, home)
            assert summary["domains"]["task"]["imported"] == args.files, summary  # type: ignore[index]
            first.append(seconds)
            write_tasks(home, args.files, "completed")
            seconds, summary = timed_import(db, home)
            assert summary["domains"]["task"]["updated"] == args.files, summary  # type: ignore[index]
            again.append(seconds)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(f"{db}{suffix}"):
                    os.unlink(f"{db}{suffix}")
    figures = {
        "files": args.files,
        "first_import_s": statistics.median(first),
        "reimport_s": statistics.median(again),
        "first_runs": first,
        "reimport_runs": again,
    }
    figures["ratio"] = figures["reimport_s"] / figures["first_import_s"]  # type: ignore[operator]
    print(f"{args.files} task files, median of {args.repeat}")
    print(f"first import            {figures['first_import_s']:7.2f} s")
    print(f"re-import, all changed  {figures['reimport_s']:7.2f} s")
    print(f"ratio re-import/first import {figures['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
