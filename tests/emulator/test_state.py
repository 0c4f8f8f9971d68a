"""State: reset, stats and dump on the admin API, and ``--state FILE`` persistence across restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mailchimp_marketing as MailchimpMarketing
import requests
from fixtures.emulator import free_port, start_emulator

from mailchimp_emulator.cli import build_parser


def sdk(running) -> MailchimpMarketing.Client:
    client = MailchimpMarketing.Client()
    client.set_config({"api_key": running.api_key, "server": "us1"})
    client.api_client.host = running.base_url
    return client


def test_reset_gives_an_empty_account(emulator, mc, list_id):
    mc.lists.add_list_member(list_id, {"email_address": "a@acme-outfitters.com", "status": "subscribed"})
    emulator.admin("POST", "reset")
    assert mc.lists.get_all_lists()["total_items"] == 0
    assert emulator.admin("GET", "stats")["routes"] == {"GET /lists": {"total": 1, "batch": 0}}


def test_stats_count_calls_per_route_pattern(emulator, mc, list_id):
    for i in range(3):
        mc.lists.set_list_member(list_id, f"s{i}@acme-outfitters.com", {"email_address": f"s{i}@acme-outfitters.com", "status_if_new": "subscribed"})
    mc.lists.get_list_member(list_id, "s0@acme-outfitters.com")
    stats = emulator.admin("GET", "stats")
    assert stats["routes"]["PUT /lists/{list_id}/members/{subscriber_hash}"] == {"total": 3, "batch": 0}
    assert stats["routes"]["GET /lists/{list_id}/members/{subscriber_hash}"] == {"total": 1, "batch": 0}
    assert stats["routes"]["POST /lists"] == {"total": 1, "batch": 0}
    assert stats["requests"] == 5
    assert stats["operations_applied"] == 0


def test_state_dump_is_json_of_the_account(emulator, mc, list_id):
    dump = emulator.admin("GET", "state")
    assert list(dump["lists"]) == [list_id]
    assert dump["faults"]["max_concurrent"] == 10


def create_list(client, name: str) -> str:
    """An audience with the fields Mailchimp requires (contact, permission reminder, campaign defaults)."""
    return client.lists.create_list({
        "name": name,
        "contact": {"company": "Acme", "address1": "1 Main St", "city": "Springfield", "state": "IL", "zip": "62701", "country": "US"},
        "permission_reminder": "You signed up.",
        "campaign_defaults": {"from_name": "Acme", "from_email": "news@acme-outfitters.com", "subject": "Hi", "language": "en"},
        "email_type_option": False,
    })["id"]


def test_state_survives_a_restart(tmp_path):
    path = tmp_path / "state.json"
    running, server, thread = start_emulator(state_file=path)
    client = sdk(running)
    list_id = create_list(client, "Persisted")
    client.lists.add_list_member(list_id, {"email_address": "kept@acme-outfitters.com", "status": "subscribed", "tags": ["vip"]})
    client.lists.add_list_member(list_id, {"email_address": "gone@acme-outfitters.com", "status": "subscribed"})
    client.lists.delete_list_member_permanent(list_id, "gone@acme-outfitters.com")
    batch = client.batches.start({"operations": [{"method": "GET", "path": "/ping", "operation_id": "p"}]})
    deadline = time.monotonic() + 10
    while client.batches.status(batch["id"])["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    deadline = time.monotonic() + 10  # saved periodically, before any shutdown
    while not (path.exists() and list_id in json.loads(path.read_text())["lists"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    server.should_exit = True
    thread.join(timeout=10)

    again, server2, thread2 = start_emulator(state_file=path)
    try:
        client2 = sdk(again)
        member = client2.lists.get_list_member(list_id, "kept@acme-outfitters.com")
        assert member["status"] == "subscribed" and [t["name"] for t in member["tags"]] == ["vip"]
        assert client2.lists.get_list(list_id)["stats"]["member_count"] == 1
        try:
            client2.lists.add_list_member(list_id, {"email_address": "gone@acme-outfitters.com", "status": "subscribed"})
        except Exception as err:  # noqa: BLE001 - the SDK's ApiClientError
            assert "Forgotten Email Not Subscribed" in err.text
        else:
            raise AssertionError("a permanently deleted email was re-added after restart")
        status = client2.batches.status(batch["id"])
        assert status["status"] == "finished"
        assert status["response_body_url"].startswith(again.root_url)
    finally:
        server2.should_exit = True
        thread2.join(timeout=10)


def test_cli_flags_map_to_fault_settings():
    args = build_parser().parse_args(
        ["--port", "9000", "--api-key", "k1", "--api-key", "k2", "--state", "s.json", "--latency-ms", "20",
         "--max-concurrent", "4", "--batch-ops-per-second", "100", "--results-ttl", "60", "--stuck-finalizing"]
    )
    assert (args.port, args.api_keys, args.state) == (9000, ["k1", "k2"], "s.json")
    assert (args.latency_ms, args.max_concurrent, args.batch_ops_per_second, args.results_ttl, args.stuck_finalizing) == (
        20, 4, 100, 60, True
    )


def test_cli_starts_a_server_with_its_flags(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailchimp_emulator.cli", "--port", str(port), "--api-key", "k" * 32 + "-us1",
         "--latency-ms", "5", "--max-concurrent", "3", "--results-ttl", "30", "--stuck-finalizing", "--state", str(tmp_path / "s.json")],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "emulator")},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                faults = requests.get(f"http://127.0.0.1:{port}/_emulator/faults", timeout=1).json()
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert (faults["latency_ms"], faults["max_concurrent"], faults["results_ttl_seconds"], faults["stuck_finalizing"]) == (5, 3, 30, True)
        assert requests.get(f"http://127.0.0.1:{port}/3.0/ping", auth=("x", "k" * 32 + "-us1"), timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert (tmp_path / "s.json").exists()  # saved on shutdown


def test_member_api_form_is_the_same_after_a_restart(tmp_path):
    """Members are stored compactly (records.Member): a member with every kind of stored value
    (ADDRESS merge value, tags, location, interests-free defaults, VIP, language) reads the same
    before and after the state file round trip. Address keys per Mailchimp's merge-field reference:
    addr1, addr2, city, state, zip, country."""
    path = tmp_path / "state.json"
    running, server, thread = start_emulator(state_file=path)
    client = sdk(running)
    list_id = create_list(client, "Round trip")
    address = {"addr1": "14 Harbour View", "addr2": "", "city": "Leeds", "state": "West Yorkshire", "zip": "LS1 4AP", "country": "GB"}
    client.lists.add_list_member(list_id, {
        "email_address": "ann.lee@acme-outfitters.com", "status": "subscribed", "tags": ["vip", "Retail"],
        "merge_fields": {"FNAME": "Ann", "LNAME": "Lee", "ADDRESS": address}, "vip": True, "language": "en",
        "location": {"latitude": 53.8, "longitude": -1.55},
    })
    before = client.lists.get_list_member(list_id, "ann.lee@acme-outfitters.com")
    assert before["merge_fields"]["ADDRESS"] == address
    assert before["full_name"] == "Ann Lee" and before["tags_count"] == 2 and before["last_changed"]
    assert before["location"]["latitude"] == 53.8 and before["stats"] == {"avg_open_rate": 0, "avg_click_rate": 0}
    deadline = time.monotonic() + 10
    while not (path.exists() and list_id in json.loads(path.read_text())["members"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    server.should_exit = True
    thread.join(timeout=10)

    again, server2, thread2 = start_emulator(state_file=path)
    try:
        after = sdk(again).lists.get_list_member(list_id, "ann.lee@acme-outfitters.com")
        assert after == before
    finally:
        server2.should_exit = True
        thread2.join(timeout=10)
