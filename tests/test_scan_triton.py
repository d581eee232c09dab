"""The Triton minGRU sweep (reseg/models/scan_triton.py) against the step loop and the blocked scan.

Without a GPU the kernels run in Triton's interpreter (tests/conftest.py sets TRITON_INTERPRET=1), so
shapes stay small. References run in float64."""

from __future__ import annotations

import os

import pytest
import torch

from reseg.models.renet import SCAN_ENV, ReNet, scan_impl
from reseg.models.scan import mingru_loop, mingru_scan

scan_triton = pytest.importorskip("reseg.models.scan_triton")
if scan_triton.triton_available():
    pytest.skip(scan_triton.triton_available(), allow_module_level=True)
if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no GPU, and TRITON_INTERPRET=1 was not set before triton was imported", allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _gates(
    shape: tuple[int, int, int], hs: int, dtype: torch.dtype = torch.float32, scale: float = 2.0, seed: int = 0
) -> torch.Tensor:
    P, T, R = shape
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(P * T * R, 4 * hs, generator=g, dtype=torch.float64) * scale).to(DEVICE, dtype)


def _value_and_grad(fn, G: torch.Tensor, shape: tuple[int, int, int], w: torch.Tensor):
    G = G.detach().clone().requires_grad_(True)
    h = fn(G, shape)
    (dG,) = torch.autograd.grad((h.double() * w).sum(), G)
    return h.detach().double(), dG.double()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize(
    "shape,hs",
    [((2, 7, 3), 5), ((1, 1, 2), 3), ((3, 33, 1), 70), ((1, 5, 4), 1)],
    ids=["odd", "T=1", "two-tiles", "hidden-1"],
)
def test_values_and_gradients_match_the_step_loop_and_the_blocked_scan(shape, hs) -> None:
    G = _gates(shape, hs)
    w = torch.randn(G.shape[0], 2 * hs, dtype=torch.float64, device=DEVICE)
    h_ref, dG_ref = _value_and_grad(mingru_loop, G.double(), shape, w)
    h_tri, dG_tri = _value_and_grad(scan_triton.mingru_scan_fused, G, shape, w)
    h_blk, dG_blk = _value_and_grad(mingru_scan, G, shape, w)
    assert torch.isfinite(h_tri).all() and torch.isfinite(dG_tri).all()
    assert _rel(h_tri, h_ref) < 1e-5 and _rel(dG_tri, dG_ref) < 1e-5
    assert _rel(h_tri, h_blk) < 1e-5 and _rel(dG_tri, dG_blk) < 1e-5


def test_each_direction_reads_only_its_own_past() -> None:
    """Direction 0 at time t depends on times <= t, direction 1 on times >= t (checked through gradients)."""
    shape, hs, t = (1, 9, 1), 2, 4
    G = _gates(shape, hs).requires_grad_(True)
    h = scan_triton.mingru_scan_fused(G, shape)
    (g_fwd,) = torch.autograd.grad(h[t, :hs].sum(), G, retain_graph=True)
    (g_bwd,) = torch.autograd.grad(h[t, hs:].sum(), G)
    rows_fwd = g_fwd.abs().sum(1).nonzero().flatten().tolist()
    rows_bwd = g_bwd.abs().sum(1).nonzero().flatten().tolist()
    assert rows_fwd == list(range(t + 1)) and rows_bwd == list(range(t, 9))


def test_a_2048_step_sequence() -> None:
    shape, hs = (1, 2048, 1), 3
    G = _gates(shape, hs, scale=1.0)
    w = torch.randn(G.shape[0], 2 * hs, dtype=torch.float64, device=DEVICE)
    h_ref, dG_ref = _value_and_grad(mingru_loop, G.double(), shape, w)
    h_tri, dG_tri = _value_and_grad(scan_triton.mingru_scan_fused, G, shape, w)
    assert _rel(h_tri, h_ref) < 1e-5 and _rel(dG_tri, dG_ref) < 1e-5


