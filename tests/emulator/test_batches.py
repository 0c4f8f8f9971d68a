"""Batch operations: lifecycle, results archive, limits and batch faults (facts §5, §9.5, §10)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import time
from typing import Any

import pytest
import requests

from mailchimp_emulator import batches
from mailchimp_emulator.routing import Reply

PUT_MEMBER = "PUT /lists/{list_id}/members/{subscriber_hash}"


def member_op(list_id: str, email: str, operation_id: str | None = None, **body: Any) -> dict[str, Any]:
    op = {
        "method": "PUT",
        "path": f"/lists/{list_id}/members/{hashlib.md5(email.lower().encode()).hexdigest()}",
        "body": json.dumps({"email_address": email, "status_if_new": "subscribed", **body}),
    }
    if operation_id is not None:
        op["operation_id"] = operation_id
    return op


def wait_for(mc, batch_id: str, status: str = "finished", timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch = mc.batches.status(batch_id)
        if batch["status"] == status:
            return batch
        assert time.monotonic() < deadline, f"batch {batch_id} still {batch['status']}"
        time.sleep(0.05)


def poll_until_finished(
    mc, batch_id: str, *, deadline: float, interval: float
) -> tuple[dict[str, Any], float, list[dict[str, Any]]]:
    """Poll a batch until it is finished (failing past ``deadline``, a ``time.monotonic()``
    value): its last status, the slowest poll in seconds, and every status seen."""
    seen: list[dict[str, Any]] = []
    slowest = 0.0
    while True:
        t = time.monotonic()
        status = mc.batches.status(batch_id)
        slowest = max(slowest, time.monotonic() - t)
        seen.append(status)
        if status["status"] == "finished":
            return status, slowest, seen
        assert time.monotonic() < deadline, f"batch {batch_id} still {status['status']}"
        time.sleep(interval)


def read_archive(url: str) -> tuple[bytes, list[tarfile.TarInfo], dict[str, list[dict[str, Any]]]]:
    """Download a results archive and stream it like the tap does (``r|gz``)."""
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200
    entries, files = [], {}
    with tarfile.open(fileobj=io.BytesIO(resp.content), mode="r|gz") as tar:
        for info in tar:
            entries.append(info)
            if info.isfile():
                files[info.name] = json.loads(tar.extractfile(info).read())
    return resp.content, entries, files


def test_new_batch_is_pending_with_zero_counts_then_finishes(emulator, mc, list_id):
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 1})  # hold it so 'pending' is observable
    blocker = mc.batches.start({"operations": [member_op(list_id, "first@acme-outfitters.com")] * 5})
    created = mc.batches.start({"operations": [member_op(list_id, "ann@acme-outfitters.com", "op-1")]})

    assert re.fullmatch(r"[0-9a-f]{10}", created["id"])
    assert created["status"] == "pending"
    assert (created["total_operations"], created["finished_operations"], created["errored_operations"]) == (0, 0, 0)
    assert created["completed_at"] == "" and created["response_body_url"] == ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", created["submitted_at"])
    assert {l["rel"] for l in created["_links"]} == {"parent", "self", "delete"}

    emulator.admin("POST", "faults", json={"batch_ops_per_second": 0})
    wait_for(mc, blocker["id"])
    finished = wait_for(mc, created["id"])
    assert finished["total_operations"] == finished["finished_operations"] == 1
    assert finished["completed_at"] != ""
    assert re.fullmatch(
        rf"{re.escape(emulator.root_url)}/_emulator/batch-results/{created['id']}\.tar\.gz\?Expires=\d+", finished["response_body_url"]
    )
    listing = mc.batches.list()
    assert listing["total_items"] == 2 and {b["id"] for b in listing["batches"]} == {blocker["id"], created["id"]}


def test_results_archive_matches_mailchimps_layout(emulator, mc, list_id):
    ops = [member_op(list_id, f"reader{i}@acme-outfitters.com", f"op-{i}") for i in range(5)]
    ops.append(member_op(list_id, "nobody@example.com", "fake-email"))
    ops.append({"method": "GET", "path": f"/lists/{list_id}"})  # no operation_id
    ops.append({"method": "GET", "path": "/lists", "params": {"count": 1, "fields": "lists.id"}, "operation_id": "with-params"})
    batch = wait_for(mc, mc.batches.start({"operations": ops})["id"])
    assert (batch["total_operations"], batch["errored_operations"]) == (8, 1)

    raw, entries, files = read_archive(batch["response_body_url"])
    assert raw[3] & 0x08  # the gzip header carries a file name (FNAME) ...
    assert raw[10 : 10 + len(batch["id"]) + 5] == f"{batch['id']}.tar\0".encode()  # ... "<id>.tar"
    assert gzip.decompress(raw)[257:265] == b"ustar  \0"  # GNU tar magic
    assert entries[0].name in ("./", ".") and entries[0].isdir()
    assert all(re.fullmatch(r"\./[0-9a-f]{10}\.json", e.name) for e in entries[1:])
    assert [] in files.values()
    assert sum(1 for f in files.values() if f) >= 2  # split over several files

    results = [r for f in files.values() for r in f]
    assert all(list(r) == ["status_code", "operation_id", "response"] for r in results)
    by_id = {r["operation_id"]: r for r in results}
    assert len(results) == 8
    assert by_id["op-0"]["status_code"] == 200 and json.loads(by_id["op-0"]["response"])["status"] == "subscribed"
    failed = by_id["fake-email"]
    assert failed["status_code"] == 400
    problem = json.loads(failed["response"])
    assert problem["title"] == "Invalid Resource" and "looks fake or invalid" in problem["detail"]
    assert json.loads(by_id[None]["response"])["id"] == list_id
    assert json.loads(by_id["with-params"]["response"]) == {"lists": [{"id": list_id}]}


def test_results_archive_is_the_tar_that_tarfile_writes():
    """The archive is written piece by piece, without ``tarfile``: its tar must be byte for byte
    what ``tarfile`` writes for the same entries (headers, padding, end blocks, record size)."""
    results = [(200, f"op{n}", '{"url":"https://x.test/a"}') for n in range(2000)]
    results += [(204, None, ""), (200, "big", "y" * 200_000)]  # 2,002 results: three files
    raw = batches.build_archive("abc", results)
    tar_bytes = gzip.decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        entries = [(info, tar.extractfile(info).read() if info.isfile() else None) for info in tar]
    again = io.BytesIO()
    with tarfile.open(fileobj=again, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    assert again.getvalue() == tar_bytes
    assert sorted(len(json.loads(data)) for _, data in entries[1:]) == [0, 666, 668, 668]


TEXTS = ["plain", "caf\u00e9 \U0001f600", "del\x7f", "ctl\x00\x1f\t\n\r\b\f", 'q"uo\\te/s', "\u2028"]


@pytest.mark.parametrize("text", TEXTS)
def test_results_are_encoded_like_json_dumps(text):
    """msgspec encodes float-free bodies and result strings where its text is the standard library's;
    everything else (non-ASCII, DEL) takes the standard library's way: the bytes are the same."""
    item = {"email_address": text, "n": 2**70, "ok": True, "none": None, "activity": [], "_links": []}
    body = {"emails": [item], text: 1}
    response = batches.response_text(Reply(200, body, float_free=True))
    assert response == json.dumps(body, separators=(",", ":"))
    expected = {"status_code": 200, "operation_id": text, "response": response.replace("/", "\\/")}
    assert batches._result_json(200, text, response) == json.dumps(expected, separators=(",", ":")).encode()


