"""torchrun / DDP helpers, and the one sampler that fixes the data order.

The data order is a pure function of (seed, epoch): a run that is killed and resumed sees the
same batches as one that never stopped, and N processes see, together, the same global
batches as one process with an N times larger batch.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Sampler


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


def init_distributed(device_type: str) -> DistInfo:
    """Join the torchrun process group if there is one: NCCL on CUDA, gloo on CPU."""
    rank, world, local = env_world()
    if world <= 1:
        return DistInfo()
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, backend)


def cleanup() -> None:
    """Leave the process group (safe to call when there is none)."""
    if dist.is_available() and dist.is_initialized():
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
    """Sum in place across processes (no-op on one process); returns the tensor."""
    if is_dist():
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


def maybe_sync_bn(model: nn.Module, enabled: bool) -> nn.Module:
    """Convert BatchNorm layers to SyncBatchNorm when asked and when there is more than one process."""
    if enabled and is_dist():
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel on a multi-process run; the model itself otherwise."""
    if not is_dist():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper (what checkpoints and validation use)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ---------------------------------------------------------------- samplers

def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 32-bit seed for one sample's augmentation, fixed by (seed, epoch, index) alone."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index]).generate_state(1)[0])


class EpochBatchSampler(Sampler[list]):
    """Training batches: a shuffle seeded by (seed, epoch), cut into global batches, sharded by rank.

    Global batch b holds `perm[b*B*W:(b+1)*B*W]`; rank r takes its r-th slice of B. The tail
    that does not fill a global batch is dropped, so every rank runs the same number of steps.
    Each yielded item is `(dataset_index, sample_seed)` so augmentation does not depend on
    which worker loads it. `set_epoch(epoch, start_batch)` skips batches already consumed
    (on resume).
    """

    def __init__(self, length: int, batch_size: int, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, world_size: int = 1) -> None:
        self.length = int(length)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_epoch(self) -> int:
        return self.length // self.global_batch()

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)

    def order(self, epoch: int) -> list[int]:
        """The dataset indices of one epoch, in order, before sharding."""
        if not self.shuffle:
            return list(range(self.length))
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.length, generator=g).tolist()

    def __iter__(self) -> Iterator[list]:
        perm = self.order(self.epoch)
        gb = self.global_batch()
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = perm[b * gb + self.rank * self.batch_size: b * gb + (self.rank + 1) * self.batch_size]
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in chunk]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def state_dict(self) -> dict[str, int]:
        return {"seed": self.seed, "epoch": self.epoch, "start_batch": self.start_batch, "length": self.length,
                "batch_size": self.batch_size, "world_size": self.world_size}


class ShardSampler(Sampler[int]):
    """Evaluation order: every index exactly once over all ranks (rank r takes r, r+W, ...), no padding,
    so confusion matrices summed over ranks equal one process's."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = int(length), rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
