"""The GPU figures of `tools/gpu_check.sh`: ReNet's scans, ReNet's share, the models, `reseg video`.

Every comparison is timed interleaved (one repeat of each in turn) after a warm-up, with CUDA
synchronisation around each call, and each figure names what it times. With `rehearsal=True` the same
code runs on the CPU at tiny sizes, the CUDA-only parts (Triton kernels, CUDA graphs, torch.compile)
skipped by name, so a typo never costs device time.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reseg.benchmark.timing import PeakMemory, strict_fp32, time_interleaved
from reseg.io import write_json
from reseg.models.renet import SCAN_ENV, ReNet

REPO = Path(__file__).resolve().parents[2]
RECIPE_CONFIG = REPO / "configs" / "reseg_skip_camvid_cpu.yaml"  # the recommended ReSeg skip model
MODELS = ("reseg_mingru", "reseg_skip_recipe", "unet_vgg16", "fpn_vgg16")
BASELINE = "unet_vgg16"


@dataclass
class GpuPlan:
    """Sizes and switches of one GPU check; `rehearsal()` is the same plan shrunk for a CPU run."""

    device: str = "cuda"
    renet_shapes: list[tuple[int, int, int, int]] = field(
        default_factory=lambda: [(4, 256, 90, 120), (2, 256, 256, 512)]
    )
    model_sizes: list[tuple[int, int, int]] = field(default_factory=lambda: [(16, 360, 480), (2, 1024, 2048)])
    video_sizes: list[tuple[int, int, int]] = field(default_factory=lambda: [(360, 480, 96), (1024, 2048, 24)])
    video_batches: tuple[int, ...] = (1, 8)
    compile_models: tuple[str, ...] = ("reseg_skip_recipe", BASELINE)
    block_variants: tuple[tuple[int, ...], ...] = (
        (32, 64, 4),
        (16, 64, 2),
        (8, 64, 1),
        (8, 128, 4),
        (16, 128, 4),
        (8, 128, 8),
        (4, 128, 4),
    )
    models: tuple[str, ...] = MODELS
    repeats: int = 7
    hidden: int = 100
    deadline: float | None = None  # time.monotonic() after which the optional torch.compile part is skipped

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def kernels(self) -> bool:
        """Whether the Triton scan's own parts run: on CUDA, or in Triton's interpreter (a rehearsal)."""
        return self.cuda or os.environ.get("TRITON_INTERPRET") == "1"

    @classmethod
    def rehearsal(cls) -> GpuPlan:
        return cls(
            device="cpu",
            renet_shapes=[(1, 8, 6, 8)],
            model_sizes=[(1, 32, 48)],
            models=("reseg_skip_recipe", BASELINE),
            video_sizes=[(32, 48, 4)],
            video_batches=(1,),
            block_variants=((8, 16, 1),),
            repeats=1,
            hidden=4,
        )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextlib.contextmanager
def scan_env(name: str | None) -> Iterator[None]:
    """RESEG_SCAN set to `name` for the block (None: unset), restored after."""
    old = os.environ.get(SCAN_ENV)
    if name is None:
        os.environ.pop(SCAN_ENV, None)
    else:
        os.environ[SCAN_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SCAN_ENV, None)
        else:
            os.environ[SCAN_ENV] = old


def _with_scan(name: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with scan_env(name):
            return fn()

    return run


# ---------------------------------------------------------------------------------------------- ReNet


def renet_layer_impls(channels: int, hidden: int, dev: torch.device, cuda: bool) -> dict[str, tuple[ReNet, str]]:
    """name -> (layer, RESEG_SCAN value): cuDNN's GRU, the blocked minGRU scan and, on CUDA, the Triton one."""
    torch.manual_seed(0)
    gru = ReNet(channels, hidden, cell="gru").to(dev)  # nn.GRU (cuDNN) is ReNet's GRU path on CUDA
    mingru = ReNet(channels, hidden, cell="mingru").to(dev)
    impls = {"gru_cudnn" if cuda else "gru": (gru, "blocked"), "mingru_blocked": (mingru, "blocked")}
    if cuda:
        impls["mingru_triton"] = (mingru, "triton")
    return impls