def test_saturated_gates_stay_exact() -> None:
    """z = 0 (k = -60) keeps h exactly; z = 1 (k = +60) copies c exactly: no log or division to blow up."""
    shape, hs = (2, 40, 2), 4
    G = _gates(shape, hs)
    k = G[:, : 2 * hs]
    k[::2] = 60.0
    k[1::2] = -60.0
    w = torch.randn(G.shape[0], 2 * hs, dtype=torch.float64, device=DEVICE)
    h_ref, dG_ref = _value_and_grad(mingru_loop, G.double(), shape, w)
    h_tri, dG_tri = _value_and_grad(scan_triton.mingru_scan_fused, G, shape, w)
    assert torch.isfinite(h_tri).all() and torch.isfinite(dG_tri).all()
    assert (h_tri - h_ref).abs().max().item() < 1e-5
    assert _rel(dG_tri, dG_ref) < 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_accumulate_in_float32(dtype) -> None:
    shape, hs = (2, 50, 3), 6
    G = _gates(shape, hs, dtype=dtype)
    w = torch.randn(G.shape[0], 2 * hs, dtype=torch.float64, device=DEVICE)
    h_ref, dG_ref = _value_and_grad(mingru_loop, G.double(), shape, w)  # the same (rounded) inputs, in float64
    Gt = G.detach().clone().requires_grad_(True)
    h = scan_triton.mingru_scan_fused(Gt, shape)
    assert h.dtype == dtype
    (dG,) = torch.autograd.grad((h.double() * w).sum(), Gt)
    assert dG.dtype == dtype
    eps = torch.finfo(dtype).eps
    # one rounding of the output (and of h_{t-1} in the gradient), not an error that grows along T
    assert _rel(h.double(), h_ref) < 2 * eps
    assert _rel(dG.double(), dG_ref) < 4 * eps


def test_the_custom_op_passes_torch_library_opcheck() -> None:
    """Schema, fake (meta) kernel, autograd registration: what torch.compile and export rely on."""
    shape, hs = (1, 4, 2), 2
    G = _gates(shape, hs).requires_grad_(True)
    torch.library.opcheck(
        torch.ops.reseg.mingru_scan.default,
        (G, *shape),
        test_utils=("test_schema", "test_faketensor", "test_autograd_registration"),
    )


def test_the_renet_layer_with_the_triton_scan_equals_the_blocked_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    layer = ReNet(3, 4, cell="mingru").to(DEVICE).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, device=DEVICE, requires_grad=True)
    monkeypatch.setenv(SCAN_ENV, "blocked")
    ref = layer(x)
    (dx_ref,) = torch.autograd.grad(ref.square().sum(), x)
    monkeypatch.setenv(SCAN_ENV, "triton")
    assert scan_impl(x) == "triton"
    out = layer(x)
    (dx,) = torch.autograd.grad(out.square().sum(), x)
    assert _rel(out, ref) < 1e-5 and _rel(dx, dx_ref) < 1e-5


def test_scan_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.zeros(1)
    monkeypatch.delenv(SCAN_ENV, raising=False)
    assert scan_impl(x) == ("triton" if x.is_cuda else "blocked")  # auto: Triton on CUDA only
    monkeypatch.setenv(SCAN_ENV, "blocked")
    assert scan_impl(x) == "blocked"
    monkeypatch.setenv(SCAN_ENV, "cuda-graph")
    with pytest.raises(Exception, match="RESEG_SCAN='cuda-graph'.*triton, blocked"):
        scan_impl(x)


def test_the_eager_path_and_the_custom_op_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eager calls skip the op's dispatch; both routes launch the same kernels and give the same values and grads."""
    shape, hs = (2, 6, 3), 4
    G = _gates(shape, hs)
    w = torch.randn(G.shape[0], 2 * hs, dtype=torch.float64, device=DEVICE)
    h_direct, dG_direct = _value_and_grad(scan_triton.mingru_scan_fused, G, shape, w)
    monkeypatch.setattr(scan_triton, "EAGER_DIRECT", False)
    h_op, dG_op = _value_and_grad(scan_triton.mingru_scan_fused, G, shape, w)
    assert torch.equal(h_direct, h_op) and torch.equal(dG_direct, dG_op)
