"""The parallel scan behind ReNet's minGRU cell: h_t = a_t * h_{t-1} + b_t, both directions at once.

Tensors are (P, T, R, 2, hs): time on dim 1, direction on dim 3 (0 runs up T, 1 runs down T),
h = 0 before each sequence's first step. The scan is blocked: T is cut into K blocks of L steps,
and three short loops run over all blocks of all sequences at once (no loop over the T steps):
1. each block's end value from a zero state, and its decay (product of a) (L steps, every block in
   one op per step);
2. the state entering each block (K steps on the block summaries);
3. the block's steps again, from that state (L steps), writing h.
L is about sqrt(T/2), so T = 90 takes ~27 ops per direction instead of 90 dependent steps, and the
arithmetic is that of the sequential loop (no logs, no division: exact to rounding for saturated
gates and 4096-step sequences). On the CPU it was close to the TorchScript step loop single-threaded
and several times faster than torch's associative_scan, a Hillis-Steele scan and a log-space
(logcumsumexp) scan, which also loses precision. On CUDA, scan_triton.py runs the same recurrence as
fused kernels instead.

`MinGRUScan` is a minGRU sweep from its gate pre-activations as one autograd function: the forward
runs the scan in its gated form (one lerp per step: a = 1 - z and b = z c are never stored), the
backward runs the adjoint scan (the same scan, the other way in time), and only the pre-activations
and h are saved. `scan_loop` is the plain step loop, in TorchScript, that tracing and export record
(ONNX Loop: dynamic H and W, but ONNX Runtime runs its T dependent steps one at a time).
`mingru_unrolled` is the blocked scan again, functional and with its loops unrolled by the tracer into
~10L + 2K plain ops: what a static export (fixed H and W, renet.static_export()) records instead.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch
from torch import Tensor


def chunk_len(T: int) -> int:
    """Block length L minimising the op count 2L + T//L + T%L of a length-T scan."""
    best, best_cost = 1, 2 + T
    for L in range(2, T + 1):
        cost = 2 * L + T // L + T % L
        if cost < best_cost:
            best, best_cost = L, cost
        if best_cost < 2 * L:
            break
    return best


def _scan_dir(x: Tensor, y: Tensor, out: Tensor, reverse: bool, gated: bool, h0: Tensor | None = None) -> None:
    """One direction over (P, T, R, hs) views; h before the first step is h0 or 0.

    gated=False: x, y = a, b and h_t = a_t h_{t-1} + b_t (out may be b).
    gated=True: x, y = z, c and h_t = h_{t-1} + z_t (c_t - h_{t-1}) = lerp(h_{t-1}, c_t, z_t), the minGRU
    step as one op (a = 1 - z and b = z c never stored)."""
    T = x.shape[1]
    L = chunk_len(T)
    K, r = divmod(T, L)
    s0 = r if reverse else 0  # full blocks cover [s0, s0 + K*L); the r leftover steps run last
    X = x[:, s0 : s0 + K * L].unflatten(1, (K, L))
    Xs = X.unbind(2)
    Ys = y[:, s0 : s0 + K * L].unflatten(1, (K, L)).unbind(2)
    Os = out[:, s0 : s0 + K * L].unflatten(1, (K, L)).unbind(2)
    steps = list(range(L - 1, -1, -1) if reverse else range(L))
    end, decay = _block_ends(X, Xs, Ys, steps, gated)
    S = _block_entries(X, end, decay, reverse, h0)
    # 3. every block's steps from its entry state (Y is read before O is written, so out may be y)
    h = S[:, 1:] if reverse else S[:, :K]
    for l in steps:
        _step(h, Xs[l], Ys[l], Os[l], gated)
        h = Os[l]
    c = S[:, 0] if reverse else S[:, K]
    for t in range(r - 1, -1, -1) if reverse else range(K * L, T):  # the leftover steps
        _step(c, x[:, t], y[:, t], out[:, t], gated)
        c = out[:, t]


def _step(h: Tensor, xs: Tensor, ys: Tensor, into: Tensor, gated: bool) -> None:
    """One step of every block at once, into `into`: a h + b, or lerp(h, c, z) in the gated form."""
    if gated:
        torch.lerp(h, ys, xs, out=into)
    else:
        torch.addcmul(ys, xs, h, out=into)


