"""Measuring functions behind `reseg benchmark`: ReNet implementations, models, data, evaluator, inference paths.

Every timing is a median over repeats after a warm-up. Quantities that are compared (the ReNet
implementations, ReNet inside ReSeg, the fast vs plain inference path) are measured interleaved,
one repeat of each in turn, so that load from other processes slows them alike: read the ratios,
not the absolute figures, on a shared machine.
"""

from __future__ import annotations

import contextlib
import copy

import os
import platform
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reseg.models.renet import ReNet

# --------------------------------------------------------------------------------------------------
# timing helpers


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """float32 arithmetic without TF32 on CUDA (cuDNN's RNNs and convolutions use TF32 by default), so
    implementations can be compared to 1e-4; the timings run with the defaults users get."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def time_fn(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1, device: torch.device | str = "cpu") -> float:
    """Median seconds of `fn()` over `repeats` after `warmup` calls."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int = 3, warmup: int = 1,
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds of each function, running one repeat of each in turn (fair under shared load)."""
    device = torch.device(device)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    _sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


class PeakMemory:
    """Peak memory in MB above the level at entry: CUDA allocator peak, or sampled RSS on CPU.

    On CPU a thread reads /proc/self/statm every few milliseconds (no psutil needed); elsewhere it
    falls back to the process' ru_maxrss, which only grows.
    """

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.002) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._base = 0
        self._max = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._max = max(self._max, self._rss())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = self._max = self._rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._max, self._rss())
        self.peak_mb = max(0.0, (peak - self._base) / 2**20)


def machine_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """CPU model, cores, threads, torch version (and GPU name on CUDA)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "bf16": cpu_has_bf16()}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: where bf16 matrix products run natively on this CPU."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


# --------------------------------------------------------------------------------------------------
# ReNet: the two reference implementations (same weights as the package layer) and the comparison


def _cells(rnn: nn.RNNBase) -> list[nn.RNNCellBase]:
    """One nn.GRUCell/LSTMCell per direction sharing the layer's parameters."""
    cells = []
    for sfx in ("", "_reverse"):
        cell_cls = nn.LSTMCell if isinstance(rnn, nn.LSTM) else nn.GRUCell
        cell = cell_cls(rnn.input_size, rnn.hidden_size, device=rnn.weight_ih_l0.device)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            setattr(cell, name, getattr(rnn, f"{name}_l0{sfx}"))
        cells.append(cell)
    return cells


def _step_birnn(cells: list[nn.RNNCellBase], seq: torch.Tensor) -> torch.Tensor:
    """(T, B, C) -> (T, B, 2h), one cell step at a time, all sequences batched (the Theano design)."""
    outs = []
    for d, cell in enumerate(cells):
        state = None
        res: list[torch.Tensor] = [seq.new_empty(0)] * seq.shape[0]
        order = range(seq.shape[0] - 1, -1, -1) if d else range(seq.shape[0])
        for t in order:
            state = cell(seq[t], state)
            res[t] = state[0] if isinstance(state, tuple) else state
        outs.append(torch.stack(res))
    return torch.cat(outs, dim=2)


def renet_step_loop(layer: ReNet, x: torch.Tensor) -> torch.Tensor:
    """Reference: ReNet as a Python loop of RNN-cell steps per direction, all sequences batched."""
    x = layer.patchify(x)
    n, c, h, w = x.shape
    cols = _step_birnn(_cells(layer.vertical), x.permute(2, 0, 3, 1).reshape(h, n * w, c))
    rows = cols.reshape(h, n, w, -1).permute(2, 1, 0, 3).reshape(w, n * h, -1)
    rows = _step_birnn(_cells(layer.horizontal), rows)
    return rows.reshape(w, n, h, -1).permute(1, 3, 2, 0)


def renet_sequence_loop(layer: ReNet, x: torch.Tensor) -> torch.Tensor:
    """Reference: one nn.GRU/LSTM call per column, then one per row (no batching across sequences)."""
    x = layer.patchify(x)
    n, c, h, w = x.shape
    cols = [layer.vertical(x[b, :, :, j].t().unsqueeze(1))[0][:, 0] for b in range(n) for j in range(w)]
    mid = torch.stack(cols).reshape(n, w, h, -1)  # (n, w, h, 2h)
    rows = [layer.horizontal(mid[b, :, i].unsqueeze(1))[0][:, 0] for b in range(n) for i in range(h)]
    return torch.stack(rows).reshape(n, h, w, -1).permute(0, 3, 1, 2)


