#!/usr/bin/env python3
"""Where the fused GRU loops lose time on a CPU: the same sweep (T steps, B sequences, 100 units) with
time outermost (the vertical sweep's row layout) and time innermost (the horizontal sweep's), forward
(training, saving what backward needs) and backward, median of 5 after a warm-up.

    python tools/renet_loop_profile.py [--steps 120] [--batch 90] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reseg.models import renet as R  # noqa: E402

HS = 100


def _inputs(time_outer: bool, steps: int, batch: int) -> tuple:
    # vertical geometry: time = H, batch = W; horizontal: time = W, batch = H (one image)
    h, w = (steps, batch) if time_outer else (batch, steps)
    geom = R._geometry(1, h, w, time_outer, 3, HS)
    m = h * w
    gen = torch.Generator().manual_seed(0)
    G = torch.rand(m, 6 * HS, generator=gen)
    whhT = torch.randn(2, HS, 3 * HS, generator=gen) * 0.1
    return G, whhT, torch.zeros(2, 1, 3 * HS), torch.randn(m, 2 * HS, generator=gen), geom


def _median_ms(fn, repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--batch", type=int, default=90)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; T={args.steps} steps, B={args.batch} "
        f"sequences, {HS} units, both directions"
    )
    for time_outer in (True, False):
        G, whhT, bhh, dY, geom = _inputs(time_outer, args.steps, args.batch)
        out, ghn = torch.empty_like(dY), torch.empty_like(dY)
        fwd = _median_ms(lambda: R._gru_forward_loop(G.clone(), whhT, bhh, out, ghn, *geom, HS))
        Gf = G.clone()
        R._gru_forward_loop(Gf, whhT, bhh, out, ghn, *geom, HS)
        bwd = _median_ms(lambda: R._gru_backward_loop(dY, Gf, ghn, out, whhT, *geom, HS))
        name = "time outermost (vertical layout)" if time_outer else "time innermost (horizontal layout)"
        print(f"{name}: forward {fwd:.1f} ms (with a {G.numel() * 4 / 2**20:.0f} MB clone), backward {bwd:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
