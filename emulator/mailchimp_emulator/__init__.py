"""A stateful emulator of the Mailchimp Marketing API v3, for the demo, the tests and the benchmarks.

Start it with ``mailchimp-emulator --port 8765``; the API is served under ``http://HOST:PORT/3.0/``
and the admin API (faults, activity injection, reset, stats) under ``http://HOST:PORT/_emulator/``.
"""

DEMO_API_KEY = "0123456789abcdef0123456789abcdef-us1"
"""The API key the emulator accepts when started without ``--api-key`` (documented in the README)."""
