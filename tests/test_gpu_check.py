"""tools/gpu_check.sh rehearsed on the CPU: every step runs (tiny sizes, CUDA-only parts skipped by name), so a
lent GPU's minutes are never spent on a typo; and the report reads what the steps wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_gpu_check_rehearses_every_step_on_the_cpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh"), str(out), "--rehearsal", "--steps", "env bench camvid report"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    bench = report["bench"]
    assert bench["rehearsal"] is True and "CUDA graphs (CUDA only)" in bench["skipped"]
    failed = {k: v for k, v in bench.items() if isinstance(v, dict) and ("error" in v or v.get("errors"))}
    assert not failed, failed
    assert bench["triton_scan_alone"]["bfloat16"]["fwd_us"] > 0  # the kernels alone, in Triton's interpreter
    assert set(bench["triton_blocks"]["fwd_us"]) == {"default", "8x16x1"}
    layer = bench["renet_1x8x6x8"]
    assert set(layer["fwdbwd_ms"]) == {"gru", "mingru_blocked"} and all(v > 0 for v in layer["fwdbwd_ms"].values())
    models = bench["models_1x32x48"]
    assert set(models["infer_img_s"]) == {"fp32", "bf16", "bf16_channels_last"}
    ratio = models["ratios_vs_unet"]["reseg_skip_recipe"]["infer_fp32"]
    speeds = models["infer_img_s"]["fp32"]
    assert abs(ratio - speeds["reseg_skip_recipe"] / speeds["unet_vgg16"]) < 1e-9
    assert bench["video"]["32x48_b1"]["fps_end_to_end"] > 0
    for name in ("reseg_skip", "unet_vgg16"):
        run = report["camvid"][name]
        assert "error" not in run, run
        assert 0 <= run["miou"] <= 100 and run["iterations"] == 2
    table = (out / "gpu_check.md").read_text()
    assert table.startswith("GPU check: no GPU (CPU rehearsal)") and "| CamVid on the GPU, reseg_skip" in table


def test_the_gpu_check_fails_fast_on_a_missing_package(tmp_path: Path) -> None:
    """A Python without the project's dependencies: the env step names them and stops, before any work."""
    fake = tmp_path / "python3"
    strip = "import sys; sys.path=[p for p in sys.path if 'site-packages' not in p]; exec(sys.stdin.read())"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} -S -c "{strip}" "$@"\n')
    fake.chmod(0o755)
    env = dict(os.environ, PYTHON=str(fake))
    proc = subprocess.run(
        ["bash", str(REPO / "tools" / "gpu_check.sh"), str(tmp_path / "out"), "--rehearsal", "--steps", "env"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 3
    assert "missing Python packages: torch" in proc.stderr and ".whl/" in proc.stderr
