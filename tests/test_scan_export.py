"""The unrolled minGRU scan of static exports: it equals the step loop and the blocked scan (both
directions, any length, saturated gates, long sequences), traces without a loop construct, and a ReSeg
exported to ONNX inside `static_export()` has no Loop node and matches PyTorch in ONNX Runtime; outside
it the export keeps its dynamic Loop."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from reseg.models import ReSeg
from reseg.models import scan as scan_module
from reseg.models.renet import in_static_export, static_export


def _reference(G: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Step by step in float64 from the definition: per direction z = sigmoid(k), h_t = (1 - z_t) h_{t-1} +
    z_t c_t from h = 0, direction 1 from the last step to the first; columns [k_f, k_b, c_f, c_b]."""
    P, T, R = shape
    hs = G.shape[1] // 4
    g = G.double().view(P, T, R, 4, hs)
    out = torch.empty(P, T, R, 2, hs, dtype=torch.float64)
    for d in (0, 1):
        h = torch.zeros(P, R, hs, dtype=torch.float64)
        for t in range(T) if d == 0 else range(T - 1, -1, -1):
            z = torch.sigmoid(g[:, t, :, d])
            h = (1 - z) * h + z * g[:, t, :, 2 + d]
            out[:, t, :, d] = h
    return out.view(P * T * R, 2 * hs)


