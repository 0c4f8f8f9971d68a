"""``mailchimp-emulator``: run the Mailchimp Marketing API v3 emulator with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from . import DEMO_API_KEY
from .app import create_app
from .pace import PROFILES, apply_pace
from .state import Faults


def build_parser() -> argparse.ArgumentParser:
    defaults = Faults()
    parser = argparse.ArgumentParser(prog="mailchimp-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help=f"accepted key or OAuth token (repeatable; default {DEMO_API_KEY})"
    )
    parser.add_argument("--state", help="JSON file the state is loaded from at start and saved to (every few seconds and on exit)")
    parser.add_argument("--latency-ms", type=float, default=defaults.latency_ms, help="added to every /3.0 request")
    parser.add_argument(
        "--max-concurrent", type=int, default=defaults.max_concurrent, help="requests in flight per key before 429 (Mailchimp: 10)"
    )
    parser.add_argument(
        "--batch-ops-per-second", type=float, default=defaults.batch_ops_per_second, help="batch processing rate; 0 = as fast as possible"
    )
    parser.add_argument(
        "--results-ttl", type=float, default=defaults.results_ttl_seconds, help="seconds after completion until a batch and its results 404"
    )
    parser.add_argument("--stuck-finalizing", action="store_true", help="batches stay in 'finalizing' once all operations ran")
    parser.add_argument(
        "--pace", choices=sorted(PROFILES), help="batch pace profile (mailchimp: 16 ops/s, 30 s queue, 20 s finalizing; see pace.py)"
    )
    parser.add_argument("--pace-speedup", type=float, default=1.0, help="run the --pace profile this many times faster")
    parser.add_argument("--log-level", default="warning")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    faults = Faults(
        latency_ms=args.latency_ms,
        max_concurrent=args.max_concurrent,
        batch_ops_per_second=args.batch_ops_per_second,
        results_ttl_seconds=args.results_ttl,
        stuck_finalizing=args.stuck_finalizing,
    )
    if args.pace:
        apply_pace(faults, args.pace, args.pace_speedup)
    app = create_app(args.api_keys, state_file=args.state, faults=faults)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
