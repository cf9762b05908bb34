"""``vocalsep serve``: the JSON API of a real server (``python -m vocalsep.cli serve`` in a
subprocess on a free loopback port), fed with real MIR-1K clips.

Raw sockets and ``http.client`` are used where the exact bytes on the wire matter (a body cut
off past the upload limit, paths that must reach the server unnormalised).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from badfiles import BAD_FILES
from conftest import Server, free_port, run_cli, tone
from vocalsep.audio import AudioError, read_audio

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

LSB = 1 / 32768  # one step of a 16-bit wav


def stems_of(server: Server, job_id: str, tmp: Path) -> dict[str, np.ndarray]:
    """The job's stems as served, decoded: name → float32 ``(channels, n)``."""
    out = {}
    for stem in ("vocals", "accompaniment"):
        r = httpx.get(server.url(f"/api/jobs/{job_id}/{stem}"), timeout=30)
        assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
        path = tmp / f"{job_id}-{stem}.wav"
        path.write_bytes(r.content)
        out[stem] = read_audio(path).samples
    return out


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    """The shipped default model, one worker, a 1 MB upload limit."""
    server = Server(tmp_path_factory.mktemp("jobs"), model="default", max_upload_mb=1)
    yield server
    server.stop()


# ---------------------------------------------------------------- acceptance 1
def test_job_equals_cli_separation(default_server, mir1k_test_clip, tmp_path):
    """A real clip through the API gives the same stems as ``vocalsep separate``."""
    r = default_server.post(mir1k_test_clip)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "queued" and re.fullmatch(r"[A-Za-z0-9_-]{22}", created["id"])
    assert r.headers["location"] == f"/api/jobs/{created['id']}"
    job = default_server.wait(created["id"])
    assert job["status"] == "done" and job["progress"] == 1.0 and job["error"] is None, job
    assert job["filename"] == mir1k_test_clip.name and job["duration"] == pytest.approx(8.8, abs=0.01)
    served = stems_of(default_server, job["id"], tmp_path)

    # the same code path (Separator.separate_file, default options), one torch thread each:
    # the very same files
    result = run_cli("separate", mir1k_test_clip, "-o", tmp_path / "cli")
    assert result.returncode == 0, result.stderr
    for stem, samples in served.items():
        written = tmp_path / "cli" / mir1k_test_clip.stem / f"{stem}.wav"
        assert samples.shape == read_audio(written).samples.shape == (2, 8.8 * 16000)
        assert (tmp_path / f"{job['id']}-{stem}.wav").read_bytes() == written.read_bytes(), stem
    assert np.abs(served["vocals"]).max() > 0.05  # not silence on both sides

    # the downloads: an attachment named after the upload (a plain ASCII name for clients that
    # do not read RFC 6266's filename*, e.g. curl -J); the spectrograms: PNG images
    r = httpx.get(default_server.url(f"/api/jobs/{job['id']}/vocals?download=1"))
    assert r.headers["content-disposition"] == \
        "attachment; filename=\"Ani_1_01 - vocals.wav\"; filename*=utf-8''Ani_1_01%20-%20vocals.wav"
    r = httpx.get(default_server.url(f"/api/jobs/{job['id']}/accompaniment"))
    assert r.headers["content-disposition"] == \
        "inline; filename=\"Ani_1_01 - accompaniment.wav\"; filename*=utf-8''Ani_1_01%20-%20accompaniment.wav"
    for name in ("input", "vocals"):
        r = httpx.get(default_server.url(f"/api/jobs/{job['id']}/spectrogram/{name}.png"))
        assert r.status_code == 200 and r.content.startswith(b"\x89PNG\r\n\x1a\n")
    r = httpx.get(default_server.url(f"/api/jobs/{job['id']}/spectrogram/accompaniment.png"))
    assert r.status_code == 404