def _renet_impls(layer: ReNet) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    def ours(x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    def nn_rnn(x: torch.Tensor) -> torch.Tensor:
        return layer._forward_rnn(layer.patchify(x))

    return {"sequence_loop": lambda x: renet_sequence_loop(layer, x), "step_loop": lambda x: renet_step_loop(layer, x),
            "nn_rnn": nn_rnn, "ours": ours}


def bench_renet(channels: int = 256, size: tuple[int, int] = (90, 120), batch: int = 1, hidden: int = 100,
                cell: str = "gru", repeats: int = 3, device: str = "cpu", skip_slow: bool = False) -> dict[str, Any]:
    """Seconds per call of each ReNet implementation, forward (no grad) and forward+backward.

    `nn_rnn` is the layer's own nn.GRU/LSTM path (cuDNN on CUDA); `ours` is what the layer runs by
    default on this device. skip_slow leaves the per-sequence loop out (minutes at full size).
    """
    dev = torch.device(device)
    torch.manual_seed(0)
    layer = ReNet(channels, hidden, cell=cell).to(dev)
    x = torch.randn(batch, channels, *size, device=dev)
    xg = x.clone().requires_grad_(True)
    impls = _renet_impls(layer)
    if skip_slow:
        impls.pop("sequence_loop")
    with torch.no_grad(), strict_fp32():  # all implementations agree before being timed
        ref = impls["nn_rnn"](x)
        for name, fn in impls.items():
            diff = (fn(x) - ref).abs().max().item()
            if diff > 1e-4:
                raise RuntimeError(f"ReNet implementation {name} differs from nn.{cell.upper()} by {diff:.2e}")

    def fwd(fn: Callable) -> Callable[[], Any]:
        def run() -> None:
            with torch.no_grad():
                fn(x)
        return run

    def fwdbwd(fn: Callable) -> Callable[[], Any]:
        def run() -> None:
            layer.zero_grad(set_to_none=True)
            xg.grad = None
            fn(xg).sum().backward()
        return run

    for _ in range(2):  # TorchScript optimises the step loops on their second call
        fwd(impls["ours"])()
        fwdbwd(impls["ours"])()
    t_fwd = time_interleaved({k: fwd(f) for k, f in impls.items()}, repeats, 1, dev)
    t_bwd = time_interleaved({k: fwdbwd(f) for k, f in impls.items()}, repeats, 1, dev)
    res: dict[str, Any] = {"shape": [batch, channels, *size], "hidden": hidden, "cell": cell,
                           "fwd_s": t_fwd, "fwdbwd_s": t_bwd}
    for key, ref_name in (("speedup", "sequence_loop"), ("vs_steploop", "step_loop"), ("vs_nn_rnn", "nn_rnn")):
        if ref_name in impls:
            res[f"{key}_fwd"] = t_fwd[ref_name] / t_fwd["ours"]
            res[f"{key}_fwdbwd"] = t_bwd[ref_name] / t_bwd["ours"]
    return res


# --------------------------------------------------------------------------------------------------
# FLOPs and matmul peak


def gemm_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5,
                     device: str = "cpu") -> float:
    """Best GFLOP/s of an n x n x n matrix product (a peak, so the fastest repeat counts)."""
    dev = torch.device(device)
    a = torch.randn(n, n, device=dev).to(dtype)
    b = torch.randn(n, n, device=dev).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(dev)
        t0 = time.perf_counter()
        a @ b
        _sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def model_flops(model: nn.Module, size: tuple[int, int], device: str = "cpu") -> float:
    """Forward FLOPs of one image (matmuls and convolutions, counted by torch's FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(1, 3, *size, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return float(counter.get_total_flops())


def renet_flops(model: nn.Module, size: tuple[int, int]) -> float:
    """Analytic ReNet FLOPs per image (2 per multiply-add; the gate arithmetic is left out)."""
    from reseg.models import ReSeg

    if not isinstance(model, ReSeg):
        return 0.0
    h, w = size[0] // model.encoder.stride, size[1] // model.encoder.stride
    total = 0.0
    for layer in model.renet:
        p = layer.patch_size
        h, w = -(-h // p), -(-w // p)
        gates = 3 if layer.cell == "gru" else 4
        for rnn in (layer.vertical, layer.horizontal):
            total += 2 * h * w * 2 * gates * rnn.hidden_size * (rnn.input_size + rnn.hidden_size)
    return total


# --------------------------------------------------------------------------------------------------
# models: inference and training throughput, memory


def build_bench_model(name: str, num_classes: int = 11, overrides: Sequence[str] = ()) -> nn.Module:
    """The benchmark's model variants through the one factory (`reseg_trainable` = ReSeg, encoder trained)."""
    from reseg.config import load_config
    from reseg.models import build_model

    opts = list(overrides)
    if name == "reseg":
        opts += ["model.name=reseg", "model.freeze_encoder=true"]
    elif name == "reseg_trainable":
        opts += ["model.name=reseg", "model.freeze_encoder=false"]
    else:
        opts += [f"model.name={name}", "model.freeze_encoder=false"]
    cfg = load_config(None, opts + ["model.encoder_weights=null"])
    return build_model(cfg, num_classes)


