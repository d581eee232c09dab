"""ReNet: the package layer against reference step and sequence loops and nn.GRU/LSTM, its cells
(gru, lstm, mingru) against each other; FLOP counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reseg.benchmark.timing import BenchOptions, PeakMemory, gemm_peak_gflops, strict_fp32, time_interleaved
from reseg.models.renet import ReNet
from reseg.runtime import cpu_has_native_bf16

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

    return {
        "sequence_loop": lambda x: renet_sequence_loop(layer, x),
        "step_loop": lambda x: renet_step_loop(layer, x),
        "nn_rnn": nn_rnn,
        "ours": ours,
    }


def bench_renet(
    channels: int = 256,
    size: tuple[int, int] = (90, 120),
    batch: int = 1,
    hidden: int = 100,
    cell: str = "gru",
    repeats: int = 3,
    device: str = "cpu",
    skip_slow: bool = False,
) -> dict[str, Any]:
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
    _check_agreement(impls, x, cell)
    for _ in range(2):  # TorchScript optimises the step loops on their second call
        _fwd(impls["ours"], x)()
        _fwdbwd(impls["ours"], layer, xg)()
    t_fwd = time_interleaved({k: _fwd(f, x) for k, f in impls.items()}, repeats, 1, dev)
    t_bwd = time_interleaved({k: _fwdbwd(f, layer, xg) for k, f in impls.items()}, repeats, 1, dev)
    res: dict[str, Any] = {
        "shape": [batch, channels, *size],
        "hidden": hidden,
        "cell": cell,
        "fwd_s": t_fwd,
        "fwdbwd_s": t_bwd,
    }
    for key, ref_name in (("speedup", "sequence_loop"), ("vs_steploop", "step_loop"), ("vs_nn_rnn", "nn_rnn")):
        if ref_name in impls:
            res[f"{key}_fwd"] = t_fwd[ref_name] / t_fwd["ours"]
            res[f"{key}_fwdbwd"] = t_bwd[ref_name] / t_bwd["ours"]
    return res


def _check_agreement(impls: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, cell: str) -> None:
    """Every implementation gives nn.GRU/LSTM's output before any is timed: a fast wrong one is no result."""
    with torch.no_grad(), strict_fp32():
        ref = impls["nn_rnn"](x)
        for name, fn in impls.items():
            diff = (fn(x) - ref).abs().max().item()
            if diff > 1e-4:
                raise RuntimeError(f"ReNet implementation {name} differs from nn.{cell.upper()} by {diff:.2e}")