def bench_renet_layer(shape: tuple[int, int, int, int], plan: GpuPlan, bf16: bool = False) -> dict[str, Any]:
    """ReNet layer forward (no grad) and forward+backward ms for each implementation (under bf16 autocast
    with `bf16`), with peak memory, after checking that the Triton and blocked minGRU scans agree (float32,
    no TF32) at this size."""
    dev = torch.device(plan.device)
    n, c, h, w = shape
    impls = renet_layer_impls(c, plan.hidden, dev, plan.cuda)
    x = torch.randn(n, c, h, w, device=dev)
    xg = x.clone().requires_grad_(True)
    res: dict[str, Any] = {"shape": list(shape), "hidden": plan.hidden}
    if "mingru_triton" in impls:
        layer = impls["mingru_triton"][0]
        with torch.no_grad(), strict_fp32():
            ref = _with_scan("blocked", lambda: layer(x))()
            out = _with_scan("triton", lambda: layer(x))()
        res["triton_vs_blocked_rel_err"] = ((out - ref).norm() / ref.norm()).item()

    def fwd(layer: ReNet, scan: str) -> Callable[[], Any]:
        def run() -> None:
            with torch.no_grad(), _autocast(dev, bf16):
                layer(x)

        return _with_scan(scan, run)

    def fwdbwd(layer: ReNet, scan: str) -> Callable[[], Any]:
        def run() -> None:
            layer.zero_grad(set_to_none=True)
            xg.grad = None
            with _autocast(dev, bf16):
                y = layer(xg)
            y.float().sum().backward()

        return _with_scan(scan, run)

    t_fwd = time_interleaved({k: fwd(*v) for k, v in impls.items()}, plan.repeats, 2, dev)
    t_bwd = time_interleaved({k: fwdbwd(*v) for k, v in impls.items()}, plan.repeats, 2, dev)
    res["fwd_ms"] = {k: 1e3 * v for k, v in t_fwd.items()}
    res["fwdbwd_ms"] = {k: 1e3 * v for k, v in t_bwd.items()}
    res["fwdbwd_peak_mb"] = {}
    for k, v in impls.items():
        with PeakMemory(dev) as mem:
            fwdbwd(*v)()
        res["fwdbwd_peak_mb"][k] = mem.peak_mb
    if "mingru_triton" in impls:
        for other in ("gru_cudnn", "mingru_blocked"):
            res[f"triton_vs_{other}_fwd"] = t_fwd[other] / t_fwd["mingru_triton"]
            res[f"triton_vs_{other}_fwdbwd"] = t_bwd[other] / t_bwd["mingru_triton"]
    return res


