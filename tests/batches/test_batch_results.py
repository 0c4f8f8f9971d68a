"""The results-archive parser reads real Mailchimp archives, with all their quirks, as a stream."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import tracemalloc

import pytest

from mailchimp_provider.batches import results as results_module
from mailchimp_provider.batches.results import OperationResult, ResultsArchiveError, iter_results


def build_archive(files: list[tuple[str, bytes]], *, leading_dot: bool = True) -> bytes:
    """A gzipped GNU tar laid out like Mailchimp's: ``./`` first, then ``./<name>.json`` files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        if leading_dot:
            directory = tarfile.TarInfo("./")
            directory.type = tarfile.DIRTYPE
            directory.mode = 0o755
            tar.addfile(directory)
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o666
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="4c5485a398.tar", mode="wb", fileobj=out) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def result(status: int, op_id: str | None, response: object) -> dict:
    return {"status_code": status, "operation_id": op_id, "response": response}


MEMBER = {"id": "hash1", "email_address": "ada@lovelace.dev", "status": "subscribed", "_links": [{"href": "https://x/y"}]}
PROBLEM = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "Invalid Resource",
    "status": 400,
    "detail": "The resource submitted could not be validated.",
    "instance": "abc",
    "errors": [{"field": "email_address", "message": "This value should be a valid email."}],
}


def test_parses_every_quirk_of_a_real_archive() -> None:
    # Mailchimp escapes "/" as "\/" inside the response string (PHP style).
    member_json = json.dumps(MEMBER).replace("/", "\\/")
    archive = build_archive(
        [
            ("./068e98bf3b.json", b"[]"),  # empty result chunk
            ("./0aaaaaaaaa.json", b""),  # zero-byte file
            ("./README.txt", b"not results"),  # non-JSON member
            (
                "./521aef2feb.json",
                json.dumps(
                    [
                        result(400, "op-2", json.dumps(PROBLEM)),
                        result(200, "op-1", member_json),  # out of order
                        result(200, None, "{}"),  # no operation id
                        result(204, "op-4", ""),  # empty response
                        result(502, "op-5", "<html>Bad Gateway</html>"),  # not JSON
                    ]
                ).encode(),
            ),
            ("./ffffffffff.json", json.dumps([result(200, "op-3", json.dumps({"id": 3}))]).encode()),
        ]
    )
    results = list(iter_results(io.BytesIO(archive)))

    assert [r.operation_id for r in results] == ["op-2", "op-1", None, "op-4", "op-5", "op-3"]
    failed, member, anonymous, empty, gateway, third = results
    assert member == OperationResult("op-1", 200, MEMBER)
    assert member.ok and member.title is None and member.field_errors == []
    assert not failed.ok
    assert failed.title == "Invalid Resource"
    assert failed.detail == "The resource submitted could not be validated."
    assert failed.field_errors == [{"field": "email_address", "message": "This value should be a valid email."}]
    assert anonymous.operation_id is None and anonymous.body == {}
    assert empty.ok and empty.body is None
    assert gateway.body is None and not gateway.ok
    assert gateway.title == "HTTP 502" and gateway.detail == "<html>Bad Gateway</html>"
    assert third.body == {"id": 3}
    assert json.loads(json.dumps(failed.to_json()))["field_errors"][0]["field"] == "email_address"


def test_archive_without_leading_dot_entry_and_whitespace_in_arrays() -> None:
    payload = b'\n [ \n' + json.dumps(result(200, "a", "{}")).encode() + b' ,\n' + json.dumps(result(404, "b", "")).encode() + b"\n]\n"
    archive = build_archive([("./abcdef0123.json", payload)], leading_dot=False)
    assert [(r.operation_id, r.status_code) for r in iter_results(io.BytesIO(archive))] == [("a", 200), ("b", 404)]


def test_results_larger_than_a_read_chunk_are_reassembled() -> None:
    big = {"id": "x", "blob": "y" * 300_000}
    archive = build_archive([("./abcdef0123.json", json.dumps([result(200, "big", json.dumps(big))] * 3).encode())])
    results = list(iter_results(io.BytesIO(archive)))
    assert len(results) == 3 and all(r.body == big for r in results)


def _peak_while_parsing(archive: bytes) -> tuple[int, int]:
    """(results parsed, peak traced bytes) for one pass over ``archive``."""
    tracemalloc.start()
    count = 0
    for _ in iter_results(io.BytesIO(archive)):
        count += 1
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return count, peak


def _results_file(first: int, n: int) -> bytes:
    return json.dumps([
        result(200, f"op-{i}", json.dumps({"id": i, "email_address": f"user{i}@example.org"}))
        for i in range(first, first + n)
    ]).encode()


def test_memory_is_bounded_by_one_file_not_by_the_archive() -> None:
    """Twenty files of 1,500 results: only one file is decoded at a time."""
    files = [(f"./abcdef{n:04d}.json", _results_file(n * 1500, 1500)) for n in range(20)]
    total = sum(len(data) for _, data in files)
    count, peak = _peak_while_parsing(build_archive(files))
    assert count == 30_000
    assert peak < total / 3, f"peak {peak} bytes for {total} bytes of results files"


def test_a_file_over_the_whole_file_limit_is_streamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above WHOLE_FILE_LIMIT a file is decoded one result at a time: peak far below its size."""
    monkeypatch.setattr(results_module, "WHOLE_FILE_LIMIT", 64 * 1024)
    data = _results_file(0, 30_000)
    count, peak = _peak_while_parsing(build_archive([("./abcdef0123.json", data)]))
    assert count == 30_000
    assert peak < len(data) / 4, f"peak {peak} bytes for a {len(data)}-byte results file"


def test_both_parsers_read_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole-file and the streaming parser agree result for result (bodies, ids, raw text)."""
    ops = [result(200, "a", json.dumps({"x": [1, 2.5, None, "é"]})), result(502, "b", "<html>Bad gateway</html>"),
           result(204, None, ""), result(400, "c", json.dumps({"title": "Invalid Resource", "detail": "bad"}))]
    archive = build_archive([("./abcdef0123.json", json.dumps(ops).encode())])
    whole = list(iter_results(io.BytesIO(archive)))
    monkeypatch.setattr(results_module, "WHOLE_FILE_LIMIT", 0)
    streamed = list(iter_results(io.BytesIO(archive)))
    assert whole == streamed
    assert [r.raw_response for r in whole] == [r.raw_response for r in streamed] == [None, "<html>Bad gateway</html>", None, None]


@pytest.mark.parametrize(
    "payload, message",
    [
        (b'{"status_code": 200}', "expected a JSON array"),
        (b'[{"status_code": 200, "operation_id": "a", "response": "{}"}', "truncated"),
        (b'[{"operation_id": "a", "response": "{}"}]', "operation_id='a'): 'status_code' must be an integer"),
        (b"[1]", "expected an object"),
    ],
)
def test_malformed_files_raise_errors_naming_the_file(payload: bytes, message: str) -> None:
    archive = build_archive([("./abcdef0123.json", payload)])
    with pytest.raises(ResultsArchiveError, match="abcdef0123.json") as info:
        list(iter_results(io.BytesIO(archive)))
    assert message in str(info.value)


def test_not_a_tarball_is_a_clear_error() -> None:
    with pytest.raises(ResultsArchiveError, match="not a readable tar.gz"):
        list(iter_results(io.BytesIO(b"<Error><Code>AccessDenied</Code></Error>")))
