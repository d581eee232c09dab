"""torchrun / DDP helpers: joining the job, collectives, and failures that end the whole job, named.

The samplers that fix the data order across ranks are in reseg.engine.samplers.

A failed rank ends the whole job, named: collectives wait at most RESEG_DIST_TIMEOUT seconds
for a peer, the failing rank leaves its error in the job's store before it exits, and the ranks
left waiting report that error (`failures_end_the_job`) instead of a bare socket error. Work that
writes files runs on rank 0 alone and its result is broadcast (`run_on_main`), so a job without
a shared filesystem still has one writer.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from reseg.errors import ResegError

T = TypeVar("T")
TIMEOUT_ENV = "RESEG_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
_FAILED_KEY = "reseg/failed/"


class RankFailedError(ResegError):
    """This rank failed in a multi-process job; the message starts with "rank R of W failed"."""


class PeerFailedError(ResegError):
    """Another rank of the job failed; the message names it and its error."""


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the variables torchrun sets; (0, 1, 0) otherwise."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def dist_timeout() -> datetime.timedelta:
    """How long a collective waits for a missing peer before the job fails: RESEG_DIST_TIMEOUT seconds.

    The default (10 minutes) covers rank 0 alone generating a dataset or counting class statistics
    while the others wait; torch's own default would leave a job hanging for 30 minutes.
    """
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ResegError(
            f"{TIMEOUT_ENV}={raw!r}: expected a positive number of seconds (default {DEFAULT_TIMEOUT_S:.0f})"
        )
    return datetime.timedelta(seconds=seconds)


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group if there is one: NCCL on CUDA, gloo on CPU (timeout: dist_timeout)."""
    rank, world, local = env_world()
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=dist_timeout())
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend)


def cleanup(synchronise: bool = False) -> None:
    """Leave the process group (safe to call when there is none).

    synchronise: wait for every rank first, so that no rank tears its connections down while a peer is
    still finishing its last collective; only when all ranks got there (a failed peer would never come).
    """
    if dist.is_available() and dist.is_initialized():
        if synchronise and is_dist():
            with contextlib.suppress(Exception):  # a peer that died after its work reports its own error
                dist.barrier()
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on the one process that writes files and logs."""
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum in place across processes (no-op on one process); returns the tensor.

    NCCL reduces only CUDA tensors, so CPU tensors (e.g. evaluation counts) travel through the current GPU and back.
    """
    if not is_dist():
        return tensor
    if tensor.device.type == "cpu" and dist.get_backend() == "nccl":
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
        return tensor.copy_(on_gpu)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list on one process)."""
    if not is_dist():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank `src`'s `obj` on every rank."""
    if not is_dist():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


# ---------------------------------------------------------------- failures


def describe_error(err: BaseException) -> str:
    """One line for an error as another rank should read it; a bad sample says it was in this rank's shard.

    DataLoader workers re-raise with the worker's whole traceback as the message: keep its last line.
    """
    text = str(err).strip()
    lines = text.splitlines()
    if lines and lines[0].startswith("Caught ") and len(lines) > 1:
        text = lines[-1].split(": ", 1)[-1] if ": " in lines[-1] else lines[-1]
    else:
        text = " ".join(text.split())
    base = sys.modules.get("reseg.data.base")  # loaded wherever a BadSampleError can come from
    if base is not None and isinstance(err, base.BadSampleError):
        return f"bad data in its shard: {text}"
    return text if isinstance(err, ResegError) else f"{type(err).__name__}: {text}"


def _store() -> Any:
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # no group, or a torch without the accessor
        return None


def announce_failure(text: str) -> None:
    """Leave this rank's error in the job's store, where the ranks still waiting can read it."""
    store = _store()
    if store is not None:
        with contextlib.suppress(Exception):
            store.set(f"{_FAILED_KEY}{get_rank()}", text)


