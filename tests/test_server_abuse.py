"""``vocalsep serve`` under abuse (issue #6, the web server): oversized and malformed uploads,
odd file names, unknown ids, wrong methods, floods, clients that vanish or stall, against real
servers (``python -m vocalsep.cli serve -m small`` on a free loopback port, one torch thread)
fed with 2-s cuts of MIR-1K test clips.

Every case checks what the client got (status, a JSON ``{"detail": "<one line>"}``), what the
data directory holds afterwards (no folder of a refused upload, no ``.upload.part``, nothing
outside a job's folder), that the server's log has no traceback, and that real jobs still
finish with the right stems. Raw sockets and ``http.client`` are used where the bytes on the
wire matter (names no client library would send, bodies cut off, connections that go quiet).

The quick part runs in CI; the full part (ten times the floods, more disconnects and idle
connections, three flood rounds to look for memory growth) with::

    VOCALSEP_RELIABILITY_FULL=1 OMP_NUM_THREADS=1 python -m pytest tests/test_server_abuse.py

Cases, expectations and measured numbers: docs/reliability-web.md.
"""
from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from conftest import Server  # noqa: E402
from test_server import LSB  # noqa: E402  (after the skips: needs httpx)

from vocalsep.audio import read_audio  # noqa: E402
from vocalsep.batch import AUDIO_SUFFIXES  # noqa: E402

FULL = os.environ.get("VOCALSEP_RELIABILITY_FULL", "").lower() in ("1", "true", "yes")
LIMIT_MB = 1
LIMIT = LIMIT_MB * 2**20  # bytes, the module server's --max-upload-mb
FORM_SLACK = 64 * 1024  # vocalsep.server.upload.FORM_SLACK: framing allowed around the file
BOUNDARY = b"vsAbuse7"
#: what a job's folder may hold once the job is done (every name chosen by the server)
JOB_FILES = ({"job.json", "input", "vocals.wav", "accompaniment.wav", "input.png", "vocals.png"}
             | {"input" + s for s in AUDIO_SUFFIXES})
#: marks every file name the tests try to plant outside the data directory
TOKEN = "vsabuse-canary"


# ---------------------------------------------------------------- servers and wire helpers
class WatchedServer(Server):
    """A :class:`Server` whose output is read while it runs (a flood of warnings must not
    fill the pipe and block it) and kept, and whose resident memory can be read."""

    def __init__(self, *args, **kwargs):
        self.lines: list[str] = []
        self._checked = 0  # lines already looked at by check_alive
        self._reader = None
        super().__init__(*args, **kwargs)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Stop the server; its output."""
        if self._reader is None:  # not started (Server.__init__ gives up on a port)
            return super().stop(sig)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(10)
        return "".join(self.lines)

    def rss_mb(self) -> float:
        """Resident memory of the server process (``VmRSS``), MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024

    def check_alive(self) -> None:
        """Still running, answering, and nothing that looks like a crash in what it logged
        since the last check."""
        assert self.proc.poll() is None, "the server exited:\n" + "".join(self.lines[-50:])
        r = httpx.get(self.url("/api/health"), timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "ok"
        time.sleep(0.05)  # the reader thread catches up
        log, self._checked = "".join(self.lines[self._checked:]), len(self.lines)
        for crash in ("Traceback", "Exception in ASGI application", "Internal Server Error"):
            assert crash not in log, log[-4000:]

    def jobs(self) -> set[str]:
        return {p.name for p in (self.data_dir / "jobs").iterdir()}

    def leftovers(self) -> list[str]:
        """Traces of uploads that did not become jobs: folders without ``job.json``, parts."""
        found = []
        for folder in (self.data_dir / "jobs").iterdir():
            try:
                names = {p.name for p in folder.iterdir()}
            except FileNotFoundError:  # removed meanwhile
                continue
            if "job.json" not in names:
                found.append(folder.name)
            found += [f"{folder.name}/{name}" for name in names if name.endswith(".part")]
        return found


def form(filename: bytes | None = b"cut.wav", data: bytes = b"", field: bytes = b"file",
         boundary: bytes = BOUNDARY, close: bool = True) -> bytes:
    """A ``multipart/form-data`` body of one part, the file name exactly as given (bytes)."""
    disposition = b'form-data; name="' + field + b'"'
    if filename is not None:
        disposition += b'; filename="' + filename + b'"'
    body = (b"--" + boundary + b"\r\nContent-Disposition: " + disposition
            + b"\r\nContent-Type: audio/wav\r\n\r\n" + data + b"\r\n")
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def multipart_type(boundary: bytes = BOUNDARY) -> bytes:
    return b"multipart/form-data; boundary=" + boundary


def request(method: str, target: bytes | str, headers: dict[str, bytes | str] | None = None,
            body: bytes = b"", length: bool = True) -> bytes:
    """The bytes of one HTTP/1.1 request, sent as written (no client-side clean-up)."""
    target = target.encode() if isinstance(target, str) else target
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + (value.encode() if isinstance(value, str) else value))
    if length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


#: bytes received on a socket past the response read last (pipelined answers)
_UNREAD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the next response on ``sock``."""
    sock.settimeout(timeout)
    data = _UNREAD.pop(sock, b"")

    def more(what: str) -> bytes:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed {what}: {data[:300]!r}"
        return chunk

    while b"\r\n\r\n" not in data:
        data += more("without a response")
    head, data = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(data) < length:
            data += more("in the middle of a response")
        body, data = data[:length], data[length:]
    elif headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in data:
                data += more("in a chunk size")
            size, data = data.split(b"\r\n", 1)
            size = int(size, 16)
            while len(data) < size + 2:
                data += more("in a chunk")
            body, data = body + data[:size], data[size + 2:]
            if size == 0:
                break
    else:  # neither: the body lasts until the server closes
        body = data
        while chunk := sock.recv(65536):
            body += chunk
        data = b""
    if data:
        _UNREAD[sock] = data
    return int(status_line.split()[1]), headers, body


def exchange(server: Server, raw: bytes, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        return read_response(sock, timeout)


def json_error(status: int, headers: dict[str, str], body: bytes) -> str:
    """The one-line ``detail`` of a JSON error response."""
    assert headers.get("content-type") == "application/json", (status, headers, body[:200])
    detail = json.loads(body)["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail and "\r" not in detail, detail
    return detail


def rst_close(sock: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly FIN (a client that crashes or is killed)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_until(condition, timeout: float = 10, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def area(tmp_path_factory) -> Path:
    """A folder holding the data directory and, beside it, a canary folder that must stay empty."""
    root = tmp_path_factory.mktemp("abuse")
    (root / "canary").mkdir()
    return root


@pytest.fixture(scope="module")
def server(area):
    """``-m small``, one worker, a 1 MB upload limit; every test leaves it alive and clean."""
    srv = WatchedServer(area / "data", model="small", workers=1, max_upload_mb=LIMIT_MB)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def cut(mir1k_test_clip, tmp_path_factory) -> Path:
    """2 s (from 1 s to 3 s) of a MIR-1K test clip, 16 kHz stereo 16-bit wav (128 KB)."""
    samples, rate = sf.read(mir1k_test_clip, start=16000, frames=32000, dtype="int16")
    path = tmp_path_factory.mktemp("cut") / "cut.wav"
    sf.write(path, samples, rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def done_job(server, cut) -> str:
    """The id of a job of ``server`` that is done."""
    r = server.post(cut)
    assert r.status_code == 202, r.text
    assert server.wait(r.json()["id"])["status"] == "done"
    return r.json()["id"]


def check_stems(server: Server, job_id: str, clip: Path) -> dict[str, np.ndarray]:
    """The stems of a done job, as served: the clip's shape, adding up to it (16-bit steps)."""
    original = read_audio(clip).samples
    stems = {}
    for stem in ("vocals", "accompaniment"):
        r = httpx.get(server.url(f"/api/jobs/{job_id}/{stem}"), timeout=30)
        assert r.status_code == 200 and r.content[:4] == b"RIFF", (stem, r.status_code)
        samples, _ = sf.read(io.BytesIO(r.content), dtype="float32", always_2d=True)
        stems[stem] = samples.T
        assert stems[stem].shape == original.shape
    assert np.abs(stems["vocals"] + stems["accompaniment"] - original).max() <= 2 * LSB
    assert np.abs(stems["vocals"]).max() > 0.01  # something was separated, not silence
    return stems