def _block_ends(
    X: Tensor, Xs: tuple[Tensor, ...], Ys: tuple[Tensor, ...], steps: list[int], gated: bool
) -> tuple[Tensor, Tensor]:
    """1. Each block's end value from a zero state, and the product of its a's (its decay): (P, K, R, hs) each."""
    first = steps[0]
    if gated:
        end = torch.mul(Xs[first], Ys[first])
        decay = 1.0 - Xs[first]
        for l in steps[1:]:
            _step(end, Xs[l], Ys[l], end, gated)
            torch.addcmul(decay, decay, Xs[l], value=-1.0, out=decay)  # decay *= 1 - z
    else:
        end = Ys[first].clone()
        for l in steps[1:]:
            _step(end, Xs[l], Ys[l], end, gated)
        decay = X.prod(dim=2)
    return end, decay


def _block_entries(X: Tensor, end: Tensor, decay: Tensor, reverse: bool, h0: Tensor | None) -> Tensor:
    """2. The state entering each block, (P, K + 1, R, hs): S[k+1] = end[k] + decay[k] * S[k], from h0 or 0.

    Reversed, the chain runs down from S[K] and block k is entered with S[k+1]."""
    K = X.shape[1]
    S = X.new_empty((X.shape[0], K + 1) + X.shape[3:])
    Ss, ends, decays = S.unbind(1), end.unbind(1), decay.unbind(1)
    start = Ss[K] if reverse else Ss[0]
    start.zero_() if h0 is None else start.copy_(h0)
    for k in range(K - 1, -1, -1) if reverse else range(K):
        torch.addcmul(ends[k], decays[k], Ss[k + 1] if reverse else Ss[k], out=Ss[k] if reverse else Ss[k + 1])
    return S


def _both(x: Tensor, y: Tensor, out: Tensor | None, gated: bool) -> Tensor:
    out = torch.empty_like(x) if out is None else out
    if x.shape[1] > 0:
        _scan_dir(x[..., 0, :], y[..., 0, :], out[..., 0, :], False, gated)
        _scan_dir(x[..., 1, :], y[..., 1, :], out[..., 1, :], True, gated)
    return out


def scan(a: Tensor, b: Tensor, out: Tensor | None = None) -> Tensor:
    """h_t = a_t h_{t-1} + b_t over (P, T, R, 2, hs) tensors (direction 0 forward in time, 1 backward), into out (may be b)."""
    return _both(a, b, out, gated=False)


def scan_gated(z: Tensor, c: Tensor, out: Tensor | None = None) -> Tensor:
    """h_t = (1 - z_t) h_{t-1} + z_t c_t over (P, T, R, 2, hs) tensors, directions as in `scan`."""
    return _both(z, c, out, gated=True)


def _scan_transposed(a: Tensor, dh: Tensor, g: Tensor) -> None:
    """The adjoint scan into g: g_t = dh_t + a_{t+1} g_{t+1} (direction 0), dh_t + a_{t-1} g_{t-1} (direction 1)."""
    T = dh.shape[1]
    g[:, T - 1, :, 0] = dh[:, T - 1, :, 0]
    g[:, 0, :, 1] = dh[:, 0, :, 1]
    if T > 1:
        _scan_dir(a[:, 1:, :, 0], dh[:, : T - 1, :, 0], g[:, : T - 1, :, 0], True, False, g[:, T - 1, :, 0])
        _scan_dir(a[:, : T - 1, :, 1], dh[:, 1:, :, 1], g[:, 1:, :, 1], False, False, g[:, 0, :, 1])


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

    Forward and backward each allocate what they return or save plus one (M, 2*hs) scratch tensor."""

    @staticmethod
    def forward(ctx, G: Tensor, shape: tuple[int, int, int]) -> Tensor:  # type: ignore[override]
        k, c = _split(G, shape)
        dtype = torch.promote_types(G.dtype, torch.float32)
        z = _sigmoid_into(k, torch.empty(k.shape, dtype=dtype, device=G.device))
        h = scan_gated(z, c.to(dtype))
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
    """`scan` as one step per time step (both directions per step): the form tracing and export record."""
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


@torch.compiler.disable  # its loops depend on the sequence length: compiling would recompile per size
def mingru_scan(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Hidden states of a bidirectional minGRU sweep from its gate pre-activations (see MinGRUScan)."""
    return MinGRUScan.apply(G, shape)