def device_us_per_call(fn: Callable[[], Any], dev: torch.device, calls: int = 10) -> float:
    """Device microseconds per call of `fn`, replayed from a CUDA graph of `calls` calls: kernel time without
    the host's launch overhead (on the CPU: wall time of one call)."""
    fn()
    _sync(dev)
    if dev.type != "cuda":
        t0 = time.perf_counter()
        fn()
        return 1e6 * (time.perf_counter() - t0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    graph.replay()
    _sync(dev)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / calls)
    return sorted(times)[len(times) // 2]


def bench_scan_alone(shape: tuple[int, int, int, int], plan: GpuPlan) -> dict[str, Any]:
    """The Triton scan's kernels alone (CUDA graph replays) on the vertical sweep's gates, fwd and bwd, fp32 and
    bf16, as microseconds and achieved GB/s (each tensor read or written once counted: fwd reads G, writes H;
    bwd reads G, H, dH, writes dG), plus one eager call's wall time on a tiny input (the host's share)."""
    from reseg.models import scan_triton as st

    dev = torch.device(plan.device)
    n, _, h, w = shape
    out: dict[str, Any] = {}
    for dtype in (torch.float32, torch.bfloat16):
        G = torch.randn(n * h * w, 4 * plan.hidden, device=dev).to(dtype)
        H = st.mingru_scan_fused(G, (n, h, w))
        dH = torch.randn_like(H)
        f_us = device_us_per_call(lambda: st._forward(G, n, h, w, st._direct), dev)
        b_us = device_us_per_call(lambda: st._backward_gates(G, H, dH, n, h, w, st._direct), dev)
        size = G.element_size()
        name = str(dtype).split(".")[-1]
        out[name] = {
            "fwd_us": f_us,
            "bwd_us": b_us,
            "fwd_gb_s": (G.numel() + H.numel()) * size / f_us / 1e3,
            "bwd_gb_s": 2 * (G.numel() + H.numel()) * size / b_us / 1e3,
        }
    tiny = torch.randn(8, 8, device=dev)
    t = time_interleaved({"tiny": lambda: st.mingru_scan_fused(tiny, (1, 2, 4))}, plan.repeats * 5, 3, dev)
    out["tiny_call_us"] = 1e6 * t["tiny"]
    return out


def measure_ceilings(dev: torch.device) -> dict[str, float]:
    """Device-to-device copy GB/s (bytes read + written) and bf16 8192^3 matrix-product TFLOP/s, on random data."""
    x = torch.randn(2**28, device=dev)  # 1 GiB
    y = torch.empty_like(x)
    a = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=dev, dtype=torch.bfloat16)
    t = time_interleaved({"copy": lambda: y.copy_(x), "mm": lambda: a @ b}, 10, 3, dev)
    return {"copy_gb_s": 2 * x.numel() * 4 / t["copy"] / 1e9, "bf16_mm_tflop_s": 2 * 8192**3 / t["mm"] / 1e12}


def bench_block_sizes(shape: tuple[int, int, int, int], plan: GpuPlan) -> dict[str, Any]:
    """The Triton scan's forward and backward kernel microseconds (CUDA graph replays) per (BLOCK_T, BLOCK_C,
    num_warps) tile, the default's included, in bf16 on the vertical sweep of `shape`."""
    from reseg.models import scan_triton as st

    dev = torch.device(plan.device)
    n, _, h, w = shape
    G = torch.randn(n * h * w, 4 * plan.hidden, device=dev, dtype=torch.bfloat16)
    H = st.mingru_scan_fused(G, (n, h, w))
    dH = torch.randn_like(H)
    res: dict[str, Any] = {"shape": list(shape), "dtype": "bfloat16", "fwd_us": {}, "bwd_us": {}}
    for tiles in (None, *plan.block_variants):
        name = "default" if tiles is None else "x".join(map(str, tiles))
        st.BLOCKS_OVERRIDE.clear()
        if tiles:
            st.BLOCKS_OVERRIDE.update(fwd=tiles, bwd=tiles)
        try:
            res["fwd_us"][name] = device_us_per_call(lambda: st._forward(G, n, h, w, st._direct), dev)
            res["bwd_us"][name] = device_us_per_call(lambda: st._backward_gates(G, H, dH, n, h, w, st._direct), dev)
        finally:
            st.BLOCKS_OVERRIDE.clear()
    total = {k: res["fwd_us"][k] + res["bwd_us"][k] for k in res["fwd_us"]}
    res["best"] = min(total, key=total.get)
    return res


# ---------------------------------------------------------------------------------------------- models


def build_gpu_model(name: str, num_classes: int = 11) -> nn.Module:
    """The models of the GPU figures through the one factory, without pretrained weights."""
    from reseg.benchmark.models import build_bench_model
    from reseg.config import load_config
    from reseg.models import build_model

    if name == "reseg_skip_recipe":
        return build_model(load_config(RECIPE_CONFIG, ["model.encoder_weights=null"]), num_classes)
    return build_bench_model(name, num_classes)


@dataclass
class _Case:
    """One model at one size: a fixed batch, its labels and an optimiser for the training step."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    opt: torch.optim.Optimizer


def _case(name: str, batch: int, size: tuple[int, int], dev: torch.device) -> _Case:
    model = build_gpu_model(name).to(dev)
    x = torch.randn(batch, 3, *size, device=dev)
    y = torch.randint(0, 11, (batch, *size), device=dev)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    return _Case(model, x, y, opt)


def _autocast(dev: torch.device, bf16: bool, cache: bool = True):
    """bf16 autocast (or none); CUDA graph capture needs cache=False (cached casts would outlive the capture)."""
    return torch.autocast(dev.type, dtype=torch.bfloat16, cache_enabled=cache) if bf16 else contextlib.nullcontext()


def _in_format(case: _Case, channels_last: bool) -> tuple[nn.Module, torch.Tensor]:
    """The case's model and input in the memory format asked for (the model is converted in place)."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return case.model.to(memory_format=fmt), case.x.contiguous(memory_format=fmt)