# ---------------------------------------------------------------- 1. uploads over the limit
def _declared_only(size: int, expect_continue: bool = False):
    """Headers announcing ``size`` bytes, no body at all: the answer must come before it (with
    ``Expect: 100-continue``, instead of the ``100 Continue`` that would ask for the body)."""
    headers = {"Content-Type": multipart_type(), "Content-Length": str(size)}
    if expect_continue:
        headers["Expect"] = "100-continue"

    def send(server):
        return exchange(server, request("POST", "/api/jobs", headers, length=False))
    return send


def _declared_sent(file_bytes: int):
    """An ordinary client sending a whole form with ``file_bytes`` in its file (Content-Length)."""
    def send(server):
        body = form(b"big.wav", bytes(file_bytes))
        r = httpx.post(server.url("/api/jobs"), content=body, timeout=60,
                       headers={"Content-Type": multipart_type().decode()})
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content
    return send


def _streamed(file_bytes: int):
    """A chunked body (no length announced) of ``file_bytes`` in the file, sent to its end."""
    def chunks():
        yield form(b"big.wav", b"", close=False)[:-2]  # up to the file's first byte
        left = file_bytes
        while left > 0:
            yield bytes(min(left, 256 * 1024))
            left -= 256 * 1024
        yield b"\r\n--" + BOUNDARY + b"--\r\n"

    def send(server):
        r = httpx.post(server.url("/api/jobs"), content=chunks(), timeout=60,
                       headers={"Content-Type": multipart_type().decode()})
        assert "content-length" not in r.request.headers  # it really was streamed
        return r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content
    return send


