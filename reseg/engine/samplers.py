"""The samplers that fix the data order: a pure function of (seed, epoch), whatever the number of processes.

A run that is killed and resumed sees the same batches as one that never stopped, and N processes
see, together, the same global batches as one process with an N times larger batch; evaluation
shards cover every index exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


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

    def __init__(
        self, length: int, batch_size: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1
    ) -> None:
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
            chunk = perm[b * gb + self.rank * self.batch_size : b * gb + (self.rank + 1) * self.batch_size]
            yield [(i, sample_seed(self.seed, self.epoch, i)) for i in chunk]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def state_dict(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "start_batch": self.start_batch,
            "length": self.length,
            "batch_size": self.batch_size,
            "world_size": self.world_size,
        }


class ShardSampler(Sampler[int]):
    """Evaluation order: every index exactly once over all ranks (rank r takes r, r+W, ...), no padding,
    so confusion matrices summed over ranks equal one process's."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1) -> None:
        self.length, self.rank, self.world_size = int(length), rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.length, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.length, self.world_size))
