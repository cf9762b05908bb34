"""Training on several processes with ``torch.distributed`` (started by ``torchrun``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each
process's environment; :func:`start` joins the process group (gloo on the CPU, NCCL on CUDA)
and returns the process's :class:`Ranks`. Without those variables a run is one process and
nothing here talks to anything. What the ranks share is decided by :class:`Ranks`: each takes
a contiguous share of every batch (so the global batch is the same whatever the number of
processes) and every ``world``-th validation batch; :func:`sum_over_ranks` and
:func:`any_rank` reduce what they computed.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

#: how long a collective waits for a missing process before failing the run
TIMEOUT = timedelta(minutes=10)


class LostRankError(RuntimeError):
    """A process of the run died or stopped answering; ``str()`` is the one line to show."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world`` processes (0 of 1 alone)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def share(self, n: int) -> range:
        """This rank's contiguous share of ``n`` items (``n`` divisible by ``world``)."""
        size = n // self.world
        return range(self.rank * size, (self.rank + 1) * size)

    def every(self, n: int) -> range:
        """Every ``world``-th of ``n`` items, starting at this rank (validation batches)."""
        return range(self.rank, n, self.world)


def from_env() -> Ranks:
    """The ranks ``torchrun`` gave this process; one process of one without them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def start(device: str = "cpu") -> Ranks:
    """Join the process group of a ``torchrun`` launch (gloo for the CPU, NCCL for CUDA,
    which also selects this process's GPU); no-op for a single process."""
    ranks = from_env()
    if ranks.world > 1 and not dist.is_initialized():
        fail_on_sigterm()
        cuda = device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(ranks.local_rank)
        # NCCL for the model's CUDA tensors, gloo for the small CPU reductions of losses
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=TIMEOUT)
    return ranks


#: the :class:`LostRankError` a SIGTERM raised in this process, once one has arrived
_terminated: LostRankError | None = None


def fail_on_sigterm() -> None:
    """Turn SIGTERM into :class:`LostRankError`: ``torchrun`` stops every process with it
    when one of them fails, and each then says so in one line instead of dying silently."""
    def stopped(signum, frame):
        global _terminated
        _terminated = LostRankError("stopped by torchrun (SIGTERM), which stops every process when "
                                    "one of them fails; the last checkpoint is kept: run the same "
                                    "command again to resume")
        raise _terminated

    signal.signal(signal.SIGTERM, stopped)


def lost_rank(err: BaseException) -> LostRankError | None:
    """What stopped this process, if the run lost a process: ``err`` itself when it is a
    :class:`LostRankError`; the SIGTERM's when one arrived, whatever ``err`` is (the signal
    interrupts any code, and library code may catch the error it raises and raise another);
    else None (a failure of this process's own)."""
    return err if isinstance(err, LostRankError) else _terminated


def stop() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` says another process of the run is gone (a closed connection, a
    timed-out collective), rather than a bug here."""
    if isinstance(err, (dist.DistError, ConnectionError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "timed out"))


def as_lost_rank(err: BaseException) -> LostRankError:
    """The one-line :class:`LostRankError` for a collective that failed with ``err``."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
    return LostRankError(f"another training process stopped ({first}); the last checkpoint "
                         f"is kept: run the same command again to resume")


@contextmanager
def with_peers(active: bool = True):
    """Around code that talks to the other processes (``active``: if there are any): a lost
    peer becomes :class:`LostRankError`."""
    try:
        yield
    except Exception as err:
        if active and lost_peer(err):
            raise as_lost_rank(err) from None
        raise


def _collective(fn, *args):
    with with_peers():
        return fn(*args)


def same_on_all_ranks(values: list[float], ranks: Ranks) -> bool:
    """Whether every rank holds rank 0's ``values`` (e.g. the epoch and step it resumes at)."""
    if ranks.world == 1:
        return True
    mine = torch.tensor(values, dtype=torch.float64)
    first = mine.clone()
    _collective(dist.broadcast, first, 0)
    return not any_rank(not torch.equal(first, mine), ranks)


def sum_over_ranks(values: list[float], ranks: Ranks) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (the values themselves alone)."""
    if ranks.world == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    _collective(dist.all_reduce, t)
    return t.tolist()


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """Whether ``flag`` is true on any rank (so that all stop together)."""
    return bool(sum_over_ranks([float(flag)], ranks)[0]) if ranks.world > 1 else flag
