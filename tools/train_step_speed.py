"""Training-step img/s of a config's model on random data: what a time budget buys on this CPU.

    python tools/train_step_speed.py configs/reseg_synthetic.yaml [KEY=VALUE ...]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python tools/train_step_speed.py ...   # as an AVX2-only CPU

Times `reseg train`'s own step (Trainer.train_one_step) at the config's crop size and batch size, with its
AMP, channels-last, optimiser, schedule and loss settings, on random data with the 11 CamVid classes.
Run variants one after the other, more than once, and compare ratios: a shared VM drifts.
"""

from __future__ import annotations

import argparse
import time

import torch

from reseg.benchmark.train_step import random_batch, step_trainer, train_step_fn
from reseg.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=30, help="timed steps after 5 warm-up steps (default 30)")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides + ["model.encoder_weights=null", "model.num_classes=11"])
    trainer = step_trainer(cfg, "cpu")
    h, w = cfg.data.crop_size
    batch = cfg.data.batch_size
    step = train_step_fn(trainer, random_batch(trainer, batch, (h, w)))
    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    rate = batch * args.steps / (time.perf_counter() - start)
    print(
        f"{rate:.2f} img/s ({torch.backends.cpu.get_cpu_capability()}, {trainer.run.amp_dtype or torch.float32}, "
        f"{torch.get_num_threads()} threads, {batch}x{h}x{w})"
    )


if __name__ == "__main__":
    main()
