"""The realistic pace profile: a batch waits in ``pending``, runs at the reported rate, and stays
``finalizing`` after its last operation before ``finished``.

The reported figures come from the reports collected in the shared API notes (section 12 G):
drewm/mailchimp-api#178 (56,785 member PUTs over about an hour), the beabee finalizing tail
(``finished_operations`` complete "within seconds", ``finished`` later), and the notes' suggested
ranges (queue 0-60 s, finalizing 5-30 s).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest
import requests

from mailchimp_emulator.cli import build_parser

REPORTED_OPS_PER_SECOND = 56_785 / 3600  # drewm/mailchimp-api#178: one batch, about an hour
SPEEDUP = 100.0


def _knobs(faults: dict[str, Any]) -> tuple[float, float, float]:
    return faults["batch_ops_per_second"], faults["batch_queue_seconds"], faults["batch_finalizing_seconds"]


def test_pace_is_off_by_default_and_the_mailchimp_profile_matches_the_reports(emulator):
    assert _knobs(emulator.admin("GET", "faults")) == (0, 0, 0)
    rate, queue, tail = _knobs(emulator.admin("POST", "faults", json={"pace": "mailchimp"}))
    assert abs(rate - REPORTED_OPS_PER_SECOND) / REPORTED_OPS_PER_SECOND < 0.1
    assert 0 < queue <= 60 and 5 <= tail <= 30
    assert _knobs(emulator.admin("POST", "faults", json={"pace": "off"})) == (0, 0, 0)


def test_an_unknown_profile_is_refused_naming_the_known_ones(emulator):
    resp = requests.post(f"{emulator.root_url}/_emulator/faults", json={"pace": "glacial"}, timeout=5)
    assert resp.status_code == 400 and "mailchimp" in resp.json()["detail"]


def test_cli_pace_flags():
    args = build_parser().parse_args(["--pace", "mailchimp", "--pace-speedup", "10"])
    assert (args.pace, args.pace_speedup) == ("mailchimp", 10)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pace", "glacial"])


def test_a_batch_goes_through_the_profile_s_delays(emulator):
    """At 100x: 0.3 s queued, 320 PUTs at 1,600/s (0.2 s), 0.2 s finalizing."""
    faults = emulator.admin("POST", "faults", json={"pace": "mailchimp", "pace_speedup": SPEEDUP})
    rate, queue, tail = _knobs(faults)
    list_id = emulator.create_audience()
    emails = [f"reader{n}@brightmail.co" for n in range(320)]
    operations = [
        {"method": "PUT", "path": f"/lists/{list_id}/members/{hashlib.md5(e.encode()).hexdigest()}",
         "operation_id": e, "body": json.dumps({"email_address": e, "status_if_new": "subscribed"})}
        for e in emails
    ]
    t0 = time.monotonic()
    batch_id = emulator.api("POST", "/batches", json={"operations": operations}).json()["id"]
    seen: list[tuple[float, dict[str, Any]]] = []
    while time.monotonic() - t0 < 10:
        seen.append((time.monotonic(), emulator.api("GET", f"/batches/{batch_id}").json()))
        if seen[-1][1]["status"] == "finished":
            break
        time.sleep(0.005)
    order = [b["status"] for _, b in seen]
    order = [s for i, s in enumerate(order) if not i or s != order[i - 1]]
    assert [s for s in order if s != "preprocessing"] == ["pending", "started", "finalizing", "finished"]

    def first(status: str) -> float:
        return next(t for t, b in seen if b["status"] == status)

    def last(status: str) -> float:
        return max(t for t, b in seen if b["status"] == status)

    assert first("started") - t0 >= queue
    assert first("finalizing") - last("pending") >= len(operations) / rate * 0.95
    assert first("finished") - last("started") >= tail
    finalizing = [b for _, b in seen if b["status"] == "finalizing"]
    assert all(b["finished_operations"] == b["total_operations"] == len(operations) for b in finalizing)
    done = seen[-1][1]
    assert done["completed_at"] and done["response_body_url"] and done["errored_operations"] == 0
    assert first("finished") - t0 < queue + len(operations) / rate + tail + 3