def bench_model(model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3,
                device: str = "cpu", train: bool = True) -> dict[str, float]:
    """Inference and train-step images/s with the peak memory of each."""
    dev = torch.device(device)
    model = model.to(dev)
    x = torch.randn(batch, 3, *size, device=dev)
    res: dict[str, float] = {}
    model.eval()

    def infer() -> None:
        with torch.inference_mode():
            model(x)

    with PeakMemory(dev) as mem:
        t = time_fn(infer, repeats, 1, dev)
    res["infer_img_s"] = batch / t
    res["infer_peak_mem_mb"] = mem.peak_mb
    if train:
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
        num_classes = getattr(model, "num_classes", 11)
        y = torch.randint(0, num_classes, (batch, *size), device=dev)
        model.train()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y, ignore_index=255).backward()
            opt.step()

        with PeakMemory(dev) as mem:
            t = time_fn(step, repeats, 1, dev)
        res["train_img_s"] = batch / t
        res["peak_mem_mb"] = mem.peak_mb
        model.eval()
    return res


def bench_renet_share(model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3,
                      device: str = "cpu") -> dict[str, float]:
    """Share of ReSeg's inference time spent in its ReNet layers (timed interleaved with the whole model)."""
    dev = torch.device(device)
    model = model.to(dev).eval()
    x = torch.randn(batch, 3, *size, device=dev)
    with torch.inference_mode():
        feats = model.encoder(x)

        def whole() -> None:
            model(x)

        def renet() -> None:
            model.renet(feats)

        t = time_interleaved({"model": whole, "renet": renet}, repeats, 1, dev)
    return {"model_s": t["model"], "renet_s": t["renet"], "share": t["renet"] / t["model"]}


# --------------------------------------------------------------------------------------------------
# data pipeline


def bench_data(size: tuple[int, int] = (360, 480), samples: int = 24, repeats: int = 3,
               workdir: str | None = None) -> dict[str, float]:
    """Training samples/s of one worker (read, decode, augment, normalise) on generated synthetic data."""
    from reseg.config import load_config
    from reseg.data import build_dataset
    from reseg.data.synthetic import make_synthetic

    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        count = min(samples, 16)
        root = make_synthetic(Path(tmp) / "synthetic", train=count, val=0, test=0, seed=0, size=size, workers=1)
        cfg = load_config(None, ["data.dataset=synthetic", f"data.root={root}", f"data.synthetic_sizes=[{count}, 0, 0]",
                                 f"data.crop_size=[{size[0]}, {size[1]}]"])
        ds = build_dataset(cfg, cfg.data.train_split)
        n = len(ds)

        def run() -> None:
            for i in range(samples):
                ds[i % n]

        t = time_fn(run, repeats, 1)
    return {"samples_s_per_worker": samples / t, "size": list(size)}


# --------------------------------------------------------------------------------------------------
# evaluator: our confusion matrix vs cityscapesscripts


