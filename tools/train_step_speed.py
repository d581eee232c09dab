"""Training-step img/s of a config's model on random data: what a time budget buys on this CPU.

    python tools/train_step_speed.py configs/reseg_synthetic.yaml [KEY=VALUE ...]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python tools/train_step_speed.py ...   # as an AVX2-only CPU

Uses the config's crop size, batch size, AMP and channels-last settings (AdamW step, cross-entropy).
Run variants one after the other, more than once, and compare ratios: a shared VM drifts.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from reseg.config import load_config
from reseg.models import build_model
from reseg.runtime import amp_dtype, autocast, memory_format, place_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--steps", type=int, default=30, help="timed steps after 5 warm-up steps (default 30)")
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides + ["model.encoder_weights=null"])
    device = torch.device("cpu")
    model = place_model(build_model(cfg, 11), device, cfg.train.channels_last).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-3)
    dtype = amp_dtype(bool(cfg.train.amp), device, training=True)
    h, w = cfg.data.crop_size
    batch = cfg.data.batch_size
    x = torch.randn(batch, 3, h, w).contiguous(memory_format=memory_format(cfg.train.channels_last))
    y = torch.randint(0, 11, (batch, h, w))

    def step() -> None:
        with autocast(device, dtype):
            out = model(x)
        loss = F.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    rate = batch * args.steps / (time.perf_counter() - start)
    print(f"{rate:.2f} img/s ({torch.backends.cpu.get_cpu_capability()}, {dtype or torch.float32}, "
          f"{torch.get_num_threads()} threads, {batch}x{h}x{w})")


if __name__ == "__main__":
    main()
