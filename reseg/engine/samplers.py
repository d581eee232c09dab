"""The samplers that fix the data order: a pure function of (seed, epoch), whatever the number of processes.

A run that is killed and resumed sees the same batches as one that never stopped, and N processes
see, together, the same global batches as one process with an N times larger batch; evaluation
shards cover every index exactly once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, index: int, draw: int | None = None) -> int:
    """A 32-bit seed for one sample's augmentation, fixed by (seed, epoch, index) alone; with `draw` (the
    sample's place in a weighted epoch, where an image may come twice) by that too, so repeats differ."""
    # draw + 1: SeedSequence reads trailing zeros as absent, so draw 0 would repeat the unweighted seed
    entropy = [seed & 0xFFFFFFFF, epoch, index] + ([draw + 1] if draw is not None else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def weights_digest(weights: Sequence[float] | None) -> str:
    """A short name for a sampling distribution ("uniform" without one): resume compares it."""
    if weights is None:
        return "uniform"
    return hashlib.sha256(np.asarray(weights, np.float64).round(12).tobytes()).hexdigest()[:16]


class EpochBatchSampler(Sampler[list]):
    """Training batches: a shuffle seeded by (seed, epoch), cut into global batches, sharded by rank.

    Global batch b holds `perm[b*B*W:(b+1)*B*W]`; rank r takes its r-th slice of B. The tail
    that does not fill a global batch is dropped, so every rank runs the same number of steps.
    With `weights` (one chance per image, e.g. rare-class sampling) an epoch is instead `length` draws
    with replacement, seeded the same way.
    Each yielded item is `(dataset_index, sample_seed)` so augmentation does not depend on
    which worker loads it. `set_epoch(epoch, start_batch)` skips batches already consumed
    (on resume).
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        weights: Sequence[float] | None = None,
    ) -> None:
        if weights is not None and len(weights) != length:
            raise ValueError(f"{len(weights)} sampling weights for {length} images")
        self.length = int(length)
        self.weights = None if weights is None else torch.tensor(weights, dtype=torch.float64)
        self.digest = weights_digest(weights)
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
        if self.weights is not None:
            return torch.multinomial(self.weights, self.length, replacement=True, generator=g).tolist()
        return torch.randperm(self.length, generator=g).tolist()

    def __iter__(self) -> Iterator[list]:
        perm = self.order(self.epoch)
        gb = self.global_batch()
        for b in range(self.start_batch, self.batches_per_epoch()):
            first = b * gb + self.rank * self.batch_size
            chunk = perm[first : first + self.batch_size]
            if self.weights is None:
                yield [(i, sample_seed(self.seed, self.epoch, i)) for i in chunk]
            else:
                yield [(i, sample_seed(self.seed, self.epoch, i, draw=first + k)) for k, i in enumerate(chunk)]

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch() - self.start_batch)

    def state_dict(self) -> dict[str, int | str]:
        return {
            "weights": self.digest,
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
