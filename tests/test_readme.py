"""The README's Python snippet runs as written: read from README.md, run in a fresh process from a folder
laid out like a repository after `make demo` (a small demo checkpoint, a few generated scenes)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from train_utils import REPO, subprocess_env

from reseg.config import load_config
from reseg.data.classes import CAMVID
from reseg.data.synthetic import make_synthetic
from reseg.engine.checkpoint import save_checkpoint
from reseg.models import build_model

DEMO_CONFIG = "configs/reseg_synthetic.yaml"


def readme_python_snippet() -> str:
    """The one ```python block of README.md."""
    blocks = re.findall(r"^```python\n(.*?)^```", (REPO / "README.md").read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 1, f"README.md has {len(blocks)} python blocks; this test runs exactly one"
    return blocks[0]


def _demo_layout(root: Path) -> None:
    """configs/, the demo's dataset (4 scenes a split, at the demo's size) and a small work_dirs/demo/best.pt."""
    shutil.copytree(REPO / "configs", root / "configs")
    cfg = load_config(root / DEMO_CONFIG)
    make_synthetic(
        root / cfg.data.root,
        4,
        4,
        4,
        seed=0,
        size=tuple(cfg.data.synthetic_size),
        difficulty=cfg.data.synthetic_difficulty,
    )
    cfg.model.renet_hidden, cfg.model.decoder_channels, cfg.model.num_classes = 8, [8, 8], CAMVID.num_classes
    torch.manual_seed(0)
    model = build_model(cfg)
    (root / "work_dirs" / "demo").mkdir(parents=True)
    state = {"config": cfg.to_dict(), "model": model.state_dict(), "class_names": list(CAMVID.names)}
    save_checkpoint(state, root / "work_dirs" / "demo" / "best.pt")


def test_the_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    snippet = readme_python_snippet()
    _demo_layout(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env=subprocess_env(threads=2),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"the README snippet failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    printed = proc.stdout.strip().splitlines()[0]
    assert printed.startswith("{") and set(ast.literal_eval(printed)) <= set(CAMVID.names), (
        printed
    )  # the class names it saw
    assert (tmp_path / "work_dirs" / "demo" / "eval_py" / "metrics.json").is_file()
    assert {p.name for p in (tmp_path / "models" / "demo").iterdir()} >= {
        "model.safetensors",
        "config.yaml",
        "classes.json",
        "README.md",
    }
    assert (tmp_path / "work_dirs" / "py" / "best.pt").is_file()
