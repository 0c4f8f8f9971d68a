"""The hook's thin batch endpoints and the results download, against the live emulator."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import time

import pytest

from mailchimp_provider.errors import MailchimpBatchExpiredError
from mailchimp_provider.hooks.mailchimp import MailchimpHook


def wait_finished(hook: MailchimpHook, batch_id: str, limit: float = 20.0) -> dict:
    deadline = time.monotonic() + limit
    while True:
        batch = hook.get_batch(batch_id)
        if batch["status"] == "finished" or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


@pytest.mark.parametrize(
    "operation, message",
    [
        ({"method": "FETCH", "path": "/ping"}, "operation #0: field 'method'"),
        ({"method": "GET"}, "operation #0: field 'path'"),
        ({"method": "GET", "path": "https://elsewhere.io/x"}, "field 'path'"),
        (
            {"method": "POST", "path": "/lists", "body": 42, "operation_id": "op-7"},
            "(operation_id 'op-7'): field 'body'",
        ),
    ],
)
def test_invalid_operations_are_refused_before_sending(emulator, operation, message):
    with pytest.raises(ValueError) as info:
        MailchimpHook().submit_batch([operation])
    assert message in str(info.value)
    assert emulator.admin("GET", "stats")["requests"] == 0


def test_submit_poll_list_download_and_delete_a_batch(emulator):
    hook = MailchimpHook()
    batch = hook.submit_batch(
        [
            {"method": "get", "path": "/ping", "operation_id": "ping-1"},
            {"method": "POST", "path": "/lists", "operation_id": "bad-list", "body": {"name": "Incomplete"}},
        ]
    )
    assert batch["status"] in {"pending", "preprocessing", "started", "finalizing", "finished"}
    assert [b["id"] for b in hook.list_batches()] == [batch["id"]]

    done = wait_finished(hook, batch["id"])
    assert done["status"] == "finished"
    assert done["total_operations"] == 2 and done["errored_operations"] == 1

    with hook.download(done["response_body_url"]) as stream:
        archive = stream.read()
    results = {}
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(archive)), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.size:
                for entry in json.loads(tar.extractfile(member).read()):
                    results[entry["operation_id"]] = entry
    assert results["ping-1"]["status_code"] == 200
    assert results["bad-list"]["status_code"] == 400
    parsed = {r.operation_id: r for r in hook.iter_batch_results(hook.get_batch(batch["id"]))}
    assert parsed["ping-1"].ok and parsed["bad-list"].title == "Invalid Resource"

    hook.delete_batch(batch["id"])
    with pytest.raises(MailchimpBatchExpiredError) as info:
        hook.get_batch(batch["id"])
    assert info.value.batch_id == batch["id"] and "re-submit" in info.value.hint


def test_unknown_batch_is_reported_as_expired_with_a_hint(emulator):
    with pytest.raises(MailchimpBatchExpiredError) as info:
        MailchimpHook().get_batch("0123456789")
    assert "404" in str(info.value) and "What to do" in str(info.value)


def test_download_sends_no_credentials_to_the_results_host(emulator):
    """The presigned results URL lives on another host (S3); a stand-in records what it receives."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, str]] = []

    class ResultsHost(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server naming)
            received.append(dict(self.headers))
            payload = gzip.compress(b"archive bytes")
            self.send_response(200)
            self.send_header("Content-Type", "application/x-gzip")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ResultsHost)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        hook = MailchimpHook()
        hook.get("/ping")  # the API session, with its Authorization header, exists already
        with hook.download(f"http://127.0.0.1:{server.server_port}/abc-response.tar.gz?Expires=1") as stream:
            assert gzip.decompress(stream.read()) == b"archive bytes"
    finally:
        server.shutdown()
    assert received and not {k.lower() for k in received[0]} & {"authorization", "cookie"}


def test_download_refuses_plain_http_to_a_remote_host(emulator):
    from mailchimp_provider.errors import MailchimpConfigError

    with pytest.raises(MailchimpConfigError, match="over http"):
        MailchimpHook().download("http://mailchimp-api-batch.s3.amazonaws.com/x.tar.gz")
