"""The web app: one page and a JSON API over the job store (:mod:`vocalsep.server.jobs`).

=======================================  ===================================================
``GET  /``                               the page (``static/index.html``, every asset local)
``GET  /api/health``                     ``{"status": "ok", "model", "workers", "jobs", ...}``
``POST /api/jobs``                       multipart field ``file`` → 202 ``{"id", "status"}``
``GET  /api/jobs/{id}``                  status, progress 0..1, error, links when done
``GET  /api/jobs/{id}/vocals``           the stems (wav); ``?download=1`` for an attachment
``GET  /api/jobs/{id}/accompaniment``
``GET  /api/jobs/{id}/spectrogram/{input|vocals}.png``
=======================================  ===================================================

Errors are JSON ``{"detail": "<one line>"}``: 400 (malformed form, empty file, a query
parameter that does not parse, a ``Host`` that is not this server), 403 (a POST from another
site), 404 (no such job), 409 (stems asked for before the job is
done), 408 (an upload that stopped sending), 413 (over the upload limit, or more audio than ``max_minutes`` of 48 kHz stereo), 415
(not audio vocalsep can read: the message is the reader's own, about the upload's name).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from ..audio import AudioError, AudioSource
from ..separate import STEMS, Separator
from .guard import LOCAL_HOSTS, RequestGuard, normalize_host
from .jobs import (DEFAULT_MAX_MINUTES, SPECTROGRAMS, Job, JobRunner, JobStore, UnknownJob,
                   client_message, input_name, max_samples, sanitize_filename, threads_per_worker,
                   too_long)
from .listen import follow
from .upload import DEFAULT_IDLE_TIMEOUT, UploadError, receive_file

log = logging.getLogger("vocalsep.server")

DEFAULT_MAX_UPLOAD = 200 * 2**20  # bytes
STATIC = Path(__file__).with_name("static")
#: served with every response of the app's own files: nothing may come from elsewhere
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


def create_app(data_dir: str | os.PathLike = "vocalsep-jobs", model: str | os.PathLike | None = None,
               workers: int = 1, max_upload: int = DEFAULT_MAX_UPLOAD, threads: int | None = None,
               device: str = "cpu", max_minutes: float = DEFAULT_MAX_MINUTES,
               hosts: Iterable[str] | None = LOCAL_HOSTS,
               upload_timeout: float = DEFAULT_IDLE_TIMEOUT, scheduler: str | None = None) -> FastAPI:
    """The app serving the page and the API; jobs live in ``data_dir``.

    ``model`` (a shipped name, a ``.pt`` or ``.onnx`` file, ``None`` for the default) is
    loaded here, once; ``workers`` songs are separated at a time, each with ``threads`` CPU
    threads (default: the CPU cores shared among the workers); uploads over
    ``max_upload`` bytes get 413, and so do songs holding more samples (duration × rate ×
    channels) than ``max_minutes`` of 48 kHz stereo; an upload that sends nothing for
    ``upload_timeout`` seconds gets 408. Requests must name the server by one
    of ``hosts`` in their ``Host`` header (None: any; :func:`.guard.allowed_hosts` makes the
    list for an address), and a POST from another origin is refused
    (:class:`.guard.RequestGuard`). The workers start (and jobs left unfinished by a previous
    server are queued again) when the app starts, and stop when it shuts down. ``scheduler``:
    the address of a Dask scheduler whose workers separate the jobs instead (``data_dir`` must
    be a folder they see at the same path); ``workers`` is then how many are sent at a time.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    if max_upload < 1:
        raise ValueError("the upload limit must be at least 1 byte")
    if not max_minutes > 0:
        raise ValueError("the length limit must be positive")
    if not upload_timeout > 0:
        raise ValueError("the upload timeout must be positive")
    # absolute: with a scheduler, workers elsewhere write into it
    store = JobStore(Path(data_dir).resolve())  # first: a folder in use is refused before the model loads
    threads = threads or threads_per_worker(workers)
    try:
        separator = Separator(model, device=device, threads=threads)
    except BaseException:
        store.close()
        raise
    client = None
    if scheduler is not None:
        from ..cluster import connect

        try:
            client = connect(scheduler)
        except BaseException:
            store.close()
            raise
    runner = JobRunner(store, separator, workers, threads, max_minutes, client=client,
                       model=None if model is None else str(model), device=device)
    model_name = str(model) if model is not None else "default"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runner.start()
        try:
            yield
        finally:
            await run_in_threadpool(runner.stop)
            store.close()
            if client is not None:
                client.close()

    app = FastAPI(title="vocalsep", version="0.1.0", lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # their pages load scripts from a CDN
    app.state.store, app.state.runner = store, runner
    app.add_middleware(RequestGuard, hosts=None if hosts is None else frozenset(map(normalize_host, hosts)))

    @app.exception_handler(UnknownJob)
    async def unknown_job(request: Request, exc: UnknownJob) -> JSONResponse:
        return JSONResponse({"detail": "no such job"}, status_code=404)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer is 422 with a list of dicts; ours is one line like every error
        errors = exc.errors()
        where = errors[0].get("loc", ()) if errors else ()
        what = " ".join(str(errors[0].get("msg", "")).split()) if errors else "invalid request"
        name = f" parameter {where[-1]!r}" if where else ""
        return JSONResponse({"detail": f"invalid{name}: {what}"}, status_code=400)

    @app.exception_handler(UploadError)
    async def refused(request: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.status, headers=exc.headers)

    # ---------------------------------------------------------------- page
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def no_sniffing(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    # ---------------------------------------------------------------- API
    @app.get("/api/health")
    async def health() -> dict:
        counts = store.counts()
        return {"status": "ok", "model": model_name, "sample_rate": separator.rate,
                "workers": workers, "max_upload": max_upload, "max_minutes": max_minutes,
                "queued": counts["queued"], "running": counts["running"], "jobs": counts}

    @app.post("/api/jobs", status_code=202)
    async def create_job(request: Request) -> JSONResponse:
        # every step that touches the disk runs in a worker thread, never on the event loop
        job_id, folder = await run_in_threadpool(store.new_folder)
        try:
            upload = folder / ".upload.part"
            filename = sanitize_filename(await receive_file(request, upload, max_upload, upload_timeout))
            stored = folder / input_name(filename)
            try:
                rate, channels, seconds = await run_in_threadpool(_keep_and_probe, upload, stored, max_minutes)
            except AudioError as err:
                raise UploadError(415, client_message(err, stored, filename)) from None
            except TooLong as err:
                raise UploadError(413, f"{filename}: {err}") from None
            job = Job(id=job_id, filename=filename, input=stored.name, rate=rate, channels=channels,
                      duration=seconds, created=time.time())
            await run_in_threadpool(store.add, job)
        except BaseException:
            with anyio.CancelScope(shield=True):  # removed even when the request is cancelled
                await run_in_threadpool(shutil.rmtree, folder, True)
            raise
        runner.submit(job_id)
        log.info("job %s queued: %s", job_id, filename)
        return JSONResponse(_public(job), status_code=202,
                            headers={"Location": f"/api/jobs/{job_id}"})

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str) -> dict:
        return _public(store.get(job_id))

    @app.get("/api/jobs/{job_id}/spectrogram/{name}.png")
    async def spectrogram(job_id: str, name: str) -> FileResponse:
        folder = _done_folder(job_id)
        if name not in SPECTROGRAMS:
            raise HTTPException(404, f"no spectrogram named {name!r} ({', '.join(SPECTROGRAMS)})")
        return FileResponse(folder / SPECTROGRAMS[name], media_type="image/png")

    @app.get("/api/jobs/{job_id}/live")
    async def listen(job_id: str) -> StreamingResponse:
        """The accompaniment as a WAV stream while the job runs (see :mod:`.listen`)."""
        job = await run_in_threadpool(store.get, job_id)
        if job.status == "failed":
            raise HTTPException(409, "job is failed: nothing to listen to")
        status = lambda: store.get(job_id).status  # noqa: E731
        return StreamingResponse(follow(store.folder(job_id), status, job.rate, job.channels),
                                 media_type="audio/wav", headers={"Cache-Control": "no-store"})

    def stem_route(stem: str):
        async def send_stem(job_id: str, download: bool = False) -> FileResponse:
            folder = _done_folder(job_id)
            name = f"{store.get(job_id).filename.rsplit('.', 1)[0]} - {stem}.wav"
            return FileResponse(folder / f"{stem}.wav", media_type="audio/wav", headers={
                "Content-Disposition": content_disposition(name, download)})
        send_stem.__name__ = f"get_{stem}"
        return send_stem

    for stem in STEMS:
        app.get(f"/api/jobs/{{job_id}}/{stem}", response_class=FileResponse)(stem_route(stem))

    def _done_folder(job_id: str) -> Path:
        job = store.get(job_id)
        if job.status != "done":
            raise HTTPException(409, f"job is {job.status}: its results are not ready")
        return store.folder(job_id)

    return app


def content_disposition(name: str, download: bool) -> str:
    """A ``Content-Disposition`` value naming ``name``: ``filename`` in printable ASCII (other
    characters, quotes and backslashes as ``_``) for clients that read only that, and the exact
    name percent-encoded in UTF-8 as RFC 6266's ``filename*``."""
    plain = re.sub(r'[^ -~]|["\\]', "_", name)
    kind = "attachment" if download else "inline"
    return f"{kind}; filename=\"{plain}\"; filename*=utf-8''{quote(name, safe='')}"


class TooLong(Exception):
    """An upload holding more audio than the server's limit (the message says how much)."""


def _keep_and_probe(upload: Path, stored: Path, max_minutes: float) -> tuple[int, int, float]:
    """Rename the received ``upload`` to ``stored``, then :func:`_probe` it."""
    os.replace(upload, stored)
    return _probe(stored, max_minutes)


def _probe(path: Path, max_minutes: float) -> tuple[int, int, float]:
    """``(rate, channels, seconds)`` of an upload; decodes its first block, so a file with a
    valid header but no usable samples is refused too (:class:`AudioError`). A song of more
    samples (seconds × rate × channels) than ``max_minutes`` of 48 kHz stereo raises
    :class:`TooLong`; one whose header does not give its length (Matroska, WebM) is decoded
    here to count them, no further than the limit."""
    source = AudioSource(path)
    limit = max_samples(max_minutes)
    if source.length is not None and source.length * source.channels > limit:
        raise TooLong(too_long(max_minutes, source.rate, source.channels, source.length / source.rate))
    blocks = source.blocks()
    try:
        next(blocks)  # raises AudioError for a file without samples
        if source.length is None:
            for _ in blocks:
                if source.samples * source.channels > limit:
                    raise TooLong(too_long(max_minutes) + " (its length is not in its header; "
                                  "decoding stopped at the limit)")
    finally:
        blocks.close()
    length = source.length if source.length is not None else source.samples
    return source.rate, source.channels, length / source.rate


def _public(job: Job) -> dict:
    """What the API tells about a job (no server paths)."""
    out = {"id": job.id, "status": job.status, "progress": job.progress, "error": job.error,
           "filename": job.filename, "duration": job.duration, "rate": job.rate,
           "channels": job.channels, "created": job.created, "started": job.started,
           "finished": job.finished}
    if job.status == "done":
        base = f"/api/jobs/{job.id}"
        out["urls"] = {**{stem: f"{base}/{stem}" for stem in STEMS},
                       **{f"spectrogram_{n}": f"{base}/spectrogram/{n}.png" for n in SPECTROGRAMS}}
    return out
