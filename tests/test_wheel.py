"""The built wheel works away from the source tree: `reseg --help`, `reseg.load` of a model folder and one
prediction, in a fresh virtual environment. Offline: the dependencies come from the running environment.

Deselect with `-m "not wheel"`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from train_utils import REPO

pytestmark = pytest.mark.wheel

USE_PACKAGED_MODEL = """
import sys
import numpy as np
import reseg
assert "{src}" not in reseg.__file__, reseg.__file__
model = reseg.load(sys.argv[1], device="cpu")
mask = model(np.zeros((32, 48, 3), np.uint8))
print("MASK", mask.shape, mask.dtype, model.class_names, reseg.__file__)
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_wheel_installs_and_runs_outside_the_source_tree(tmp_path):
    # build from a copy, so the build leaves nothing (build/, *.egg-info) in the checkout
    src = tmp_path / "src"
    shutil.copytree(REPO / "reseg", src / "reseg", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        cwd=tmp_path,
    )
    (wheel,) = (tmp_path / "dist").glob("reseg-*.whl")
    files = zipfile.ZipFile(wheel).namelist()
    assert "reseg/models/gru_loops.cpp" in files and "reseg/api.py" in files
    assert not any(f.startswith(("tests/", "examples/")) for f in files)

    # a fresh environment that sees this one's packages (torch & co.) through a .pth line, but not its reseg:
    # a plain path in a .pth file adds the folder without running that folder's own .pth files (an editable
    # install of the checkout is one)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path
    ).strip()
    Path(purelib, "outer_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    assert "package" in _run([str(venv / "bin" / "reseg"), "--help"], cwd=elsewhere, env=env)

    from reseg.config import Config
    from reseg.engine.checkpoint import save_checkpoint
    from reseg.models import build_model
    from reseg.packaging import package

    cfg = Config.from_dict(
        {
            "model": {
                "renet_layers": 1,
                "renet_hidden": 4,
                "decoder_filters": [4, 4],
                "encoder_width": 0.25,
                "num_classes": 2,
            }
        }
    )
    save_checkpoint(
        {"config": cfg.to_dict(), "model": build_model(cfg).state_dict(), "class_names": ["a", "b"]},
        tmp_path / "tiny.pt",
    )
    folder = package(tmp_path / "tiny.pt", tmp_path / "model")
    out = _run([str(python), "-c", USE_PACKAGED_MODEL.format(src=REPO), str(folder)], cwd=elsewhere, env=env)
    assert "MASK (32, 48) uint8 ['a', 'b']" in out and str(venv) in out
