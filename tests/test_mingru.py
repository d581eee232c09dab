"""ReNet's minGRU cell: the blocked parallel scan equals a step-by-step loop written here (outputs and
gradients), is safe for long sequences and saturated gates, keeps whole-image context, runs under bf16
autocast, and exports (ONNX Runtime, TorchScript) at sizes other than the traced one."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reseg.config import load_config
from reseg.models import ReNet, ReSeg, build_model
from reseg.models import scan as scan_module
from reseg.runtime import cpu_has_native_bf16


def _sweep_loop(m: nn.Module, seq: torch.Tensor) -> torch.Tensor:
    """(T, B, C) -> (T, B, 2h): per direction z = sigmoid(W_z x + b_z), c = W_c x + b_c,
    h_t = (1 - z_t) h_{t-1} + z_t c_t from h = 0; direction 1 runs from the last step to the first."""
    hs = m.hidden_size
    w = m.weight.view(2, 2, hs, -1)  # (gate z|c, direction, hidden, input)
    b = m.bias.view(2, 2, hs)
    outs = []
    for d in (0, 1):
        h = seq.new_zeros(seq.shape[1], hs)
        res = [h] * seq.shape[0]
        for t in range(seq.shape[0]) if d == 0 else range(seq.shape[0] - 1, -1, -1):
            z = torch.sigmoid(seq[t] @ w[0, d].t() + b[0, d])
            c = seq[t] @ w[1, d].t() + b[1, d]
            h = (1 - z) * h + z * c
            res[t] = h
        outs.append(torch.stack(res))
    return torch.cat(outs, dim=2)


def renet_loop(layer: ReNet, x: torch.Tensor) -> torch.Tensor:
    """ReNet with the loop above: down/up every column, then left/right every row."""
    x = layer.patchify(x)
    n, c, h, w = x.shape
    cols = _sweep_loop(layer.vertical, x.permute(2, 0, 3, 1).reshape(h, n * w, c))
    rows = cols.reshape(h, n, w, -1).permute(2, 1, 0, 3).reshape(w, n * h, -1)
    rows = _sweep_loop(layer.horizontal, rows)
    return rows.reshape(w, n, h, -1).permute(1, 3, 2, 0)


def _layer(in_ch: int = 3, hidden: int = 4, patch: int = 1, dtype: torch.dtype = torch.float32) -> ReNet:
    torch.manual_seed(0)
    layer = ReNet(in_ch, hidden, patch_size=patch, cell="mingru").to(dtype)
    for p in layer.parameters():  # gates well away from 0.5 in places, so the state carries far
        nn.init.uniform_(p, -0.8, 0.8)
    return layer


def _outputs_and_grads(fn, layer: ReNet, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    layer.zero_grad(set_to_none=True)
    xg = x.clone().requires_grad_(True)
    y = fn(xg)
    (y * g).sum().backward()
    return [y.detach(), xg.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize(
    "shape,patch",
    [
        ((2, 3, 1, 1), 1),  # length 1, both sweeps
        ((3, 3, 2, 5), 1),  # length 2 down the columns, odd along the rows
        ((2, 3, 7, 2), 2),  # patches of 2 with a ragged border: lengths 4 and 1
        ((2, 3, 11, 13), 2),  # odd lengths, patches of 2
        ((2, 2, 513, 2), 1),  # a long vertical sweep (blocks plus a leftover tail)
        ((1, 2, 2, 2048), 1),  # a long horizontal sweep
    ],
)
def test_scan_equals_the_step_loop(shape: tuple[int, ...], patch: int) -> None:
    layer = _layer(in_ch=shape[1], patch=patch)
    x = torch.randn(*shape)
    out_shape = (shape[0], 8, -(-shape[2] // patch), -(-shape[3] // patch))
    g = torch.randn(out_shape)
    got = _outputs_and_grads(layer, layer, x, g)
    want = _outputs_and_grads(lambda t: renet_loop(layer, t), layer, x, g)
    assert got[0].shape == out_shape
    for name, a, b in zip(["out", "x"] + [n for n, _ in layer.named_parameters()], got, want):
        # Parameter gradients are sums over every position: float32 summation order alone moves them
        # by ~1e-6 of their size, so they are held to 1e-5 of their largest entry.
        scale = 1.0 if name in ("out", "x") else max(1.0, b.abs().max().item())
        torch.testing.assert_close(a, b, atol=1e-5 * scale, rtol=1e-5, msg=name)


@pytest.mark.parametrize("T", list(range(1, 40)) + [97, 4096])
def test_blocked_scan_and_its_adjoint_equal_loops_for_every_block_split(T: int) -> None:
    """scan() over (P, T, R, 2, hs) against h_t = a_t h_{t-1} + b_t, its gated form (a = 1 - z, b = z c)
    that the forward runs, and the adjoint that the backward runs."""
    gen = torch.Generator().manual_seed(T)
    a = torch.rand(2, T, 3, 2, 5, dtype=torch.float64, generator=gen)
    b = torch.randn(2, T, 3, 2, 5, dtype=torch.float64, generator=gen)
    want = torch.empty_like(b)
    g_want = torch.empty_like(b)
    h = torch.zeros_like(b[:, 0])
    g = torch.zeros_like(b[:, 0])
    for s in range(T):
        t_f, t_b = s, T - 1 - s  # direction 0 forward in time, direction 1 backward
        h[..., 0, :] = a[:, t_f, :, 0] * h[..., 0, :] + b[:, t_f, :, 0]
        h[..., 1, :] = a[:, t_b, :, 1] * h[..., 1, :] + b[:, t_b, :, 1]
        want[:, t_f, :, 0], want[:, t_b, :, 1] = h[..., 0, :], h[..., 1, :]
        # adjoint: g_t = b_t + a_{t+1} g_{t+1} running backward for direction 0, mirrored for direction 1
        nxt_f, nxt_b = T - 1 - s, s
        g[..., 0, :] = b[:, nxt_f, :, 0] + (a[:, nxt_f + 1, :, 0] * g[..., 0, :] if s else 0)
        g[..., 1, :] = b[:, nxt_b, :, 1] + (a[:, nxt_b - 1, :, 1] * g[..., 1, :] if s else 0)
        g_want[:, nxt_f, :, 0], g_want[:, nxt_b, :, 1] = g[..., 0, :], g[..., 1, :]
    torch.testing.assert_close(scan_module.scan(a, b), want, atol=1e-12, rtol=1e-10)
    z = 1 - a
    torch.testing.assert_close(scan_module.scan_gated(z, b / z), want, atol=1e-10, rtol=1e-8)
    got = torch.empty_like(b)
    scan_module._scan_transposed(a, b, got)
    torch.testing.assert_close(got, g_want, atol=1e-12, rtol=1e-10)
    bb = b.clone()
    torch.testing.assert_close(scan_module.scan(a, bb, out=bb), want, atol=1e-12, rtol=1e-10)  # in place


def test_gradcheck_float64() -> None:
    layer = _layer(hidden=2, dtype=torch.float64)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))
    layer2 = _layer(hidden=2, patch=2, dtype=torch.float64)
    assert torch.autograd.gradcheck(layer2, (torch.randn(1, 3, 5, 3, dtype=torch.float64, requires_grad=True),))


def test_one_pixel_reaches_the_far_corner() -> None:
    layer = _layer(dtype=torch.float64)
    x = torch.randn(2, 3, 6, 9, dtype=torch.float64)
    x2 = x.clone()
    x2[0, :, 0, 0] += 1.0
    with torch.no_grad():
        d = (layer(x2) - layer(x)).abs()
    assert d[0, :, -1, -1].max() > 1e-9  # top-left pixel -> bottom-right output (down, then right)
    assert d[1].max() == 0  # and nothing leaks across images


@pytest.mark.parametrize("bias,scale", [(60.0, 1.0), (-60.0, 1.0), (0.0, 200.0)])
def test_saturated_gates_stay_finite_over_4096_steps(bias: float, scale: float) -> None:
    """z = 1 in float32 (then h_t = c_t exactly), z ~ 1e-26 (h stays ~0), or gates flipping between
    both extremes from step to step, along 4096-step sequences: finite outputs and gradients."""
    layer = _layer(in_ch=2, hidden=3)
    v, m = layer.vertical, layer.horizontal
    with torch.no_grad():
        for sweep in (v, m):
            sweep.bias[:6] = bias  # the z rows of both directions
            sweep.weight[:6] *= scale
    x = torch.randn(1, 2, 4096, 2, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    grads = [x.grad] + [p.grad for p in layer.parameters()]
    assert torch.isfinite(y).all() and all(torch.isfinite(g).all() for g in grads)
    if bias < 0:
        assert y.abs().max() < 1e-6
    elif scale == 1.0:  # h = c: each sweep's output is its candidate projection [W_c x + b_c] (c rows 6:)
        with torch.no_grad():
            mid = x.permute(0, 2, 3, 1) @ v.weight[6:].t() + v.bias[6:]
            want = mid @ m.weight[6:].t() + m.bias[6:]
        torch.testing.assert_close(y.detach().permute(0, 2, 3, 1), want, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_bf16_autocast_is_close_to_float32() -> None:
    """Under bf16 autocast only the matrix products run in bf16; the scan accumulates in float32.
    Stated tolerance: 2% of the output's range (bf16 keeps 8 significant bits)."""
    layer = _layer(in_ch=16, hidden=8)
    x = torch.randn(2, 16, 40, 30)
    with torch.no_grad():
        ref = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = layer(x)
    assert got.dtype == torch.float32
    assert (got - ref).abs().max() <= 0.02 * ref.abs().max()
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(xg).square().mean().backward()
    xr = x.clone().requires_grad_(True)
    layer.zero_grad(set_to_none=True)
    gx = xg.grad
    layer(xr).square().mean().backward()
    assert (gx - xr.grad).abs().max() <= 0.05 * xr.grad.abs().max()