def _streamed_unfinished(file_bytes: int):
    """Chunked, the client stops sending once ``file_bytes`` are out but keeps the connection
    open: the 413 must come while the body is unfinished."""
    def send(server):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                       "Transfer-Encoding": "chunked"}, length=False))
            head = form(b"big.wav", b"", close=False)[:-2]
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            piece = bytes(100_000)
            for _ in range(file_bytes // len(piece)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            rest = bytes(file_bytes % len(piece))
            if rest:
                sock.sendall(b"%x\r\n%s\r\n" % (len(rest), rest))
            return read_response(sock)
    return send


OVERSIZED = {
    "declared: limit + form slack + 1 byte": _declared_only(LIMIT + FORM_SLACK + 1),
    "declared: 10 GB": _declared_only(10 * 2**30),
    "declared: 2^63 - 1 bytes": _declared_only(2**63 - 1),
    "declared with Expect: 100-continue: 10 MB": _declared_only(10 * LIMIT, expect_continue=True),
    "declared and sent: 1.1 MB": _declared_sent(LIMIT + LIMIT // 10),
    "declared and sent: 8 MB": _declared_sent(8 * LIMIT),
    "streamed: limit + 1 byte": _streamed(LIMIT + 1),
    "streamed: 2 MB": _streamed(2 * LIMIT),
    "streamed: 40 MB": _streamed(40 * LIMIT),
    "streamed, unfinished: limit + 1 byte": _streamed_unfinished(LIMIT + 1),
    "streamed, unfinished: 3 MB": _streamed_unfinished(3 * LIMIT),
}


@pytest.mark.parametrize("case", OVERSIZED)
def test_upload_over_the_limit_gets_413_and_leaves_nothing(server, case):
    before = server.jobs()
    status, headers, body = OVERSIZED[case](server)
    assert status == 413, (status, body[:200])
    assert json_error(status, headers, body) == f"file too large: the limit is {LIMIT_MB} MB"
    assert server.jobs() == before and not server.leftovers()  # removed before the answer
    server.check_alive()


def test_the_limit_itself_is_allowed(server):
    """A file of exactly the limit is received (then refused as not audio: 415, not 413)."""
    before = server.jobs()
    for size, expected in ((LIMIT, 415), (LIMIT + 1, 413)):
        status, headers, body = _declared_sent(size)(server)
        assert status == expected, (size, status, body[:200])
        json_error(status, headers, body)
    assert server.jobs() == before and not server.leftovers()


# ---------------------------------------------------------------- 2. bodies that are not an upload
def _malformed_cases(wav: bytes) -> dict[str, tuple[bytes | None, bytes, int, str]]:
    """name → (Content-Type, body, status, start of the detail)."""
    part = form(b"cut.wav", wav)
    not_multipart = "expected a multipart/form-data body with a 'file' field"
    other = form(b"b.wav", wav, field=b"other")
    return {
        "JSON": (b"application/json", json.dumps({"file": "x"}).encode(), 400, not_multipart),
        "text/plain": (b"text/plain; charset=utf-8", b"hello", 400, not_multipart),
        "octet-stream, a real wav": (b"application/octet-stream", wav, 400, not_multipart),
        "url-encoded form": (b"application/x-www-form-urlencoded", b"file=abc", 400, not_multipart),
        "multipart/mixed": (b"multipart/mixed; boundary=" + BOUNDARY, part, 400, not_multipart),
        "no Content-Type": (None, part, 400, not_multipart),
        "multipart, no boundary": (b"multipart/form-data", part, 400, not_multipart),
        "multipart, empty boundary": (b'multipart/form-data; boundary=""', part, 400, not_multipart),
        "boundary not in the body": (multipart_type(b"Other123"), part, 400, "malformed multipart body"),
        "boundary of 300 bytes": (multipart_type(b"b" * 300), form(b"a.wav", wav, boundary=b"b" * 300),
                                  400, "malformed multipart body (Boundary length 300"),
        "boundary of bytes 0x80-0xff": (multipart_type(bytes(range(0x80, 0xa0))), part, 400,
                                        "malformed multipart body"),
        "empty body": (multipart_type(), b"", 400, "no 'file' field in the form"),
        "only the closing delimiter": (multipart_type(), b"--" + BOUNDARY + b"--\r\n", 400,
                                       "no 'file' field in the form"),
        "wrong field name": (multipart_type(), other, 400, "no 'file' field in the form"),
        "two files": (multipart_type(), part[: -len(BOUNDARY) - 6] + form(b"b.wav", wav), 400,
                      "more than one 'file' field"),
        "a part without Content-Disposition": (
            multipart_type(), part.replace(b"Content-Disposition", b"X-Nothing"), 400,
            "no 'file' field in the form"),
        "truncated in the file": (multipart_type(), part[: len(part) // 2], 400,
                                  "the upload was incomplete"),
        "truncated in the part headers": (multipart_type(), part[:40], 400, "no 'file' field in the form"),
        "no closing delimiter": (multipart_type(), part[: -len(BOUNDARY) - 6], 400,
                                 "the upload was incomplete"),
        "LF instead of CRLF": (multipart_type(), part.replace(b"\r\n", b"\n"), 400,
                               "malformed multipart body"),
        "9 part headers": (multipart_type(), part.replace(b"Content-Type", b"X-A: 1\r\nX-B: 1\r\n"
                           b"X-C: 1\r\nX-D: 1\r\nX-E: 1\r\nX-F: 1\r\nX-G: 1\r\nContent-Type"), 400,
                           "malformed multipart body (Maximum header count"),
        "a part header of 8 KB": (multipart_type(), part.replace(b"audio/wav", b"a" * 8192), 400,
                                  "malformed multipart body (Maximum header size"),
    }


def test_bodies_that_are_not_an_upload_get_a_json_4xx(server, cut):
    """Every case in one test (one connection each): the expected 4xx with a one-line JSON
    detail, never 500; no job folder and no partial file left behind."""
    before = server.jobs()
    seen = {}
    for name, (content_type, body, status, detail) in _malformed_cases(cut.read_bytes()).items():
        headers = {"Content-Type": content_type} if content_type is not None else {}
        got, got_headers, got_body = exchange(server, request("POST", "/api/jobs", headers, body))
        seen[name] = (got, got_body[:120])
        assert got == status, (name, got, got_body[:300])
        assert json_error(got, got_headers, got_body).startswith(detail), (name, got_body)
    assert server.jobs() == before and not server.leftovers(), seen
    server.check_alive()


def test_requests_that_break_http_get_400_and_the_connection_closes(server, cut):
    """Errors in the HTTP framing itself are refused by uvicorn (plain-text 400, connection
    closed) before the app sees them; the server carries on."""
    head = {"Content-Type": multipart_type()}
    cases = {
        "Content-Length not a number": request("POST", "/api/jobs", {**head, "Content-Length": "abc"},
                                               length=False),
        "negative Content-Length": request("POST", "/api/jobs", {**head, "Content-Length": "-5"},
                                           length=False),
        "Content-Length of 2^70 (h11 takes at most 20 digits)": request(
            "POST", "/api/jobs", {**head, "Content-Length": str(2**70)}, length=False),
        "two different Content-Lengths": request("POST", "/api/jobs", {**head, "Content-Length": "5"},
                                                 b"abcdef"),
        "a bad chunk size": request("POST", "/api/jobs", {**head, "Transfer-Encoding": "chunked"},
                                    b"zz\r\nabc\r\n", length=False),
        "raw UTF-8 in the path": request("GET", "/api/jobs/\u00e9t\u00e9".encode()),
        "no Host header": b"GET /api/health HTTP/1.1\r\n\r\n",
        "not HTTP": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(100) + b"\r\n\r\n",
    }
    for name, raw in cases.items():
        status, headers, body = exchange(server, raw)
        assert status == 400 and headers.get("connection", "").lower() == "close", (name, status, body)
    # request headers that never end: cut off at h11's 16 KB, not buffered without bound
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sent = 0
        try:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
            while sent < 2**20:
                sock.sendall(b"X-%d: %s\r\n" % (sent, b"a" * 1000))
                sent += 1000
                time.sleep(0.001)
        except OSError:  # the server has answered 400 and closed: what is intended here
            pass
        assert sent < 256 * 1024, sent
    # the body of a request whose Content-Length is too short is read as the next request:
    # the app answers the first (400, JSON: the form has no end), uvicorn refuses the rest
    body = form(b"cut.wav", cut.read_bytes())
    raw = request("POST", "/api/jobs", {**head, "Content-Length": "200"}, body, length=False)
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(raw)
        status, headers, first = read_response(sock)
        assert status == 400 and json_error(status, headers, first) == \
            "the upload was incomplete (the form has no end)"
        status, headers, _ = read_response(sock)
        assert status == 400 and headers.get("connection", "").lower() == "close"
    assert not server.leftovers()
    server.check_alive()


def test_pipelined_requests_are_answered_in_order(server):
    """300 requests written at once on one connection (health, unknown ids, wrong methods,
    a refused upload): 300 answers, in order, each the expected one."""
    kinds = [(request("GET", "/api/health"), 200),
             (request("GET", "/api/jobs/" + "Q" * 22 + "/vocals"), 404),
             (request("DELETE", "/api/health"), 405),
             (request("POST", "/api/jobs", {"Content-Type": "text/plain"}, b"x" * 100), 400)]
    plan = [kinds[i % len(kinds)] for i in range(300)]
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"".join(raw for raw, _ in plan))
        got = [read_response(sock)[0] for _ in plan]
    assert got == [status for _, status in plan]
    server.check_alive()


# ---------------------------------------------------------------- 3. file names
#: the client's file name → whether the job is accepted (202) or the form refused (400)
ODD_NAMES: dict[str, tuple[bytes, int]] = {
    "../../etc/passwd.wav": (b"../../etc/passwd.wav", 202),
    "relative into the canary folder": (b"../../../canary/" + TOKEN.encode() + b"-rel.wav", 202),
    "many ../ up to /tmp": (b"../" * 30 + b"tmp/" + TOKEN.encode() + b"-up.wav", 202),
    "absolute /tmp path": (b"/tmp/" + TOKEN.encode() + b"-abs.wav", 202),
    "absolute path into the canary": (b"{canary}/" + TOKEN.encode() + b"-canary.wav", 202),
    "Windows ..\\": (b"..\\..\\..\\canary\\" + TOKEN.encode() + b"-win.wav", 202),
    "Windows drive": (b"C:\\Windows\\" + TOKEN.encode() + b"-drive.wav", 202),
    "UNC path": (b"\\\\server\\share\\" + TOKEN.encode() + b"-unc.wav", 202),
    "percent-encoded ../": (b"%2e%2e%2f%2e%2e%2f" + TOKEN.encode() + b"-pct.wav", 202),
    "NUL inside": (b"a\x00b.wav", 202),
    "NUL then ../": (b"x.wav\x00../../../canary/" + TOKEN.encode() + b"-nul.wav", 202),
    "control characters and ANSI escapes": (b"a\x01\x1b[31mred\x7f.wav", 202),
    "200 characters": (b"a" * 200 + b".wav", 202),
    "4000 characters": (b"b" * 4000 + b".wav", 202),
    "10,000 characters (over the part header limit)": (b"c" * 10_000 + b".wav", 400),
    "unicode": ("\u00e9t\u00e9 \u2603 \u65e5\u672c\u8a9e \U0001f3b5.wav".encode(), 202),
    "right-to-left override": ("x\u202egnp.wav".encode(), 202),
    "not UTF-8": (b"\xff\xfe\xc3(.wav", 202),
    "leading dashes": (b"--help.wav", 202),
    "dash and space": (b"-rf .wav", 202),
    "hidden": (b".hidden.wav", 202),
    "only ..": (b"..", 202),
    "only .": (b".", 202),
    "only /": (b"/", 202),
    "empty": (b"", 202),
    "no filename parameter": (None, 202),
    "quote and semicolon": (b'a\\"b; name=\\"other.wav', 202),
    "a server file name (vocals.wav)": (b"vocals.wav", 202),
    "a server file name (job.json)": (b"job.json", 202),
    "upper-case suffix": (b"SONG.WAV", 202),
    "wav bytes named .mp3": (b"song.mp3", 202),
}


#: what the server keeps of some of them (the last path component, characters it allows)
KEPT_NAMES = {
    "../../etc/passwd.wav": "passwd.wav",
    "relative into the canary folder": f"{TOKEN}-rel.wav",
    "Windows ..\\": f"{TOKEN}-win.wav",
    "UNC path": f"{TOKEN}-unc.wav",
    "NUL inside": "a_b.wav",
    "200 characters": "a" * 116 + ".wav",
    "4000 characters": "b" * 116 + ".wav",
    "unicode": "\u00e9t\u00e9 _ \u65e5\u672c\u8a9e _.wav",
    "leading dashes": "--help.wav",
    "hidden": "hidden.wav",
    "only ..": "upload", "only .": "upload", "only /": "upload", "empty": "upload",
    "no filename parameter": "upload",
    "a server file name (job.json)": "job.json",
}


@pytest.mark.parametrize("case", ODD_NAMES)
def test_odd_file_names_work_or_are_refused_and_write_nowhere_else(server, area, cut, case):
    raw, expected = ODD_NAMES[case]
    if raw is not None:
        raw = raw.replace(b"{canary}", str(area / "canary").encode())
    before = server.jobs()
    status, headers, body = exchange(server, request("POST", "/api/jobs", {"Content-Type": multipart_type()},
                                                     form(raw, cut.read_bytes())))
    assert status == expected, (status, body[:300])
    if status != 202:
        assert json_error(status, headers, body).startswith("malformed multipart body")
        assert server.jobs() == before and not server.leftovers()
        return
    created = json.loads(body)
    name = created["filename"]  # what the server kept: display and download name only
    assert name and len(name) <= 120 and not name.startswith("."), name
    assert not set(name) & set("/\\\x00\r\n\x1b\x7f\u202e"), name
    if case in KEPT_NAMES:
        assert name == KEPT_NAMES[case]
    job = server.wait(created["id"])
    assert job["status"] == "done", job
    check_stems(server, created["id"], cut)
    folder = server.data_dir / "jobs" / created["id"]
    assert {p.name for p in folder.iterdir()} <= JOB_FILES, sorted(p.name for p in folder.iterdir())
    # the download name: a header any client can parse, the stem's name in it
    r = httpx.get(server.url(f"/api/jobs/{created['id']}/vocals?download=1"), timeout=30)
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "vocals.wav" in disposition
    assert "\n" not in disposition and "/" not in disposition.split("filename", 1)[1]
    plain = re.fullmatch(r'attachment; filename="([ -~]+)"; filename\*=utf-8\'\'([!-~]+)', disposition)
    assert plain, disposition  # an ASCII name for every client, the exact one in filename*
    assert plain[1] == re.sub(r"[^ -~]", "_", name.rsplit(".", 1)[0] if "." in name else name) + " - vocals.wav"
    assert '"' not in plain[1] and "\\" not in plain[1]
    assert_nothing_planted(area)
    server.check_alive()


def assert_nothing_planted(area: Path) -> None:
    """No file the names tried to plant exists: canary folder empty; only the server's own
    names under the data directory; no canary file in /tmp, /, /etc or the working folder."""
    assert not any((area / "canary").iterdir())
    for path in area.rglob("*"):
        rel = path.relative_to(area)
        assert TOKEN not in path.name, path
        if rel.parts[0] == "data" and path.is_file():
            assert rel.parts[1:2] == ("jobs",) or rel == Path("data/.lock"), rel
    for folder in (Path("/tmp"), Path("/"), Path("/etc"), Path.cwd()):
        assert not [p for p in folder.iterdir() if TOKEN in p.name], folder
    assert not Path("/etc/passwd.wav").exists()


# ---------------------------------------------------------------- 4. ids and methods
JOB_ROUTES = ("", "/vocals", "/accompaniment", "/vocals?download=1", "/spectrogram/input.png",
              "/spectrogram/vocals.png")


def test_unknown_and_malformed_ids_are_404_on_every_route(server, done_job):
    """Ids the server never made, including near misses of a real one (one character more,
    less or changed, another case), on every job route; the real id still works after."""
    swapped = done_job.swapcase() if done_job.swapcase() != done_job else done_job[::-1]
    changed = done_job[:-1] + ("A" if done_job[-1] != "A" else "B")
    ids = ["A" * 22, swapped, changed, done_job[:-1], done_job + "A", done_job[:-1] + "%00",
           done_job + "%00", "%20" * 22, "+" * 22, "~" * 22, "%C3%A9" * 11, "%FF" * 22, "null",
           "undefined", "0", "-1", "A" * 10_000, "%2e%2e", done_job + "%2F..", "%2F" + done_job]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for job_id in ids:
            for route in JOB_ROUTES:
                conn.request("GET", f"/api/jobs/{job_id}{route}")
                r = conn.getresponse()
                body = r.read()
                assert r.status == 404, (job_id[:40], route, r.status, body[:200])
                detail = json_error(404, {"content-type": r.getheader("content-type")}, body)
                assert detail in ("no such job", "Not Found"), detail  # no route matched: Not Found
        for route in JOB_ROUTES:  # the real one
            conn.request("GET", f"/api/jobs/{done_job}{route}")
            r = conn.getresponse()
            r.read()
            assert r.status == 200, route
    finally:
        conn.close()
    server.check_alive()


def test_methods_not_allowed_get_405_and_change_nothing(server, done_job):
    routes = {"/api/health": "GET", "/api/jobs": "POST", **{f"/api/jobs/{done_job}{r}": "GET"
                                                         for r in JOB_ROUTES if "?" not in r},
              "/api/jobs/" + "A" * 22: "GET"}
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for path, allowed in routes.items():
            for method in ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"):
                if method == allowed:
                    continue
                conn.request(method, path, body=b"" if method in ("POST", "PUT", "PATCH") else None)
                r = conn.getresponse()
                body = r.read()
                assert r.status == 405, (method, path, r.status, body[:200])
                assert r.getheader("allow") == allowed
                assert json_error(405, {"content-type": r.getheader("content-type")}, body) == \
                    "Method Not Allowed"
    finally:
        conn.close()
    job = httpx.get(server.url(f"/api/jobs/{done_job}")).json()  # DELETE deleted nothing
    assert job["status"] == "done" and (server.data_dir / "jobs" / done_job / "vocals.wav").exists()
    server.check_alive()


def test_results_of_a_job_not_done_are_409_and_bad_queries_400(server, mir1k_test_clip, cut, done_job):
    """While a whole clip is separated, the results of a job queued behind it are refused (409);
    a query parameter that does not parse is 400 with one line (was FastAPI's 422 and a list)."""
    first = server.post(mir1k_test_clip).json()["id"]
    second = server.post(cut).json()["id"]
    for route in JOB_ROUTES[1:]:
        r = httpx.get(server.url(f"/api/jobs/{second}{route}"), timeout=10)
        assert r.status_code == 409, (route, r.status_code, r.text)
        assert r.json()["detail"].startswith(("job is queued", "job is running")), r.text
    for value in ("maybe", "2", "", "%00"):
        r = httpx.get(server.url(f"/api/jobs/{done_job}/vocals?download={value}"), timeout=10)
        assert r.status_code == 400 and r.json()["detail"].startswith("invalid parameter 'download'"), r.text
    assert server.wait(first)["status"] == server.wait(second)["status"] == "done"
    server.check_alive()


# ---------------------------------------------------------------- 5. clients that vanish or stall
def _vanish(server: WatchedServer, kind: int, declared: int) -> None:
    """One upload cut off by its client once the server is receiving it (its folder exists);
    ``kind`` picks where and how."""
    known = server.jobs()
    head = form(b"gone.wav", b"", close=False)[:-2]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if kind % 6 == 5:  # chunked, stops in the file
        sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                   "Transfer-Encoding": "chunked"}, length=False))
        sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
        sock.sendall(b"%x\r\n%s\r\n" % (300_000, bytes(300_000)))
    else:
        sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                   "Content-Length": str(declared)}, length=False))
        if kind % 6 == 1:  # in the part's headers
            sock.sendall(head[:30])
        elif kind % 6 in (2, 3):  # half the body
            sock.sendall(head + bytes(declared // 2 - len(head)))
        elif kind % 6 == 4:  # all but the last bytes (the closing delimiter never comes)
            sock.sendall(head + bytes(declared - len(head) - 10))
        # kind 0: right after the request's headers
    assert wait_until(lambda: server.jobs() - known, timeout=10), "the upload never reached the app"
    rst_close(sock) if kind % 2 else sock.close()


def test_clients_that_disconnect_mid_upload_leave_nothing(server, cut):
    """20 uploads (full: two batches of 200) cut off at six places, by FIN or by reset: within
    seconds no folder and no partial file is left, the server answers, and a later job
    completes. Full: the second batch adds no memory to what the first left."""
    count, batches = (200, 2) if FULL else (20, 1)
    before = server.jobs()
    rss = [server.rss_mb()]
    for _ in range(batches):
        started = time.monotonic()
        for kind in range(count):
            _vanish(server, kind, LIMIT - 1000)
        clean = wait_until(lambda: server.jobs() == before and not server.leftovers(), timeout=30)
        assert clean, (server.leftovers(), server.jobs() - before)
        rss.append(server.rss_mb())
        print(f"\n{count} uploads cut off; all clean {time.monotonic() - started:.2f} s after the first; "
              f"RSS {rss[-2]:.0f} -> {rss[-1]:.0f} MB")
    # while they last, the connections hold at most uvicorn's 64 KB of unread body each (and
    # the allocator keeps some of it); nothing of an upload (up to 1 MB each) may stay behind
    assert rss[1] - rss[0] < 60, rss
    if batches > 1:  # 200 more uploads cut off: about 100 MB if they leaked
        assert rss[2] - rss[1] < 20, rss
    server.check_alive()
    r = server.post(cut)
    assert r.status_code == 202, r.text
    assert server.wait(r.json()["id"])["status"] == "done"
    check_stems(server, r.json()["id"], cut)


def test_idle_and_stalled_connections_do_not_block_other_requests(server, cut):
    """Sockets that open and send nothing, send half a request line, or stall in the middle
    of an upload: health answers at once and a job completes meanwhile. A stalled upload keeps
    its folder while its client stays connected (up to --upload-timeout, 60 s here; the
    timeout itself: test_uploads_that_stop_sending_time_out) and loses it as soon as the
    client goes."""
    idle_count, stalled_count = (200, 50) if FULL else (5, 3)
    before = server.jobs()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle_count)]
    partial = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(idle_count)]
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(stalled_count)]
    try:
        for sock in partial:
            sock.sendall(b"POST /api/jo")
        head = form(b"stall.wav", b"", close=False)[:-2]
        for sock in stalled:
            sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                       "Content-Length": str(LIMIT)}, length=False))
            sock.sendall(head + bytes(100_000))
        assert wait_until(lambda: len(server.leftovers()) >= 2 * stalled_count)  # folder + part
        slowest = 0.0
        with httpx.Client(timeout=5) as client:
            for _ in range(20):
                t = time.monotonic()
                assert client.get(server.url("/api/health")).status_code == 200
                slowest = max(slowest, time.monotonic() - t)
            r = server.post(cut, client=client)
            assert r.status_code == 202, r.text
            assert server.wait(r.json()["id"], client=client)["status"] == "done"
        assert slowest < 1.0, slowest
        job_id = r.json()["id"]
    finally:
        for sock in idle + partial + stalled:
            sock.close()
    assert wait_until(lambda: server.jobs() == before | {job_id} and not server.leftovers())
    server.check_alive()


