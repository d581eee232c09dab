"""`reseg benchmark`: speed and memory of ReNet, the models, the data pipeline, the evaluator and inference paths.

Prints a markdown table (with the machine, torch version and threads) and optionally writes JSON.
Ratios are measured side by side in one run, so they hold on a busy machine where absolute figures do not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from reseg.errors import ResegError

SECTIONS = ("renet", "models", "data", "evaluator", "predictor", "video")
MODEL_NAMES = ("reseg", "reseg_trainable", "unet_vgg16", "fpn_vgg16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure (default cpu)")
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=None,
                        help="image size for the models (default 360 480, the CamVid resolution)")
    parser.add_argument("--batch", type=int, default=None, help="batch size for the models (default 4)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per figure; the median is kept (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 with --quick)")
    parser.add_argument("--renet-batch", type=int, default=1,
                        help="images in the ReNet comparison (a 256-channel map at 1/4 of --size; default 1)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, help="run only these sections")
    parser.add_argument("--skip-sequence-loop", action="store_true",
                        help="leave out the per-sequence ReNet loop (minutes at full size)")
    parser.add_argument("--compile", action="store_true", help="also use torch.compile in the fast inference path")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test (about a minute)")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections and return the results dict (the JSON written by --json)."""
    from reseg import benchmark as B

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ResegError("--device cuda asked for, but torch sees no CUDA device")
    quick = args.quick
    if args.threads or quick:  # quick: tiny ops, where a second thread only adds synchronisation stalls
        torch.set_num_threads(args.threads or 1)
    size = tuple(args.size) if args.size else ((32, 48) if quick else (360, 480))
    batch = args.batch or (1 if quick else 4)
    repeats = args.repeats or (1 if quick else 3)
    dev = args.device
    sections = args.only or SECTIONS
    res: dict[str, Any] = {"machine": B.machine_info(dev), "device": dev, "size": list(size), "batch": batch,
                           "repeats": repeats, "quick": quick}
    t_start = time.perf_counter()

    if "renet" in sections:
        _log("benchmark: ReNet implementations ...")
        rsize = (12, 16) if quick else (max(1, size[0] // 4), max(1, size[1] // 4))
        channels, hidden = (16, 8) if quick else (256, 100)
        r = B.bench_renet(channels, rsize, args.renet_batch, hidden, repeats=repeats, device=dev,
                          skip_slow=args.skip_sequence_loop)
        res["renet"] = r
        if "speedup_fwd" in r:
            res["renet_speedup_fwd"] = r["speedup_fwd"]
            res["renet_speedup_fwdbwd"] = r["speedup_fwdbwd"]
        res["renet_vs_steploop_fwd"] = r["vs_steploop_fwd"]
        res["renet_vs_steploop_fwdbwd"] = r["vs_steploop_fwdbwd"]
        _log("benchmark: ReNet share of ReSeg inference, FLOPs, matmul peak ...")
        reseg = B.build_bench_model("reseg")
        share = B.bench_renet_share(reseg, batch, size, repeats, dev)
        res["renet_share"] = share
        res["renet_share_infer"] = share["share"]
        flops = B.model_flops(reseg, size, dev)
        res["reseg_gflops_per_img"] = flops / 1e9
        res["renet_gflops_per_img"] = B.renet_flops(reseg, size) / 1e9
        n = 512 if quick else 2048
        res["gemm_peak_gflops"] = B.gemm_peak_gflops(torch.float32, n, 3 if quick else 5, dev)
        if dev == "cuda" or B.cpu_has_bf16():
            res["gemm_peak_gflops_bf16"] = B.gemm_peak_gflops(torch.bfloat16, n, 3 if quick else 5, dev)
        img_s = batch / share["model_s"]
        res["reseg_infer_img_s"] = img_s
        res["reseg_mfu"] = flops * img_s / (res["gemm_peak_gflops"] * 1e9)

    if "models" in sections:
        res["models"] = {}
        for name in MODEL_NAMES:
            _log(f"benchmark: model {name} ...")
            model = B.build_bench_model(name)
            res["models"][name] = B.bench_model(model, batch, size, repeats, dev)
            del model
        m = res["models"]
        res["reseg_vs_unet_infer"] = m["reseg"]["infer_img_s"] / m["unet_vgg16"]["infer_img_s"]
        res["reseg_vs_unet_train"] = m["reseg"]["train_img_s"] / m["unet_vgg16"]["train_img_s"]

    if "data" in sections:
        _log("benchmark: data pipeline ...")
        dsize = (48, 64) if quick else (360, 480)
        res["data"] = B.bench_data(dsize, 4 if quick else 24, repeats)
        res["data_samples_s_per_worker"] = res["data"]["samples_s_per_worker"]

    if "evaluator" in sections:
        _log("benchmark: evaluator ...")
        esize = (64, 128) if quick else (1024, 2048)
        res["evaluator"] = B.bench_evaluator(2 if quick else 4, esize, repeats)
        res["confmat_pairs_s"] = res["evaluator"]["ours_pairs_s"]
        if res["evaluator"].get("cityscapes_pairs_s"):
            res["confmat_vs_cityscapes"] = res["evaluator"]["speedup_vs_cityscapes"]

    if "predictor" in sections:
        _log("benchmark: fast inference path ...")
        model = B.build_bench_model("reseg")
        res["predictor"] = B.bench_predictor_paths(model, batch, size, repeats, dev, compile=args.compile)
        res["fast_infer_speedup"] = res["predictor"]["speedup"]

    if "video" in sections:
        _log("benchmark: video ...")
        model = B.build_bench_model("reseg")
        res["video"] = B.bench_video(model, size, 4 if quick else 16, batch, 1, dev)
        res["video_fps_end_to_end"] = res["video"]["fps_end_to_end"]
        res["video_fps_model_only"] = res["video"]["fps_model_only"]

    res["wall_s"] = time.perf_counter() - t_start
    return res


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(res: dict[str, Any]) -> str:
    """The results as a markdown table (one metric per row), headed by the machine."""
    m = res["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
             f"{m['cpu_capability']}{', bf16' if m['bf16'] else ''}" + (f", GPU {m['gpu']}" if "gpu" in m else "")
             + f"; device {res['device']}, images {res['size'][0]}x{res['size'][1]}, batch {res['batch']}, "
             f"median of {res['repeats']}" + (" (quick)" if res["quick"] else ""),
             "", "| measure | value |", "|---|---|"]

    def row(name: str, value: Any, digits: int = 2) -> None:
        lines.append(f"| {name} | {_f(value, digits)} |")

    if "renet" in res:
        r = res["renet"]
        shape = "x".join(str(s) for s in r["shape"])
        for impl in r["fwd_s"]:
            row(f"ReNet {shape} {impl}: fwd / fwd+bwd ms",
                f"{r['fwd_s'][impl] * 1e3:.1f} / {r['fwdbwd_s'][impl] * 1e3:.1f}")
        if "renet_speedup_fwd" in res:
            row("ReNet ours vs per-sequence loop: fwd / fwd+bwd",
                f"{res['renet_speedup_fwd']:.1f}x / {res['renet_speedup_fwdbwd']:.1f}x")
        row("ReNet ours vs step loop: fwd / fwd+bwd",
            f"{res['renet_vs_steploop_fwd']:.2f}x / {res['renet_vs_steploop_fwdbwd']:.2f}x")
        row("ReNet ours vs nn.GRU: fwd / fwd+bwd", f"{r['vs_nn_rnn_fwd']:.2f}x / {r['vs_nn_rnn_fwdbwd']:.2f}x")
        row("ReNet share of ReSeg inference time", f"{res['renet_share_infer'] * 100:.1f}%")
        row("ReSeg GFLOPs per image (ReNet part)",
            f"{res['reseg_gflops_per_img']:.1f} ({res['renet_gflops_per_img']:.1f})")
        row("matmul peak GFLOP/s fp32" + (" / bf16" if "gemm_peak_gflops_bf16" in res else ""),
            f"{res['gemm_peak_gflops']:.0f}" + (f" / {res['gemm_peak_gflops_bf16']:.0f}"
                                                 if "gemm_peak_gflops_bf16" in res else ""))
        row("ReSeg inference FLOP utilisation (of fp32 peak)", f"{res['reseg_mfu'] * 100:.0f}%")
    if "models" in res:
        for name, v in res["models"].items():
            row(f"{name}: infer / train-step img/s", f"{v['infer_img_s']:.2f} / {v['train_img_s']:.2f}")
            row(f"{name}: peak memory train / infer MB", f"{v['peak_mem_mb']:.0f} / {v['infer_peak_mem_mb']:.0f}")
        row("ReSeg vs Unet-VGG16: infer / train",
            f"{res['reseg_vs_unet_infer']:.2f}x / {res['reseg_vs_unet_train']:.2f}x")
    if "data" in res:
        d = res["data"]
        row(f"data: train samples/s per worker at {d['size'][0]}x{d['size'][1]}", d["samples_s_per_worker"], 1)
    if "evaluator" in res:
        e = res["evaluator"]
        tag = f"{e['size'][0]}x{e['size'][1]}"
        row(f"evaluator: ConfusionMatrix pairs/s at {tag} (in memory / from PNG)",
            f"{e['ours_pairs_s']:.1f} / {_f(e.get('ours_files_pairs_s'), 1)}")
        if e.get("cityscapes_pairs_s"):
            row("evaluator: cityscapesscripts pairs/s (from PNG)", e["cityscapes_pairs_s"], 2)
            row("evaluator: mIoU ours / cityscapesscripts", f"{e['ours_miou']:.4f} / {e['cityscapes_miou']:.4f}")
    if "predictor" in res:
        p = res["predictor"]
        what = "channels-last" + (" + bf16" if p["bf16"] else "") + (" + compile" if p["compile"] else "")
        row(f"inference plain fp32 / fast ({what}) img/s", f"{p['plain_img_s']:.2f} / {p['fast_img_s']:.2f}")
        row("fast path speed-up (pixel agreement)", f"{p['speedup']:.2f}x ({p['pixel_agreement'] * 100:.2f}%)")
    if "video" in res:
        v = res["video"]
        row("video FPS end-to-end / model-only", f"{v['fps_end_to_end']:.2f} / {v['fps_model_only']:.2f}")
    row("benchmark wall time s", res["wall_s"], 0)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    res = run_benchmark(args)
    print(format_table(res))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(res, indent=2, default=str))
        print(f"wrote {path}")
    return 0