def test_bodies_with_floats_keep_the_standard_librarys_numbers():
    body = {"rate": 1e16, "small": 1e-7, "nan": float("nan")}
    assert batches.response_text(Reply(200, body)) == '{"rate":1e+16,"small":1e-07,"nan":NaN}'


def test_each_operation_is_applied_exactly_once(emulator, mc, list_id):
    ops = [member_op(list_id, f"once{i}@acme-outfitters.com", f"op-{i}") for i in range(30)]
    wait_for(mc, mc.batches.start({"operations": ops})["id"])
    routes = emulator.admin("GET", "stats")["routes"]
    assert routes[PUT_MEMBER] == {"total": 30, "batch": 30}
    assert mc.lists.get_list_members_info(list_id, count=0)["total_items"] == 30


def test_batched_operations_follow_the_same_rules_as_direct_calls(mc, list_id):
    mc.lists.add_list_member(list_id, {"email_address": "out@acme-outfitters.com", "status": "unsubscribed"})
    ops = [
        {"method": "POST", "path": f"/lists/{list_id}/members", "operation_id": "dup", "body": json.dumps({"email_address": "out@acme-outfitters.com", "status": "subscribed"})},
        member_op(list_id, "out@acme-outfitters.com", "comply", status="subscribed"),
        {"method": "DELETE", "path": f"/lists/{list_id}/members/out@acme-outfitters.com", "operation_id": "archive"},
        {"method": "POST", "path": "/lists/0000000000/members", "operation_id": "unknown-list", "body": "{}"},
        {"method": "POST", "path": f"/lists/{list_id}/members", "operation_id": "bad-json", "body": "{not json"},
    ]
    batch = wait_for(mc, mc.batches.start({"operations": ops})["id"])
    _, _, files = read_archive(batch["response_body_url"])
    by_id = {r["operation_id"]: r for f in files.values() for r in f}
    assert json.loads(by_id["dup"]["response"])["title"] == "Member Exists"
    assert json.loads(by_id["comply"]["response"])["title"] == "Member In Compliance State"
    assert (by_id["archive"]["status_code"], by_id["archive"]["response"]) == (204, "")
    assert by_id["unknown-list"]["status_code"] == 404
    assert json.loads(by_id["bad-json"]["response"])["title"] == "JSON Parse Error"
    assert batch["errored_operations"] == 4