# ---------------------------------------------------------------- 6. a flood while a job runs
def _bad_upload(port: int, kind: int, wav: bytes, limit: int) -> tuple[int, int]:
    """One refused upload of kind ``kind`` to a server taking ``limit`` bytes; (expected, got)."""
    cases = [  # (headers, body, expected)
        ({"Content-Type": multipart_type()}, form(b"notes.wav", b"not audio at all " * 50), 415),
        ({"Content-Type": b"application/json"}, b'{"file": 1}', 400),
        ({"Content-Type": multipart_type()}, form(b"cut.wav", wav)[:5000], 400),
        ({"Content-Type": multipart_type()}, form(b"a.wav", wav, close=False) + form(b"b.wav", wav), 400),
        ({"Content-Type": multipart_type(b"x" * 300)}, b"--", 400),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        if kind % 6 == 5:  # announced over the limit: answered before the body
            sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                       "Content-Length": str(10 * limit)}, length=False))
            expected = 413
        else:
            headers, body, expected = cases[kind % 6]
            sock.sendall(request("POST", "/api/jobs", headers, body))
        status, headers, body = read_response(sock)
        json_error(status, headers, body)
        return expected, status


def _health_burst(port: int, count: int, per_connection: int = 10) -> list[tuple[float, int]]:
    """``count`` GET /api/health, one in 20 an unknown job instead (a new connection every
    ``per_connection``): (seconds to answer, jobs running then) for each health answer."""
    out, conn = [], None
    for i in range(count):
        if i % per_connection == 0:
            if conn:
                conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        t = time.monotonic()
        health = i % 20 != 0
        conn.request("GET", "/api/health" if health else "/api/jobs/" + "Z" * 22)
        r = conn.getresponse()
        body = json.loads(r.read())
        if health:
            assert r.status == 200 and body["status"] == "ok", (r.status, body)
            out.append((time.monotonic() - t, body["running"]))
        else:
            assert r.status == 404 and body == {"detail": "no such job"}, (r.status, body)
    conn.close()
    return out