def peer_failures(wait_s: float = 0.0) -> list[tuple[int, str]]:
    """(rank, error) of each other rank that announced a failure, polling up to `wait_s` for the first."""
    store = _store()
    if store is None:
        return []
    me, world = get_rank(), get_world_size()
    deadline = time.monotonic() + wait_s
    while True:
        found = []
        for r in range(world):
            key = f"{_FAILED_KEY}{r}"
            try:
                if r != me and store.check([key]):
                    found.append((r, store.get(key).decode("utf-8", "replace")))
            except Exception:  # the store went away with the rank that hosted it
                return found
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def _looks_collective(err: BaseException) -> bool:
    """A collective or store operation failed: a peer died, or it timed out."""
    if isinstance(err, getattr(dist, "DistError", ())):
        return True
    text = str(err)
    return any(
        s in text
        for s in (
            "Connection closed by peer",
            "Connection reset by peer",
            "timed out",
            "Timed out",
            "NCCL",
            "gloo",
            "Broken pipe",
        )
    )


@contextlib.contextmanager
def failures_end_the_job() -> Iterator[None]:
    """Wrap everything a rank does: a failure here is named on every rank, a failure elsewhere is named here.

    On the failing rank the error is announced in the store (and a ResegError gets "rank R of W
    failed:" in front); the rank then exits, which ends the others' collectives at once (gloo) or
    after dist_timeout (NCCL). A rank whose collective fails reports the failure a peer announced,
    or says that a peer died without a word. On one process this does nothing.
    """
    try:
        yield
    except (PeerFailedError, RankFailedError):
        raise
    except Exception as err:
        if not is_dist():
            raise
        me, world = get_rank(), get_world_size()
        collective = _looks_collective(err)
        failed = peer_failures(wait_s=2.0 if collective else 0.0)
        if failed:
            rank, text = failed[0]
            raise PeerFailedError(f"rank {rank} of {world} failed: {text}; rank {me} stops too") from None
        if collective:
            raise PeerFailedError(
                f"rank {me} of {world}: a collective operation failed ({describe_error(err)}); another rank died "
                f"or stopped answering without leaving an error (see its log; collectives wait at most "
                f"{dist_timeout().total_seconds():.0f} s, {TIMEOUT_ENV})"
            ) from None
        text = describe_error(err)
        announce_failure(text)
        if isinstance(err, ResegError):
            raise RankFailedError(f"rank {me} of {world} failed: {text}") from err
        raise


def _rank0_then_share(fn: Callable[[], T], what: str, share_result: bool) -> tuple[bool, Any]:
    """Run `fn` on rank 0 and broadcast (ok, result or error text); the other ranks raise on rank 0's failure.

    Returns (ran_here, value): rank 0 gets its own result; the others get rank 0's when `share_result`.
    """
    if is_main():
        try:
            value = fn()
        except Exception as err:
            broadcast_object((False, describe_error(err)))
            raise
        broadcast_object((True, value if share_result else None))
        return True, value
    ok, value = broadcast_object((False, None))
    if not ok:
        raise PeerFailedError(f"rank 0 of {get_world_size()} failed ({what}): {value}; rank {get_rank()} stops too")
    return False, value


def run_on_main(fn: Callable[[], T], what: str) -> T:
    """`fn()` on rank 0 alone, its result sent to every rank: one writer, also without a shared filesystem.

    A failure on rank 0 reaches the others at once, named, instead of leaving them in the broadcast.
    """
    if not is_dist():
        return fn()
    return _rank0_then_share(fn, what, share_result=True)[1]


def main_first(fn: Callable[[], T], what: str) -> T:
    """`fn()` on rank 0, then on the others (e.g. rank 0 generates a dataset, the others read it).

    When rank 0 fails the others raise a PeerFailedError naming it, without running `fn`.
    """
    if not is_dist():
        return fn()
    ran, value = _rank0_then_share(fn, what, share_result=False)
    return value if ran else fn()


def maybe_sync_bn(model: nn.Module, enabled: bool) -> nn.Module:
    """Convert BatchNorm layers to SyncBatchNorm when asked and when there is more than one process."""
    if enabled and is_dist():
        from reseg.models.vgg import InstanceBatchNorm2d

        if any(isinstance(m, InstanceBatchNorm2d) for m in model.modules()):  # SyncBatchNorm would replace them
            raise ResegError("model.sync_bn cannot keep model.ibn_blocks' half-instance norms: set one of them off")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel on a multi-process run; the model itself otherwise."""
    if not is_dist():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)
