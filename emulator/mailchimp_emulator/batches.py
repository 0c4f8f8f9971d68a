"""Batch operations: ``/batches`` routes, the background processor and the results archive.

Mailchimp runs one batch at a time per account ("Since only one batch request is run at a time,
this can be used to cancel a long running request"), so :class:`BatchProcessor` is a single
asyncio task that takes the oldest pending batch, moves it through
``pending -> preprocessing -> started -> finalizing -> finished`` and runs every operation through
``router.dispatch`` exactly like a direct call (a batch is taken once it has been ``pending`` for
``Faults.batch_queue_seconds``). It yields to the event loop after every
:data:`SLICE_SECONDS` of work (one email-activity GET can take tens of milliseconds, a member PUT
a few dozen microseconds, so a count of operations would not bound the pause), so API calls made
meanwhile (new batches, status polls, downloads) are answered promptly. It honours
``Faults.batch_ops_per_second`` (gradual progress), ``Faults.batch_finalizing_seconds`` (a
``finalizing`` tail that does not hold up the next batch) and ``Faults.stuck_finalizing``; the
``pace.py`` profiles set the first three to what Mailchimp's users report.

The results archive copies a real one (facts §5.4): gzip whose FNAME is ``<id>.tar``, a GNU tar
whose first entry is ``./``, then ``./<10hex>.json`` files, each a JSON array of
``{"status_code", "operation_id", "response"}`` (``response`` a JSON string, ``operation_id`` null
when none was given). Results are split over several files whose order is not the submission
order, and one file is always the empty array ``[]``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import gzip
import io
import json
import math
import re
import secrets
import tarfile
import time
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl

import msgspec

from .collections import filter_fields, page
from .errors import ApiError, json_parse_error, not_found, schema_error
from .routing import Call, Reply, no_content, ok, router
from .state import EmulatorState, iso, new_id

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
MAX_PENDING = 500
SLICE_SECONDS = 0.05
"""Work done between two yields to the event loop: the longest a concurrent API call waits for
the batch processor (plus one operation)."""
MAX_SLICE_OPERATIONS = 1000
"""At most this many operations per slice, whatever their speed (progress is published per slice)."""
RESULTS_PER_FILE = 1000
URL_LIFETIME_SECONDS = 600
"""``Expires`` of a results URL: Mailchimp's presigned S3 URLs last about 10 minutes."""
IDLE_POLL_SECONDS = 0.02
COMPRESS_LEVEL = 1
"""gzip level of results archives: compressing is the largest cost left in building an archive of
email activity; level 1 costs ~8% less than level 3 for archives ~4% larger (levels 1-3 use
zlib's fast strategy; 3 costs half of level 5 for archives ~10% larger)."""
_compact = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
_fast = msgspec.json.Encoder().encode
"""Compact JSON like :data:`_compact` at several times the speed, but only the same text for plain
ASCII without DEL (it writes UTF-8 and a raw DEL where ``json.dumps`` escapes) and without floats
(``1e16`` for ``1e+16``, ``null`` for NaN)."""
_fast_decode = msgspec.json.Decoder().decode
_json_string = json.encoder.encode_basestring_ascii
"""A str as a JSON string literal, escaped like ``json.dumps`` (ASCII only)."""


# ------------------------------------------------------------------------------------------------
# routes
# ------------------------------------------------------------------------------------------------
def _validate_operations(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list) or not raw:
        raise schema_error([{"field": "", "message": "Required fields were not provided: operations"}])
    errors: list[dict[str, str]] = []
    for index, op in enumerate(raw):
        where = f"operations.item:{index}"
        if not isinstance(op, dict):
            errors.append({"field": where, "message": "Schema describes object"})
            continue
        missing = [k for k in ("method", "path") if not op.get(k)]
        if missing:
            errors.append({"field": where, "message": "Required fields were not provided: " + ", ".join(missing)})
            continue
        if str(op["method"]).upper() not in METHODS:
            errors.append({"field": f"{where}.method", "message": "Value is not one of the allowed values: " + ", ".join(METHODS)})
        if not isinstance(op["path"], str):
            errors.append({"field": f"{where}.path", "message": "Schema describes string"})
        if op.get("body") is not None and not isinstance(op["body"], str):
            errors.append({"field": f"{where}.body", "message": f"Schema describes string, {type(op['body']).__name__} found instead"})
        if op.get("params") is not None and not isinstance(op["params"], dict):
            errors.append({"field": f"{where}.params", "message": "Schema describes object"})
        if op.get("operation_id") is not None and not isinstance(op["operation_id"], str):
            errors.append({"field": f"{where}.operation_id", "message": "Schema describes string"})
        if len(errors) >= 20:
            break
    if errors:
        raise schema_error(errors)
    return raw


