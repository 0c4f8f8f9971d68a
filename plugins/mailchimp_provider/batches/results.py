"""Stream parser for a Mailchimp batch results archive (``<batch_id>-response.tar.gz``).

The archive is a gzipped GNU tar whose first entry is ``./`` (which breaks naive tar readers),
followed by ``./<10 hex>.json`` files. Each file is a JSON array of
``{"status_code": int, "operation_id": str | null, "response": "<JSON as a string>"}``; files may
be empty (zero bytes) or ``[]``, results are in no particular order, and ``response`` may be empty
or not JSON at all (gateway errors). See /work/shared/mailchimp-api.md §5.4 and §9.5.

Memory stays flat in the archive size: the tar is read as a forward-only stream (mode ``r|gz``),
so the archive is never held in memory. A member file up to ``WHOLE_FILE_LIMIT`` bytes is read and
decoded in one go with msgspec (several times faster than the standard library, and no re-parsing
of results that straddle read chunks); a larger one is decoded incrementally, one result object at
a time. Either way memory is bounded by the file limit, not by the archive.
"""

from __future__ import annotations

import codecs
import io
import json
import tarfile
from typing import IO, Any, Iterator, TypeVar

import msgspec

__all__ = ["OperationResult", "ResultsArchiveError", "iter_results"]

READ_CHUNK = 64 * 1024
WHOLE_FILE_LIMIT = 64 * 1024 * 1024
"""Member files up to this size are decoded whole; larger ones are streamed (see module doc)."""
_WHITESPACE = " \t\r\n"


class ResultsArchiveError(ValueError):
    """The archive (or one file in it) is not in Mailchimp's results format; says where."""


_UNDECODED: Any = object()
T = TypeVar("T")


class OperationResult:
    """The outcome of one operation of a batch.

    ``body`` is the operation's response parsed from the ``response`` string: the resource on
    success, Mailchimp's problem document on error, or None when the response was empty or not
    JSON (then ``raw_response`` keeps the text for the error message). Results read from an
    archive decode ``body`` on first use; until then ``response_text`` is all there is, so a
    consumer with its own decoder (the email-activity load decodes straight into typed records)
    never pays for a generic decode.
    """

    __slots__ = ("operation_id", "status_code", "response_text", "_body", "_raw")

    def __init__(
        self, operation_id: str | None, status_code: int, body: Any = None, raw_response: str | None = None
    ) -> None:
        self.operation_id = operation_id
        self.status_code = status_code
        self.response_text: str | None = None
        """The ``response`` string as the archive holds it (None for results built from a body)."""
        self._body = body
        self._raw = raw_response

    @classmethod
    def from_response(cls, operation_id: str | None, status_code: int, text: str) -> "OperationResult":
        """A result whose body is decoded from ``text`` when first asked for."""
        result = cls(operation_id, status_code)
        result.response_text = text
        result._body = _UNDECODED
        return result

    @property
    def body(self) -> Any:
        if self._body is _UNDECODED:
            try:
                self._body = _decode_response(self.response_text or "")
            except ValueError:
                self._body, self._raw = None, self.response_text
        return self._body

    def decoded_as(self, kind: type[T]) -> T | None:
        """The response decoded straight into ``kind`` (a ``msgspec.Struct`` naming the fields the
        caller reads), or None when it is not an undecoded response that fits ``kind``: then read
        :attr:`body`. Fields ``kind`` does not name are skipped, not built: for a member answer
        (1.5 KB, 31 fields) several times faster than :attr:`body`."""
        if self._body is not _UNDECODED or not self.response_text:
            return None
        try:
            return msgspec.json.decode(self.response_text, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    @property
    def raw_response(self) -> str | None:
        """The response text when it was not JSON (for error messages); None otherwise."""
        self.body  # noqa: B018 - decoding tells JSON from not-JSON
        return self._raw

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, OperationResult):
            return NotImplemented
        return (self.operation_id, self.status_code, self.body) == (other.operation_id, other.status_code, other.body)

    __hash__ = None  # type: ignore[assignment]  # bodies are dicts and lists

    def __repr__(self) -> str:
        return f"OperationResult(operation_id={self.operation_id!r}, status_code={self.status_code!r}, body={self.body!r})"

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return 200 <= self.status_code < 300

    @property
    def title(self) -> str | None:
        """The problem title (e.g. ``"Member Exists"``) of a failed operation; None on success.

        Successful bodies can have their own ``title`` (a product's), which is not an error title.
        """
        if self.ok:
            return None
        if isinstance(self.body, dict) and self.body.get("title"):
            return str(self.body["title"])
        return f"HTTP {self.status_code}"

    @property
    def detail(self) -> str | None:
        """The problem detail of a failed operation; for unparseable responses, the raw text."""
        if self.ok:
            return None
        if isinstance(self.body, dict) and self.body.get("detail") is not None:
            return str(self.body["detail"])
        if self.raw_response:
            return self.raw_response[:500]
        return None

    @property
    def field_errors(self) -> list[dict[str, str]]:
        """Per-field validation errors of a failed operation, as ``[{"field", "message"}]``."""
        if self.ok or not isinstance(self.body, dict):
            return []
        errors = self.body.get("errors") or []
        if not isinstance(errors, list):
            return []
        return [
            {"field": str(e.get("field") or ""), "message": str(e.get("message") or "")}
            for e in errors
            if isinstance(e, dict)
        ]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict (for XCom, trigger events and result tables)."""
        out: dict[str, Any] = {
            "operation_id": self.operation_id,
            "status_code": self.status_code,
            "body": self.body,
        }
        if not self.ok:
            out.update(title=self.title, detail=self.detail, field_errors=self.field_errors)
        return out


def iter_results(fileobj: IO[bytes]) -> Iterator[OperationResult]:
    """Yield every operation result in a results archive, reading ``fileobj`` once, forward only.

    ``fileobj`` is the gzipped tar as a binary stream (an HTTP response body, an open file).
    Directory entries (``./``), non-JSON members, empty files and ``[]`` files yield nothing.
    """
    try:
        with tarfile.open(fileobj=fileobj, mode="r|gz") as archive:
            for member in archive:
                if not member.isfile() or not member.name.endswith(".json") or member.size == 0:
                    continue
                extracted = archive.extractfile(member)
                if extracted is None:
                    continue
                yield from _iter_file(extracted, member.name, member.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ResultsArchiveError(f"batch results archive is not a readable tar.gz: {exc}") from exc


def _iter_file(stream: IO[bytes], name: str, size: int) -> Iterator[OperationResult]:
    if size <= WHOLE_FILE_LIMIT:
        data = stream.read()
        items = _decode_whole(data)
        if items is not None:
            for index, item in enumerate(items):
                yield _to_result(item, name, index)
            return
        # Not a clean JSON array: the incremental parser below says precisely what is wrong
        # (or accepts what msgspec refuses, such as a byte-order mark).
        stream = io.BytesIO(data)
    for index, item in enumerate(_iter_json_array(stream, name)):
        yield _to_result(item, name, index)


def _decode_whole(data: bytes) -> list[Any] | None:
    """The file's array, decoded in one call; None when it is not a well-formed JSON array."""
    try:
        items = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    return items if isinstance(items, list) else None


