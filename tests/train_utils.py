"""Helpers shared by the training tests: a tiny synthetic dataset, a tiny ReSeg config and checkpoint.

Sizes are chosen so a training run of a dozen iterations takes about a second on one CPU core.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
H, W = 32, 48


def make_tiny_dataset(root: Path, train: int = 16, val: int = 4) -> Path:
    """A synthetic street-scene set of 32x48 images in the CamVid layout (configs must say
    data.synthetic_sizes=[train, val, 0] to use it without a warning)."""
    from reseg.data.synthetic import make_synthetic

    make_synthetic(root, train=train, val=val, test=0, seed=0, size=(H, W))
    return root


def tiny_config(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config dict for a ~1k-parameter ReSeg on the tiny set; `sections` update it per section."""
    cfg: dict[str, Any] = {
        "data": {
            "dataset": "synthetic",
            "root": str(root),
            "batch_size": 4,
            "val_batch_size": 2,
            "num_workers": 0,
            "crop_size": [H, W],
            "scale_range": [1.0, 1.0],
            "hflip": True,
            "color_jitter": 0.0,
            "size_divisor": 16,
            "class_weights": "none",
            "synthetic_sizes": [16, 4, 0],
        },
        "model": {
            "name": "reseg",
            "encoder_weights": None,
            "freeze_encoder": True,
            "renet_layers": 1,
            "renet_hidden": 4,
            "decoder_filters": [4, 4],
        },
        "optim": {"name": "adamw", "lr": 0.01, "weight_decay": 0.0},
        "sched": {"name": "constant"},
        "train": {
            "max_iters": 8,
            "val_interval": 4,
            "checkpoint_interval": 2,
            "log_interval": 1,
            "seed": 0,
            "deterministic": True,
            "device": "cpu",
        },
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


def read_metrics(work_dir: Path, kind: str | None = None) -> list[dict[str, Any]]:
    lines = (Path(work_dir) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    recs = [json.loads(line) for line in lines if line.strip()]
    return [r for r in recs if kind is None or r["type"] == kind]


def subprocess_env(threads: int = 1) -> dict[str, str]:
    """Environment for a training subprocess: the repo importable, a fixed thread count."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_cli(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m reseg ARGS` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "reseg", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def one_thread():
    """In-process trainings on one thread: on a shared 2-core machine, two OpenMP threads mostly wait
    on each other (the subprocess tests get OMP_NUM_THREADS=1 for the same reason)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_checkpoint(
    path: Path, class_names: list[str], *overrides: str, palette: list[list[int]] | None = None, **state: Any
) -> torch.nn.Module:
    """Write a tiny ReSeg checkpoint (config `overrides` on top of a 1-layer, 4-unit ReNet) whose head is drawn
    large, so its masks vary with the image; returns the model in eval mode. `state`: more checkpoint keys."""
    import reseg
    from reseg.config import load_config
    from reseg.engine.checkpoint import save_checkpoint

    base = ["model.renet_layers=1", "model.renet_hidden=4", "model.decoder_filters=[4,4]"]
    cfg = load_config(None, [*base, f"model.num_classes={len(class_names)}", *overrides])
    model = reseg.build_model(cfg)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("encoder"):
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 if p.dim() > 1 else 0.1))
    extra = {"palette": palette} if palette is not None else {}
    save_checkpoint(
        {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": class_names, **extra, **state}, path
    )
    return model.eval()
