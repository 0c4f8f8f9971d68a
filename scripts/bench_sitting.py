"""The production-size benchmarks of issue #17 in one sitting (`make bench-sitting`), one after another.

    make bench-sitting                                   # everything, about 1.5 hours on 2 cores
    make bench-sitting SITTING_ARGS="--only audience engagement"

Why a script: the README's table is only comparable when every figure comes from the same machine in
the same sitting, with nothing else running. Each step is one of the benchmark scripts (they print
their own tables); this runs them in sequence, keeps each one's full output in
``.bench/sitting-<UTC time>/<step>.log``, samples the machine's 1-minute load every 10 s while
a step runs, and ends with one summary: each step's wall time, exit status and load (mean and max),
so a figure measured on a busy machine shows as such. It starts by printing the load and warns when
the machine is not quiet (other jobs make every figure slower, by up to a third or more).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUIET_LOAD = 1.5  # 1-minute load average over 2 cores below which the machine counts as quiet

# name -> the benchmark command (module and arguments), in the order they run.
STEPS: dict[str, list[str]] = {
    "audience": ["scripts.bench_audience", "--sizes", "1000000", "--databases", "sqlite"],
    "ecommerce": ["scripts.bench_ecommerce", "--products", "100000", "--orders", "1000000"],
    "engagement": ["scripts.bench_engagement", "--campaigns", "1420", "--recipients", "5000"],
    "compare": ["scripts.bench_compare", "--members", "100000", "--activity-members", "24200",
                "--campaigns", "100"],
}


@dataclass
class StepResult:
    name: str
    seconds: float = 0.0
    status: int | None = None
    loads: list[float] = field(default_factory=list)

    def line(self) -> str:
        mean = sum(self.loads) / len(self.loads) if self.loads else 0.0
        peak = max(self.loads, default=0.0)
        state = "ok" if self.status == 0 else f"FAILED (exit {self.status})"
        return f"{self.name:<11} {self.seconds:8.1f} s  {state:<18} load mean {mean:4.1f}, max {peak:4.1f}"


def run_step(name: str, command: list[str], log_path: Path) -> StepResult:
    """Run one benchmark, its output both on screen and in ``log_path``, sampling the load."""
    result = StepResult(name, loads=[os.getloadavg()[0]])
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10):
            result.loads.append(os.getloadavg()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    with log_path.open("w") as log:
        log.write(f"$ {sys.executable} -m {' '.join(command)}\n")
        proc = subprocess.Popen([sys.executable, "-m", *command], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        result.status = proc.wait()
    result.seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(STEPS), help="run these steps only (in the usual order)")
    parser.add_argument("--out", type=Path, help="log directory (default: .bench/sitting-<UTC time>)")
    args = parser.parse_args(argv)
    names = [n for n in STEPS if not args.only or n in args.only]
    out = args.out or ROOT / ".bench" / f"sitting-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
    out.mkdir(parents=True, exist_ok=True)

    load = os.getloadavg()[0]
    print(f"sitting: {', '.join(names)}; logs in {out}; {os.cpu_count()} cores; load {load:.2f}", flush=True)
    if load > QUIET_LOAD:
        print(f"WARNING: the machine is not quiet (load {load:.2f} > {QUIET_LOAD}); every figure will be "
              "slower than on an idle machine, and the summary shows by how much load.", flush=True)
    results = []
    for name in names:
        print(f"\n##### {name} ({datetime.now(timezone.utc):%H:%M:%S} UTC, load {os.getloadavg()[0]:.2f})", flush=True)
        results.append(run_step(name, STEPS[name], out / f"{name}.log"))
    summary = "\n".join(["", "##### sitting summary", *(r.line() for r in results)])
    print(summary)
    (out / "summary.txt").write_text(summary.lstrip() + "\n")
    return 0 if all(r.status == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