def _big_streamed_upload(port: int, size: int) -> int:
    """A chunked upload of ``size`` bytes of zeros named .wav (not audio: 415 once received)."""
    def chunks():
        yield form(b"zeros.wav", b"", close=False)[:-2]
        for _ in range(size // 2**20):
            yield bytes(2**20)
        yield b"\r\n--" + BOUNDARY + b"--\r\n"
    r = httpx.post(f"http://127.0.0.1:{port}/api/jobs", content=chunks(), timeout=120,
                   headers={"Content-Type": multipart_type().decode()})
    return r.status_code


def _stem_bytes(server: Server, job_id: str) -> dict[str, bytes]:
    return {stem: httpx.get(server.url(f"/api/jobs/{job_id}/{stem}"), timeout=30).content
            for stem in ("vocals", "accompaniment")}


def test_flood_while_jobs_run(area, mir1k_quality_clips, cut):
    """2,000 health and unknown-id requests (20,000 in full), 200 refused uploads of six kinds
    (2,000) and two 100 MB streamed uploads (six), all at once on loopback, while whole MIR-1K
    clips are separated: every answer is the expected status with JSON, no connection fails,
    the jobs finish with the very bytes the same clips gave before the flood, and the resident
    memory stays bounded (full: three rounds, no growth from one to the next)."""
    health_count, bad_count, big_count = (20_000, 2_000, 6) if FULL else (2_000, 200, 2)
    rounds = 3 if FULL else 1
    big_limit = 128 * 2**20
    server = WatchedServer(area / "flood", model="small", workers=1, max_upload_mb=big_limit // 2**20)
    wav = cut.read_bytes()
    rss: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            rss.append(server.rss_mb())
            time.sleep(0.02)

    def separate_all() -> list[str]:
        return [server.post(clip).json()["id"] for clip in mir1k_quality_clips]

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        warm = server.post(cut).json()["id"]  # first job: the model's buffers are allocated
        assert server.wait(warm)["status"] == "done"
        baseline = server.rss_mb()
        sampler.start()
        # control: the same clips with no flood (their stems and the memory they take)
        control = separate_all()
        for job_id in control:
            assert server.wait(job_id)["status"] == "done"
        expected = {clip: _stem_bytes(server, job_id) for clip, job_id in zip(mir1k_quality_clips, control)}
        control_peak = max(rss)
        jobs, answers, durations, after_round = [], [], [], []
        for _ in range(rounds):
            rss.clear()
            ids = separate_all()
            jobs += list(zip(ids, mir1k_quality_clips))
            started = time.monotonic()
            with ThreadPoolExecutor(16) as gets, ThreadPoolExecutor(8) as posts, \
                    ThreadPoolExecutor(big_count) as bigs:
                big = [bigs.submit(_big_streamed_upload, server.port, 100 * 2**20) for _ in range(big_count)]
                health = [gets.submit(_health_burst, server.port, health_count // 16) for _ in range(16)]
                bad = [posts.submit(_bad_upload, server.port, k, wav, big_limit) for k in range(bad_count)]
                answers += [a for f in health for a in f.result()]
                refused = [f.result() for f in bad]
                big_status = [f.result() for f in big]
            durations.append(time.monotonic() - started)
            assert all(expected_ == got for expected_, got in refused), \
                [r for r in refused if r[0] != r[1]][:10]
            assert big_status == [415] * big_count
            for job_id in ids:
                assert server.wait(job_id, timeout=300)["status"] == "done"
            after_round.append((max(rss), server.rss_mb()))
        stop.set()
        sampler.join()
        assert len(answers) == rounds * 16 * sum(i % 20 != 0 for i in range(health_count // 16))
        assert max(running for _, running in answers) == 1  # the flood met a separation
        server.check_alive()
        assert not server.leftovers()
        assert server.jobs() == {warm, *control} | {job_id for job_id, _ in jobs}
        for job_id, clip in jobs:  # the stems: right, and the very bytes of the quiet run
            check_stems(server, job_id, clip)
            assert _stem_bytes(server, job_id) == expected[clip], clip.name
    finally:
        stop.set()
        output = server.stop()
    assert "Traceback" not in output, output[-4000:]
    peak = max(p for p, _ in after_round)
    latency = sorted(t for t, _ in answers)
    print(f"\nflood x{rounds}: {health_count} GET, {bad_count} bad uploads, {big_count} x 100 MB "
          f"streamed, {len(jobs)} whole clips; {', '.join(f'{d:.1f}' for d in durations)} s; "
          f"health p50 {latency[len(latency) // 2] * 1000:.0f} ms, max {latency[-1] * 1000:.0f} ms; "
          f"RSS after warm-up {baseline:.0f} MB, peak separating the clips alone {control_peak:.0f} MB, "
          f"with the flood (peak, after) {', '.join(f'{p:.0f}/{a:.0f}' for p, a in after_round)} MB")
    # memory. The model, torch's buffers and a whole clip's separation are in control_peak;
    # what the flood may add is the requests in flight (16 + 8 + big_count connections, each
    # holding at most one 64 KB read, a 4 KB part header and the app's objects: a few MB) and
    # allocator slack. An upload held in memory (100 MB each) or a leak would pass it.
    assert peak < 1500, peak
    assert peak - control_peak < 50, (control_peak, after_round)
    if rounds > 1:  # no growth from round to round
        assert after_round[-1][1] - after_round[0][1] < 20, after_round


# ---------------------------------------------------------------- 7. review: limits of one server
#: --max-minutes of the limits server: 0.2 min of 48 kHz stereo = 1,152,000 samples, 36 s of
#: 16 kHz stereo
MAX_MINUTES = 0.2


#: the one name besides the loopback ones that the limits server answers to (--allow-host)
OTHER_NAME = "vocalsep.example"
#: its --upload-timeout, seconds
UPLOAD_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def limits_server(area):
    """``-m small``, one worker, a 1 MB upload limit, a length limit of 0.2 minutes, an
    upload idle timeout of 2 s, and ``vocalsep.example`` as an allowed host name."""
    srv = WatchedServer(area / "limits", model="small", workers=1, max_upload_mb=LIMIT_MB,
                        args=("--max-minutes", str(MAX_MINUTES), "--allow-host", OTHER_NAME,
                              "--upload-timeout", str(UPLOAD_TIMEOUT)))
    yield srv
    srv.stop()


def _ffmpeg_make(ffmpeg: str, path: Path, *args: str) -> Path:
    subprocess.run([ffmpeg, "-v", "error", "-y", *args, str(path)], check=True, timeout=120)
    return path


def test_more_audio_than_the_limit_is_413_at_upload(limits_server, tmp_path, ffmpeg, cut):
    """A small upload can hold a lot of audio (FLAC of silence): the song's samples (duration
    × rate × channels) are limited, not only its bytes. Files whose header gives no length
    (Matroska) are counted while probed, up to the limit."""
    before = limits_server.jobs()
    wide = tmp_path / "wide.flac"  # 8 channels at 384 kHz: 1 s is 3 million samples
    sf.write(wide, np.zeros((384_000, 8), np.int16), 384_000, subtype="PCM_16")
    long = tmp_path / "long.flac"  # 40 s of 16 kHz stereo: 1.28 million samples
    sf.write(long, np.zeros((40 * 16000, 2), np.int16), 16000, subtype="PCM_16")
    no_length = _ffmpeg_make(ffmpeg, tmp_path / "long.mkv", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=stereo",
                             "-t", "40", "-c:a", "flac")
    expected = {
        wide: "wide.flac: too long: 0.0 min at 384000 Hz, 8 channel(s) is as much as 0.5 min of "
              "48 kHz stereo; the limit is 0.2 min",
        long: "long.flac: too long: 0.7 min at 16000 Hz, 2 channel(s) is as much as 0.2 min of "
              "48 kHz stereo; the limit is 0.2 min",
        no_length: "long.mkv: too long: more than the limit of 0.2 min of 48 kHz stereo audio (its "
                   "length is not in its header; decoding stopped at the limit)",
    }
    for path, detail in expected.items():
        assert path.stat().st_size < LIMIT, path  # the byte limit alone would take it
        r = limits_server.post(path)
        assert r.status_code == 413, (path.name, r.status_code, r.text)
        assert json_error(r.status_code, {"content-type": r.headers["content-type"]}, r.content) == detail
    assert limits_server.jobs() == before and not limits_server.leftovers()
    health = httpx.get(limits_server.url("/api/health")).json()
    assert health["max_minutes"] == MAX_MINUTES
    # under the limit: 30 s of 16 kHz stereo, and a Matroska file (its length counted) are done
    short = tmp_path / "short.flac"
    sf.write(short, np.zeros((30 * 16000, 2), np.int16), 16000, subtype="PCM_16")
    short_mkv = _ffmpeg_make(ffmpeg, tmp_path / "cut.mkv", "-i", str(cut), "-c:a", "flac")
    for path, seconds in ((short, 30.0), (short_mkv, 2.0)):
        r = limits_server.post(path)
        assert r.status_code == 202, r.text
        assert r.json()["duration"] == pytest.approx(seconds, abs=0.01)
        job = limits_server.wait(r.json()["id"])
        assert job["status"] == "done", job
    check_stems(limits_server, r.json()["id"], cut)
    limits_server.check_alive()


def test_a_file_holding_more_than_its_header_says_is_stopped_while_decoded(limits_server, tmp_path, ffmpeg):
    """An mp3 without a Xing header, whose first frames are at 160 kb/s and the rest at 8 kb/s:
    ffprobe estimates its length from the first frames (about 22 s, under the limit of 36 s),
    it decodes to 60 s. The job fails once its stems pass the limit, with nothing left."""
    hi = _ffmpeg_make(ffmpeg, tmp_path / "hi.mp3", "-f", "lavfi", "-i", "anoisesrc=d=0.2:r=16000", "-ac", "2",
                      "-c:a", "libmp3lame", "-b:a", "160k", "-write_xing", "0", "-id3v2_version", "0")
    lo = _ffmpeg_make(ffmpeg, tmp_path / "lo.mp3", "-f", "lavfi", "-i", "sine=f=300:d=60:r=16000", "-ac", "2",
                      "-c:a", "libmp3lame", "-b:a", "8k", "-write_xing", "0", "-id3v2_version", "0")
    lying = tmp_path / "lying.mp3"
    lying.write_bytes(hi.read_bytes() + lo.read_bytes())
    assert read_audio(lying).duration > 59
    r = limits_server.post(lying)
    assert r.status_code == 202, r.text
    assert r.json()["duration"] < 36  # the estimate from the first frames, under the limit
    job = limits_server.wait(r.json()["id"])
    assert job["status"] == "failed", job
    assert job["error"] == ("lying.mp3: too long: more than the limit of 0.2 min of 48 kHz stereo audio "
                            "(it holds more than its header says; stopped while decoding)"), job["error"]
    folder = limits_server.data_dir / "jobs" / job["id"]
    assert {p.name for p in folder.iterdir()} == {"job.json", "input.mp3"}
    limits_server.check_alive()


def _raw_post(server: Server, wav: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """A form upload of ``wav`` with these extra headers; ``Host`` as a browser sends it
    (``127.0.0.1:<port>``) unless given."""
    headers = {"Host": f"127.0.0.1:{server.port}", **headers}
    raw = request("POST", "/api/jobs", {"Content-Type": multipart_type(), **headers}, form(b"cut.wav", wav))
    raw = raw.replace(b"Host: 127.0.0.1\r\n", b"", 1)  # request()'s own, before the one given
    return exchange(server, raw)


def test_posts_from_other_sites_are_403(limits_server, cut):
    """A form posted by any page the user visits needs no CORS preflight: a POST whose Origin
    is not the server itself, or that the browser marks cross-site, is refused before its
    body is read; the server's own page and scripts (no Origin) are served."""
    wav, port = cut.read_bytes(), limits_server.port
    before = limits_server.jobs()
    refused = {
        "another site": {"Origin": "http://evil.example"},
        "another site, https": {"Origin": "https://evil.example"},
        "null (sandboxed frame, file: page)": {"Origin": "null"},
        "another port of this host": {"Origin": f"http://127.0.0.1:{port + 1}"},
        "the default port of this host": {"Origin": "http://127.0.0.1"},
        "localhost for 127.0.0.1 (another origin)": {"Origin": f"http://localhost:{port}"},
        "not a URL": {"Origin": "http://[::1"},
        "another scheme": {"Origin": f"ftp://127.0.0.1:{port}"},
        "Sec-Fetch-Site: cross-site, no Origin": {"Sec-Fetch-Site": "cross-site"},
        "the right Origin but marked cross-site": {"Origin": f"http://127.0.0.1:{port}",
                                                    "Sec-Fetch-Site": "cross-site"},
    }
    for name, headers in refused.items():
        status, got_headers, body = _raw_post(limits_server, wav, headers)
        assert status == 403, (name, status, body[:200])
        detail = json_error(status, got_headers, body)
        assert detail.startswith(("cross-origin request refused: Origin ", "cross-site request refused")), detail
    assert limits_server.jobs() == before and not limits_server.leftovers()
    # a GET from elsewhere changes nothing and is answered, without CORS headers: the page
    # that sent it cannot read the answer
    r = httpx.get(limits_server.url("/api/health"), headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    # the server's own page (same origin, as Chromium sends it), under each of its names, and a script
    accepted = [{"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"},
                {"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"},
                {"Origin": f"http://[::1]:{port}", "Host": f"[::1]:{port}"},
                {"Origin": f"http://{OTHER_NAME.upper()}:{port}", "Host": f"{OTHER_NAME}:{port}"},
                {}]
    for headers in accepted:
        status, _, body = _raw_post(limits_server, wav, headers)
        assert status == 202, (headers, status, body[:200])
        assert limits_server.wait(json.loads(body)["id"])["status"] == "done"
    limits_server.check_alive()


def test_requests_must_name_this_server_in_host(limits_server, cut):
    """DNS rebinding: a page on a name made to resolve to 127.0.0.1 is its own origin, but its
    requests say ``Host: <that name>``; only this server's names are answered (400 otherwise)."""
    port = limits_server.port
    bad = ["evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}",
           f"localhost.evil.example:{port}", f"evil@127.0.0.1:{port}", f"[::2]:{port}", "[::1",
           f"127.0.0.1:{port}:{port}", "", "x y", f"vocalsep.example.evil:{port}"]
    for host in bad:
        for method, path in (("GET", "/api/health"), ("GET", "/"), ("GET", "/static/app.js"),
                             ("GET", "/api/jobs/" + "A" * 22)):
            status, headers, body = exchange(limits_server, request(method, path).replace(
                b"Host: 127.0.0.1", b"Host: " + host.encode()))
            assert status == 400, (host, path, status, body[:200])
            assert json_error(status, headers, body).startswith("invalid Host header "), body
    before = limits_server.jobs()
    status, headers, body = _raw_post(limits_server, cut.read_bytes(),  # a rebinding page's upload
                                      {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
    assert status == 400 and "invalid Host header 'evil.example:" in json_error(status, headers, body)
    assert limits_server.jobs() == before and not limits_server.leftovers()
    for host in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                 f"localhost.:{port}", f"[::1]:{port}", f"{OTHER_NAME}:{port}", OTHER_NAME):
        status, _, body = exchange(limits_server, request("GET", "/api/health").replace(
            b"Host: 127.0.0.1", b"Host: " + host.encode()))
        assert status == 200, (host, status, body[:200])
    limits_server.check_alive()


def test_uploads_that_stop_sending_time_out(limits_server, cut):
    """Uploads from which nothing arrives for --upload-timeout (2 s) seconds: 408 with one line,
    the connection closed, the job folder and the part received removed at once. An upload
    that is slow but never silent that long is received."""
    wav = cut.read_bytes()
    head = form(b"stall.wav", b"", close=False)[:-2]
    declared = {"Content-Type": multipart_type(), "Content-Length": str(len(head) + 300_000)}
    stalls = {
        "after the request's headers": (request("POST", "/api/jobs", declared, length=False), b""),
        "inside the part headers": (request("POST", "/api/jobs", declared, length=False), head[:30]),
        "after 100 KB of the file": (request("POST", "/api/jobs", declared, length=False),
                                     head + bytes(100_000)),
        "chunked, after 100 KB": (request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                                "Transfer-Encoding": "chunked"}, length=False),
                                  b"%x\r\n%s\r\n" % (len(head) + 100_000, head + bytes(100_000))),
    }
    before = limits_server.jobs()
    waits = []
    for name, (start, body) in stalls.items():
        with socket.create_connection(("127.0.0.1", limits_server.port), timeout=30) as sock:
            sock.sendall(start + body)
            started = time.monotonic()
            assert wait_until(lambda: limits_server.jobs() - before, timeout=10), name
            status, headers, answer = read_response(sock)
            waited = time.monotonic() - started
            assert status == 408, (name, status, answer[:200])
            assert json_error(status, headers, answer) == "upload timed out: nothing received for 2 s"
            assert headers.get("connection") == "close"
            assert UPLOAD_TIMEOUT - 0.2 < waited < UPLOAD_TIMEOUT + 3, (name, waited)
            waits.append(waited)
            assert limits_server.jobs() == before and not limits_server.leftovers(), name  # before the answer
            sock.settimeout(10)
            assert sock.recv(100) == b"", name  # the server closed the connection
    print(f"\n{len(waits)} stalled uploads answered 408 after {min(waits):.2f}-{max(waits):.2f} s")
    # slow but steady: a piece every 0.5 s for 4 s (twice the timeout in all)
    body = form(b"slow.wav", wav)
    pieces = [body[i:i + len(body) // 8 + 1] for i in range(0, len(body), len(body) // 8 + 1)]
    with socket.create_connection(("127.0.0.1", limits_server.port), timeout=30) as sock:
        sock.sendall(request("POST", "/api/jobs", {"Content-Type": multipart_type(),
                                                   "Content-Length": str(len(body))}, length=False))
        for piece in pieces:
            time.sleep(0.5)
            sock.sendall(piece)
        status, headers, answer = read_response(sock)
    assert status == 202, answer[:200]
    assert limits_server.wait(json.loads(answer)["id"])["status"] == "done"
    limits_server.check_alive()