def _infer_fn(case: _Case, dev: torch.device, bf16: bool, channels_last: bool) -> Callable[[], Any]:
    model, x = _in_format(case, channels_last)

    def run() -> Any:
        model.eval()
        with torch.inference_mode(), _autocast(dev, bf16):
            return model(x)

    return run


def _train_fn(case: _Case, dev: torch.device, bf16: bool, channels_last: bool) -> Callable[[], Any]:
    model, x = _in_format(case, channels_last)
    opt, y = case.opt, case.y

    def run() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with _autocast(dev, bf16):
            loss = F.cross_entropy(model(x), y, ignore_index=255)
        loss.backward()
        opt.step()

    return run


def _graph_fn(case: _Case, dev: torch.device) -> Callable[[], Any]:
    """bf16 channels-last inference captured once as a CUDA graph; each call replays it."""
    model, static_x = _in_format(case, True)
    model.eval()
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(side), torch.inference_mode(), _autocast(dev, True, cache=False):
        for _ in range(2):
            model(static_x)
    torch.cuda.current_stream(dev).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph), _autocast(dev, True, cache=False):
        model(static_x)
    return graph.replay


def bench_models_at(batch: int, size: tuple[int, int], plan: GpuPlan, log: Callable[[str], None]) -> dict[str, Any]:
    """Every model's inference (fp32, bf16 autocast, + channels-last, CUDA graph) and training step (fp32,
    bf16 + channels-last) img/s and peak memory at one size, each variant timed interleaved across models."""
    dev = torch.device(plan.device)
    cases = {name: _case(name, batch, size, dev) for name in plan.models}
    res: dict[str, Any] = {
        "batch": batch,
        "size": list(size),
        "infer_img_s": {},
        "train_img_s": {},
        "infer_peak_mb": {},
        "train_peak_mb": {},
    }
    variants: list[tuple[str, str, Callable[[_Case], Callable[[], Any]]]] = [
        ("infer", "fp32", lambda c: _infer_fn(c, dev, False, False)),
        ("infer", "bf16", lambda c: _infer_fn(c, dev, True, False)),
        ("infer", "bf16_channels_last", lambda c: _infer_fn(c, dev, True, True)),
        ("train", "fp32", lambda c: _train_fn(c, dev, False, False)),
        ("train", "bf16_channels_last", lambda c: _train_fn(c, dev, True, True)),
    ]
    if plan.cuda:
        variants.insert(3, ("infer", "cuda_graph", lambda c: _graph_fn(c, dev)))
    for kind, variant, make in variants:
        log(f"  {kind} {variant} at {batch}x{size[0]}x{size[1]}")
        fns = {}
        for name, case in cases.items():
            try:
                fns[name] = make(case)
                fns[name]()
            except Exception as exc:  # one model failing one variant (a graph capture, say) keeps the rest
                fns.pop(name, None)
                res.setdefault("errors", {})[f"{kind}_{variant}_{name}"] = f"{type(exc).__name__}: {exc}"[:500]
                log(f"   {name} FAILED {kind} {variant}: {type(exc).__name__}: {exc}"[:300])
        if not fns:
            continue
        t = time_interleaved(fns, plan.repeats, 2, dev)
        res[f"{kind}_img_s"][variant] = {name: batch / s for name, s in t.items()}
        peaks = {}
        for name, fn in fns.items():
            with PeakMemory(dev) as mem:
                fn()
            peaks[name] = mem.peak_mb
        res[f"{kind}_peak_mb"][variant] = peaks
        del fns
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    res["ratios_vs_unet"] = _ratios(res)
    return res