def _label_pairs(n: int, size: tuple[int, int], num_classes: int = 19,
                 seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocky truth maps with some ignore, and predictions that agree on most pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    pairs = []
    for _ in range(n):
        blocks = rng.integers(0, num_classes, (h // 64 + 1, w // 64 + 1)).astype(np.uint8)
        gt = np.kron(blocks, np.ones((64, 64), np.uint8))[:h, :w].copy()
        gt[rng.random((h, w)) < 0.05] = 255
        pred = gt.copy()
        flip = rng.random((h, w)) < 0.2
        pred[flip] = rng.integers(0, num_classes, int(flip.sum()))
        pred[pred == 255] = 0
        pairs.append((pred, gt))
    return pairs


def bench_evaluator(pairs: int = 4, size: tuple[int, int] = (1024, 2048), repeats: int = 3,
                    workdir: str | None = None) -> dict[str, Any]:
    """Image pairs/s of reseg.metrics.ConfusionMatrix and of cityscapesscripts' evaluator on the same pairs.

    cityscapesscripts reads label-id PNGs, so its figure includes decoding; ours is given as both
    in-memory and file-reading throughput to compare like with like. Agreement of mIoU is reported.
    """
    from reseg.metrics import ConfusionMatrix

    data = _label_pairs(pairs, size)
    res: dict[str, Any] = {"pairs": pairs, "size": list(size)}
    tensors = [(torch.from_numpy(p), torch.from_numpy(g)) for p, g in data]

    def ours_mem() -> ConfusionMatrix:
        cm = ConfusionMatrix(19)
        for p, g in tensors:
            cm.update(p, g)
        return cm

    res["ours_pairs_s"] = pairs / time_fn(ours_mem, repeats)
    ours_miou = float(ours_mem().compute()["mIoU"])
    res["ours_miou"] = ours_miou
    try:
        import cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling as cs_eval
    except Exception:  # not installed
        res["cityscapes_pairs_s"] = None
        return res
    import cv2
    from cityscapesscripts.helpers.labels import trainId2label

    if not hasattr(np, "in1d"):  # cityscapesscripts 2.3 calls np.in1d, removed in numpy 2.4
        np.in1d = np.isin  # type: ignore[attr-defined]
    lut = np.zeros(256, np.uint8)  # train id -> label id (255 -> 0, "unlabeled", ignored by the evaluator)
    inv = np.full(256, 255, np.uint8)  # label id -> train id, what a reader of these files does first
    for tid in range(19):
        lut[tid] = trainId2label[tid].id
        inv[lut[tid]] = tid
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        files = []
        for i, (p, g) in enumerate(data):
            pf, gf = Path(tmp) / f"p{i}.png", Path(tmp) / f"g{i}.png"
            cv2.imwrite(str(pf), lut[p])
            cv2.imwrite(str(gf), lut[g])
            files.append((str(pf), str(gf)))
        args = copy.copy(cs_eval.args)  # a copy: the module-level args are shared with anyone else using the evaluator
        args.quiet = True
        args.evalInstLevelScore = False
        args.evalPixelAccuracy = True
        args.avgClassSize = {}

        def theirs() -> np.ndarray:
            conf = cs_eval.generateMatrix(args)
            for pf, gf in files:
                cs_eval.evaluatePair(pf, gf, conf, {}, {}, args)
            return conf

        def ours_files() -> None:
            cm = ConfusionMatrix(19)
            for pf, gf in files:
                p = inv[cv2.imread(pf, cv2.IMREAD_UNCHANGED)]
                g = inv[cv2.imread(gf, cv2.IMREAD_UNCHANGED)]
                cm.update(torch.from_numpy(p), torch.from_numpy(g))

        t = time_interleaved({"theirs": theirs, "ours_files": ours_files}, repeats, 1)
        res["cityscapes_pairs_s"] = pairs / t["theirs"]
        res["ours_files_pairs_s"] = pairs / t["ours_files"]
        conf = theirs()
        ious = [cs_eval.getIouScoreForLabel(trainId2label[t].id, conf, args) for t in range(19)]
        res["cityscapes_miou"] = float(np.nanmean([v for v in ious if not np.isnan(v)]))
    res["speedup_vs_cityscapes"] = res["ours_pairs_s"] / res["cityscapes_pairs_s"]
    return res


# --------------------------------------------------------------------------------------------------
# inference paths and video


def bench_predictor_paths(model: nn.Module, batch: int = 4, size: tuple[int, int] = (360, 480), repeats: int = 3,
                          device: str = "cpu", compile: bool = False) -> dict[str, Any]:
    """Images/s of the Predictor's plain fp32 path and of its fast path (channels-last, inference mode,
    bf16 autocast where the hardware has it), interleaved, and the agreement of their predicted masks."""
    from reseg.predictor import Predictor

    dev = torch.device(device)
    bf16 = dev.type == "cuda" or cpu_has_bf16()
    plain = Predictor(model, dev, size_divisor=0)
    fast = Predictor(model, dev, size_divisor=0, channels_last=True, amp="bf16" if bf16 else False, compile=compile)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, *size, device=dev)

    def run(pred: Any) -> Callable[[], Any]:
        def f() -> torch.Tensor:
            with torch.inference_mode():
                return pred.logits(x)
        return f

    t = time_interleaved({"plain": run(plain), "fast": run(fast)}, repeats, 1, dev)
    a, b = run(plain)().argmax(1), run(fast)().argmax(1)
    return {"plain_img_s": batch / t["plain"], "fast_img_s": batch / t["fast"], "speedup": t["plain"] / t["fast"],
            "bf16": bf16, "channels_last": True, "compile": compile,
            "pixel_agreement": float((a == b).float().mean())}


def bench_video(model: nn.Module, size: tuple[int, int] = (360, 480), frames: int = 16, batch: int = 4,
                repeats: int = 1, device: str = "cpu", workdir: str | None = None) -> dict[str, Any]:
    """`reseg video` end-to-end FPS vs model-only FPS on a synthetic clip (reseg.video.benchmark_video)."""
    from reseg.predictor import Predictor
    from reseg.video import benchmark_video

    pred = Predictor(model, torch.device(device), size_divisor=0)
    stats = benchmark_video(pred, size=size, frames=frames, batch=batch, repeats=repeats, workdir=workdir)
    return {k: stats[k] for k in ("fps_model_only", "fps_end_to_end", "ratio", "ratio_in_run") if k in stats}