def open_batch_count(state: EmulatorState) -> int:
    return sum(1 for b in state.batches.values() if b["status"] != "finished")


@router.route("POST", "/batches")
def start_batch(call: Call) -> Reply:
    body = call.json_body()
    state = call.state
    operations = _validate_operations(body.get("operations"))
    if open_batch_count(state) >= MAX_PENDING:
        state.traffic["pending_limit"] = state.traffic.get("pending_limit", 0) + 1
        raise ApiError(
            429,
            "Too Many Requests",
            f"You have more than {MAX_PENDING} pending batches. Please wait for them to complete before creating more.",
        )
    batch_id = new_id()
    while batch_id in state.batches:
        batch_id = new_id()
    state.batches[batch_id] = {
        "id": batch_id,
        "status": "pending",
        "total_operations": 0,
        "finished_operations": 0,
        "errored_operations": 0,
        "submitted_at": iso(time.time()),
        "completed_at": "",
        "response_body_url": "",
        "_root_url": call.root_url,
        "_completed": 0.0,
        "_submitted": time.time(),
    }
    state.batch_operations[batch_id] = operations
    return ok(batch_view(state.batches[batch_id], call.root_url))


def batch_view(batch: dict[str, Any], root_url: str = "") -> dict[str, Any]:
    """The API form of a batch; a finished batch gets a fresh presigned-style results URL."""
    view = {k: v for k, v in batch.items() if not k.startswith("_")}
    if batch["status"] == "finished" and batch.get("_has_results"):
        expires = int(time.time()) + URL_LIFETIME_SECONDS
        root = root_url or batch.get("_root_url") or ""
        view["response_body_url"] = f"{root}/_emulator/batch-results/{batch['id']}.tar.gz?Expires={expires}"
    view["_links"] = [
        {"rel": "parent", "href": "/3.0/batches", "method": "GET"},
        {"rel": "self", "href": f"/3.0/batches/{batch['id']}", "method": "GET"},
        {"rel": "delete", "href": f"/3.0/batches/{batch['id']}", "method": "DELETE"},
    ]
    return view


def is_expired(state: EmulatorState, batch: dict[str, Any]) -> bool:
    """True once ``results_ttl_seconds`` have passed since the batch finished."""
    return batch["status"] == "finished" and time.time() > batch["_completed"] + state.faults.results_ttl_seconds


def purge_expired(state: EmulatorState) -> None:
    for batch_id in [b["id"] for b in state.batches.values() if is_expired(state, b)]:
        forget_batch(state, batch_id)


def forget_batch(state: EmulatorState, batch_id: str) -> None:
    state.batches.pop(batch_id, None)
    state.batch_operations.pop(batch_id, None)
    state.batch_results.pop(batch_id, None)


def live_batch(state: EmulatorState, batch_id: str) -> dict[str, Any]:
    """The batch, or 404 if unknown, deleted or expired (Mailchimp forgets old batches)."""
    purge_expired(state)
    batch = state.batches.get(batch_id)
    if batch is None:
        raise not_found()
    return batch


def results_archive(state: EmulatorState, batch_id: str) -> bytes | None:
    """The gzipped tar of a finished, unexpired batch (None otherwise)."""
    purge_expired(state)
    encoded = state.batch_results.get(batch_id)
    return base64.b64decode(encoded) if encoded else None


@router.route("GET", "/batches")
def list_batches(call: Call) -> Reply:
    purge_expired(call.state)
    return ok(page(call, list(call.state.batches.values()), "batches", render=lambda b: batch_view(b, call.root_url)))


@router.route("GET", "/batches/{batch_id}")
def get_batch(call: Call, batch_id: str) -> Reply:
    return ok(filter_fields(call, batch_view(live_batch(call.state, batch_id), call.root_url)))


@router.route("DELETE", "/batches/{batch_id}")
def delete_batch(call: Call, batch_id: str) -> Reply:
    live_batch(call.state, batch_id)
    forget_batch(call.state, batch_id)  # the processor notices and stops this batch
    return no_content()


# ------------------------------------------------------------------------------------------------
# running operations
# ------------------------------------------------------------------------------------------------
def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_param(v) for v in value)
    return str(value)