def test_step_loop_impl_matches_and_reseg_trains() -> None:
    """impl="rnn" (the form that tracing and export record) equals the scan; a mingru ReSeg trains."""
    layer = _layer()
    x = torch.randn(2, 3, 6, 5)
    with torch.no_grad():
        a = layer(x)
        layer.impl = "rnn"
        b = layer(x)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    torch.manual_seed(0)
    model = ReSeg(4, renet_hidden=[3, 5], renet_patch=[1, 2], cell="mingru", decoder_filters=(4, 4))
    y = model(torch.randn(2, 3, 20, 28))
    assert y.shape == (2, 4, 20, 28)
    y.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.renet.parameters())


@pytest.mark.parametrize("chunk_positions", [1, 60, 10**9])  # chunks of 1 image, of 2 (2+2+1), the whole batch
def test_a_batch_run_in_chunks_equals_the_whole_batch(monkeypatch, chunk_positions: int) -> None:
    """The CPU scan runs a large batch a few images at a time: same outputs and gradients as all at once."""
    import reseg.models.renet as renet_module

    layer = _layer()
    x = torch.randn(5, 3, 6, 5, requires_grad=True)  # 30 positions per image
    monkeypatch.setattr(renet_module, "MINGRU_CHUNK_POSITIONS", 10**9)
    ref = layer(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), [x, *layer.parameters()])
    monkeypatch.setattr(renet_module, "MINGRU_CHUNK_POSITIONS", chunk_positions)
    out = layer(x)
    grads = torch.autograd.grad(out.square().sum(), [x, *layer.parameters()])
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