@pytest.mark.parametrize(
    "operations, field",
    [
        (None, ""),
        ([], ""),
        ([{"method": "OPTIONS", "path": "/lists"}], "operations.item:0.method"),
        ([{"method": "GET"}], "operations.item:0"),
        ([{"method": "POST", "path": "/lists", "body": {"name": "not a string"}}], "operations.item:0.body"),
    ],
)
def test_invalid_operations_are_rejected(emulator, operations, field):
    resp = emulator.api("POST", "/batches", json={} if operations is None else {"operations": operations})
    assert resp.status_code == 400
    assert resp.json()["errors"][0]["field"] == field


def test_delete_stops_a_batch_and_forgets_it(emulator, mc, list_id, expect_problem):
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 5})
    ops = [member_op(list_id, f"slow{i}@acme-outfitters.com") for i in range(50)]
    batch = mc.batches.start({"operations": ops})
    wait_for(mc, batch["id"], "started")
    assert mc.batches.delete_request(batch["id"]).status_code == 204
    assert expect_problem(lambda: mc.batches.status(batch["id"]))["status"] == 404
    applied = mc.lists.get_list_members_info(list_id, count=0)["total_items"]
    time.sleep(0.5)
    assert mc.lists.get_list_members_info(list_id, count=0)["total_items"] == applied < 50


def test_progress_is_gradual_at_a_limited_rate(emulator, mc, list_id):
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 40})
    batch = mc.batches.start({"operations": [member_op(list_id, f"p{i}@acme-outfitters.com") for i in range(40)]})
    seen = set()
    deadline = time.monotonic() + 20
    while (status := mc.batches.status(batch["id"]))["status"] != "finished":
        assert time.monotonic() < deadline
        seen.add((status["status"], status["finished_operations"]))
        time.sleep(0.05)
    partial = [n for s, n in seen if s == "started" and 0 < n < 40]
    assert len(set(partial)) >= 3, seen


def test_batches_run_one_at_a_time(emulator, mc, list_id):
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 50})
    first = mc.batches.start({"operations": [member_op(list_id, f"a{i}@acme-outfitters.com") for i in range(20)]})
    second = mc.batches.start({"operations": [member_op(list_id, f"b{i}@acme-outfitters.com") for i in range(5)]})
    wait_for(mc, first["id"], "started")
    while True:
        # the second batch's status is read first: statuses only move forward, so a second batch
        # seen started while the first, read after it, is still unfinished really ran beside it
        # (read the other way round, the first could finish between the two reads)
        second_status = mc.batches.status(second["id"])["status"]
        if mc.batches.status(first["id"])["status"] == "finished":
            break
        assert second_status == "pending"
        time.sleep(0.05)
    wait_for(mc, second["id"])


def test_stuck_finalizing_holds_a_finished_batch_until_released(emulator, mc, list_id):
    emulator.admin("POST", "faults", json={"stuck_finalizing": True})
    batch = mc.batches.start({"operations": [member_op(list_id, f"s{i}@acme-outfitters.com") for i in range(3)]})
    stuck = wait_for(mc, batch["id"], "finalizing")
    assert stuck["finished_operations"] == stuck["total_operations"] == 3
    time.sleep(0.3)
    assert mc.batches.status(batch["id"])["status"] == "finalizing"
    assert mc.batches.status(batch["id"])["response_body_url"] == ""
    emulator.admin("POST", "faults", json={"stuck_finalizing": False})
    assert wait_for(mc, batch["id"])["response_body_url"] != ""