def run_operation(state: EmulatorState, op: dict[str, Any], root_url: str) -> tuple[int, Any, str]:
    """Run one batch operation through the route table: ``(status_code, operation_id, response)``."""
    operation_id = op.get("operation_id")
    path, _, query = str(op["path"]).partition("?")
    if path.startswith("/3.0/") or path == "/3.0":
        path = path[4:]
    if not path.startswith("/"):
        path = "/" + path
    params = dict(parse_qsl(query)) if query else {}
    extra_params = op.get("params")
    if extra_params:
        for key, value in extra_params.items():
            params[key] = _param(value)
    try:
        raw = op.get("body")
        body = None
        if raw and raw.strip():
            body = _decode_body(raw)
        call = Call(str(op["method"]).upper(), path, params, body, state, from_batch=True, root_url=root_url)
        reply = router.dispatch(call)
    except ApiError as err:
        return err.status, operation_id, json.dumps(err.to_body(), separators=(",", ":"))
    except Exception as exc:  # a handler bug must not kill the processor: report it like Mailchimp would
        err = ApiError(500, "Internal Server Error", f"An unexpected internal error has occurred ({type(exc).__name__}).")
        return 500, operation_id, json.dumps(err.to_body(), separators=(",", ":"))
    return reply.status, operation_id, response_text(reply)


def _decode_body(raw: str) -> Any:
    """An operation's ``body`` string as JSON, as ``json.loads`` reads it: msgspec (several times
    faster) for what it reads the same way, the standard library for the rest (``NaN``, lone
    surrogates, integers beyond 64 bits); 400 when it is not JSON at all."""
    try:
        return _fast_decode(raw)
    except (msgspec.DecodeError, OverflowError):
        pass
    try:
        return json.loads(raw)
    except ValueError:
        raise json_parse_error() from None


def _plain(data: bytes) -> bool:
    """True if ``data`` is ASCII without DEL: where :data:`_fast` and :data:`_compact` agree."""
    return data.isascii() and b"\x7f" not in data


def response_text(reply: Reply) -> str:
    """The reply's body as compact JSON (``""`` for none), as ``json.dumps`` writes it.

    A float-free body (``Reply.float_free``) is encoded by msgspec, several times faster: a
    5,000-recipient email-activity page is 1.5 MB, a member answer 1.5 KB (the standard library
    took 100 us of a member PUT's 150). Non-ASCII text and DEL, which ``json.dumps`` escapes, are
    escaped the same way afterwards; bodies msgspec refuses go the standard library's way.
    """
    if reply.body is None:
        return ""
    if reply.float_free:
        try:
            data = _fast(reply.body)
        except (TypeError, ValueError):
            data = b""
        if data:
            return data.decode("ascii") if _plain(data) else _ascii_escaped(data)
    return _compact(reply.body)


_NOT_ASCII = re.compile("[^\x00-\x7e]")
"""What ``json.dumps`` writes as ``\\uXXXX`` and msgspec as it is: non-ASCII text and DEL."""


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x10000:
        return "\\u%04x" % code
    code -= 0x10000  # a surrogate pair, as json.dumps writes characters beyond the BMP
    return "\\u%04x\\u%04x" % (0xD800 | (code >> 10), 0xDC00 | (code & 0x3FF))


def _ascii_escaped(data: bytes) -> str:
    """msgspec's JSON with non-ASCII characters and DEL escaped as ``json.dumps`` escapes them
    (they only occur inside strings): names with accents kept a quarter of the demo's member
    answers on the standard library's encoder."""
    return _NOT_ASCII.sub(_escape_char, data.decode("utf-8"))


def _string_literal(text: str) -> bytes:
    """``text`` as a JSON string literal, escaped like ``json.dumps`` (msgspec for plain ASCII)."""
    if text.isascii() and "\x7f" not in text:
        return _fast(text)
    return _json_string(text).encode("ascii")


def _result_json(status: int, operation_id: Any, response: str) -> bytes:
    r"""One result as compact JSON, written directly: the same bytes as ``json.dumps({"status_code":
    status, "operation_id": operation_id, "response": response.replace("/", r"\/")},
    separators=(",", ":")).encode()`` at a fraction of the cost. Mailchimp's ``\/`` is put into the
    encoded literal instead (``/`` -> ``\\/``): a ``/`` there only ever stands for itself, and
    the megabyte-sized ``response`` is not copied once more."""
    op = b"null" if operation_id is None else _string_literal(operation_id)
    body = _string_literal(response).replace(b"/", b"\\\\/")
    return b'{"status_code":%d,"operation_id":%s,"response":%s}' % (status, op, body)


