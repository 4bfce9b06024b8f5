"""Query benchmark: a JSON-path equality filter on one domain of N records.

Builds a store holding N task records (one JSON-lines file imported with --domain task),
then times the first page (50 records) of ``where("status", "=", ...)`` and of a
nested-path filter, without and with an index on the path (``Store.add_index``), as the
median of repeated runs. Prints milliseconds and the indexed/unindexed ratio.

    python scripts/bench_query.py [--records 100000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from recordstore import Store

STATUSES = ["completed", "failed", "running", "queued", "cancelled"]


def build(workdir: Path, records: int, seed: int) -> Path:
    rng = random.Random(seed)
    path = workdir / "tasks.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(records):
            # "rare" is one status in a thousand: the filter must find few rows among many.
            status = "rare" if i % 1000 == 7 else rng.choice(STATUSES)
            task = {
                "schema_version": 2,
                "id": f"task_{i:08x}",
                "prompt": "Run cargo test " + "x" * rng.randint(20, 400),
                "status": status,
                "model": rng.choice(["deepseek-v4-pro", "deepseek-chat"]),
                "duration_ms": rng.randint(10, 100_000),
                "checklist": {"completion_pct": rng.randint(0, 100), "owner": f"user{i % 997}"},
            }
            fh.write(json.dumps(task, separators=(",", ":")) + "\n")
    return path


def first_page_ms(store: Store, path: str, value: object, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        page = store.query("task").where(path, "=", value).limit(50).all()
        times.append((time.perf_counter() - start) * 1000)
        assert page, f"no record has {path} = {value!r}"
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="recordstore-qbench-") as tmp:
        work = Path(tmp)
        source = build(work, args.records, args.seed)
        with Store(work / "q.db") as store:
            result = store.import_paths([source], domain="task")
            assert result.ok and result.domains["task"].imported == args.records
            figures = {}
            for path, value in (("status", "rare"), ("checklist.owner", "user42")):
                plain = first_page_ms(store, path, value, args.repeat)
                store.add_index("task", path)
                indexed = first_page_ms(store, path, value, args.repeat)
                figures[path] = {"unindexed_ms": round(plain, 2), "indexed_ms": round(indexed, 2)}
    print(f"query first page (50 records) on {args.records} task records, median of {args.repeat}")
    print(f"{'path':18s} {'no index ms':>12s} {'index ms':>10s} {'ratio':>8s}")
    for path, f in figures.items():
        ratio = f["indexed_ms"] / f["unindexed_ms"]
        f["ratio"] = round(ratio, 4)
        print(f"{path:18s} {f['unindexed_ms']:12.2f} {f['indexed_ms']:10.2f} {ratio:8.3f}x")
    if args.json:
        args.json.write_text(json.dumps({"records": args.records, "figures": figures}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