def mingru_loop(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """`mingru_scan` as a step loop that TorchScript tracing and ONNX export record with dynamic length."""
    k, c = _split(G, shape)
    dtype = torch.promote_types(G.dtype, torch.float32)
    z = torch.sigmoid(k.to(dtype))
    return scan_loop(1.0 - z, z * c.to(dtype)).reshape(G.shape[0], -1)


def unrolled_block_len(T: int) -> int:
    """Block length L minimising the op count of `mingru_unrolled` on length-T sequences: about 10 ops
    per step of a block (two gathers, the gates, the state, the decay, the output) and 2 per block."""
    return min(range(1, max(T, 1) + 1), key=lambda L: (10 * L + 2 * ((T + L - 1) // L), L))


@functools.lru_cache(maxsize=64)
def _unrolled_index(P: int, T: int, R: int, L: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices for `mingru_unrolled`, with K = ceil(T/L) blocks of L scan steps:

    - into (M*4, hs) pre-activation rows [k_f, k_b, c_f, c_b] per position: (L, 2 gate, 2 direction, P,
      K, R), step l of every block, the backward direction reversed in time. Steps past T (the last
      block's tail) read a real row: nothing that depends on them is kept.
    - into the (L, 2, P, K, R) stacked hidden states: (P, T, R, 2), the output's rows."""
    K = (T + L - 1) // L
    l, g, d, p, k, r = np.ix_(range(L), range(2), range(2), range(P), range(K), range(R))
    step = np.minimum(k * L + l, T - 1)
    t = np.where(d == 0, step, T - 1 - step)
    gather = ((p * T + t) * R + r) * 4 + 2 * g + d
    p, t, r, d = np.ix_(range(P), range(T), range(R), range(2))
    step = np.where(d == 0, t, T - 1 - t)
    out = (((step % L * 2 + d) * P + p) * K + step // L) * R + r
    return gather.astype(np.int64), out.reshape(-1).astype(np.int64)


def mingru_unrolled(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """`mingru_scan` (forward only) without a loop construct, for exports at a FIXED input size.

    The blocked scan again, functional and both directions in every op, its Python loops unrolled by
    the tracer into about 10L + 2K plain ops per sweep (L ~ sqrt(T/5), K = ceil(T/L)) instead of an
    ONNX Loop of T dependent steps that ONNX Runtime runs one at a time. Built for few passes over
    memory: each step's gates are gathered from G straight into place (K blocks of L steps; the
    backward direction reversed in time), and one gather puts the states back in G's row order:
    1. every block's steps from a zero state: local states e_l and decays D_l = a_1...a_l, a = 1 - z;
    2. the state S entering each block, chaining the block ends (K steps on small tensors);
    3. h_l = e_l + D_l * S.
    Only products and sums, as in the step loop: saturated gates (a = 0 or 1) and decays that
    underflow to 0 stay exact at any T. The step and block counts are fixed at the trace size, so the
    recorded graph is valid at that size only (a static export); `mingru_loop` is for dynamic ones."""
    P, T, R = (int(v) for v in shape)
    hs = G.shape[1] // 4
    dtype = torch.promote_types(G.dtype, torch.float32)
    L = unrolled_block_len(T)
    K = (T + L - 1) // L
    gather, out = _unrolled_index(P, T, R, L)

    def index(i: np.ndarray) -> Tensor:  # a constant of the traced graph
        t = torch.from_numpy(i.reshape(-1))
        return t if G.device.type == "cpu" else t.to(G.device)

    rows = G.reshape(-1, hs) if G.dtype == dtype else G.reshape(-1, hs).to(dtype)
    piece = (2, P, K, R, hs)
    es, ds = [], []
    for l in range(L):  # 1.
        k = rows.index_select(0, index(gather[l, 0])).view(piece)
        c = rows.index_select(0, index(gather[l, 1])).view(piece)
        z = torch.sigmoid(k)
        a, b = 1.0 - z, z * c
        es.append(b if l == 0 else a * es[-1] + b)
        ds.append(a if l == 0 else ds[-1] * a)
    ends, decays = es[-1].split(1, 2), ds[-1].split(1, 2)  # 2.
    S = [torch.zeros_like(ends[0])] + ([ends[0]] if K > 1 else [])
    for j in range(1, K - 1):
        S.append(ends[j] + decays[j] * S[-1])
    S_all = torch.cat(S, 2)
    h = torch.stack([e + d * S_all for e, d in zip(es, ds)])  # 3. (L, 2, P, K, R, hs)
    return h.reshape(-1, hs).index_select(0, index(out)).reshape(G.shape[0], 2 * hs)
