"""A batch separated on a Dask cluster: each song is a task, each worker keeps its model.

``vocalsep separate ... --scheduler tcp://HOST:8786`` connects to an existing cluster (``dask
scheduler`` / ``dask worker``, dask-jobqueue on Slurm, dask-kubernetes); ``--cluster local:N``
starts a ``LocalCluster`` of N worker processes on this machine. The outputs go where the
command says, a path every worker must see (a shared file system), written as a local batch
writes them: each stem appears only when complete, and a song whose outputs all exist is
skipped, here, before anything is sent. A worker that dies mid-song leaves no stem; the
scheduler gives the song to another worker (Dask retries a task whose worker died, up to
``distributed.scheduler.allowed-failures`` times). A song that fails (a bad file) fails alone,
with its one-line error.

Needs the ``cluster`` extra (``dask[distributed]``); the rest of vocalsep never imports Dask.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator

from .batch import FileResult, Job, separate_with, settled_without_model

#: what ``--cluster`` takes: a LocalCluster of N worker processes
LOCAL_PREFIX = "local:"
#: how long connecting to a scheduler may take
CONNECT_TIMEOUT_S = 20


class ClusterError(RuntimeError):
    """The cluster cannot be reached or was lost; ``str()`` is the one line to show."""


def parse_local(spec: str) -> int:
    """``"local:N"`` → N worker processes (ValueError for anything else)."""
    count = spec[len(LOCAL_PREFIX):] if spec.startswith(LOCAL_PREFIX) else ""
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"--cluster {spec}: give local:N, N worker processes on this machine")
    return int(count)


def connect(scheduler: str | None = None, local: int | None = None, threads: int | None = None):
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or of a new LocalCluster of
    ``local`` worker processes (one song at a time each, sharing this machine's cores through
    ``threads`` CPU threads each, default cores / ``local``); ClusterError if unreachable."""
    from distributed import Client, LocalCluster

    if local is not None:
        cluster = LocalCluster(n_workers=local, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40,
                               env={"VOCALSEP_THREADS": str(threads or max(1, (os.cpu_count() or 1) // local))})
        return Client(cluster)
    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({first})") from None


def close(client) -> None:
    """Close ``client`` and, for a LocalCluster it started, the cluster."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# --- on a worker ----------------------------------------------------------------------------

_SEPARATORS: dict = {}
_LOCK = threading.Lock()


def _worker_threads(job: Job) -> int:
    """CPU threads for one song on this worker: the job's, the LocalCluster's, or this
    machine's cores shared among the worker's task slots."""
    if job.threads:
        return job.threads
    if os.environ.get("VOCALSEP_THREADS"):
        return int(os.environ["VOCALSEP_THREADS"])
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except ValueError:  # not on a worker
        slots = 1
    return max(1, (os.cpu_count() or 1) // max(1, slots))


def worker_separator(job: Job):
    """This worker process's separator for ``job``'s model, options and device, loaded once
    (by the first of its task threads that asks)."""
    from .separate import Separator, SeparatorOptions

    key = (job.model, tuple(sorted(job.options.items())), job.device)
    with _LOCK:
        if key not in _SEPARATORS:
            _SEPARATORS[key] = Separator(job.model, SeparatorOptions(**job.options), device=job.device,
                                         threads=_worker_threads(job))
        return _SEPARATORS[key]


def wait(future, stopping: threading.Event | None = None, poll_s: float = 0.25):
    """The result of a task's ``future`` (its exception re-raised here), waiting in steps so
    that ``stopping`` can end the wait: then the task is cancelled and None returned.
    A lost scheduler raises :class:`ClusterError`."""
    from distributed import TimeoutError as DaskTimeout

    try:
        while True:
            try:
                return future.result(timeout=poll_s)
            except (DaskTimeout, TimeoutError):
                if stopping is not None and stopping.is_set():
                    future.cancel()
                    return None
    except OSError as err:  # CommClosedError
        raise ClusterError(f"lost the Dask scheduler ({str(err).strip()[:160]})") from None


def separate_task(index: int, path: str, job: Job) -> FileResult:
    """One song, as a task on a worker (its outputs written where ``job.out`` says)."""
    return separate_with(worker_separator(job), index, path, job, progress=lambda fraction: None)


# --- the batch ------------------------------------------------------------------------------

def run_on_cluster(files: list[str], job: Job, scheduler: str | None = None, local: int | None = None,
                   threads: int | None = None, client=None) -> Iterator[FileResult]:
    """Separate ``files`` on a cluster (``client``, or one :func:`connect` makes from
    ``scheduler``/``local``/``threads`` and closes at the end); yield each :class:`FileResult`
    as its task completes. Skipped and unreadable files are settled here first, and no
    cluster is contacted if nothing is left. A song whose workers kept dying gets an error
    line; a lost scheduler raises :class:`ClusterError` (a rerun finishes what is missing)."""
    from distributed import KilledWorker, as_completed

    todo = []
    for i, path in enumerate(files):
        settled = settled_without_model(i, path, job)
        if settled is None:
            todo.append((i, path))
        else:
            yield settled
    if not todo:
        return
    owned = client is None
    if owned:
        client = connect(scheduler, local, threads)
    futures = {}
    try:
        for i, path in todo:
            futures[client.submit(separate_task, i, path, job, pure=False)] = (i, path)
        for future in as_completed(futures):
            i, path = futures[future]
            try:
                yield future.result()
            except KilledWorker:
                yield FileResult(i, path, error=f"{path}: the workers separating it died "
                                                f"(tried on several; out of memory?)")
    except (OSError, TimeoutError) as err:  # CommClosedError is an OSError
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ClusterError(f"lost the Dask scheduler ({first}); songs already written are "
                           f"kept: run the same command again to finish the rest") from None
    finally:
        for future in futures:
            future.release()
        if owned:
            close(client)
