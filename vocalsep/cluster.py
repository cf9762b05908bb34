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
from dataclasses import replace

from .batch import FileResult, Job, check_job, separate_with, settle

#: what ``--cluster`` takes: a LocalCluster of N worker processes
LOCAL_PREFIX = "local:"
#: how long connecting to a scheduler may take
CONNECT_TIMEOUT_S = 10


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
                               env={"VOCALSEP_THREADS": str(threads or max(1, _cores() // local))})
        try:
            return Client(cluster)
        except BaseException:
            cluster.close()
            raise
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


def _cores() -> int:
    """The CPU cores this process may use (its affinity: a Slurm allocation, a container)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker_threads(job: Job) -> int:
    """CPU threads for one song on this worker: the job's, ``VOCALSEP_THREADS`` (set by
    ``--cluster local:N``, or by hand for several worker processes on one machine), or the
    cores this worker may use shared among its task slots."""
    if job.threads:
        return job.threads
    if os.environ.get("VOCALSEP_THREADS"):
        return int(os.environ["VOCALSEP_THREADS"])
    try:
        from distributed import get_worker

        slots = get_worker().state.nthreads
    except ValueError:  # not on a worker
        slots = 1
    return max(1, _cores() // max(1, slots))


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


def lost(future) -> ClusterError:
    """The error for a ``future`` that was cancelled without being asked to: the client lost
    its scheduler (Dask cancels every future then)."""
    return ClusterError("lost the Dask scheduler (its tasks were cancelled); songs already "
                        "written are kept: run the same command again to finish the rest")


def wait(future, stopping: threading.Event | None = None, poll_s: float = 0.25):
    """The result of a task's ``future`` (the task's own exception re-raised here), waiting in
    steps so that ``stopping`` can end the wait: then the task is cancelled and None returned.
    A lost scheduler raises :class:`ClusterError`."""
    from concurrent.futures import CancelledError

    from distributed import TimeoutError as DaskTimeout

    while True:
        try:
            return future.result(timeout=poll_s)
        except (DaskTimeout, TimeoutError):
            if stopping is not None and stopping.is_set():
                future.cancel()
                return None
        except CancelledError:
            raise lost(future) from None


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
    settled, todo = settle(files, job)
    yield from settled
    if not todo:
        return
    from distributed import KilledWorker, as_completed

    check_job(job)
    owned = client is None
    if owned:
        client = connect(scheduler, local, threads)
    # the workers may run elsewhere, in other folders: every path absolute
    model = job.model
    if model is not None and os.path.exists(model):
        model = os.path.abspath(model)
    remote = replace(job, out=os.path.abspath(job.out), model=model)
    futures = {}
    try:
        for i, path in todo:
            futures[client.submit(separate_task, i, os.path.abspath(path), remote, pure=False)] = (i, path)
        for future in as_completed(futures):
            i, path = futures[future]
            if future.status == "cancelled":
                raise lost(future)
            error = future.exception() if future.status == "error" else None
            if error is None:
                result = future.result()
                if result.error:  # name the file as it was given
                    result.error = result.error.replace(os.path.abspath(path), path)
                result.path = path
                yield result
            elif isinstance(error, KilledWorker):
                yield FileResult(i, path, error=f"{path}: the workers separating it died "
                                                f"(tried on several; out of memory?)")
            else:  # the task's own failure, e.g. a model the worker cannot load
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                yield FileResult(i, path, error=first if path in first else f"{path}: {first}")
    except OSError as err:  # CommClosedError: the connection itself
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise ClusterError(f"lost the Dask scheduler ({first}); songs already written are "
                           f"kept: run the same command again to finish the rest") from None
    finally:
        unfinished = [f for f in futures if not f.done()]
        if unfinished and client.status == "running":  # stopped early (Ctrl-C): none start later
            client.cancel(unfinished)
        for future in futures:
            future.release()
        if owned:
            close(client)
