"""ReNet layer: two bidirectional RNN sweeps (down/up each column, then left/right each row).

After both sweeps every output position has seen the whole input. All columns (then all rows)
of all images form one batch of sequences.

Two implementations share the same `nn.GRU`/`nn.LSTM` parameters (so checkpoints do not care):
- "rnn": one `nn.GRU`/`nn.LSTM` call per sweep; cuDNN on CUDA, and what TorchScript/ONNX export traces.
- "fused" (CPU default): the input projections of every step and both directions in one matrix
  product, then a TorchScript loop whose step is one batched matmul for both directions plus a few
  fused gate ops (tanh is computed as 2*sigmoid(2x)-1, several times cheaper on CPU). Features stay in
  one (H, N, W, C) row layout, so neither sweep needs a permute copy, and the output is a strided
  NCHW view of it that the next ReNet layer reads without copying. GRU training has a hand-written
  backward (one matmul per step, weight gradients as two large matmuls at the end); LSTM training
  falls back to the "rnn" path. Where a C++ compiler is available, the GRU step loops run as C++
  (gru_loops.cpp, built on first use by gru_ext.py; RESEG_CPP_LOOPS=0 keeps the TorchScript ones):
  the same arithmetic with each step's gate math as one vectorised pass instead of ~15 ATen ops.

The "mingru" cell (Feng et al. 2024, "Were RNNs All We Needed?") has gates that read the input only:
per direction z = sigmoid(W_z x + b_z), c = W_c x + b_c, h_t = (1 - z_t) h_{t-1} + z_t c_t. A sweep is
then one matrix product for every step and both directions and one blocked parallel scan (scan.py)
over every column (then row) of every image, in float32 (under autocast only the matrix products run
in low precision). Its rows stay in (N, H, W) order, so its output is a channels-last NCHW view. On CUDA
the scan is the fused Triton kernels of scan_triton.py (one launch per sweep and direction, forward and
backward); RESEG_SCAN=blocked picks the blocked scan there for comparison.
Tracing and export record the scan as a step loop (`impl="rnn"` runs that loop too): an ONNX Loop, valid
at every input size (dynamic exports, TorchScript). Inside `static_export()` they record the scan
unrolled instead (scan.mingru_unrolled: plain ops, no Loop, valid at the traced size only), for ONNX
exports whose input size is fixed, where ONNX Runtime would otherwise run the Loop one step at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
import warnings
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import reseg.models.gru_ext as gru_ext
from reseg.errors import ResegError
from reseg.models.scan import mingru_loop, mingru_scan, mingru_unrolled

_STATIC_EXPORT = contextvars.ContextVar("reseg_static_export", default=False)


@contextlib.contextmanager
def static_export() -> Iterator[None]:
    """For the duration, the input size of what is traced or exported is fixed: minGRU sweeps record the
    unrolled scan (no Loop node, valid at that size only) where they would record the step loop.

    Use it around a static export (torch.onnx.export without dynamic axes); a dynamic export or a
    TorchScript trace meant for other sizes must be made outside it."""
    token = _STATIC_EXPORT.set(True)
    try:
        yield
    finally:
        _STATIC_EXPORT.reset(token)


def in_static_export() -> bool:
    """Whether a `static_export()` context is open (in this thread or task)."""
    return _STATIC_EXPORT.get()


class MinGRU(nn.Module):
    """Bidirectional minGRU parameters: `weight` rows are [z fwd, z bwd, c fwd, c bwd], hidden_size each."""

    def __init__(self, input_size: int, hidden_size: int, bidirectional: bool = True) -> None:
        super().__init__()
        if not bidirectional:
            raise ResegError("ReNet's minGRU is always bidirectional")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight = nn.Parameter(torch.empty(4 * hidden_size, input_size))
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        for chunk in self.weight.data.chunk(4, 0):  # Xavier per gate and direction, zero biases (z = 0.5)
            nn.init.xavier_uniform_(chunk)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bidirectional=True"

    def project(self, x: Tensor) -> Tensor:
        """(N, S, C) -> (M = N*S, 4*hidden) gate pre-activations; an NCHW input's rows need no copy."""
        n, _, c = x.shape
        if n == 1 or x.stride(0) == x.shape[1] * x.stride(1):  # (N*S, C) is a view
            return F.linear(x.reshape(-1, c), self.weight, self.bias)
        w = self.weight.t().expand(n, c, self.weight.shape[0])
        return torch.baddbmm(self.bias, x, w).view(-1, self.weight.shape[0])

    def sweep(self, x: Tensor, shape: tuple[int, int, int], loop: bool = False) -> Tensor:
        """(N, S, C) rows in (P, T, R) order, sequences along T -> (M, 2*hidden) hidden states.

        loop=True: the forms a tracer can record, the step loop (any size), or inside `static_export()`
        the unrolled scan (this size only).

        Under autocast the projection runs in low precision and the recurrence in float32 on every path;
        the blocked scan returns float32, the Triton kernels the projection's dtype."""
        G = self.project(x)
        if loop:
            return mingru_unrolled(G, shape) if in_static_export() else mingru_loop(G, shape)
        if scan_impl(G) == "triton":
            from reseg.models.scan_triton import mingru_scan_fused  # imports triton: only for a CUDA sweep

            return mingru_scan_fused(G, shape)
        return mingru_scan(G, shape)


