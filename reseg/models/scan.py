"""The parallel scan behind ReNet's minGRU cell: h_t = a_t * h_{t-1} + b_t, both directions at once.

Tensors are (P, T, R, 2, hs): time on dim 1, direction on dim 3 (0 runs up T, 1 runs down T),
h = 0 before each sequence's first step. The scan is blocked: T is cut into K blocks of L steps,
and three short loops run over all blocks of all sequences at once (no loop over the T steps):
1. each block's end value from a zero state (L steps, every block in one op per step);
2. the state entering each block (K steps on block summaries: end value and product of a);
3. the block's steps again, from that state (L steps), writing h.
L is about sqrt(T/2), so T = 90 takes ~27 ops per direction instead of 90 dependent steps, and the
arithmetic is that of the sequential loop (no logs, no division: exact to rounding for saturated
gates and 4096-step sequences). On CPU this is as fast as a compiled sequential loop; on GPU each op
covers T/L times more sequences than a step would.

`MinGRUScan` is the minGRU sweep with its gates (z = sigmoid(k), a = 1 - z, b = z * c) as one
autograd function: its backward is the same scan run the other way, so it saves only the gate
pre-activations and h. `scan_loop` is the plain step loop, TorchScript, that tracers and exporters
record (ONNX Loop: dynamic H and W) and the reference the tests compare against.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import Tensor


def chunk_len(T: int) -> int:
    """Block length L minimising the op count 2L + T//L + T%L of a length-T scan."""
    best, best_cost = 1, 2 + T
    for L in range(2, T + 1):
        cost = 2 * L + T // L + T % L
        if cost < best_cost:
            best, best_cost = L, cost
        if 2 * L > best_cost:
            break
    return best


def _scan_dir(a: Tensor, b: Tensor, out: Tensor, reverse: bool, h0: Optional[Tensor] = None) -> None:
    """One direction: a, b, out are (P, T, R, hs) views (out may be b); h before the first step is h0 or 0."""
    T = a.shape[1]
    L = chunk_len(T)
    K, r = divmod(T, L)
    s0 = r if reverse else 0  # full blocks cover [s0, s0 + K*L); the r leftover steps run last
    A = a[:, s0:s0 + K * L].unflatten(1, (K, L))
    B = b[:, s0:s0 + K * L].unflatten(1, (K, L))
    O = out[:, s0:s0 + K * L].unflatten(1, (K, L))
    steps = range(L - 1, -1, -1) if reverse else range(L)
    scratch = a.new_empty((3, A.shape[0], K) + A.shape[3:])  # block end values, decays, entry states
    end, decay, state = scratch[0], scratch[1], scratch[2]
    end.copy_(B[:, :, steps[0]])
    for l in steps[1:]:
        torch.addcmul(B[:, :, l], A[:, :, l], end, out=end)
    torch.prod(A, dim=2, out=decay)
    c = torch.zeros_like(end[:, 0]) if h0 is None else h0
    for k in (range(K - 1, -1, -1) if reverse else range(K)):
        state[:, k] = c
        c = torch.addcmul(end[:, k], decay[:, k], c)
    h = state
    for l in steps:  # B is read before O[:, :, l] is written, so out may be b
        torch.addcmul(B[:, :, l], A[:, :, l], h, out=O[:, :, l])
        h = O[:, :, l]
    for t in (range(r - 1, -1, -1) if reverse else range(K * L, T)):
        torch.addcmul(b[:, t], a[:, t], c, out=out[:, t])
        c = out[:, t]