def test_results_expire(emulator, mc, list_id, expect_problem):
    emulator.admin("POST", "faults", json={"results_ttl_seconds": 0.5})
    batch = wait_for(mc, mc.batches.start({"operations": [member_op(list_id, "e@acme-outfitters.com")]})["id"])
    url = batch["response_body_url"]
    assert requests.get(url, timeout=10).status_code == 200
    time.sleep(0.7)
    assert expect_problem(lambda: mc.batches.status(batch["id"]))["status"] == 404
    assert requests.get(url, timeout=10).status_code == 404
    assert mc.batches.list()["total_items"] == 0


def test_results_url_expires_like_a_presigned_url(emulator, mc, list_id):
    batch = wait_for(mc, mc.batches.start({"operations": [member_op(list_id, "u@acme-outfitters.com")]})["id"])
    stale = re.sub(r"Expires=\d+", f"Expires={int(time.time()) - 5}", batch["response_body_url"])
    assert requests.get(stale, timeout=10).status_code == 403


def test_results_url_uses_the_host_the_client_used(emulator, list_id):
    via_localhost = f"http://localhost:{emulator.port}/3.0"
    auth = ("x", emulator.api_key)
    batch = requests.post(f"{via_localhost}/batches", json={"operations": [{"method": "GET", "path": "/ping"}]}, auth=auth, timeout=10).json()
    deadline = time.monotonic() + 10
    while (status := requests.get(f"{via_localhost}/batches/{batch['id']}", auth=auth, timeout=10).json())["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["response_body_url"].startswith(f"http://localhost:{emulator.port}/_emulator/batch-results/")


def test_more_than_500_pending_batches_is_429(emulator, list_id):
    emulator.admin("POST", "faults", json={"batch_ops_per_second": 0.01})
    op = {"operations": [{"method": "GET", "path": "/ping"}]}
    session = requests.Session()
    session.auth = ("x", emulator.api_key)
    for _ in range(500):
        assert session.post(f"{emulator.base_url}/batches", json=op, timeout=10).status_code == 200
    refused = session.post(f"{emulator.base_url}/batches", json=op, timeout=10)
    assert refused.status_code == 429
    assert refused.json()["title"] == "Too Many Requests"
    assert emulator.admin("GET", "stats")["pending_limit_rejections"] == 1


def test_mailchimp3_batch_operations(mc3, list_id):
    batch = mc3.batch_operations.create({"operations": [member_op(list_id, "m3@acme-outfitters.com", "m3")]})
    deadline = time.monotonic() + 10
    while (status := mc3.batch_operations.get(batch["id"]))["status"] != "finished":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["errored_operations"] == 0
    assert mc3.lists.members.get(list_id, "m3@acme-outfitters.com")["status"] == "subscribed"


@pytest.mark.slow
def test_large_batch_completes_while_polls_stay_responsive(emulator, mc, list_id):
    n = 20_000
    ops = [member_op(list_id, f"bulk{i}@acme-outfitters.com", f"b{i}") for i in range(n)]
    started = time.monotonic()
    batch = mc.batches.start({"operations": ops})
    status, slowest_poll, _ = poll_until_finished(mc, batch["id"], deadline=started + 120, interval=0.1)
    assert status["finished_operations"] == n and status["errored_operations"] == 0
    assert slowest_poll < 5.0
    _, _, files = read_archive(status["response_body_url"])
    assert sum(len(f) for f in files.values()) == n


def test_slow_operations_do_not_block_other_calls(emulator, mc, list_id):
    """A batch of heavy operations (each GET renders a few thousand members) is run in slices of
    bounded duration: progress shows mid-batch and other API calls are answered meanwhile."""
    members = 3000
    seed = mc.batches.start({"operations": [member_op(list_id, f"heavy{i}@acme-outfitters.com") for i in range(members)]})
    wait_for(mc, seed["id"], timeout=60)
    n = 40
    heavy = [{"method": "GET", "path": f"/lists/{list_id}/members", "operation_id": f"page{i}"} for i in range(n)]
    batch = mc.batches.start({"operations": heavy})
    status, slowest_call, seen = poll_until_finished(mc, batch["id"], deadline=time.monotonic() + 120, interval=0.01)
    seen_partial = any(0 < s["finished_operations"] < n for s in seen)
    assert seen_partial, "the batch ran in one go: no progress was visible while it ran"
    assert slowest_call < 2.0
    _, _, files = read_archive(status["response_body_url"])
    results = [r for f in files.values() for r in f]
    assert len(results) == n and all(r["status_code"] == 200 for r in results)
    assert all(json.loads(r["response"])["total_items"] == members for r in results)