def build_archive(batch_id: str, results: list[tuple[int, Any, str]]) -> bytes:
    """The gzipped GNU tar of ``results`` (see the module docstring for the layout)."""
    files: list[list[bytes]] = [[]]  # one file is always the empty array
    if results:
        n_files = 1 if len(results) == 1 else max(2, math.ceil(len(results) / RESULTS_PER_FILE))
        size = math.ceil(len(results) / n_files)
        for start in range(0, len(results), size):
            files.append([_result_json(s, o, r) for s, o, r in results[start : start + size]])
    named = sorted(((secrets.token_hex(5), encoded) for encoded in files), key=lambda item: item[0])
    mtime = int(time.time())
    out = io.BytesIO()
    with gzip.GzipFile(filename=f"{batch_id}.tar", mode="wb", fileobj=out, compresslevel=COMPRESS_LEVEL, mtime=mtime) as gz:
        _write_tar(gz, [(f"./{name}.json", _json_array(encoded)) for name, encoded in named], mtime)
    return out.getvalue()


def _json_array(items: list[bytes]) -> list[bytes]:
    """The pieces of the JSON array of ``items`` (encoded JSON values), left unjoined."""
    pieces = [b"["]
    for index, item in enumerate(items):
        if index:
            pieces.append(b",")
        pieces.append(item)
    pieces.append(b"]")
    return pieces


