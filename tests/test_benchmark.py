"""`reseg benchmark --quick` runs every section and writes the documented JSON keys (no timing asserts)."""

from __future__ import annotations

import json

from reseg.cli import main

KEYS = ("renet_speedup_fwd", "renet_speedup_fwdbwd", "renet_vs_steploop_fwd", "renet_vs_steploop_fwdbwd",
        "renet_share_infer", "gemm_peak_gflops", "reseg_mfu")
MODELS = ("reseg", "reseg_trainable", "unet_vgg16", "fpn_vgg16")


def test_quick_benchmark_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in KEYS:
        assert res[key] > 0, key
    assert 0 < res["renet_share_infer"] < 1
    for name in MODELS:
        m = res["models"][name]
        assert m["infer_img_s"] > 0 and m["train_img_s"] > 0 and m["peak_mem_mb"] >= 0
    assert res["data_samples_s_per_worker"] > 0 and res["confmat_pairs_s"] > 0
    assert res["predictor"]["fast_img_s"] > 0 and res["video"]["fps_end_to_end"] > 0
    assert res["evaluator"].get("cityscapes_pairs_s") is None or (
        abs(res["evaluator"]["ours_miou"] - res["evaluator"]["cityscapes_miou"]) < 1e-4)
    table = capsys.readouterr().out
    assert "| measure | value |" in table and res["machine"]["torch"] in table
