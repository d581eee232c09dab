"""`reseg benchmark --quick` runs every section and writes the documented JSON keys (no timing asserts); the
predictor section builds its candidates as `reseg predict` does, from a checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from reseg.cli import main

KEYS = (
    "renet_speedup_fwd",
    "renet_speedup_fwdbwd",
    "renet_vs_steploop_fwd",
    "renet_vs_steploop_fwdbwd",
    "renet_share_infer",
    "gemm_peak_gflops",
    "reseg_mfu",
    "renet_mingru_vs_gru_fwd",
    "renet_mingru_vs_gru_fwdbwd",
)
MODELS = ("reseg", "reseg_mingru", "reseg_trainable", "reseg_skip", "unet_vgg16", "fpn_vgg16")


def test_quick_benchmark_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--quick", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    for key in KEYS:
        assert res[key] > 0, key
    assert 0 < res["renet_share_infer"] < 1 and 0 < res["renet_share_infer_mingru"] < 1
    for name in MODELS:
        m = res["models"][name]
        assert m["infer_img_s"] > 0 and m["train_img_s"] > 0 and m["peak_mem_mb"] >= 0
    models = res["models"]
    crop = res["reseg_skip_cityscapes_crop"]  # at an eighth of the recipe's crop under --quick, batch 1
    from reseg.benchmark.models import CROP_CONFIG
    from reseg.config import load_config

    assert crop["crop_size"] == load_config(CROP_CONFIG).data.crop_size == [512, 1024]
    assert crop["size"] == [64, 128] and crop["batch"] == 1 and isinstance(crop["train_peak_mem_mb"], float)
    # the summary ratios are the ratios of the figures they summarise
    assert res["reseg_vs_unet_infer"] == pytest.approx(
        models["reseg"]["infer_img_s"] / models["unet_vgg16"]["infer_img_s"]
    )
    assert res["reseg_vs_unet_train"] == pytest.approx(
        models["reseg"]["train_img_s"] / models["unet_vgg16"]["train_img_s"]
    )
    h2h = res["head_to_head"]  # timed interleaved; its ratios are those of its own figures
    both = h2h["interleaved"]
    assert set(both) == {"reseg", "reseg_mingru", "unet_vgg16"}
    for kind in ("infer", "train"):
        assert h2h[f"reseg_mingru_vs_gru_{kind}"] == pytest.approx(
            both["reseg_mingru"][f"{kind}_img_s"] / both["reseg"][f"{kind}_img_s"]
        )
        assert h2h[f"reseg_mingru_vs_unet_{kind}"] == pytest.approx(
            both["reseg_mingru"][f"{kind}_img_s"] / both["unet_vgg16"][f"{kind}_img_s"]
        )
        assert h2h[f"reseg_vs_unet_{kind}"] == pytest.approx(
            both["reseg"][f"{kind}_img_s"] / both["unet_vgg16"][f"{kind}_img_s"]
        )
    p = res["predictor"]  # the demo checkpoint at its own inference size (the training crop), batch 1
    assert res["fast_infer_speedup"] == pytest.approx(p["fast_img_s"] / p["plain_img_s"])
    assert 0.0 <= p["pixel_agreement"] <= 1.0 and p["batch"] == 1
    assert [r["size"] for r in p["runs"]] == [p["inference_size"]] == [[120, 160]]
    assert {"eager", "eager --channels-last", "onnxruntime", "onnxruntime-int8"} <= set(p["paths"])
    assert res["fast_infer_path"] == max(p["paths"], key=p["paths"].get)
    assert p["plain_img_s"] == p["paths"]["eager"] and p["fast_img_s"] == p["paths"][res["fast_infer_path"]]
    assert p["pixel_agreement_by_path"]["eager"] == 1.0 and p["runs"][0]["errors"] == {}
    assert res["startup_s"] > 0 and res["startup_onnxruntime_s"] > 0
    assert res["reseg_mfu"] == pytest.approx(
        res["reseg_gflops_per_img"] * res["reseg_infer_img_s"] / res["gemm_peak_gflops"]
    )
    assert res["renet_gflops_per_img"] < res["reseg_gflops_per_img"]
    cells = res["renet_cells"]["cells"]
    assert set(cells) == {"gru", "lstm", "mingru"} and all(
        v["fwd_ms"] > 0 and v["fwdbwd_ms"] > 0 and v["peak_mem_mb"] >= 0 for v in cells.values()
    )
    assert 0 < cells["mingru"]["saved_mb"] < cells["gru"]["saved_mb"]  # no recurrent gates to keep
    for key in ("fwd", "fwdbwd"):
        assert res[f"renet_mingru_vs_gru_{key}"] == pytest.approx(
            cells["gru"][f"{key}_ms"] / cells["mingru"][f"{key}_ms"]
        )
    assert res["sections"] == ["renet", "models", "head_to_head", "bn_fold", "data", "evaluator", "predictor", "video"]
    fold = res["bn_fold"]  # the recipe's model, batch 1, at --quick's size
    assert fold["config"] == "reseg_skip_camvid_cpu.yaml" and {r["dtype"] for r in fold["runs"]} >= {"fp32"}
    assert [r["size"] for r in fold["runs"] if r["dtype"] == "fp32"] == [[32, 48]]
    for r in fold["runs"]:
        assert r["speedup"] == pytest.approx(r["plain_ms"] / r["folded_ms"])
        assert r["max_abs_logit_diff"] < (1e-4 if r["dtype"] == "fp32" else 0.1)
    assert res["data_samples_s_per_worker"] > 0 and res["confmat_pairs_s"] > 0
    assert res["predictor"]["fast_img_s"] > 0
    v = res["video"]
    assert v["ratio"] == pytest.approx(v["fps_end_to_end"] / v["fps_model_only"])
    assert v["frames_out"] == v["frames_in"]  # nothing lost on the way
    assert res["video_fps_end_to_end"] == v["fps_end_to_end"]
    assert res["evaluator"].get("cityscapes_pairs_s") is None or (
        abs(res["evaluator"]["ours_miou"] - res["evaluator"]["cityscapes_miou"]) < 1e-4
    )
    table = capsys.readouterr().out
    assert "| measure | value |" in table and res["machine"]["torch"] in table


def test_benchmark_names_an_unknown_section(capsys) -> None:
    assert main(["benchmark", "--quick", "--only", "renet", "modles"]) == 2
    err = capsys.readouterr().err
    assert "modles" in err and "models" in err and "valid choices" in err


def test_benchmark_runs_only_the_sections_asked(tmp_path) -> None:
    out = tmp_path / "bench.json"
    assert main(["benchmark", "--quick", "--only", "data", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["sections"] == ["data"] and "data" in res and "models" not in res and "renet" not in res


def test_predictor_section_builds_every_path_as_the_commands_do(tmp_path, monkeypatch) -> None:
    """With --checkpoint and --sizes: each candidate is Predictor.from_checkpoint with the options `reseg
    predict FLAGS` passes (recorded from the command itself), at the checkpoint's size and the sizes given;
    int8 without the checkpoint's training data is listed as unavailable with the way out."""
    from reseg.config import load_config
    from reseg.engine.checkpoint import save_checkpoint
    from reseg.models import build_model
    from reseg.predictor import Predictor

    cfg = load_config(
        None,
        [
            "model.renet_hidden=4",
            "model.decoder_filters=[4,4]",
            "model.encoder_width=0.125",
            "model.cell=mingru",
            "data.crop_size=[32,48]",
            f"data.root={tmp_path / 'gone'}",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint({"config": cfg.to_dict(), "model": model.state_dict(), "class_names": ["a", "b", "c"]}, ckpt)
    seen: list[tuple[str, dict]] = []
    original = Predictor.from_checkpoint.__func__

    def record(cls, path, device="auto", **kw):
        seen.append((device, dict(kw)))
        return original(cls, path, device, **kw)

    monkeypatch.setattr(Predictor, "from_checkpoint", classmethod(record))
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "benchmark",
                "--only",
                "predictor",
                "--checkpoint",
                str(ckpt),
                "--sizes",
                "40",
                "56",
                "--repeats",
                "1",
                "--threads",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    p = json.loads(out.read_text())["predictor"]
    assert [r["size"] for r in p["runs"]] == [[32, 48], [40, 56]] and p["checkpoint"] == str(ckpt)
    for run in p["runs"]:
        assert {"eager", "eager --channels-last", "onnxruntime"} <= set(run["paths"])
        assert "--calibration" in run["errors"]["onnxruntime-int8"]
        assert run["pixel_agreement_by_path"]["onnxruntime"] > 0.99
        assert all(s["first"] > 0 and s["cached"] > 0 for s in run["startup_s"].values())
    by_flags = {}
    for _device, kw in seen:
        by_flags.setdefault((kw.get("backend"), kw.get("int8"), kw.get("channels_last")), kw)
    # what `reseg predict --backend onnxruntime` itself passes
    from reseg.cli import main as cli

    seen.clear()
    img = tmp_path / "one.png"
    import cv2
    import numpy as np

    cv2.imwrite(str(img), np.zeros((32, 48, 3), np.uint8))
    assert (
        cli(
            [
                "predict",
                "--checkpoint",
                str(ckpt),
                str(img),
                "--device",
                "cpu",
                "--backend",
                "onnxruntime",
                "--out",
                str(tmp_path / "pred"),
            ]
        )
        == 0
    )
    assert seen[0] == ("cpu", by_flags[("onnxruntime", None, None)])


def test_benchmark_sizes_come_in_pairs(capsys) -> None:
    assert main(["benchmark", "--only", "predictor", "--sizes", "240", "320", "360"]) == 2
    assert "height width pairs" in capsys.readouterr().err
