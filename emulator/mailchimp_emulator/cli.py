"""``mailchimp-emulator``: run the emulator with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from . import DEMO_API_KEY
from .app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="mailchimp-emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", action="append", dest="api_keys", help=f"accepted key (repeatable; default {DEMO_API_KEY})")
    parser.add_argument("--state", help="JSON file the state is loaded from and saved to")
    args = parser.parse_args(argv)
    uvicorn.run(create_app(args.api_keys), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