SCAN_ENV = "RESEG_SCAN"
SCAN_IMPLS = ("auto", "triton", "blocked")


def scan_impl(G: Tensor) -> str:
    """Which minGRU scan a sweep of G runs: RESEG_SCAN=triton|blocked, or auto (Triton on CUDA, else blocked).

    Under torch.compile the choice is auto's (the Triton kernels are a custom op the compiler traces)."""
    if torch.compiler.is_compiling():
        return "triton" if G.is_cuda else "blocked"
    choice = os.environ.get(SCAN_ENV, "auto").strip().lower() or "auto"
    if choice not in SCAN_IMPLS:
        raise ResegError(f"{SCAN_ENV}={choice!r} is not a minGRU scan; valid choices: {', '.join(SCAN_IMPLS)}")
    if choice == "blocked" or (choice == "auto" and not G.is_cuda):
        return "blocked"
    from reseg.models.scan_triton import triton_available

    why_not = triton_available()
    if why_not and choice == "triton":
        raise ResegError(f"{SCAN_ENV}=triton: {why_not}")
    return "blocked" if why_not else "triton"


CELLS = {"gru": nn.GRU, "lstm": nn.LSTM, "mingru": MinGRU}
# Feature-map positions per chunk of a CPU minGRU batch (see ReNet._forward_mingru): about two 90x120 maps,
# the fastest of the chunk sizes timed (docs/performance.md, "The minGRU cell").
MINGRU_CHUNK_POSITIONS = 24576
IMPLS = ("auto", "fused", "rnn")


def _init_rnn(rnn: nn.RNNBase) -> None:
    """Orthogonal recurrent weights (per gate), Xavier input weights, zero biases."""
    gates = 3 if isinstance(rnn, nn.GRU) else 4
    for name, param in rnn.named_parameters():
        if name.startswith("weight_hh"):
            for chunk in param.data.chunk(gates, 0):
                nn.init.orthogonal_(chunk)
        elif name.startswith("weight_ih"):
            for chunk in param.data.chunk(gates, 0):
                nn.init.xavier_uniform_(chunk)
        elif name.startswith("bias"):
            nn.init.zeros_(param)


# --------------------------------------------------------------------------------------------------
# Fused CPU sweeps. Buffers are (M, 2*width) with rows in (H, N, W) order and the forward direction's
# columns before the backward one's. At step s the forward direction is at time s and the backward
# one at time T-1-s; `_dir_view` returns both as one (2, B, width) strided view, so every step is one
# op per gate for both directions. A view's direction stride must be positive, so past the crossing
# point the view holds (backward, forward) and the caller swaps its weights and state to match.
# --------------------------------------------------------------------------------------------------


