#!/usr/bin/env python3
"""How fast does the demo recipe learn? Train configs/reseg_synthetic.yaml under several data/recipe
variants, a few at a time (on a GPU: one run alone takes ~30 s), and print each one's val mIoU curve.

    python tools/demo_sweep.py difficulty --out work_dirs/demo_sweep --device cuda --parallel 4
    python tools/demo_sweep.py recipe --out work_dirs/demo_sweep --device cuda --parallel 4

Groups: "difficulty" (generator difficulty x class weights x loss x length), "recipe" (learning rate,
width, batch, a 9x longer run). Every variant draws its own dataset (seed 0, 120x160, 60 val images)
and is scored on that dataset's val split. Results: OUT/<group>.json, one line per run on stdout.
Variants start from the demo recipe this sweep was run to choose (AdamW lr 4e-3, no class weights;
the shipped demo now uses "easy" scenes, median-frequency weights and lr 2e-3, the recipe group's
easy_mf_lr2e-3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reseg.data import synthetic as S  # noqa: E402

# A third level, for the sweep only: people and cyclists within 15 m, 3x thicker poles, fences everywhere.
S.DIFFICULTIES["easier"] = replace(
    S.DIFFICULTIES["easy"],
    person_far=14.0,
    cyclist_far=15.0,
    crossing_far=14.0,
    car_far=35.0,
    pole_far=30.0,
    thin_scale=3.0,
    crowd=3.0,
    cyclists=4.0,
    fence_p=1.0,
)
MF = "data.class_weights=median_frequency"
BASE = ["optim.lr=4e-3", "data.class_weights=none"]  # the recipe before the sweep; variants override it
GROUPS: dict[str, list[tuple[str, str, int, list[str]]]] = {  # name, difficulty, train images, --set overrides
    "difficulty": [
        ("std", "standard", 300, []),
        ("easy", "easy", 300, []),
        ("easy_mf", "easy", 300, [MF]),
        ("easy_1k", "easy", 1000, []),
        ("easier", "easier", 300, []),
        ("easier_mf", "easier", 300, [MF]),
        ("easier_1k_mf", "easier", 1000, [MF]),
        ("easy_2x_iters", "easy", 300, ["train.max_iters=1600"]),
        ("easier_2x_iters_mf", "easier", 300, ["train.max_iters=1600", MF]),
        ("easy_lovasz", "easy", 300, ["loss.lovasz_weight=0.5"]),
        ("easier_lovasz_1k", "easier", 1000, ["loss.lovasz_weight=0.5"]),
        ("easy_lr8e-3", "easy", 300, ["optim.lr=8e-3"]),
    ],
    "recipe": [
        ("easy_mf_9x", "easy", 2000, [MF, "data.batch_size=8", "train.max_iters=3600", "train.val_interval=600"]),
        ("easy_mf", "easy", 300, [MF]),
        ("std_mf", "standard", 300, [MF]),
        ("easy_mf_lr1e-2", "easy", 300, [MF, "optim.lr=1e-2"]),
        ("easy_mf_lr2e-3", "easy", 300, [MF, "optim.lr=2e-3"]),
        ("easy_mf_narrow", "easy", 300, [MF, "model.renet_hidden=32", "model.decoder_filters=[32,32]"]),
        ("easy_mf_b8", "easy", 300, [MF, "data.batch_size=8"]),
        ("easy_mf_dice", "easy", 300, [MF, "loss.dice_weight=0.5"]),
    ],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("group", choices=sorted(GROUPS))
    ap.add_argument("--out", default="work_dirs/demo_sweep")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parallel", type=int, default=4, help="runs at a time")
    ap.add_argument("--only", default=None, help="comma-separated variant names")
    ap.add_argument("--set", nargs="+", default=[], help="extra overrides for every run (e.g. a smoke test)")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = [v for v in GROUPS[args.group] if not args.only or v[0] in args.only.split(",")]
    roots: dict[tuple[str, int], Path] = {}
    for _, diff, n, _ in variants:
        if (diff, n) not in roots:
            roots[diff, n] = S.make_synthetic(
                out / "data" / f"{diff}_{n}", train=n, val=60, test=0, seed=0, size=(120, 160), difficulty=diff
            )

    def run(v: tuple[str, str, int, list[str]]) -> dict:
        name, diff, n, over = v
        wd = out / args.group / name
        t0 = time.time()
        cmd = [
            sys.executable,
            "-m",
            "reseg",
            "train",
            "configs/reseg_synthetic.yaml",
            "--device",
            args.device,
            "--work-dir",
            str(wd),
            "--no-progress",
            "--set",
            f"data.root={roots[diff, n]}",
            f"data.synthetic_sizes=[{n},60,0]",
            f"data.synthetic_difficulty={'standard' if diff == 'standard' else 'easy'}",
            "data.num_workers=3",
            *BASE,
            *over,
            *args.set,
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"))
        metrics = wd / "metrics.jsonl"
        vals = (
            [json.loads(line) for line in metrics.read_text().splitlines() if '"val"' in line]
            if metrics.exists()
            else []
        )
        res = {
            "name": name,
            "difficulty": diff,
            "train_images": n,
            "overrides": over,
            "rc": r.returncode,
            "wall_s": round(time.time() - t0, 1),
            "curve": [(x["iter"], round(x["mIoU"], 4)) for x in vals],
            "IoU": {k: round(x, 3) for k, x in vals[-1]["IoU"].items()} if vals else None,
            "error": r.stderr[-800:] if r.returncode else "",
        }
        print(json.dumps(res), flush=True)
        return res

    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(run, variants))
    (out / f"{args.group}.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