def _gates(shape: tuple[int, int, int], hs: int, seed: int, saturate: float = 0.0) -> torch.Tensor:
    """Pre-activations; saturate > 0 pushes the k columns to +-saturate at random (z = 1 or ~0 in float32)."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(shape[0] * shape[1] * shape[2], 4 * hs, generator=gen)
    if saturate:
        signs = torch.randint(0, 2, (G.shape[0], 2 * hs), generator=gen).float() * 2 - 1
        G[:, : 2 * hs] = signs * saturate
    return G


@pytest.mark.parametrize("shape", [(2, 1, 3), (1, 2, 2), (2, 7, 3), (3, 13, 1), (1, 40, 2), (2, 97, 1), (1, 2048, 2)])
def test_unrolled_equals_the_step_loop_and_the_blocked_scan(shape: tuple[int, int, int]) -> None:
    G = _gates(shape, 3, seed=shape[1])
    want = _reference(G, shape)
    got = scan_module.mingru_unrolled(G, shape)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got, scan_module.mingru_loop(G, shape), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got, scan_module.mingru_scan(G, shape), atol=1e-6, rtol=1e-5)
    G64 = G.double()  # in float64 the three differ by rounding only
    torch.testing.assert_close(scan_module.mingru_unrolled(G64, shape), want, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("saturate", [60.0, 200.0])
def test_unrolled_stays_exact_for_saturated_gates_over_2048_steps(saturate: float) -> None:
    """Gates flipping between z = 1 (h = c exactly) and z ~ 0 (h carried) along 2048 steps: decays
    underflow to 0 or stay 1 exactly, so nothing is divided or logged into inf/nan."""
    shape = (1, 2048, 2)
    G = _gates(shape, 2, seed=1, saturate=saturate)
    got = scan_module.mingru_unrolled(G, shape)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), _reference(G, shape), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got, scan_module.mingru_scan(G, shape), atol=1e-6, rtol=1e-6)


def test_unrolled_traces_to_a_few_ops_per_sweep_and_no_loop() -> None:
    """T = 2048 traces to ~10L + 2K ops (L ~ 20, K ~ 100), not thousands, and with no loop construct."""
    shape = (1, 2048, 2)
    G = _gates(shape, 2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(lambda g: scan_module.mingru_unrolled(g, shape), (G,), check_trace=False)
    kinds = [n.kind() for n in traced.graph.nodes()]
    assert "prim::Loop" not in kinds
    L = scan_module.unrolled_block_len(2048)
    K = -(-2048 // L)
    arithmetic = sum(k in ("aten::mul", "aten::add") for k in kinds)
    assert arithmetic <= 6 * L + 2 * K  # per step: gates 1, state 2, decay 1, output 2; per block 2
    assert sum(k.startswith("aten::") for k in kinds) < 2048 // 3  # well under one op per step
    torch.testing.assert_close(traced(G), scan_module.mingru_loop(G, shape), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("T", [1, 2, 5, 30, 40, 90, 2048])
def test_block_length_covers_the_sequence_with_few_ops(T: int) -> None:
    L = scan_module.unrolled_block_len(T)
    K = -(-T // L)
    assert 1 <= L <= T and K * L >= T and (K - 1) * L < T
    assert 10 * L + 2 * K <= 2 * (20 * T) ** 0.5 + 12  # the sqrt(T) growth that unrolling needs


def test_static_export_switch_is_scoped_and_the_rnn_path_uses_it(monkeypatch) -> None:
    """impl="rnn" (what export sets) runs the step loop, or the unrolled scan inside static_export():
    both equal the parallel scan; the switch is off again after the block, even after an error."""
    import reseg.models.renet as renet_module

    torch.manual_seed(0)
    layer = renet_module.ReNet(3, 4, cell="mingru")
    for p in layer.parameters():
        nn.init.uniform_(p, -0.8, 0.8)
    x = torch.randn(2, 3, 9, 7)
    calls = {"loop": 0, "unrolled": 0}

    def counted(name, fn):
        def wrapped(*args):
            calls[name] += 1
            return fn(*args)

        return wrapped

    monkeypatch.setattr(renet_module, "mingru_loop", counted("loop", renet_module.mingru_loop))
    monkeypatch.setattr(renet_module, "mingru_unrolled", counted("unrolled", renet_module.mingru_unrolled))
    with torch.no_grad():
        ref = layer(x)
        layer.impl = "rnn"
        looped = layer(x)
        with static_export():
            assert in_static_export()
            unrolled = layer(x)
    assert calls == {"loop": 2, "unrolled": 2}  # two sweeps each
    torch.testing.assert_close(looped, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unrolled, ref, atol=1e-6, rtol=1e-5)
    assert not in_static_export()
    with pytest.raises(RuntimeError), static_export():
        raise RuntimeError("export failed")
    assert not in_static_export()


def _tiny_reseg() -> ReSeg:
    torch.manual_seed(0)
    model = ReSeg(
        3,
        encoder_width=0.125,
        renet_hidden=[4, 6],
        renet_patch=[1, 2],
        cell="mingru",
        decoder="skip",
        decoder_channels=(4, 4),
    ).eval()
    for m in model.renet:  # strong ReNet weights, so a wrong recurrence shows in the logits
        for p in m.parameters():
            nn.init.uniform_(p, -0.5, 0.5)
    return model


def _export(model: nn.Module, path, size: tuple[int, int], dynamic: bool) -> None:
    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, 3, *size),),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes=axes if dynamic else None,
            opset_version=17,
            dynamo=False,
        )


def _op_types(path) -> set[str]:
    """Every node type in the ONNX file, subgraphs (Loop/If bodies) included."""
    import onnx

    found: set[str] = set()

    def visit(graph) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(onnx.load(str(path)).graph)
    return found


def _ort(path, x: torch.Tensor):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"image": x.numpy()})[0]


def test_static_onnx_export_has_no_loop_and_matches_pytorch(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _tiny_reseg()
    size = (36, 52)  # ReNet sequences of 9 and 13 (stride 4), then 5 and 7 (patches of 2, padded)
    with static_export():
        _export(model, tmp_path / "s.onnx", size, dynamic=False)
    assert "Loop" not in _op_types(tmp_path / "s.onnx")
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        want = model(x).numpy()
    got = _ort(tmp_path / "s.onnx", x)
    assert got.shape == want.shape
    assert abs(got - want).max() < 1e-4 * max(1.0, float(abs(want).max()))


def test_onnx_export_outside_the_switch_keeps_the_dynamic_loop(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = _tiny_reseg()
    _export(model, tmp_path / "d.onnx", (32, 48), dynamic=True)
    assert "Loop" in _op_types(tmp_path / "d.onnx")
    x = torch.randn(2, 3, 40, 56)  # another size and batch than traced
    with torch.no_grad():
        want = model(x).numpy()
    assert abs(_ort(tmp_path / "d.onnx", x) - want).max() < 1e-4 * max(1.0, float(abs(want).max()))