def _dir_view(
    buf: Tensor, s: int, T: int, t_stride: int, b_size: int, b_stride: int, width: int
) -> tuple[Tensor, bool]:
    fwd = s * t_stride
    bwd = (T - 1 - s) * t_stride + width
    base = buf.storage_offset()
    if bwd > fwd:
        return buf.as_strided([2, b_size, width], [bwd - fwd, b_stride, 1], base + fwd), False
    return buf.as_strided([2, b_size, width], [fwd - bwd, b_stride, 1], base + bwd), True


def _gru_forward_loop(
    G: Tensor,
    whhT: Tensor,
    bhh: Tensor,
    out: Tensor,
    ghn_buf: Tensor | None,
    T: int,
    tsg: int,
    bsg: int,
    tso: int,
    bso: int,
    B: int,
    hs: int,
) -> None:
    """G: input projections (n rows pre-scaled by 2), overwritten with the gates r, z, n; out: hidden states."""
    whhT_sw, bhh_sw = whhT.flip(0), bhh.flip(0)
    h = torch.zeros([2, B, hs], dtype=G.dtype, device=G.device)
    gh = torch.empty([2, B, 3 * hs], dtype=G.dtype, device=G.device)
    swapped = False
    for s in range(T):
        gi, sw = _dir_view(G, s, T, tsg, B, bsg, 3 * hs)
        hv, _ = _dir_view(out, s, T, tso, B, bso, hs)
        if sw != swapped:
            h = h.flip(0)
            swapped = sw
        if sw:
            torch.baddbmm(bhh_sw, h, whhT_sw, out=gh)
        else:
            torch.baddbmm(bhh, h, whhT, out=gh)
        rz = gi[:, :, : 2 * hs]
        rz.add_(gh[:, :, : 2 * hs]).sigmoid_()
        gn = gi[:, :, 2 * hs :]
        gn.addcmul_(rz[:, :, :hs], gh[:, :, 2 * hs :]).sigmoid_().mul_(2.0).sub_(1.0)  # tanh
        torch.lerp(gn, h, rz[:, :, hs:], out=hv)
        if ghn_buf is not None:
            gv, _ = _dir_view(ghn_buf, s, T, tso, B, bso, hs)
            gv.copy_(gh[:, :, 2 * hs :])
        h = hv