def test_the_accompaniment_plays_while_the_song_is_separated(mir1k_quality_clips, tmp_path):
    """``GET /api/jobs/ID/live``, opened as soon as the job is queued, streams a WAV whose
    first samples arrive well before the job is done and whose samples are, in the end, exactly the
    finished accompaniment stem; once the job is done the same URL streams the finished stem."""
    clips = [read_audio(c).samples for c in mir1k_quality_clips]
    song = np.concatenate(clips * -(-100 // sum(c.shape[1] // 16000 for c in clips)), axis=1)
    path = tmp_path / "song.wav"
    sf.write(path, song.T, 16000, subtype="PCM_16")  # 100 s or more: several blocks
    server = Server(tmp_path / "jobs", model="default", max_upload_mb=20)
    try:
        job_id = server.post(path).json()["id"]
        received, first_at = bytearray(), None
        with httpx.stream("GET", server.url(f"/api/jobs/{job_id}/live"), timeout=60) as r:
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            for chunk in r.iter_bytes():
                received += chunk
                if first_at is None and len(received) > 44:
                    first_at = time.time()
        job = server.wait(job_id)
        assert job["status"] == "done"
        assert first_at < job["finished"] - 0.5, (first_at, job)  # heard while separating
        header, pcm = bytes(received[:44]), np.frombuffer(bytes(received[44:]), "<i2")
        assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
        stem = stems_of(server, job_id, tmp_path)["accompaniment"]
        assert np.abs(stem).max() < 1  # not scaled down: the stream holds the very samples
        assert np.array_equal(pcm.reshape(-1, 2).T, np.rint(stem * 32768).astype(np.int16))

        after = httpx.get(server.url(f"/api/jobs/{job_id}/live"), timeout=60).content
        assert after == bytes(received)

        assert httpx.get(server.url("/api/jobs/" + "A" * 22 + "/live"), timeout=10).status_code == 404
    finally:
        server.stop()


# ---------------------------------------------------------------- limits and bad input
def _read_response(sock: socket.socket, timeout: float = 20) -> tuple[int, dict]:
    """Status and JSON body of the HTTP response arriving on ``sock``."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed without a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def test_upload_over_the_limit_is_refused_while_streaming(default_server, tmp_path):
    limit = 2**20
    jobs_before = set((default_server.data_dir / "jobs").iterdir())
    # 1) announced too large: refused before the body is sent at all
    with socket.create_connection(("127.0.0.1", default_server.port)) as sock:
        sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n")
        status, body = _read_response(sock)
    assert status == 413 and body["detail"] == "file too large: the limit is 1 MB"

    # 2) chunked (no length announced): refused as soon as the file passes the limit, while
    #    the client has not finished the body (an answer that waited for the end never comes)
    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    with socket.create_connection(("127.0.0.1", default_server.port)) as sock:
        sock.sendall(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     b"Content-Type: multipart/form-data; boundary=XyZ\r\n\r\n")
        sock.sendall(chunk(b'--XyZ\r\nContent-Disposition: form-data; name="file"; '
                           b'filename="big.wav"\r\nContent-Type: audio/wav\r\n\r\n'))
        piece = bytes(64 * 1024)
        for _ in range(limit // len(piece)):
            sock.sendall(chunk(piece))
        sock.sendall(chunk(b"\0"))  # one byte over; neither the closing boundary nor the end
        status, body = _read_response(sock)
    assert status == 413 and "limit is 1 MB" in body["detail"]
    time.sleep(0.2)
    assert set((default_server.data_dir / "jobs").iterdir()) == jobs_before  # nothing left behind

    # 3) the same through an ordinary client, just over the limit
    big = tmp_path / "big.wav"
    sf.write(big, np.zeros((limit // 4 + 1000, 2), np.int16), 16000, subtype="PCM_16")
    r = default_server.post(big)
    assert r.status_code == 413, r.text


@pytest.mark.parametrize("case", [c for c in BAD_FILES if c not in ("missing", "directory", "directory_mp3")])
def test_unreadable_upload_is_refused_with_its_reason(default_server, tmp_path, case):
    path = BAD_FILES[case](tmp_path)
    r = default_server.post(path)
    assert r.status_code in (400, 415), r.text
    detail = r.json()["detail"]
    assert "\n" not in detail and str(default_server.data_dir) not in detail
    if case == "empty":
        assert r.status_code == 400 and detail == "the file is empty (0 bytes)"
        return
    with pytest.raises(AudioError) as err:  # what vocalsep's reader says of this file here
        read_audio(path)
    assert r.status_code == 415
    # the same line, up to the decoder's own details (they quote the file's path, cut to a length)
    assert detail.split(" (")[0] == f"{path.name}: {err.value.problem}".split(" (")[0]


def test_malformed_requests_get_400(default_server):
    r = httpx.post(default_server.url("/api/jobs"), json={"file": "x"})
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]
    r = httpx.post(default_server.url("/api/jobs"), files={"song": ("a.wav", b"RIFF....")})
    assert r.status_code == 400 and r.json()["detail"] == "no 'file' field in the form"


def test_unknown_and_path_like_ids_are_404(default_server):
    """No id that is not one the server made reaches the file system; nothing outside a job's
    own, server-named files is ever served."""
    jobs = default_server.data_dir / "jobs"
    planted = jobs / ("A" * 22)  # a folder that looks like a job but was never created by one
    planted.mkdir(exist_ok=True)
    (planted / "vocals.wav").write_bytes(b"RIFF planted")
    (planted / "job.json").write_text('{"id": "%s", "status": "done"}' % planted.name)
    paths = ["/api/jobs/" + "B" * 22, f"/api/jobs/{planted.name}", f"/api/jobs/{planted.name}/vocals",
             "/api/jobs/..", "/api/jobs/%2e%2e", "/api/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
             "/api/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd/vocals", "/api/jobs/" + "." * 22,
             "/api/jobs/" + "." * 22 + "/vocals", "/api/jobs/..%2Fjob.json/accompaniment",
             "/api/jobs/%2Fetc%2Fpasswd", "/api/jobs/" + "a" * 21 + "%00/vocals",
             "/api/jobs/" + "b" * 22 + "/spectrogram/..%2F..%2Fjob.png",
             "/static/..%2F..%2F..%2Fpyproject.toml", "/static/../app.py"]
    conn = http.client.HTTPConnection("127.0.0.1", default_server.port, timeout=10)
    for path in paths:
        conn.request("GET", path)  # sent as written: no client-side normalisation
        response = conn.getresponse()
        body = response.read()
        assert response.status == 404, (path, response.status, body)
        assert b"planted" not in body and b"root:" not in body and b"[project]" not in body
    conn.close()


def test_page_and_assets_are_all_local(default_server):
    page = httpx.get(default_server.url("/"))
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert "/static/app.js" in assets and "/static/style.css" in assets
    for ref in assets:
        assert not re.match(r"(https?:)?//", ref), ref  # nothing from a CDN
        if ref.startswith("/"):
            r = httpx.get(default_server.url(ref))
            assert r.status_code == 200, ref
            assert not re.search(r"(https?:)?//[a-z]", r.text.replace("http://127", "")), ref
    assert httpx.get(default_server.url("/docs")).status_code == 404  # its page would use a CDN
    health = httpx.get(default_server.url("/api/health")).json()
    assert health["status"] == "ok" and health["model"] == "default" and health["workers"] == 1
    assert health["max_upload"] == 2**20 and health["sample_rate"] == 44100


# ---------------------------------------------------------------- restart
def test_jobs_survive_a_restart_and_a_kill(mir1k_quality_clips, tmp_path):
    data = tmp_path / "jobs"
    first = Server(data, model="small")
    try:
        r = first.post(mir1k_quality_clips[0])
        done_id = r.json()["id"]
        assert first.wait(done_id)["status"] == "done"
        before = {s: httpx.get(first.url(f"/api/jobs/{done_id}/{s}")).content
                  for s in ("vocals", "accompaniment")}
        pending = [first.post(clip).json()["id"] for clip in mir1k_quality_clips * 2]
    finally:
        first.stop(signal.SIGKILL)  # at once: the last uploads cannot have been separated
    on_disk = {i: json.loads((data / "jobs" / i / "job.json").read_text())["status"] for i in pending}
    assert set(on_disk.values()) & {"queued", "running"}, on_disk
    half_upload = data / "jobs" / ("C" * 22)  # an upload cut off by the kill: no job.json
    half_upload.mkdir()
    (half_upload / ".upload.part").write_bytes(b"partial")

    second = Server(data, model="small")
    try:
        assert not half_upload.exists()
        job = httpx.get(second.url(f"/api/jobs/{done_id}")).json()
        assert job["status"] == "done"
        for stem, content in before.items():
            assert httpx.get(second.url(f"/api/jobs/{done_id}/{stem}")).content == content
        for job_id, clip in zip(pending, mir1k_quality_clips * 2):
            job = second.wait(job_id)
            assert job["status"] == "done", job
            stems = stems_of(second, job_id, tmp_path)
            assert stems["vocals"].shape == read_audio(clip).samples.shape
            assert not (data / "jobs" / job_id / ".work").exists()
        # one server per data directory: a second one is refused with one line
        result = run_cli("serve", "--data-dir", data, "--port", str(free_port()), "-m", "small")
        assert result.returncode == 1
        assert result.stderr.strip() == f"vocalsep: error: {data}: another vocalsep server uses this data directory"
    finally:
        second.stop()


# ---------------------------------------------------------------- acceptance 2
@pytest.fixture(scope="module")
def short_clips(mir1k_test_dir, tmp_path_factory) -> list[Path]:
    """2-s cuts (from 1 s to 3 s) of 20 MIR-1K test clips, 16 kHz stereo wav."""
    clips = sorted(mir1k_test_dir.glob("*.flac"))[::9][:20]
    assert len(clips) == 20
    folder = tmp_path_factory.mktemp("cuts")
    cuts = []
    for clip in clips:
        samples, rate = sf.read(clip, start=16000, frames=32000, dtype="int16")
        cuts.append(folder / f"{clip.stem}.wav")
        sf.write(cuts[-1], samples, rate, subtype="PCM_16")
    return cuts


def test_twenty_concurrent_uploads_all_complete_while_health_answers(short_clips, tmp_path):
    workers = 2
    server = Server(tmp_path / "jobs", model="small", workers=workers)
    health: list[tuple[float, int, dict]] = []  # (seconds to answer, status, body)
    stop = threading.Event()

    def watch() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                r = client.get(server.url("/api/health"))
                health.append((time.monotonic() - started, r.status_code, r.json()))
                time.sleep(0.05)

    def upload_and_wait(clip: Path) -> tuple[Path, str, dict]:
        with httpx.Client(timeout=30) as client:
            r = server.post(clip, client=client)
            assert r.status_code == 202, r.text
            return clip, r.json()["id"], server.wait(r.json()["id"], client=client)

    watcher = threading.Thread(target=watch)
    try:
        started = time.monotonic()
        watcher.start()
        with ThreadPoolExecutor(len(short_clips)) as pool:
            results = list(pool.map(upload_and_wait, short_clips))
        wall = time.monotonic() - started
        stop.set()
        watcher.join()
        ids = [job_id for _, job_id, _ in results]
        assert len(set(ids)) == 20
        assert [job["status"] for _, _, job in results] == ["done"] * 20
        for clip, job_id, _ in results:
            stems = stems_of(server, job_id, tmp_path)
            original = read_audio(clip).samples
            assert stems["vocals"].shape == original.shape == (2, 32000)
            assert np.abs(stems["vocals"] + stems["accompaniment"] - original).max() <= 2 * LSB
        final = httpx.get(server.url("/api/health")).json()
        assert final["jobs"] == {"queued": 0, "running": 0, "done": 20, "failed": 0}
    finally:
        stop.set()
        server.stop()
    latencies = [t for t, _, _ in health]
    busy = [body for _, _, body in health if body["queued"] or body["running"]]
    print(f"\n20 uploads of 2 s clips, {workers} workers: {wall:.1f} s wall; health answered "
          f"{len(health)} times, {len(busy)} while busy, slowest {max(latencies) * 1000:.0f} ms")
    assert all(status == 200 for _, status, _ in health)
    assert len(busy) >= 5  # it kept answering while jobs waited and ran
    assert max(latencies) < 2.0
    assert max(b["running"] for b in busy) <= workers  # the pool is bounded
    assert max(b["queued"] for b in busy) > 0  # and uploads waited for it


# ---------------------------------------------------------------- the job runner, in process
class FakeSeparator:
    """Stands in for :class:`vocalsep.separate.Separator` in a :class:`JobRunner`: writes
    silent stems of the input's shape, or raises ``error``; counts its calls."""

    rate = 16000

    def __init__(self, error: BaseException | None = None):
        self.error, self.calls = error, 0

    def separate_file(self, path, out_dir, force=False, progress=None, tap=None) -> dict[str, Path]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        audio = read_audio(path)
        folder = Path(out_dir) / Path(path).stem
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for stem in ("vocals", "accompaniment"):
            written[stem] = folder / f"{stem}.wav"
            sf.write(written[stem], np.zeros_like(audio.samples.T), audio.rate, subtype="PCM_16")
        return written


def _queue_one(store, clip: Path) -> str:
    from vocalsep.server.jobs import Job

    job_id, folder = store.new_folder()
    (folder / "input.wav").write_bytes(clip.read_bytes())
    store.add(Job(id=job_id, filename=clip.name, input="input.wav", created=time.time()))
    return job_id


def _wait_finished(store, job_id: str, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job.status in ("done", "failed"):
            return job
        time.sleep(0.02)
    return store.get(job_id)


def _written(store, job_id: str, status: str, timeout: float = 5) -> dict:
    """The job's ``job.json`` once it says ``status`` (the store writes it just after it
    changes the job in memory, where :func:`_wait_finished` looks), or as it is at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        state = json.loads((store.folder(job_id) / "job.json").read_text())
        if state["status"] == status or time.monotonic() > deadline:
            return state
        time.sleep(0.02)


@pytest.mark.parametrize("where", ["separation", "spectrograms"])
@pytest.mark.parametrize("error", [RuntimeError("CUDA error at /srv/secret/x.cu:12\nline 2"),
                                   MemoryError(), KeyError("x")], ids=lambda e: type(e).__name__)
def test_an_unexpected_error_fails_the_job_and_it_is_not_run_again(tmp_path, monkeypatch, where, error):
    """Any exception in a job (a torch RuntimeError, MemoryError, a matplotlib error ...) makes
    it ``failed`` with a short line and its finish time, never ``running`` forever; after a
    restart it is not queued again, and the worker goes on with the next job."""
    from vocalsep.server.jobs import JobRunner, JobStore

    separator = FakeSeparator(error if where == "separation" else None)
    if where == "spectrograms":
        def broken(*args, **kwargs):
            raise error
        monkeypatch.setattr("vocalsep.server.spectrograms.render_spectrograms", broken)
    clip = tmp_path / "tone.wav"
    sf.write(clip, tone(16000, 2, 0.5).T, 16000, subtype="PCM_16")
    store = JobStore(tmp_path / "data")
    runner = JobRunner(store, separator, workers=1, threads=1)
    runner.start()
    try:
        bad = _queue_one(store, clip)
        runner.submit(bad)
        job = _wait_finished(store, bad)
        assert job.status == "failed", job
        assert job.error == f"internal error: {type(error).__name__}", job.error
        assert job.finished is not None and job.finished >= job.started
        on_disk = _written(store, bad, "failed")
        assert on_disk["status"] == "failed" and on_disk["error"] == job.error
        assert not (store.folder(bad) / ".work").exists()
        # the worker is still there: the next job runs (and succeeds once nothing breaks)
        separator.error = None
        monkeypatch.setattr("vocalsep.server.spectrograms.render_spectrograms", lambda *a, **k: None)
        good = _queue_one(store, clip)
        runner.submit(good)
        assert _wait_finished(store, good).status == "done"
    finally:
        runner.stop()
        store.close()
    calls = separator.calls
    store = JobStore(tmp_path / "data")  # a restart: the failed job stays failed, not re-queued
    runner = JobRunner(store, separator, workers=1, threads=1)
    runner.start()
    try:
        time.sleep(0.3)
        assert store.get(bad).status == "failed" and separator.calls == calls
        assert store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 1}
    finally:
        runner.stop()
        store.close()


def test_the_host_names_a_server_answers_to():
    from vocalsep.server.guard import LOCAL_HOSTS, allowed_hosts, split_host

    assert allowed_hosts("127.0.0.1") == set(LOCAL_HOSTS) == {"localhost", "127.0.0.1", "::1"}
    assert allowed_hosts("0.0.0.0") == allowed_hosts("::") == set(LOCAL_HOSTS)  # not names
    assert allowed_hosts("192.168.1.5", ["Music.Example.", "[fe80::1]"]) == \
        {*LOCAL_HOSTS, "192.168.1.5", "music.example", "fe80::1"}
    assert allowed_hosts("0.0.0.0", ["a", "*"]) is None  # any
    assert split_host("LocalHost:8000") == ("localhost", "8000")
    assert split_host("[::1]:8000") == ("::1", "8000") and split_host("[::1]") == ("::1", None)
    for bad in ("", "a b", "a:b", "[::1", "a@b", "a/b", "a:1:2", "::1"):
        assert split_host(bad) is None, bad


def test_a_slow_disk_does_not_hold_up_health(tmp_path, monkeypatch):
    """``job.json`` is written outside the store's lock: /api/health (``counts``) answers while
    a write waits on the disk."""
    from vocalsep.server.jobs import Job, JobStore

    store = JobStore(tmp_path / "data")
    try:
        job_id, _ = store.new_folder()
        store.add(Job(id=job_id, created=time.time()))
        entered, release = threading.Event(), threading.Event()
        write = store._write

        def slow_write(*args, **kwargs):
            entered.set()
            release.wait(10)
            return write(*args, **kwargs)

        monkeypatch.setattr(store, "_write", slow_write)
        writer = threading.Thread(target=store.update, args=(job_id,), kwargs={"status": "running"})
        writer.start()
        assert entered.wait(5)
        answered = []
        reader = threading.Thread(target=lambda: answered.append(store.counts()))
        reader.start()
        reader.join(2)
        in_time = list(answered)  # before the write may finish
        release.set()
        writer.join(5)
        reader.join(5)
        assert in_time and in_time[0]["running"] == 1, "counts() waited for the disk"
        assert json.loads((store.folder(job_id) / "job.json").read_text())["status"] == "running"
    finally:
        release.set()
        store.close()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_uploads_do_their_file_work_off_the_event_loop(tmp_path, monkeypatch):
    """Making the job's folder, renaming the upload, writing ``job.json`` and removing a refused
    upload's folder run in worker threads, never on the event loop (which would stall every
    request meanwhile). In process, with a stand-in separator."""
    import asyncio
    import shutil

    from fastapi.testclient import TestClient

    from vocalsep.server import app as app_module
    from vocalsep.server.jobs import JobStore

    calls: list[tuple[str, bool]] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
            return True
        except RuntimeError:
            return False

    def watch(name, function):
        def watched(*args, **kwargs):
            calls.append((name, on_loop()))
            return function(*args, **kwargs)
        return watched

    monkeypatch.setattr(app_module, "Separator", lambda model, device, threads=None: FakeSeparator())
    monkeypatch.setattr(JobStore, "new_folder", watch("mkdir", JobStore.new_folder))
    monkeypatch.setattr(JobStore, "add", watch("job.json", JobStore.add))
    monkeypatch.setattr(os, "replace", watch("rename", os.replace))
    monkeypatch.setattr(shutil, "rmtree", watch("rmtree", shutil.rmtree))
    clip = tmp_path / "tone.wav"
    sf.write(clip, tone(16000, 2, 0.5).T, 16000, subtype="PCM_16")
    app = app_module.create_app(tmp_path / "data", hosts=["testserver"])
    with TestClient(app) as client:
        r = client.post("/api/jobs", files={"file": ("tone.wav", clip.read_bytes())})
        assert r.status_code == 202, r.text
        r = client.post("/api/jobs", files={"file": ("notes.wav", b"not audio " * 100)})
        assert r.status_code == 415, r.text
    seen = {name for name, _ in calls}
    assert {"mkdir", "job.json", "rename", "rmtree"} <= seen, calls
    assert not [name for name, loop in calls if loop], calls


def test_the_live_stream_follows_a_growing_file_and_stops_with_the_job(tmp_path):
    """:func:`vocalsep.server.listen.follow`: the bytes a worker appends while the job runs,
    all of them, then the end once the job is done; a job that failed before anything was
    written gives the header alone."""
    import asyncio

    from vocalsep.server.listen import LIVE_FILE, LiveTap, follow, wav_header

    blocks = [np.sin(np.arange(2 * n, dtype=np.float32)).reshape(2, n) * 0.5 for n in (700, 1, 3000)]
    state = {"status": "queued"}

    def worker() -> None:
        time.sleep(0.3)
        state["status"] = "running"
        tap = LiveTap(tmp_path / LIVE_FILE)
        for block in blocks:
            tap({"accompaniment": block, "vocals": block})
            time.sleep(0.3)
        tap.close()  # removed before the job is marked done, as the runner does
        time.sleep(0.3)
        state["status"] = "done"

    async def collect(status) -> bytes:
        return b"".join([chunk async for chunk in follow(tmp_path, status, 16000, 2)])

    thread = threading.Thread(target=worker)
    thread.start()
    streamed = asyncio.run(collect(lambda: state["status"]))
    thread.join()
    expected = np.concatenate(blocks, axis=1)
    assert streamed[:44] == wav_header(16000, 2)
    assert np.array_equal(np.frombuffer(streamed[44:], "<i2").reshape(-1, 2).T,
                          np.clip(np.rint(expected * 32768), -32768, 32767).astype(np.int16))
    assert not (tmp_path / LIVE_FILE).exists()
    assert asyncio.run(collect(lambda: "failed")) == wav_header(16000, 2)