def _ratios(res: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each model's img/s over U-Net's, per variant, and best variant over U-Net's best."""
    names = list(res["infer_img_s"].get("fp32", {}))
    out: dict[str, dict[str, float]] = {name: {} for name in names if name != BASELINE}
    for kind in ("infer", "train"):
        table = res[f"{kind}_img_s"]
        for variant, speeds in table.items():
            for name in out:
                if name in speeds and BASELINE in speeds:
                    out[name][f"{kind}_{variant}"] = speeds[name] / speeds[BASELINE]
        best = {name: max((table[v][name] for v in table if name in table[v]), default=None) for name in names}
        for name in out:
            if best[name] and best.get(BASELINE):
                out[name][f"{kind}_best"] = best[name] / best[BASELINE]
    return out


def bench_compiled(batch: int, size: tuple[int, int], plan: GpuPlan, log: Callable[[str], None]) -> dict[str, Any]:
    """torch.compile'd bf16 channels-last inference of a few models, timed interleaved, with compile seconds."""
    dev = torch.device(plan.device)
    fns, compile_s = {}, {}
    errors = {}
    for name in plan.compile_models:
        case = _case(name, batch, size, dev)
        case.model = torch.compile(case.model)
        fn = _infer_fn(case, dev, True, True)
        t0 = time.perf_counter()
        try:
            fn()
            _sync(dev)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
            log(f"  {name} FAILED to compile: {errors[name][:300]}")
            continue
        compile_s[name] = time.perf_counter() - t0
        log(f"  compiled {name} in {compile_s[name]:.0f} s")
        fns[name] = fn
    t = time_interleaved(fns, plan.repeats, 2, dev) if fns else {}
    return {
        "batch": batch,
        "size": list(size),
        "infer_img_s": {k: batch / v for k, v in t.items()},
        "compile_s": compile_s,
        "errors": errors,
    }


def bench_renet_share(batch: int, size: tuple[int, int], plan: GpuPlan) -> dict[str, Any]:
    """ReNet's share of minGRU ReSeg (paper width) inference, fp32 and bf16 autocast, per scan available."""
    from reseg.benchmark.models import build_bench_model

    dev = torch.device(plan.device)
    model = build_bench_model("reseg_mingru").to(dev).eval()
    x = torch.randn(batch, 3, *size, device=dev)
    out: dict[str, Any] = {"batch": batch, "size": list(size)}
    for scan in ("triton", "blocked") if plan.cuda else ("blocked",):
        for bf16 in (False, True):
            with torch.inference_mode(), _autocast(dev, bf16):
                feats = model.encoder(x)
                fns = {
                    "model": _with_scan(scan, lambda: model(x)),
                    "renet": _with_scan(scan, lambda: model.renet(feats)),
                }
                t = time_interleaved(fns, plan.repeats, 2, dev)
            out[f"{scan}_{'bf16' if bf16 else 'fp32'}"] = {
                "model_ms": 1e3 * t["model"],
                "renet_ms": 1e3 * t["renet"],
                "share": t["renet"] / t["model"],
            }
    return out


# ---------------------------------------------------------------------------------------------- video


def _recipe_checkpoint(folder: Path) -> Path:
    """The ReSeg skip recipe's model (untrained) saved the way `reseg train` saves it, for `reseg video`."""
    from reseg.config import load_config
    from reseg.data.classes import CAMVID
    from reseg.engine.checkpoint import save_checkpoint
    from reseg.models import build_model

    cfg = load_config(RECIPE_CONFIG, ["model.encoder_weights=null", "data.eval_size=null", "model.num_classes=11"])
    model = build_model(cfg, 11)
    path = folder / "recipe.pt"
    save_checkpoint(
        {
            "config": cfg.to_dict(),
            "model": model.state_dict(),
            "class_names": list(CAMVID.names),
            "epoch": 0,
            "iteration": 0,
        },
        path,
    )
    return path


def bench_video_paths(plan: GpuPlan, log: Callable[[str], None]) -> dict[str, Any]:
    """`reseg video` end to end against model-only FPS, on the predictor `reseg video` builds from a checkpoint
    of the ReSeg skip recipe (full-frame inference), at each size and batch, with the stage table."""
    from reseg.benchmark.video import benchmark_video
    from reseg.predictor import Predictor

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = _recipe_checkpoint(Path(tmp))
        for h, w, frames in plan.video_sizes:
            for batch in plan.video_batches:
                log(f"  reseg video at {h}x{w}, batch {batch}, {frames} frames")
                pred = Predictor.from_checkpoint(ckpt, device=plan.device)
                stats = benchmark_video(pred, size=(h, w), frames=frames, batch=batch, repeats=1, workdir=tmp)
                keys = ("fps_model_only", "fps_end_to_end", "ratio", "ratio_in_run", "decoder", "timing")
                out[f"{h}x{w}_b{batch}"] = {k: stats[k] for k in keys if k in stats}
    return out


# ---------------------------------------------------------------------------------------------- the run


def run_gpu_bench(plan: GpuPlan, out_json: Path, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every benchmark figure of the GPU check, saved to `out_json` after each part (a timeout keeps the rest)."""
    from reseg.benchmark.timing import machine_info

    dev = torch.device(plan.device)
    res: dict[str, Any] = {
        "machine": machine_info(plan.device),
        "device": plan.device,
        "repeats": plan.repeats,
        "rehearsal": not plan.cuda,
        "skipped": [],
    }
    try:
        import triton

        res["machine"]["triton"] = triton.__version__
    except ImportError:
        res["machine"]["triton"] = None
    if plan.cuda:
        res["machine"]["cuda"] = torch.version.cuda
        res["machine"]["cudnn"] = torch.backends.cudnn.version()
    else:
        res["skipped"] += [
            "Triton minGRU in the ReNet layer and ReSeg timings (CUDA only; its kernels alone run in the interpreter)",
            "CUDA graphs (CUDA only)",
            "torch.compile (timed on CUDA only)",
            "ceilings (CUDA only)",
        ]
    parts: list[tuple[str, Callable[[], Any]]] = []
    if plan.cuda:
        parts.append(("ceilings", lambda: measure_ceilings(dev)))
    if plan.kernels:
        parts.append(("triton_scan_alone", lambda: bench_scan_alone(plan.renet_shapes[0], plan)))
    for shape in plan.renet_shapes:
        parts.append((f"renet_{'x'.join(map(str, shape))}", lambda shape=shape: bench_renet_layer(shape, plan)))
    if plan.kernels:
        parts.append(("triton_blocks", lambda: bench_block_sizes(plan.renet_shapes[0], plan)))
    b0, h0, w0 = plan.model_sizes[0]
    parts.append(("renet_share", lambda: bench_renet_share(b0, (h0, w0), plan)))
    for b, h, w in plan.model_sizes:
        parts.append((f"models_{b}x{h}x{w}", lambda b=b, h=h, w=w: bench_models_at(b, (h, w), plan, log)))
    parts.append(("video", lambda: bench_video_paths(plan, log)))
    if plan.cuda and plan.compile_models:
        parts.append((f"compile_{b0}x{h0}x{w0}", lambda: bench_compiled(b0, (h0, w0), plan, log)))
    for name, fn in parts:
        if name.startswith("compile_") and plan.deadline is not None and time.monotonic() > plan.deadline:
            res["skipped"].append(f"{name}: past the --deadline")
            continue
        log(f"== {time.strftime('%H:%M:%S')} bench {name}")
        t0 = time.perf_counter()
        try:
            res[name] = fn()
        except Exception as exc:  # one failed part must not cost the others' figures
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"   FAILED: {res[name]['error']}")
        res.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t0, 1)
        write_json(out_json, res, indent=1)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return res


def _f(v: Any, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def gpu_table(res: dict[str, Any], camvid: dict[str, Any] | None = None) -> str:
    """The GPU check's figures as one markdown table, headed by the GPU and the torch/triton/CUDA versions."""
    m = res.get("machine", {})
    lines = [
        f"GPU check: {m.get('gpu', 'no GPU (CPU rehearsal)')}, torch {m.get('torch')}, triton {m.get('triton')}, "
        f"CUDA {m.get('cuda', '-')}, median of {res.get('repeats')} timed interleaved",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    sections = (
        _renet_rows(res),
        _kernel_rows(res),
        _share_rows(res),
        _model_rows(res),
        _video_rows(res),
        _camvid_rows(camvid or {}),
        _failure_rows(res),
    )
    lines += [f"| {figure} | {value} |" for rows in sections for figure, value in rows]
    return "\n".join(lines)


Rows = Iterator[tuple[str, str]]


def _renet_rows(res: dict[str, Any]) -> Rows:
    """Each ReNet layer shape: every implementation's times, Triton's speed-ups and its error."""
    for key, r in res.items():
        if not (key.startswith("renet_") and key != "renet_share" and "fwd_ms" in r):
            continue
        shape = "x".join(map(str, r["shape"]))
        for impl in r["fwd_ms"]:
            yield (
                f"ReNet {shape}, {impl}: fwd / fwd+bwd ms (fwd+bwd peak MB)",
                f"{_f(r['fwd_ms'][impl], 2)} / {_f(r['fwdbwd_ms'][impl], 2)} ({_f(r['fwdbwd_peak_mb'][impl], 0)})",
            )
        for other in ("gru_cudnn", "mingru_blocked"):
            if f"triton_vs_{other}_fwdbwd" in r:
                yield (
                    f"ReNet {shape}, Triton minGRU vs {other}: fwd / fwd+bwd",
                    f"{_f(r[f'triton_vs_{other}_fwd'], 2)}x / {_f(r[f'triton_vs_{other}_fwdbwd'], 2)}x",
                )
        if "triton_vs_blocked_rel_err" in r:
            yield f"ReNet {shape}, Triton vs blocked scan rel. error (fp32)", f"{r['triton_vs_blocked_rel_err']:.1e}"


def _kernel_rows(res: dict[str, Any]) -> Rows:
    """The device's ceilings and the Triton kernels timed alone (per dtype, per tile)."""
    if "copy_gb_s" in res.get("ceilings", {}):
        c = res["ceilings"]
        yield (
            "ceilings: device copy GB/s (read + write), bf16 8192^3 matmul TFLOP/s",
            f"{_f(c['copy_gb_s'], 0)}, {_f(c['bf16_mm_tflop_s'], 0)}",
        )
    alone = res.get("triton_scan_alone", {})
    for dtype, sa in alone.items():
        if isinstance(sa, dict) and "fwd_us" in sa:
            yield (
                f"Triton scan kernels alone, {dtype}, vertical sweep of the first ReNet shape: fwd / bwd us (GB/s)",
                f"{_f(sa['fwd_us'], 0)} ({_f(sa['fwd_gb_s'], 0)}) / {_f(sa['bwd_us'], 0)} ({_f(sa['bwd_gb_s'], 0)})",
            )
    if "tiny_call_us" in alone:
        yield "Triton scan, one eager call on a tiny input (host time) us", _f(alone["tiny_call_us"], 0)
    if "fwd_us" in res.get("triton_blocks", {}):
        tb = res["triton_blocks"]
        tiles = ", ".join(f"{k} {_f(tb['fwd_us'][k], 0)} / {_f(tb['bwd_us'][k], 0)}" for k in tb["fwd_us"])
        yield "Triton scan tiles (BLOCK_T x BLOCK_C x warps), bf16 kernels fwd / bwd us", f"{tiles}; best {tb['best']}"


def _share_rows(res: dict[str, Any]) -> Rows:
    """ReNet's share of minGRU ReSeg inference, per scan and precision."""
    share = res.get("renet_share", {})
    for k, v in share.items():
        if isinstance(v, dict) and "share" in v:
            yield (
                f"ReNet share of minGRU ReSeg inference, {k} scan/precision, batch {share['batch']} "
                f"{share['size'][0]}x{share['size'][1]}",
                f"{100 * v['share']:.1f}% ({_f(v['renet_ms'], 2)} of {_f(v['model_ms'], 2)} ms)",
            )


def _model_rows(res: dict[str, Any]) -> Rows:
    """Whole models: speed and peak memory per variant, ratios against U-Net, torch.compile."""
    for key, r in res.items():
        if key.startswith("models_") and "infer_img_s" in r:
            at = f"batch {r['batch']} {r['size'][0]}x{r['size'][1]}"
            for kind in ("infer", "train"):
                for variant, speeds in r[f"{kind}_img_s"].items():
                    peaks = r[f"{kind}_peak_mb"][variant]
                    yield (
                        f"{kind} img/s (peak MB), {variant}, {at}",
                        ", ".join(f"{n} {_f(s)} ({_f(peaks[n], 0)})" for n, s in speeds.items()),
                    )
            for name, ratios in r["ratios_vs_unet"].items():
                yield f"{name} vs {BASELINE}, {at}", ", ".join(f"{k} {_f(v, 2)}x" for k, v in ratios.items())
        if key.startswith("compile_") and "infer_img_s" in r:
            yield (
                f"torch.compile bf16 channels-last infer img/s (compile s), batch {r['batch']} "
                f"{r['size'][0]}x{r['size'][1]}",
                ", ".join(f"{n} {_f(s)} ({_f(r['compile_s'][n], 0)})" for n, s in r["infer_img_s"].items()),
            )


def _video_rows(res: dict[str, Any]) -> Rows:
    """`reseg video` end to end against the model alone, with the stage that bounds it."""
    for key, v in res.get("video", {}).items():
        if isinstance(v, dict) and "fps_end_to_end" in v:
            stages = v.get("timing", {}).get("stages", {})
            per = ", ".join(f"{n} {_f(s['ms_per_frame'], 2)}" for n, s in stages.items() if s.get("seconds", 0) > 0)
            bound = v.get("timing", {}).get("bound", {})
            yield (
                f"reseg video {key}: end-to-end / model-only FPS",
                f"{_f(v['fps_end_to_end'])} / {_f(v['fps_model_only'])} = {_f(v['ratio'], 2)}x; bound by "
                f"{bound.get('stage', '-')}; ms/frame: {per}",
            )


def _camvid_rows(camvid: dict[str, Any]) -> Rows:
    """The CamVid trainings on the GPU: their scores or their error."""
    for name, r in camvid.items():
        yield (
            f"CamVid on the GPU, {name}: val mIoU / aAcc %, iterations in {r.get('budget')}",
            r["error"] if "error" in r else f"{_f(r.get('miou'), 2)} / {_f(r.get('aacc'), 2)}, {r.get('iterations')}",
        )


def _failure_rows(res: dict[str, Any]) -> Rows:
    """Every step or figure that failed, and what a rehearsal skipped."""
    for key, r in res.items():
        if isinstance(r, dict) and "error" in r:
            yield f"{key} FAILED", r["error"].replace("|", "/")[:300]
        for what, err in (r.get("errors") or {}).items() if isinstance(r, dict) else ():
            yield f"{key}: {what} FAILED", err.replace("|", "/")[:300]
    if res.get("skipped"):
        yield "skipped (rehearsal)", "; ".join(res["skipped"])


def camvid_summary(work_dir: Path, eval_dir: Path, budget: str | None) -> dict[str, Any]:
    """mIoU and aAcc of `reseg evaluate` (eval_dir/metrics.json) and the iterations the run trained (its
    metrics.jsonl), or the error that stopped it."""
    import json

    out: dict[str, Any] = {"work_dir": str(work_dir), "budget": budget}
    metrics = eval_dir / "metrics.json"
    if not metrics.is_file():
        out["error"] = f"no {metrics}: the run or its evaluation failed (see the log)"
        return out
    m = json.loads(metrics.read_text())
    out["per_class_iou"] = {
        k: round(100 * float(v["IoU"]), 2)
        for k, v in m.get("per_class", {}).items()
        if isinstance(v, dict) and v.get("IoU") is not None
    }
    out["miou"], out["aacc"] = 100 * float(m["mIoU"]), 100 * float(m["aAcc"])  # fractions in metrics.json
    log = work_dir / "metrics.jsonl"
    if log.is_file():
        iters = [json.loads(line).get("iter", 0) for line in log.read_text().splitlines() if line.strip()]
        out["iterations"] = max(iters, default=0)
    return out