def _gru_backward_loop(
    dY: Tensor,
    G: Tensor,
    ghn_buf: Tensor,
    out: Tensor,
    whhT: Tensor,
    T: int,
    tsg: int,
    bsg: int,
    tso: int,
    bso: int,
    B: int,
    hs: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Backprop through time. Returns d(G), d(whhT) and d(bhh) for the pre-scaled weights."""
    g3 = 3 * hs
    dG = torch.empty_like(G)
    dgh_buf = torch.zeros_like(G)  # d(gh) of step s, stored at the row of its h_prev (for dW_hh)
    dgh0 = torch.zeros([2, B, g3], dtype=G.dtype, device=G.device)
    whh = whhT.transpose(1, 2).contiguous()
    whh_sw = whh.flip(0)
    carry = torch.zeros([2, B, hs], dtype=G.dtype, device=G.device)
    scratch = torch.empty([2, B, g3], dtype=G.dtype, device=G.device)
    swapped = False
    first = True
    for s in range(T - 1, -1, -1):
        gv, sw = _dir_view(G, s, T, tsg, B, bsg, g3)
        if first:
            swapped = sw
            first = False
        elif sw != swapped:
            carry = carry.flip(0)
            swapped = sw
        dyv, _ = _dir_view(dY, s, T, tso, B, bso, hs)
        ghn, _ = _dir_view(ghn_buf, s, T, tso, B, bso, hs)
        dgv, _ = _dir_view(dG, s, T, tsg, B, bsg, g3)
        r, z, n = gv[:, :, :hs], gv[:, :, hs : 2 * hs], gv[:, :, 2 * hs :]
        dh = dyv + carry
        dhz = dh * z
        dn = dh - dhz
        if s > 0:
            hp, swp = _dir_view(out, s - 1, T, tso, B, bso, hs)
            if swp != sw:
                hp = hp.flip(0)
            torch.mul(dh, hp - n, out=scratch[:, :, hs : 2 * hs])
        else:
            torch.mul(dh, n, out=scratch[:, :, hs : 2 * hs]).neg_()
        # n = 2*sigmoid(a') - 1 with a' the pre-scaled pre-activation: dn/da' = (1 - n^2) / 2
        da = torch.addcmul(dn * 0.5, dn, n * n, value=-0.5)
        torch.mul(da, ghn, out=scratch[:, :, :hs])
        rz = gv[:, :, : 2 * hs]
        scratch[:, :, : 2 * hs].mul_(torch.addcmul(rz, rz, rz, value=-1.0))
        torch.mul(da, r, out=scratch[:, :, 2 * hs :])
        dgv[:, :, : 2 * hs].copy_(scratch[:, :, : 2 * hs])
        dgv[:, :, 2 * hs :].copy_(da)
        if s > 0:
            dghv, swd = _dir_view(dgh_buf, s - 1, T, tsg, B, bsg, g3)
            dghv.copy_(scratch.flip(0) if swd != sw else scratch)
        else:
            dgh0.copy_(scratch)  # step 0 is always in (forward, backward) order
        carry = torch.baddbmm(dhz, scratch, whh_sw if sw else whh)
    M = G.shape[0]
    dbhh = dgh_buf.view(M, 2, g3).sum(0) + dgh0.sum(1)
    dwhhT = torch.stack([out[:, :hs].t() @ dgh_buf[:, :g3], out[:, hs:].t() @ dgh_buf[:, g3:]])
    return dG, dwhhT, dbhh.unsqueeze(1)


def _lstm_forward_loop(
    G: Tensor, whhT: Tensor, out: Tensor, T: int, tsg: int, bsg: int, tso: int, bso: int, B: int, hs: int
) -> None:
    """Inference-only LSTM sweep; the g rows of the weights are pre-scaled by 2 (tanh via sigmoid)."""
    whhT_sw = whhT.flip(0)
    h = torch.zeros([2, B, hs], dtype=G.dtype, device=G.device)
    c = torch.zeros([2, B, hs], dtype=G.dtype, device=G.device)
    swapped = False
    for s in range(T):
        gi, sw = _dir_view(G, s, T, tsg, B, bsg, 4 * hs)
        hv, _ = _dir_view(out, s, T, tso, B, bso, hs)
        if sw != swapped:
            h, c = h.flip(0), c.flip(0)
            swapped = sw
        if sw:
            gi.baddbmm_(h, whhT_sw)
        else:
            gi.baddbmm_(h, whhT)
        gi.sigmoid_()  # b_hh is folded into G's bias
        g = gi[:, :, 2 * hs : 3 * hs].mul_(2.0).sub_(1.0)
        c = torch.addcmul(c * gi[:, :, hs : 2 * hs], gi[:, :, :hs], g)
        torch.mul(gi[:, :, 3 * hs :], torch.sigmoid(c * 2.0).mul_(2.0).sub_(1.0), out=hv)
        h = hv


def _script(fn):
    """TorchScript the step loops (no Python interpreter per step); fall back to Python if unavailable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(fn)
    except Exception:  # pragma: no cover - TorchScript removed or sources missing
        return fn


_dir_view = _script(_dir_view)
_gru_forward_loop = _script(_gru_forward_loop)
_gru_backward_loop = _script(_gru_backward_loop)
_lstm_forward_loop = _script(_lstm_forward_loop)


def _cpp_loops(t: Tensor):
    """The C++ step loops for CPU tensors where they are built, else None (the TorchScript loops run)."""
    return gru_ext.load() if t.device.type == "cpu" else None


def _run_gru_forward(
    G: Tensor, whhT: Tensor, bhh: Tensor, out: Tensor, ghn: Tensor | None, geom: tuple[int, ...], hs: int
) -> None:
    """The C++ step loop where it is built (CPU), else the TorchScript one: same buffers, same results."""
    ext = _cpp_loops(G)
    if ext is not None:
        ext.gru_forward(G, whhT, bhh, out, G.new_empty(0) if ghn is None else ghn, *geom, hs)
    else:
        _gru_forward_loop(G, whhT, bhh, out, ghn, *geom, hs)


def _run_gru_backward(
    dY: Tensor, G: Tensor, ghn: Tensor, out: Tensor, whhT: Tensor, geom: tuple[int, ...], hs: int
) -> tuple[Tensor, Tensor, Tensor]:
    ext = _cpp_loops(G)
    if ext is not None:
        return tuple(ext.gru_backward(dY, G, ghn, out, whhT, *geom, hs))
    return _gru_backward_loop(dY, G, ghn, out, whhT, *geom, hs)


def _geometry(n: int, h: int, w: int, vertical: bool, gates: int, hs: int) -> tuple[int, ...]:
    """(T, tsg, bsg, tso, bso, B) of a sweep over rows in (H, N, W) order."""
    g, o = 2 * gates * hs, 2 * hs  # row widths of the gate and output buffers
    if vertical:  # time = H (outermost), batch = (N, W)
        return h, n * w * g, g, n * w * o, o, n * w
    return w, g, w * g, o, w * o, h * n  # time = W (innermost), batch = (H, N)


class _FusedGRUSweep(torch.autograd.Function):
    """One bidirectional GRU sweep over (M, C) rows: (M, C) -> (M, 2*hidden)."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        w_ih: Tensor,
        b_ih: Tensor,
        whhT: Tensor,
        bhh: Tensor,  # type: ignore[override]
        geom: tuple[int, ...],
    ) -> Tensor:
        hs = whhT.shape[1]
        G = torch.addmm(b_ih, x, w_ih.t())
        out = x.new_empty(x.shape[0], 2 * hs)
        ghn = x.new_empty(x.shape[0], 2 * hs)
        _run_gru_forward(G, whhT, bhh, out, ghn, geom, hs)
        ctx.save_for_backward(x, w_ih, whhT, G, ghn, out)
        ctx.geom = geom
        return out

    @staticmethod
    def backward(ctx, dY: Tensor):  # type: ignore[override]
        x, w_ih, whhT, G, ghn, out = ctx.saved_tensors
        dG, dwhhT, dbhh = _run_gru_backward(dY.contiguous(), G, ghn, out, whhT.contiguous(), ctx.geom, whhT.shape[1])
        dx = dG @ w_ih if ctx.needs_input_grad[0] else None
        return dx, dG.t() @ x, dG.sum(0), dwhhT, dbhh, None


def _stacked(rnn: nn.RNNBase, gates: int, scaled_gate: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both directions' weights stacked, with the rows of one gate scaled by 2 (tanh = 2*sigmoid(2x)-1)."""
    hs = rnn.hidden_size
    p = rnn.weight_ih_l0
    scale = torch.ones(gates * hs, dtype=p.dtype, device=p.device)
    scale[scaled_gate * hs : (scaled_gate + 1) * hs] = 2.0
    w_ih = torch.cat([rnn.weight_ih_l0, rnn.weight_ih_l0_reverse]) * scale.repeat(2)[:, None]
    b_ih = torch.cat([rnn.bias_ih_l0, rnn.bias_ih_l0_reverse]) * scale.repeat(2)
    whhT = (torch.stack([rnn.weight_hh_l0, rnn.weight_hh_l0_reverse]) * scale[:, None]).transpose(1, 2)
    bhh = (torch.stack([rnn.bias_hh_l0, rnn.bias_hh_l0_reverse]) * scale).unsqueeze(1)
    return w_ih, b_ih, whhT, bhh


_WORKSPACE = threading.local()


def _workspace(slot: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A per-thread scratch tensor reused across inference calls.

    Fresh 100 MB temporaries cost page faults on every call (about a third of the time of the matmul
    that fills them on this CPU); reusing them keeps ReNet inference matmul-bound.
    """
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    numel = 1
    for d in shape:
        numel *= d
    key = (slot, like.device, like.dtype)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        with torch.inference_mode(False):  # a normal tensor, usable inside and outside inference mode
            buf = torch.empty(numel, device=like.device, dtype=like.dtype)
        cache[key] = buf
    return buf[:numel].view(shape)


def clear_workspace() -> None:
    """Free the calling thread's cached ReNet inference buffers."""
    _WORKSPACE.__dict__.pop("buffers", None)


def _fused_sweep(rnn: nn.RNNBase, x: Tensor, geom: tuple[int, ...], lstm: bool, out: Tensor | None) -> Tensor:
    """One sweep; `out` is where inference writes its result (None: a new tensor)."""
    hs = rnn.hidden_size
    train = torch.is_grad_enabled() and (x.requires_grad or rnn.weight_ih_l0.requires_grad)
    if lstm or not train:
        with torch.no_grad():
            w_ih, b_ih, whhT, bhh = _stacked(rnn, 4 if lstm else 3, 2)
            G = torch.addmm(
                b_ih + bhh.flatten() if lstm else b_ih,
                x,
                w_ih.t(),
                out=_workspace("gates", (x.shape[0], w_ih.shape[0]), x),
            )
            out = x.new_empty(x.shape[0], 2 * hs) if out is None else out
            if lstm:
                _lstm_forward_loop(G, whhT.contiguous(), out, *geom, hs)
            else:
                _run_gru_forward(G, whhT.contiguous(), bhh, out, None, geom, hs)
        return out
    w_ih, b_ih, whhT, bhh = _stacked(rnn, 3, 2)
    return _FusedGRUSweep.apply(x, w_ih, b_ih, whhT.contiguous(), bhh, geom)


class ReNet(nn.Module):
    """(N, C, H, W) -> (N, 2*hidden, ceil(H/p), ceil(W/p)) with whole-image context.

    `impl` picks the implementation: "auto" (fused on CPU, nn.GRU/LSTM on CUDA, while tracing or
    exporting, and for LSTM training), "fused" or "rnn". Both give the same outputs to float precision.
    cell="mingru" always runs the parallel scan, except with impl="rnn" or while tracing/exporting,
    where it runs the equal step loop, or inside `static_export()` the equal unrolled scan.
    """

    def __init__(
        self, in_channels: int, hidden_size: int, patch_size: int = 1, cell: str = "gru", impl: str = "auto"
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ResegError(f"unknown ReNet cell {cell!r}; valid choices: {', '.join(CELLS)}")
        if patch_size < 1:
            raise ResegError(f"ReNet patch_size must be >= 1, got {patch_size}")
        if impl not in IMPLS:
            raise ResegError(f"unknown ReNet impl {impl!r}; valid choices: {', '.join(IMPLS)}")
        self.patch_size, self.hidden_size, self.cell, self.impl = patch_size, hidden_size, cell, impl
        self.out_channels = 2 * hidden_size
        rnn = CELLS[cell]
        self.vertical = rnn(in_channels * patch_size**2, hidden_size, bidirectional=True)
        self.horizontal = rnn(2 * hidden_size, hidden_size, bidirectional=True)
        if cell != "mingru":
            _init_rnn(self.vertical)
            _init_rnn(self.horizontal)

    def extra_repr(self) -> str:
        return f"patch_size={self.patch_size}, cell={self.cell}, impl={self.impl}"

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Non-overlapping p x p patches flattened into channels; zero-pads ragged borders."""
        p = self.patch_size
        if p == 1:
            return x
        pad_h, pad_w = (-x.shape[2]) % p, (-x.shape[3]) % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        n, c, h, w = x.shape
        x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4)
        return x.reshape(n, c * p * p, h // p, w // p)

    def use_fused(self, x: torch.Tensor) -> bool:
        """Whether this call takes the fused CPU GRU/LSTM path (minGRU has its own)."""
        if self.impl == "rnn" or self.cell == "mingru":
            return False
        if (
            torch.jit.is_scripting()
            or torch.jit.is_tracing()
            or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_compiling()
        ):
            return False
        if (
            self.cell == "lstm"
            and torch.is_grad_enabled()
            and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        ):
            return False  # no fused LSTM backward: LSTM training takes nn.LSTM
        if self.impl == "fused":
            return True
        return x.device.type == "cpu" and x.dtype == torch.float32

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x)
        if self.cell == "mingru":
            return self._forward_mingru(x)
        if self.use_fused(x):
            return self._forward_fused(x)
        return self._forward_rnn(x)

    def _forward_mingru(self, x: torch.Tensor) -> torch.Tensor:
        """Both sweeps on (N, H, W, C) rows (free for channels-last input); a channels-last NCHW view out.

        On the CPU a large batch runs a few images at a time: every sequence lies within one image, and
        the scan's passes are memory-bound once a chunk's states outgrow the cache."""
        n, c, h, w = x.shape
        loop = (
            self.impl == "rnn" or torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
        )
        per_chunk = max(1, MINGRU_CHUNK_POSITIONS // max(1, h * w))
        if not loop and x.device.type == "cpu" and n > per_chunk:
            return torch.cat([self._mingru_sweeps(part, False) for part in x.split(per_chunk)], 0)
        return self._mingru_sweeps(x, loop)

    def _mingru_sweeps(self, x: torch.Tensor, loop: bool) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n, h * w, c)  # a view for NCHW and for channels-last input
        if loop:  # tracing: one reshape that is valid at every size (ONNX has no strides)
            rows = rows.reshape(1, n * h * w, c)
        mid = self.vertical.sweep(rows, (n, h, w), loop)  # sequences along H, one per (image, column)
        out = self.horizontal.sweep(mid.unsqueeze(0), (n * h, w, 1), loop)  # along W, one per (image, row)
        return out.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)

    def _forward_rnn(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        # Vertical sweep: sequences run along H, batch = every column of every image.
        cols = x.permute(2, 0, 3, 1).reshape(h, n * w, c)
        cols, _ = self.vertical(cols)
        # Horizontal sweep: sequences run along W, batch = every row of every image.
        rows = cols.reshape(h, n, w, -1).permute(2, 1, 0, 3).reshape(w, n * h, -1)
        rows, _ = self.horizontal(rows)
        return rows.reshape(w, n, h, -1).permute(1, 3, 2, 0).contiguous()

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        lstm = self.cell == "lstm"
        gates = 4 if lstm else 3
        if torch.is_autocast_enabled(x.device.type):  # the recurrence runs in float32 under autocast
            x = x.float()
        with torch.autocast(x.device.type, enabled=False):
            # Rows in (H, N, W) order; free when x is the output of a previous fused ReNet layer.
            rows = x.permute(2, 0, 3, 1)
            infer = not (torch.is_grad_enabled() and (x.requires_grad or self.vertical.weight_ih_l0.requires_grad))
            if infer and not rows.is_contiguous():
                rows = _workspace("input", tuple(rows.shape), x).copy_(rows)
            rows = rows.reshape(h * n * w, c)
            mid = _workspace("mid", (h * n * w, self.out_channels), x) if infer else None
            mid = _fused_sweep(self.vertical, rows, _geometry(n, h, w, True, gates, self.hidden_size), lstm, mid)
            out = _fused_sweep(self.horizontal, mid, _geometry(n, h, w, False, gates, self.hidden_size), lstm, None)
        # A strided NCHW view of the (H, N, W, C) rows; call .contiguous() if a dense tensor is needed.
        return out.view(h, n, w, self.out_channels).permute(1, 3, 0, 2)
