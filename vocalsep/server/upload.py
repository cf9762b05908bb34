"""Receiving an upload: the ``file`` field of a ``multipart/form-data`` body, streamed to disk
with its size checked as it arrives.

The body is parsed chunk by chunk with python-multipart's streaming parser; the file's bytes
go straight to the destination file (written in a worker thread, so the event loop never waits
on the disk) and nothing is kept in memory beyond the chunk at hand. A body that announces
more than the limit (``Content-Length``) is refused before any of it is read; one that sends
more is refused as soon as it crosses the limit. An upload from which nothing arrives for
``idle_timeout`` seconds (a client that stalls without closing) is refused with 408 and its
connection closed. Every refusal is an :class:`UploadError` carrying the HTTP status, a
one-line message and the headers of the answer.
"""
from __future__ import annotations

from pathlib import Path

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

#: room for the multipart framing and small fields around the file, in bytes
FORM_SLACK = 64 * 1024
FIELD = "file"
#: seconds an upload may go without sending anything
DEFAULT_IDLE_TIMEOUT = 60.0


class UploadError(Exception):
    """An upload refused: ``status`` (HTTP), ``message`` (one line) and extra ``headers`` of
    the answer."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def too_large(limit: int) -> UploadError:
    return UploadError(413, f"file too large: the limit is {limit / 2**20:g} MB")


def malformed(err: Exception) -> UploadError:
    return UploadError(400, f"malformed multipart body ({str(err)[:80]})")


def check_declared_size(request: Request, limit: int) -> None:
    """Refuse a body whose ``Content-Length`` already says it is over the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise UploadError(400, "invalid Content-Length header") from None
        if size > limit + FORM_SLACK:
            raise too_large(limit)


def timed_out(seconds: float) -> UploadError:
    # the rest of the body may still come: the connection is closed, not read to its end
    return UploadError(408, f"upload timed out: nothing received for {seconds:g} s",
                       headers={"Connection": "close"})


async def receive_file(request: Request, dest: Path, limit: int,
                       idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> str:
    """Stream the form field ``file`` of ``request`` into ``dest``; return the client's file
    name for it (unsanitised, possibly empty). At most ``limit`` bytes of file and
    ``limit + FORM_SLACK`` bytes of body are accepted (413 beyond); a body from which nothing
    arrives for ``idle_timeout`` seconds is refused (408)."""
    kind, params = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not params.get(b"boundary"):
        raise UploadError(400, "expected a multipart/form-data body with a 'file' field")
    check_declared_size(request, limit)

    state = {"headers": {}, "field": b"", "value": b"", "is_file": False, "found": False,
             "filename": "", "ended": False, "size": 0}
    pending: list[bytes] = []

    def on_part_begin() -> None:
        state["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, disposition = parse_options_header(state["headers"].get(b"content-disposition"))
        state["is_file"] = disposition.get(b"name") == FIELD.encode()
        if state["is_file"]:
            if state["found"]:  # taking one and dropping the other would lose a song silently
                raise UploadError(400, "more than one 'file' field in the form (one song per upload)")
            state["found"] = True
            state["filename"] = disposition.get(b"filename", b"").decode("utf-8", "replace")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["is_file"]:
            state["size"] += end - start
            if state["size"] > limit:
                raise too_large(limit)
            pending.append(data[start:end])

    def on_part_end() -> None:
        state["is_file"] = False

    def on_end() -> None:
        state["ended"] = True

    try:
        parser = MultipartParser(params[b"boundary"], {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
            "on_part_end": on_part_end, "on_end": on_end})
    except FormParserError as err:  # a boundary it refuses (over 256 bytes)
        raise malformed(err) from None
    received = 0
    body = request.stream()
    out = await run_in_threadpool(open, dest, "wb")
    try:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await body.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise timed_out(idle_timeout) from None
            received += len(chunk)
            if received > limit + FORM_SLACK:
                raise too_large(limit)
            parser.write(chunk)
            if pending:
                data = b"".join(pending)
                pending.clear()
                await run_in_threadpool(out.write, data)
        parser.finalize()
    except FormParserError as err:
        raise malformed(err) from None
    except ClientDisconnect:
        raise UploadError(400, "the upload was interrupted") from None
    finally:
        with anyio.CancelScope(shield=True):
            await run_in_threadpool(out.close)
    if not state["found"]:
        raise UploadError(400, "no 'file' field in the form")
    if not state["ended"]:
        raise UploadError(400, "the upload was incomplete (the form has no end)")
    if state["size"] == 0:
        raise UploadError(400, "the file is empty (0 bytes)")
    return state["filename"]