def scan(a: Tensor, b: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """h for (P, T, R, 2, hs) tensors a, b (direction 0 forward in time, 1 backward), into out (may be b)."""
    out = torch.empty_like(b) if out is None else out
    if a.shape[1] > 0:
        _scan_dir(a[..., 0, :], b[..., 0, :], out[..., 0, :], False)
        _scan_dir(a[..., 1, :], b[..., 1, :], out[..., 1, :], True)
    return out


def _scan_transposed(a: Tensor, dh: Tensor, g: Tensor) -> None:
    """The adjoint scan into g: g_t = dh_t + a_{t+1} g_{t+1} (direction 0), dh_t + a_{t-1} g_{t-1} (direction 1)."""
    T = dh.shape[1]
    g[:, T - 1, :, 0] = dh[:, T - 1, :, 0]
    g[:, 0, :, 1] = dh[:, 0, :, 1]
    if T > 1:
        _scan_dir(a[:, 1:, :, 0], dh[:, : T - 1, :, 0], g[:, : T - 1, :, 0], True, g[:, T - 1, :, 0])
        _scan_dir(a[:, : T - 1, :, 1], dh[:, 1:, :, 1], g[:, 1:, :, 1], False, g[:, 0, :, 1])


def _minus_prev(c: Tensor, h: Tensor, out: Tensor) -> Tensor:
    """c_t - h_{t-1} for direction 0 and c_t - h_{t+1} for direction 1 (h = 0 before a sequence starts)."""
    torch.sub(c[:, 1:, :, 0], h[:, :-1, :, 0], out=out[:, 1:, :, 0])
    out[:, 0, :, 0] = c[:, 0, :, 0]
    torch.sub(c[:, :-1, :, 1], h[:, 1:, :, 1], out=out[:, :-1, :, 1])
    out[:, -1, :, 1] = c[:, -1, :, 1]
    return out


def _split(G: Tensor, shape: tuple[int, int, int]) -> tuple[Tensor, Tensor]:
    """The k and c views, (P, T, R, 2, hs) each, of (M, 4*hs) pre-activations [k_fwd, k_bwd, c_fwd, c_bwd]."""
    P, T, R = shape
    G6 = G.view(P, T, R, 2, 2, G.shape[1] // 4)
    return G6[:, :, :, 0], G6[:, :, :, 1]


def _sigmoid_into(k: Tensor, out: Tensor) -> Tensor:
    """z = sigmoid(k) computed in out's precision (k may be bf16/fp16 under autocast)."""
    if k.dtype == out.dtype:
        return torch.sigmoid(k, out=out)
    return out.copy_(k).sigmoid_()


class MinGRUScan(torch.autograd.Function):
    """(M, 4*hs) gate pre-activations, rows in (P, T, R) order -> (M, 2*hs) hidden states (>= float32).

    Each pass allocates only what it returns or saves, plus one (M, 2*hs) scratch tensor: fresh large
    tensors cost page faults on every call on CPU, several times the arithmetic of these passes.
    """

    @staticmethod
    def forward(ctx, G: Tensor, shape: tuple[int, int, int]) -> Tensor:  # type: ignore[override]
        k, c = _split(G, shape)
        dtype = torch.promote_types(G.dtype, torch.float32)
        z = _sigmoid_into(k, torch.empty(k.shape, dtype=dtype, device=G.device))
        h = torch.mul(z, c, out=torch.empty(k.shape, dtype=dtype, device=G.device))  # b = z * c, scanned in place
        scan(z.neg_().add_(1.0), h, out=h)  # a = 1 - z
        ctx.save_for_backward(G, h)
        ctx.shape = shape
        return h.view(G.shape[0], -1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh: Tensor):  # type: ignore[override]
        G, h = ctx.saved_tensors
        k, c = _split(G, ctx.shape)
        t = _sigmoid_into(k, torch.empty_like(h)).neg_().add_(1.0)  # a = 1 - z
        dG = torch.empty(G.shape, dtype=h.dtype, device=G.device)
        dk, dc = _split(dG, ctx.shape)
        _scan_transposed(t, dh.reshape(h.shape).to(h.dtype), dc)  # dc holds g = dL/dh_t (all paths) for now
        # h = h_prev + z * (c - h_prev), z = sigmoid(k): dh/dk = z * (1 - z) * (c - h_prev), dh/dc = z
        _minus_prev(c, h, dk).mul_(t)
        dc.mul_(_sigmoid_into(k, t))
        dk.mul_(dc)
        return dG, None


def _loop(a: Tensor, b: Tensor) -> Tensor:
    """The sequential reference/export form of `scan`: one step per time step, both directions per step."""
    T = a.size(1)
    af = torch.stack([a[:, :, :, 0], a[:, :, :, 1].flip(1)], 0)
    bf = torch.stack([b[:, :, :, 0], b[:, :, :, 1].flip(1)], 0)
    h = torch.zeros_like(bf[:, :, 0])
    hs: list[Tensor] = []
    for t in range(T):
        h = af[:, :, t] * h + bf[:, :, t]
        hs.append(h)
    out = torch.stack(hs, 2)
    return torch.stack([out[0], out[1].flip(1)], 3)


def _script(fn):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(fn)
    except Exception:  # pragma: no cover - TorchScript removed
        return fn


scan_loop = _script(_loop)


def mingru_scan(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Hidden states of a bidirectional minGRU sweep from its gate pre-activations (see MinGRUScan)."""
    return MinGRUScan.apply(G, shape)


def mingru_loop(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """`mingru_scan` as a step loop that TorchScript tracing and ONNX export record with dynamic length."""
    k, c = _split(G, shape)
    dtype = torch.promote_types(G.dtype, torch.float32)
    z = torch.sigmoid(k.to(dtype))
    return scan_loop(1.0 - z, z * c.to(dtype)).reshape(G.shape[0], -1)