def _fwd(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Callable[[], None]:
    """A call to time: fn(x) without autograd."""

    def run() -> None:
        with torch.no_grad():
            fn(x)

    return run


def _fwdbwd(fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module, xg: torch.Tensor) -> Callable[[], None]:
    """A call to time: fn(xg) and its backward, from cleared gradients of `module` and `xg`."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        xg.grad = None
        fn(xg).sum().backward()

    return run


CELLS = ("gru", "lstm", "mingru")


def saved_for_backward_mb(fn: Callable[[], torch.Tensor]) -> float:
    """MB of distinct tensor storage that autograd keeps for the backward of `fn()`.

    Unlike sampled RSS, it does not depend on what earlier calls left in the allocator, so cells
    measured one after another compare fairly; it is most of what a training step's memory grows by."""
    seen: dict[tuple[int, torch.device], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[(st.data_ptr(), t.device)] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values()) / 2**20


def bench_renet_cells(
    channels: int = 256,
    size: tuple[int, int] = (90, 120),
    batch: int = 1,
    hidden: int = 100,
    repeats: int = 3,
    device: str = "cpu",
    cells: tuple[str, ...] = CELLS,
) -> dict[str, Any]:
    """Each cell's ReNet layer on its default path (GRU: fused on CPU, cuDNN on CUDA; minGRU: the scan),
    forward (no grad) and forward+backward ms timed interleaved, the peak memory of each (CUDA
    allocator peak, or RSS growth on CPU, which stays 0 when earlier cells left the memory in the
    allocator) and the memory autograd saves for the backward."""
    dev = torch.device(device)
    x = torch.randn(batch, channels, *size, device=dev)
    xg = x.clone().requires_grad_(True)
    layers = {}
    for cell in cells:
        torch.manual_seed(0)
        layers[cell] = ReNet(channels, hidden, cell=cell).to(dev)
    res: dict[str, Any] = {"shape": [batch, channels, *size], "hidden": hidden, "cells": {}}
    for cell, layer in layers.items():
        res["cells"][cell] = _cell_memory(layer, x, xg, dev)
    fns = {}
    for cell, layer in layers.items():  # one round robin over every figure: a burst of load hits all alike
        fns[f"{cell}/fwd"], fns[f"{cell}/fwdbwd"] = _fwd(layer, x), _fwdbwd(layer, layer, xg)
    t = time_interleaved(fns, repeats, 1, dev)
    for cell in layers:
        res["cells"][cell].update(fwd_ms=t[f"{cell}/fwd"] * 1e3, fwdbwd_ms=t[f"{cell}/fwdbwd"] * 1e3)
    res["gru_path"] = "cudnn" if dev.type == "cuda" else "fused"
    return res


def _cell_memory(layer: ReNet, x: torch.Tensor, xg: torch.Tensor, dev: torch.device) -> dict[str, float]:
    """Peak memory of one layer's forward and forward+backward after warm-up, and what autograd saves."""
    for _ in range(2):  # TorchScript optimises its loops on the second call; C++ loops build on the first
        _fwd(layer, x)()
        _fwdbwd(layer, layer, xg)()
    with PeakMemory(dev) as mem_fwd:
        _fwd(layer, x)()
    with PeakMemory(dev) as mem:
        _fwdbwd(layer, layer, xg)()
    return {
        "infer_peak_mem_mb": mem_fwd.peak_mb,
        "peak_mem_mb": mem.peak_mb,
        "saved_mb": saved_for_backward_mb(lambda: layer(xg)),
    }


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
        gates, recurrent = {"gru": (3, True), "lstm": (4, True), "mingru": (2, False)}[layer.cell]
        for rnn in (layer.vertical, layer.horizontal):
            fan_in = rnn.input_size + (rnn.hidden_size if recurrent else 0)
            total += 2 * h * w * 2 * gates * rnn.hidden_size * fan_in
    return total


def run_section(o: BenchOptions) -> dict[str, Any]:
    """ReNet against its references, ReNet's share of ReSeg inference, FLOPs and the matmul peak."""
    from reseg.benchmark.models import bench_renet_share, build_bench_model

    rsize = (12, 16) if o.quick else (max(1, o.size[0] // 4), max(1, o.size[1] // 4))
    channels, hidden = (16, 8) if o.quick else (256, 100)
    r = bench_renet(
        channels, rsize, o.renet_batch, hidden, repeats=o.repeats, device=o.device, skip_slow=o.skip_sequence_loop
    )
    res: dict[str, Any] = {"renet": r}
    if "speedup_fwd" in r:
        res["renet_speedup_fwd"] = r["speedup_fwd"]
        res["renet_speedup_fwdbwd"] = r["speedup_fwdbwd"]
    res["renet_vs_steploop_fwd"] = r["vs_steploop_fwd"]
    res["renet_vs_steploop_fwdbwd"] = r["vs_steploop_fwdbwd"]
    cells = bench_renet_cells(channels, rsize, o.renet_batch, hidden, o.repeats, o.device)
    res["renet_cells"] = cells
    for key in ("fwd", "fwdbwd"):  # against the fused GRU on CPU, cuDNN's GRU on CUDA
        res[f"renet_mingru_vs_gru_{key}"] = cells["cells"]["gru"][f"{key}_ms"] / cells["cells"]["mingru"][f"{key}_ms"]
    reseg = build_bench_model("reseg")
    share = bench_renet_share(reseg, o.batch, o.size, o.repeats, o.device)
    res["renet_share"] = share
    res["renet_share_infer"] = share["share"]
    share_mingru = bench_renet_share(build_bench_model("reseg_mingru"), o.batch, o.size, o.repeats, o.device)
    res["renet_share_mingru"] = share_mingru
    res["renet_share_infer_mingru"] = share_mingru["share"]
    flops = model_flops(reseg, o.size, o.device)
    res["reseg_gflops_per_img"] = flops / 1e9
    res["renet_gflops_per_img"] = renet_flops(reseg, o.size) / 1e9
    n, reps = (512, 3) if o.quick else (2048, 5)
    res["gemm_peak_gflops"] = gemm_peak_gflops(torch.float32, n, reps, o.device)
    if o.device == "cuda" or cpu_has_native_bf16():
        res["gemm_peak_gflops_bf16"] = gemm_peak_gflops(torch.bfloat16, n, reps, o.device)
    img_s = o.batch / share["model_s"]
    res["reseg_infer_img_s"] = img_s
    res["reseg_mfu"] = flops * img_s / (res["gemm_peak_gflops"] * 1e9)
    return res


def table_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    r = res["renet"]
    shape = "x".join(str(s) for s in r["shape"])
    rows = [
        (f"ReNet {shape} {impl}: fwd / fwd+bwd ms", f"{r['fwd_s'][impl] * 1e3:.1f} / {r['fwdbwd_s'][impl] * 1e3:.1f}")
        for impl in r["fwd_s"]
    ]
    if "renet_speedup_fwd" in res:
        rows.append(
            (
                "ReNet ours vs per-sequence loop: fwd / fwd+bwd",
                f"{res['renet_speedup_fwd']:.1f}x / {res['renet_speedup_fwdbwd']:.1f}x",
            )
        )
    bf16 = f" / {res['gemm_peak_gflops_bf16']:.0f}" if "gemm_peak_gflops_bf16" in res else ""
    rows += [
        (
            "ReNet ours vs step loop: fwd / fwd+bwd",
            f"{res['renet_vs_steploop_fwd']:.2f}x / {res['renet_vs_steploop_fwdbwd']:.2f}x",
        ),
        ("ReNet ours vs nn.GRU: fwd / fwd+bwd", f"{r['vs_nn_rnn_fwd']:.2f}x / {r['vs_nn_rnn_fwdbwd']:.2f}x"),
    ]
    c = res["renet_cells"]
    shape = "x".join(str(s) for s in c["shape"])
    for cell, v in c["cells"].items():
        rows.append(
            (
                f"ReNet {shape} cell {cell}: fwd / fwd+bwd ms (peak MB fwd / fwd+bwd; saved for backward MB)",
                f"{v['fwd_ms']:.1f} / {v['fwdbwd_ms']:.1f} ({v['infer_peak_mem_mb']:.0f} / "
                f"{v['peak_mem_mb']:.0f}; {v['saved_mb']:.0f})",
            )
        )
    rows += [
        (
            f"ReNet minGRU vs GRU ({c['gru_path']}): fwd / fwd+bwd",
            f"{res['renet_mingru_vs_gru_fwd']:.2f}x / {res['renet_mingru_vs_gru_fwdbwd']:.2f}x",
        ),
        (
            "ReNet share of ReSeg inference time: GRU / minGRU",
            f"{res['renet_share_infer'] * 100:.1f}% / {res['renet_share_infer_mingru'] * 100:.1f}%",
        ),
        (
            "ReSeg GFLOPs per image (ReNet part)",
            f"{res['reseg_gflops_per_img']:.1f} ({res['renet_gflops_per_img']:.1f})",
        ),
        ("matmul peak GFLOP/s fp32" + (" / bf16" if bf16 else ""), f"{res['gemm_peak_gflops']:.0f}{bf16}"),
        ("ReSeg inference FLOP utilisation (of fp32 peak)", f"{res['reseg_mfu'] * 100:.0f}%"),
    ]
    return rows