TINY = ["model.renet_hidden=4", "model.decoder_filters=[4, 4]", "model.encoder_weights=null", "model.cell=mingru"]


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_at_other_sizes(tmp_path, fmt: str) -> None:
    """The export records the scan as a step loop: it runs at sizes it was not traced at."""
    from reseg.export import export_torchscript, verify_torchscript
    from reseg.onnx.export import export_onnx, verify_onnx

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(load_config(None, TINY + ["model.renet_patch=[1, 2]"]), 3).eval()
    for m in model.renet:  # stronger ReNet weights, so the check sees the recurrence
        for p in m.parameters():
            nn.init.uniform_(p, -0.5, 0.5)
    export, verify, name = (
        (export_onnx, verify_onnx, "m.onnx") if fmt == "onnx" else (export_torchscript, verify_torchscript, "m.pt")
    )
    res = export(model, tmp_path / name, size=(32, 48))
    assert res["max_abs_diff"] < 1e-4
    for size in ((40, 56), (37, 85)):
        assert verify(tmp_path / name, model, size, batch=2)["max_abs_diff"] < 1e-4
    assert all(m.impl == "auto" for m in model.renet)


def test_config_accepts_mingru_and_names_bad_cells() -> None:
    from reseg.errors import ResegError

    model = build_model(load_config(None, TINY), 3)
    assert all(m.cell == "mingru" for m in model.renet)
    with pytest.raises(ResegError, match="minigru"):
        load_config(None, ["model.cell=minigru"])
