#!/usr/bin/env python3
"""Where the GPU time goes, after tools/gpu_check.sh named the gaps: a second, diagnostic GPU run.

    python tools/gpu_profile.py OUT [--only renet kernels scan_tiles models video]

renet       the ReNet layer at 4x256x90x120 (cuDNN GRU, blocked and Triton minGRU) in fp32, fp32 with TF32
            matrix products, and bf16 autocast, fwd and fwd+bwd, timed interleaved; ReNet's share of minGRU
            ReSeg inference in bf16 channels-last
kernels     torch.profiler's top CUDA kernels of the Triton ReNet layer (fwd+bwd) and of the models' bf16
            channels-last inference and training step at 360x480 batch 16
scan_tiles  the Triton scan kernels alone (CUDA graphs: no host time) on the vertical sweep at batch 4 and 16,
            fp32 and bf16, for several tiles and warp counts, as microseconds and GB/s
overhead    the ReNet layer with the kernels launched directly (the eager default) and through the custom op
video       `reseg video` end to end at 360x480 batch 1 with Python's default thread switch interval and with
            a short one (GIL hand-offs between the decode, inference and encode threads)
Writes OUT/profile.json and OUT/profile.txt; prints the summary last.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from reseg.benchmark import gpu  # noqa: E402
from reseg.benchmark.timing import time_interleaved  # noqa: E402
from reseg.models.renet import ReNet  # noqa: E402

DEV = torch.device("cuda")
SHAPE = (4, 256, 90, 120)  # the ReNet layer
MODEL_AT = (16, (360, 480))  # batch, size of the models
VIDEO_AT = ((360, 480), 96)  # size, frames
LINES: list[str] = []


def smoke() -> None:
    """--smoke: the same code on the CPU at tiny sizes (Triton in its interpreter), to catch typos here."""
    global DEV, SHAPE, MODEL_AT, VIDEO_AT
    DEV, SHAPE, MODEL_AT, VIDEO_AT = torch.device("cpu"), (1, 8, 6, 8), (1, (32, 48)), ((32, 48), 3)


def sync() -> None:
    if DEV.type == "cuda":
        torch.cuda.synchronize()


def say(msg: str) -> None:
    print(msg, flush=True)
    LINES.append(msg)


def renet_precisions(res: dict) -> None:
    plan = gpu.GpuPlan(device=DEV.type, repeats=9, hidden=100 if DEV.type == "cuda" else 4)
    out = {}
    for label, bf16, tf32 in (("fp32", False, False), ("fp32_tf32", False, True), ("bf16", True, False)):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        r = out[label] = gpu.bench_renet_layer(SHAPE, plan, bf16=bf16)
        say(
            f"renet {'x'.join(map(str, SHAPE))} {label}: fwd ms "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["fwd_ms"].items())
            + " | fwd+bwd ms "
            + ", ".join(f"{k} {v:.2f}" for k, v in r["fwdbwd_ms"].items())
            + (
                f" | triton vs cudnn {r['triton_vs_gru_cudnn_fwdbwd']:.2f}x, vs blocked "
                f"{r['triton_vs_mingru_blocked_fwdbwd']:.2f}x (fwd+bwd)"
                if "triton_vs_gru_cudnn_fwdbwd" in r
                else ""
            )
        )
    torch.backends.cuda.matmul.allow_tf32 = False
    res["renet_precisions"] = out
    from reseg.benchmark.models import build_bench_model

    model = build_bench_model("reseg_mingru").to(DEV).eval().to(memory_format=torch.channels_last)
    xb = torch.randn(MODEL_AT[0], 3, *MODEL_AT[1], device=DEV).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), gpu._autocast(DEV, True):
        feats = model.encoder(xb)
        t = time_interleaved({"model": lambda: model(xb), "renet": lambda: model.renet(feats)}, 9, 2, DEV)
    res["renet_share_bf16_channels_last"] = t["renet"] / t["model"]
    say(
        f"renet share of minGRU ReSeg inference, bf16 channels-last {MODEL_AT}: {100 * t['renet'] / t['model']:.1f}% "
        f"({1e3 * t['renet']:.2f} of {1e3 * t['model']:.2f} ms)"
    )


def _top_kernels(fn, label: str, res: dict, n: int = 12) -> None:
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        fn()
    sync()
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEV.type == "cuda" else [])) as prof:
        for _ in range(3):
            fn()
        sync()
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=n, max_name_column_width=60)
    total_cuda = sum(e.self_device_time_total for e in prof.key_averages()) / 3 / 1e3
    res.setdefault("kernels", {})[label] = {"table": table, "cuda_ms_per_call": total_cuda}
    say(f"--- {label}: {total_cuda:.2f} ms of CUDA time per call")
    say(table)


def kernels(res: dict) -> None:
    layer = ReNet(SHAPE[1], 100 if DEV.type == "cuda" else 4, cell="mingru").to(DEV)
    xg = torch.randn(*SHAPE, device=DEV, requires_grad=True)

    def renet_step(bf16: bool):
        def run():
            with gpu._autocast(DEV, bf16):
                y = layer(xg)
            y.float().sum().backward()

        return run

    _top_kernels(renet_step(False), "triton ReNet fwd+bwd fp32", res)
    _top_kernels(renet_step(True), "triton ReNet fwd+bwd bf16", res)
    for name in ("reseg_skip_recipe", "unet_vgg16", "reseg_mingru"):
        case = gpu._case(name, MODEL_AT[0], MODEL_AT[1], DEV)
        _top_kernels(gpu._infer_fn(case, DEV, True, True), f"{name} inference bf16 channels-last {MODEL_AT}", res)
        _top_kernels(gpu._train_fn(case, DEV, True, True), f"{name} train step bf16 channels-last {MODEL_AT}", res)
        del case
        if DEV.type == "cuda":
            torch.cuda.empty_cache()


def scan_tiles(res: dict) -> None:
    """Kernel time alone (CUDA graphs) of the Triton scan for several tiles, at batch 4 and 16, fp32 and bf16."""
    from reseg.models import scan_triton as st

    _, _, h, w = SHAPE
    hs = 100 if DEV.type == "cuda" else 4
    out = {}
    tiles_all = ((32, 64, 4), (16, 64, 2), (16, 32, 1), (8, 128, 4), (16, 128, 4), (32, 32, 2), (8, 64, 1))
    for n in (4, 16) if DEV.type == "cuda" else (1,):
        for dtype in (torch.float32, torch.bfloat16):
            G = torch.randn(n * h * w, 4 * hs, device=DEV).to(dtype)
            H = st._forward(G, n, h, w, st._direct)
            dH = torch.randn_like(H)
            nbytes_f = (G.numel() + H.numel()) * G.element_size()
            nbytes_b = (2 * G.numel() + 2 * H.numel()) * G.element_size()
            for tiles in tiles_all[: None if DEV.type == "cuda" else 1]:
                st.BLOCKS_OVERRIDE.update(fwd=tiles, bwd=tiles)
                try:
                    f_us = gpu.device_us_per_call(lambda: st._forward(G, n, h, w, st._direct), DEV)
                    b_us = gpu.device_us_per_call(lambda: st._backward_gates(G, H, dH, n, h, w, st._direct), DEV)
                except Exception as exc:
                    say(f"scan tiles {tiles} {dtype}: FAILED {type(exc).__name__}: {exc}"[:300])
                    continue
                finally:
                    st.BLOCKS_OVERRIDE.clear()
                key = f"b{n}_{str(dtype).split('.')[-1]}_{'x'.join(map(str, tiles))}"
                out[key] = {
                    "fwd_us": f_us,
                    "bwd_us": b_us,
                    "fwd_gb_s": nbytes_f / f_us / 1e3,
                    "bwd_gb_s": nbytes_b / b_us / 1e3,
                }
                say(
                    f"scan kernels {key}: fwd {f_us:.0f} us ({nbytes_f / f_us / 1e3:.0f} GB/s), "
                    f"bwd {b_us:.0f} us ({nbytes_b / b_us / 1e3:.0f} GB/s)"
                )
    res["scan_tiles"] = out


def overhead(res: dict) -> None:
    """The ReNet layer with the kernels launched directly (eager default) against through the custom op."""
    from reseg.models import scan_triton as st

    n, c, h, w = SHAPE
    torch.manual_seed(0)
    hidden = 100 if DEV.type == "cuda" else 4
    gru = ReNet(c, hidden, cell="gru").to(DEV)
    mingru = ReNet(c, hidden, cell="mingru").to(DEV)
    x = torch.randn(n, c, h, w, device=DEV)
    xg = x.clone().requires_grad_(True)
    out = {}
    for label, bf16 in (("fp32", False), ("bf16", True)):

        def step(layer, scan, direct, grad):
            def run():
                st.EAGER_DIRECT = direct
                try:
                    if grad:
                        layer.zero_grad(set_to_none=True)
                        xg.grad = None
                        with gpu._autocast(DEV, bf16):
                            y = layer(xg)
                        y.float().sum().backward()
                    else:
                        with torch.no_grad(), gpu._autocast(DEV, bf16):
                            layer(x)
                finally:
                    st.EAGER_DIRECT = True

            return gpu._with_scan(scan, run)

        for grad in (False, True):
            fns = {
                "gru_cudnn": step(gru, "blocked", True, grad),
                "triton_direct": step(mingru, "triton", True, grad),
                "triton_op": step(mingru, "triton", False, grad),
            }
            t = time_interleaved(fns, 11, 2, DEV)
            key = f"{label}_{'fwdbwd' if grad else 'fwd'}"
            out[key] = {k: 1e3 * v for k, v in t.items()}
            say(
                f"renet {key} ms: "
                + ", ".join(f"{k} {1e3 * v:.2f}" for k, v in t.items())
                + f" | cudnn / triton_direct {t['gru_cudnn'] / t['triton_direct']:.2f}x"
            )
    res["overhead"] = out


def video(res: dict) -> None:
    import tempfile

    from reseg.benchmark.video import benchmark_video
    from reseg.predictor import Predictor

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = gpu._recipe_checkpoint(Path(tmp))
        pred = Predictor.from_checkpoint(ckpt, device=DEV.type)
        default = sys.getswitchinterval()
        for label, interval in (("default", default), ("switch_1e-4", 1e-4), ("default_again", default)):
            sys.setswitchinterval(interval)
            stats = benchmark_video(pred, size=VIDEO_AT[0], frames=VIDEO_AT[1], batch=1, repeats=1, workdir=tmp)
            stages = {k: v["ms_per_frame"] for k, v in stats["timing"]["stages"].items()}
            out[label] = {
                "fps_end_to_end": stats["fps_end_to_end"],
                "fps_model_only": stats["fps_model_only"],
                "ratio": stats["ratio"],
                "stages_ms": stages,
            }
            say(
                f"video {VIDEO_AT[0]} b1 {label}: {stats['fps_end_to_end']:.1f} / {stats['fps_model_only']:.1f} FPS = "
                f"{stats['ratio']:.2f}x; ms/frame " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
            )
        sys.setswitchinterval(default)
    res["video"] = out


SECTIONS = {
    "renet": renet_precisions,
    "kernels": kernels,
    "scan_tiles": scan_tiles,
    "video": video,
    "overhead": overhead,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: check the script, not the GPU")
    args = p.parse_args()
    if args.smoke:
        smoke()
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {
        "gpu": torch.cuda.get_device_name(0) if DEV.type == "cuda" else "none (smoke)",
        "torch": torch.__version__,
    }
    for name in args.only:
        say(f"== {time.strftime('%H:%M:%S')} {name}")
        try:
            SECTIONS[name](res)
        except Exception as exc:
            say(f"{name} FAILED: {type(exc).__name__}: {exc}"[:500])
        (args.out / "profile.json").write_text(json.dumps(res, indent=1, default=str))
        (args.out / "profile.txt").write_text("\n".join(LINES) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