def _tar_header(name: str, size: int, mtime: int, *, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o666
    info.size = size
    info.mtime = mtime
    info.uname = info.gname = "root"
    return info.tobuf(tarfile.GNU_FORMAT, tarfile.ENCODING, "surrogateescape")


def _write_tar(out: Any, files: list[tuple[str, list[bytes]]], mtime: int) -> None:
    """Write the GNU tar of ``./`` and ``files`` (name, data pieces) exactly as ``tarfile`` does, but
    without joining each file's pieces first: a file of email activity is tens of megabytes, and
    copying it into fresh memory cost as much as a tenth of the whole batch."""
    block, record = tarfile.BLOCKSIZE, tarfile.RECORDSIZE
    written = out.write(_tar_header("./", 0, mtime, directory=True))
    for name, pieces in files:
        size = sum(map(len, pieces))
        written += out.write(_tar_header(name, size, mtime))
        for chunk in _gathered(pieces):
            written += out.write(chunk)
        written += out.write(tarfile.NUL * (-size % block))
    written += out.write(tarfile.NUL * 2 * block)  # end of archive, then padding to a whole record
    out.write(tarfile.NUL * (-written % record))


def _gathered(pieces: list[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """``pieces`` with the runs of small ones joined (every write into gzip costs a call and a
    checksum call) and the big ones as they are (uncopied)."""
    run: list[bytes] = []
    held = 0
    for piece in pieces:
        if len(piece) >= size:
            if run:
                yield b"".join(run)
                run, held = [], 0
            yield piece
            continue
        run.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(run)
            run, held = [], 0
    if run:
        yield b"".join(run)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a slice of operations runs.

    A big batch allocates hundreds of thousands of long-lived dicts (members, results); the
    collector would rescan all of them again and again (a third of the run time in measurements).
    Nothing here makes reference cycles, and the collector runs again between slices. What the
    slice left behind is frozen (``gc.freeze``) so the full collections between slices skip it;
    :func:`_frozen_until_done` unfreezes everything when the batch stops.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _frozen_until_done() -> Iterator[None]:
    """Give back to the collector what :func:`_collector_paused` froze, however the run ends."""
    try:
        yield
    finally:
        gc.unfreeze()


def _run_slice(
    state: EmulatorState,
    operations: list[dict[str, Any]],
    start: int,
    stop: int,
    root_url: str,
    results: list[tuple[int, Any, str]],
) -> tuple[int, int]:
    """Run ``operations[start:stop]`` until done or :data:`SLICE_SECONDS` have passed (at least one
    operation runs); append their results and return ``(operations run, errored ones)``."""
    deadline = time.monotonic() + SLICE_SECONDS
    clock = time.monotonic
    append = results.append
    errored = 0
    index = start
    with _collector_paused():
        while index < stop:
            outcome = run_operation(state, operations[index], root_url)
            append(outcome)
            index += 1
            if outcome[0] >= 400:
                errored += 1
            if clock() >= deadline:
                break
    return index - start, errored


class BatchProcessor:
    """The background task that runs batches one at a time (started in the app's lifespan)."""

    def __init__(self, get_state: Callable[[], EmulatorState]) -> None:
        self._get_state = get_state
        self._stuck: dict[str, tuple[EmulatorState, list[tuple[int, Any, str]], float]] = {}
        """Batches held in ``finalizing``: (state, results, monotonic time they may finish)."""

    async def run(self) -> None:
        while True:
            state = self._get_state()
            await self._release_stuck(state)
            due = time.time() - state.faults.batch_queue_seconds
            batch_id = next(
                (b["id"] for b in state.batches.values() if b["status"] == "pending" and b.get("_submitted", 0.0) <= due),
                None,
            )
            if batch_id is None:
                await asyncio.sleep(IDLE_POLL_SECONDS)
                continue
            await self._process(state, batch_id)

    def _alive(self, state: EmulatorState, batch_id: str) -> bool:
        return state is self._get_state() and batch_id in state.batches

    async def _process(self, state: EmulatorState, batch_id: str) -> None:
        batch = state.batches[batch_id]
        batch["status"] = "preprocessing"
        await asyncio.sleep(0)
        if not self._alive(state, batch_id):
            return
        operations = state.batch_operations.get(batch_id, [])
        batch["total_operations"] = len(operations)
        batch["status"] = "started"
        with _frozen_until_done():
            results = await self._run_operations(state, batch_id, batch, operations)
        if results is None:
            return
        batch["status"] = "finalizing"
        tail = state.faults.batch_finalizing_seconds
        if state.faults.stuck_finalizing or tail > 0:
            self._stuck[batch_id] = (state, results, time.monotonic() + tail)
            return
        await self._finalize(state, batch_id, results)

    async def _run_operations(
        self, state: EmulatorState, batch_id: str, batch: dict[str, Any], operations: list[dict[str, Any]]
    ) -> list[tuple[int, Any, str]] | None:
        """Run every operation at the configured rate; their results, or None if the batch went away."""
        root_url = batch.get("_root_url", "")
        results: list[tuple[int, Any, str]] = []
        errored = 0
        done = 0
        budget = 0.0
        last = time.monotonic()
        while done < len(operations):
            if not self._alive(state, batch_id):
                return None
            if self._stuck:  # an earlier batch's finalizing tail ends while this one runs
                await self._release_stuck(state)
            rate = state.faults.batch_ops_per_second
            if rate > 0:
                now = time.monotonic()
                budget = min(budget + (now - last) * rate, max(rate, 1.0))
                last = now
                take = min(MAX_SLICE_OPERATIONS, int(budget))
                if take < 1:
                    await asyncio.sleep(min(0.05, max(0.005, (1 - budget) / rate)))
                    continue
                budget -= take
            else:
                take = MAX_SLICE_OPERATIONS
            ran, failed = _run_slice(state, operations, done, min(done + take, len(operations)), root_url, results)
            done += ran
            errored += failed
            if rate > 0:
                budget += take - ran  # a slice cut short by its deadline keeps its allowance
            batch["finished_operations"] = done
            batch["errored_operations"] = errored
            await asyncio.sleep(0)
        return results

    async def _finalize(self, state: EmulatorState, batch_id: str, results: list[tuple[int, Any, str]]) -> None:
        archive = await asyncio.to_thread(build_archive, batch_id, results)
        encoded = await asyncio.to_thread(lambda: base64.b64encode(archive).decode("ascii"))
        if not self._alive(state, batch_id):
            return
        batch = state.batches[batch_id]
        state.batch_results[batch_id] = encoded
        state.batch_operations.pop(batch_id, None)
        batch["_completed"] = time.time()
        batch["_has_results"] = True
        batch["completed_at"] = iso(batch["_completed"])
        batch["status"] = "finished"

    async def _release_stuck(self, state: EmulatorState) -> None:
        """Finish batches held in ``finalizing`` whose tail is over, unless ``stuck_finalizing`` is on."""
        for batch_id, (owner, results, until) in list(self._stuck.items()):
            if owner is not state or batch_id not in owner.batches:
                del self._stuck[batch_id]
            elif not state.faults.stuck_finalizing and time.monotonic() >= until:
                del self._stuck[batch_id]
                await self._finalize(owner, batch_id, results)


def requeue_interrupted(state: EmulatorState) -> None:
    """After loading saved state, batches caught mid-run start again from ``pending``.

    Their operations are re-applied from the start; member PUT upserts are idempotent, which is
    what batches are used for.
    """
    for batch in state.batches.values():
        if batch["status"] != "finished":
            batch.update(status="pending", total_operations=0, finished_operations=0, errored_operations=0)