def _decode_response(text: str) -> Any:
    """An operation's ``response`` string as JSON (msgspec first; the standard library for what
    msgspec refuses, such as ``NaN``). Raises ValueError when it is not JSON at all."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def _to_result(item: Any, name: str, index: int) -> OperationResult:
    where = f"{name}, result #{index}"
    if not isinstance(item, dict):
        raise ResultsArchiveError(f"{where}: expected an object, got {type(item).__name__}")
    status = item.get("status_code")
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if not isinstance(status, int) or isinstance(status, bool):
        raise ResultsArchiveError(
            f"{where} (operation_id={item.get('operation_id')!r}): 'status_code' must be an integer, got {status!r}"
        )
    operation_id = item.get("operation_id")
    if operation_id is not None:
        operation_id = str(operation_id)
    response = item.get("response")
    if isinstance(response, (dict, list)):  # tolerate an already-decoded response
        return OperationResult(operation_id, status, response)
    if isinstance(response, str) and response.strip():
        return OperationResult.from_response(operation_id, status, response)
    return OperationResult(operation_id, status, None)


def _iter_json_array(stream: IO[bytes], name: str) -> Iterator[Any]:
    """Decode a top-level JSON array element by element, reading the stream in chunks."""
    decoder = json.JSONDecoder()
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    buf = ""
    pos = 0
    eof = False

    def fill() -> bool:
        """Read more input, keeping the unconsumed tail; False once the stream is exhausted."""
        nonlocal buf, pos, eof
        if eof:
            return False
        # Read at least as much as is pending, so an element larger than a chunk costs a
        # logarithmic number of re-parses, not one per chunk.
        chunk = stream.read(max(READ_CHUNK, len(buf) - pos))
        if not chunk:
            eof = True
            buf = buf[pos:] + text_decoder.decode(b"", final=True)
        else:
            buf = buf[pos:] + text_decoder.decode(chunk)
        pos = 0
        return True

    def skip_ws() -> bool:
        """Advance past whitespace; False at end of input."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WHITESPACE:
                pos += 1
            if pos < len(buf):
                return True
            if not fill():
                return False

    try:
        if not skip_ws():
            return  # whitespace only: treat like an empty file
        if buf[pos] == "\ufeff":
            pos += 1
            if not skip_ws():
                return
        if buf[pos] != "[":
            raise ResultsArchiveError(f"{name}: expected a JSON array, found {buf[pos:pos + 20]!r}")
        pos += 1
        first = True
        while True:
            if not skip_ws():
                raise ResultsArchiveError(f"{name}: truncated JSON array (no closing ']')")
            if buf[pos] == "]":
                return
            if not first:
                if buf[pos] != ",":
                    raise ResultsArchiveError(f"{name}: expected ',' or ']' at {buf[pos:pos + 20]!r}")
                pos += 1
                if not skip_ws():
                    raise ResultsArchiveError(f"{name}: truncated JSON array after ','")
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    # Either the element runs past the buffer (read more) or it is malformed.
                    if fill():
                        continue
                    raise ResultsArchiveError(f"{name}: invalid JSON ({exc.msg})") from None
                if end == len(buf) and not eof and not isinstance(item, (dict, list, str)):
                    # A bare number could continue in the next chunk; read on before trusting it.
                    fill()
                    continue
                break
            pos = end
            first = False
            yield item
    except UnicodeDecodeError as exc:
        raise ResultsArchiveError(f"{name}: not UTF-8 ({exc.reason})") from None
