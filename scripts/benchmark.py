"""Run the benchmarks (`make bench`): audience, e-commerce and engagement, each printing its figures.

    make bench                               # all three at their default sizes
    make bench BENCH_ARGS="audience --sizes 10000"
Each benchmark is a script of its own (scripts/bench_*.py) with its own --help.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = {
    "audience": "scripts.bench_audience",
    "ecommerce": "scripts.bench_ecommerce",
    "engagement": "scripts.bench_engagement",
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in BENCHES] or list(BENCHES)
    rest = [a for a in argv if a not in BENCHES]
    status = 0
    for name in names:
        print(f"\n##### benchmark: {name}", flush=True)
        status |= subprocess.call([sys.executable, "-m", BENCHES[name], *rest])
    return status


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
