"""Run every benchmark module in bench/ and write the JSON results to bench/results/."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

from bench._table import table

HERE = Path(__file__).resolve().parent


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules([str(HERE)])
                   if m.name.startswith("bench_"))
    only = set(sys.argv[1:])
    results: dict[str, object] = {}
    for name in names:
        if only and name not in only:
            continue
        module = importlib.import_module(f"bench.{name}")
        started = time.monotonic()
        result = module.run()
        results[name] = result
        print(f"{name}: done in {time.monotonic() - started:.1f}s", flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    path = out / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    summary = table(results)
    path.with_suffix(".txt").write_text(summary + "\n")
    print(f"\n{summary}\n\nwrote {path} and {path.with_suffix('.txt').name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
