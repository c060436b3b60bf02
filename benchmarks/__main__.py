"""Run the benchmarks: `python -m benchmarks [NAME ...]` (NAME as in bench_NAME.py; default all)."""

import importlib
import sys
from pathlib import Path


def main(names: list[str]) -> int:
    available = sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))
    unknown = set(names) - set(available)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {available}", file=sys.stderr)
        return 2
    for name in names or available:
        print(f"\n== {name}", flush=True)
        importlib.import_module(f"benchmarks.bench_{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
