"""The fused CPU ReNet matches the nn.GRU/LSTM path (outputs and, for GRU, every gradient)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from reseg.models import ReNet, ReSeg
from reseg.models import renet as renet_module


def _layer(cell: str, patch: int = 1, dtype: torch.dtype = torch.float32) -> ReNet:
    torch.manual_seed(0)
    layer = ReNet(3, 4, patch_size=patch, cell=cell).to(dtype)
    for p in layer.parameters():
        nn.init.uniform_(p, -0.5, 0.5)
    return layer


def _run(layer: ReNet, impl: str, x: torch.Tensor, grad_out: torch.Tensor | None = None) -> list[torch.Tensor]:
    layer.impl = impl
    layer.zero_grad(set_to_none=True)
    if grad_out is None:
        with torch.no_grad():
            return [layer(x)]
    xg = x.clone().requires_grad_(True)
    y = layer(xg)
    (y * grad_out).sum().backward()
    return [y.detach(), xg.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 3, 1, 6), (3, 3, 6, 1), (1, 3, 2, 2)])
def test_fused_forward_matches_rnn(cell: str, shape: tuple[int, ...]) -> None:
    layer = _layer(cell)
    x = torch.randn(*shape)
    torch.testing.assert_close(_run(layer, "fused", x)[0], _run(layer, "rnn", x)[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 3, 4, 4), (2, 3, 1, 5), (2, 3, 6, 1)])
def test_fused_gru_gradients_match_rnn(patch: int, shape: tuple[int, ...]) -> None:
    layer = _layer("gru", patch, torch.float64)
    x = torch.randn(*shape, dtype=torch.float64)
    out_shape = (shape[0], 8, -(-shape[2] // patch), -(-shape[3] // patch))
    g = torch.randn(out_shape, dtype=torch.float64)
    for a, b in zip(_run(layer, "fused", x, g), _run(layer, "rnn", x, g)):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_fused_gru_gradcheck() -> None:
    layer = _layer("gru", 1, torch.float64)
    layer.impl = "fused"
    x = torch.randn(1, 3, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,))


def test_auto_picks_fused_on_cpu_and_rnn_for_lstm_training() -> None:
    gru, lstm = _layer("gru"), _layer("lstm")
    x = torch.randn(1, 3, 4, 4)
    assert gru.use_fused(x) and not lstm.use_fused(x)  # LSTM has no fused backward: training takes nn.LSTM
    with torch.no_grad():
        assert lstm.use_fused(x)
    gru.impl = "rnn"
    assert not gru.use_fused(x)


def test_stacked_fused_layers_and_training_step() -> None:
    """Two fused layers chained (the second reads the first's strided output) train like nn.GRU ones."""
    torch.manual_seed(0)
    model = ReSeg(4, renet_hidden=[3, 5], decoder_filters=(4, 4)).train()
    x = torch.randn(2, 3, 20, 28)
    grads = {}
    for impl in ("fused", "rnn"):
        for m in model.renet:
            m.impl = impl
        model.zero_grad(set_to_none=True)
        y = model(x)
        y.square().mean().backward()
        grads[impl] = [y.detach()] + [p.grad.clone() for p in model.renet.parameters()]
    for a, b in zip(grads["fused"], grads["rnn"]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_inference_workspace_is_reused_and_safe_across_modes() -> None:
    layer = _layer("gru")
    x = torch.randn(2, 3, 5, 7)
    with torch.inference_mode():
        a = layer(x).clone()
    with torch.no_grad():
        b = layer(x)
    torch.testing.assert_close(a, b)
    renet_module.clear_workspace()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("vertical", [True, False])
def test_cpp_loops_match_the_torchscript_loops(dtype: torch.dtype, vertical: bool) -> None:
    """gru_loops.cpp (built on first use where a compiler is available) computes what the TorchScript
    loops compute: gates, hidden states, saved n-products, and every gradient."""
    from reseg.models import gru_ext

    ext = gru_ext.load()
    if ext is None:
        pytest.skip("no C++ compiler/ninja here: the TorchScript loops are in use")
    gen = torch.Generator().manual_seed(0)
    n, h, w, hs = 2, 5, 7, 6
    geom = renet_module._geometry(n, h, w, vertical, 3, hs)
    m = n * h * w
    G0 = torch.randn(m, 6 * hs, dtype=dtype, generator=gen)
    whhT = torch.randn(2, hs, 3 * hs, dtype=dtype, generator=gen) * 0.5
    bhh = torch.randn(2, 1, 3 * hs, dtype=dtype, generator=gen) * 0.5
    dY = torch.randn(m, 2 * hs, dtype=dtype, generator=gen)
    results = []
    for impl in ("torchscript", "cpp"):
        G, out, ghn = G0.clone(), torch.empty(m, 2 * hs, dtype=dtype), torch.empty(m, 2 * hs, dtype=dtype)
        if impl == "cpp":
            ext.gru_forward(G, whhT, bhh, out, ghn, *geom, hs)
            grads = ext.gru_backward(dY, G, ghn, out, whhT, *geom, hs)
        else:
            renet_module._gru_forward_loop(G, whhT, bhh, out, ghn, *geom, hs)
            grads = renet_module._gru_backward_loop(dY, G, ghn, out, whhT, *geom, hs)
        results.append([G, out, ghn, *grads])
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-10}
    for name, a, b in zip(("gates", "out", "ghn", "dG", "dwhhT", "dbhh"), *results):
        torch.testing.assert_close(b, a, msg=name, **tol)


def test_cpp_loops_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from reseg.models import gru_ext

    monkeypatch.setenv("RESEG_CPP_LOOPS", "0")
    assert gru_ext.load() is None
    layer = _layer("gru")
    x = torch.randn(1, 3, 4, 5)
    torch.testing.assert_close(_run(layer, "fused", x)[0], _run(layer, "rnn", x)[0], atol=1e-5, rtol=1e-5)


def test_a_failed_cpp_build_falls_back_to_torchscript(tmp_path) -> None:
    """No working compiler (CXX=/bin/false) in a fresh extension folder: a warning, and ReNet still trains."""
    import os
    import subprocess
    import sys

    code = (
        "import logging, torch; logging.basicConfig()\n"
        "from reseg.models import gru_ext, ReNet\n"
        "assert gru_ext.load() is None\n"
        "x = torch.randn(1, 3, 4, 5, requires_grad=True); ReNet(3, 4)(x).sum().backward()\n"
        "print('trained', tuple(x.grad.shape))\n"
    )
    env = dict(os.environ, CXX="/bin/false", TORCH_EXTENSIONS_DIR=str(tmp_path), RESEG_CPP_LOOPS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "trained (1, 3, 4, 5)" in r.stdout
    assert "C++ GRU loops unavailable" in r.stderr and "TorchScript" in r.stderr
