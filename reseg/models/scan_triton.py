"""minGRU's bidirectional sweep as fused Triton kernels: one launch per sweep, forward and backward.

The layout is the one `scan.py` uses: gate pre-activations G (M, 4*hs), rows in (P, T, R) order, columns
[k fwd, k bwd, c fwd, c bwd]; hidden states H (M, 2*hs), columns [h fwd, h bwd]. The sequence of row
(p, r) runs along T with a stride of R rows, so the vertical sweep (P, T, R) = (N, H, W) and the
horizontal one (N*H, W, 1) read the same (N, H, W) row order by strides: nothing is permuted or copied.

One launch per sweep covers both directions of every sequence: a program owns one sequence, one
direction and a block of channels. It walks the sequence in tiles of BLOCK_T steps: each tile's k and c
are loaded at once, z = sigmoid(k) and the pairs (1 - z, z c) are formed in registers (z and c are never
written out), a parallel associative scan inside the tile gives the tile's states from a zero start, and
the state carried in from the previous tile is added through the tile's cumulative decay. All arithmetic is float32 whatever G's dtype; H is written in G's dtype.
No logs and no divisions: saturated gates (z = 0 or 1) are exact.

The backward kernel runs the adjoint scan g_t = dh_t + (1 - z_{t+1}) g_{t+1} the other way in time,
in the same tiles, and writes dk = g z (1 - z) (c_t - h_{t-1}) and dc = g z straight into dG.

`mingru_scan_triton` is a `torch.library` custom op (reseg::mingru_scan) with its backward registered,
so it works under autograd, `torch.compile`, autocast and CUDA graphs. With TRITON_INTERPRET=1 set before
triton is imported, the kernels run on CPU tensors in Triton's interpreter (slow; what the tests use).
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    _TRITON_ERROR = ""
except ImportError as exc:  # pragma: no cover - depends on the install
    triton = None
    tl = None
    _TRITON_ERROR = f"triton cannot be imported ({exc})"


def triton_available() -> str:
    """'' when the kernels can run, else why not (for skips and errors)."""
    return _TRITON_ERROR


if triton is not None:

    @triton.jit
    def _combine(a_l, b_l, a_r, b_r):
        # (a_l, b_l) then (a_r, b_r): h -> a_r (a_l h + b_l) + b_r
        return a_l * a_r, a_r * b_l + b_r

    @triton.jit
    def _time_of(u, T, DIR):
        # the time index of step u of direction DIR (0 runs up T, 1 runs down T)
        return u + DIR * (T - 1 - 2 * u)

    @triton.jit
    def _sweep_fwd(G, H, T, R, HS, stride_g, stride_h, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        s = tl.program_id(0)  # sequence: (p, r)
        cb = tl.program_id(1)  # block of channels
        DIR = tl.program_id(2)  # direction
        row0 = (s // R) * T * R + s % R  # row of time 0
        ch = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        ch_ok = ch < HS
        steps = tl.arange(0, BLOCK_T)
        carry = tl.zeros([BLOCK_C], dtype=tl.float32)
        for u0 in range(0, T, BLOCK_T):
            u = u0 + steps
            ok = (u < T)[:, None] & ch_ok[None, :]
            rows = (row0 + _time_of(u, T, DIR) * R).to(tl.int64)
            g_off = rows[:, None] * stride_g + ch[None, :]
            k = tl.load(G + g_off + DIR * HS, mask=ok, other=0.0).to(tl.float32)
            c = tl.load(G + g_off + (2 + DIR) * HS, mask=ok, other=0.0).to(tl.float32)
            z = tl.sigmoid(k)
            a = tl.where(ok, 1.0 - z, 1.0)  # past the end: h carries through unchanged
            b = tl.where(ok, z * c, 0.0)
            A, B = tl.associative_scan((a, b), 0, _combine)
            h = B + A * carry[None, :]
            tl.store(H + rows[:, None] * stride_h + DIR * HS + ch[None, :], h.to(H.dtype.element_ty), mask=ok)
            carry = tl.sum(tl.where((steps == BLOCK_T - 1)[:, None], h, 0.0), axis=0)

    @triton.jit
    def _sweep_bwd(G, H, dH, dG, T, R, HS, stride_g, stride_h, stride_dh, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
        s = tl.program_id(0)
        cb = tl.program_id(1)
        DIR = tl.program_id(2)
        row0 = (s // R) * T * R + s % R
        ch = cb * BLOCK_C + tl.arange(0, BLOCK_C)
        ch_ok = ch < HS
        steps = tl.arange(0, BLOCK_T)
        carry = tl.zeros([BLOCK_C], dtype=tl.float32)  # g of the step after the tile
        for v0 in range(0, T, BLOCK_T):
            u = T - 1 - (v0 + steps)  # the adjoint walks the forward steps last to first
            valid = u >= 0
            ok = valid[:, None] & ch_ok[None, :]
            rows = (row0 + _time_of(u, T, DIR) * R).to(tl.int64)
            g_off = rows[:, None] * stride_g + ch[None, :]
            k = tl.load(G + g_off + DIR * HS, mask=ok, other=0.0).to(tl.float32)
            c = tl.load(G + g_off + (2 + DIR) * HS, mask=ok, other=0.0).to(tl.float32)
            dh = tl.load(dH + rows[:, None] * stride_dh + DIR * HS + ch[None, :], mask=ok, other=0.0).to(tl.float32)
            # the decay of the next forward step (u + 1): how g_{u+1} reaches h_u
            nxt_ok = ((u + 1) < T)[:, None] & ok
            rows_n = (row0 + _time_of(u + 1, T, DIR) * R).to(tl.int64)
            k_n = tl.load(G + rows_n[:, None] * stride_g + ch[None, :] + DIR * HS, mask=nxt_ok, other=0.0)
            a_n = tl.where(nxt_ok, 1.0 - tl.sigmoid(k_n.to(tl.float32)), tl.where(ok, 0.0, 1.0))
            A, Gs = tl.associative_scan((a_n, dh), 0, _combine)
            g = Gs + A * carry[None, :]
            carry = tl.sum(tl.where((steps == BLOCK_T - 1)[:, None], g, 0.0), axis=0)
            # h_{u-1}, the state the step started from (0 before the first step)
            prv_ok = (u > 0)[:, None] & ok
            rows_p = (row0 + _time_of(u - 1, T, DIR) * R).to(tl.int64)
            h_p = tl.load(H + rows_p[:, None] * stride_h + DIR * HS + ch[None, :], mask=prv_ok, other=0.0)
            z = tl.sigmoid(k)
            dc = g * z
            dk = dc * (1.0 - z) * (c - h_p.to(tl.float32))
            out = dG.dtype.element_ty
            tl.store(dG + g_off + DIR * HS, dk.to(out), mask=ok)
            tl.store(dG + g_off + (2 + DIR) * HS, dc.to(out), mask=ok)


def _blocks(T: int, hs: int) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_C, num_warps): tiles of up to 8 steps by up to 128 channels (powers of two, as Triton
    needs), 4 warps: the fastest of the tiles timed on an H200 (docs/gpu_notes.md)."""
    block_c = min(128, triton.next_power_of_2(max(hs, 1)))
    block_t = min(8, triton.next_power_of_2(max(T, 1)))
    return block_t, block_c, 4


# "fwd"/"bwd" -> (BLOCK_T, BLOCK_C) or (BLOCK_T, BLOCK_C, num_warps): the GPU check times other tiles with it
BLOCKS_OVERRIDE: dict[str, tuple[int, ...]] = {}


def _tiles(kind: str, T: int, hs: int) -> tuple[int, int, int]:
    chosen = BLOCKS_OVERRIDE.get(kind) or _blocks(T, hs)
    return (*chosen, 4) if len(chosen) == 2 else tuple(chosen)  # type: ignore[return-value]


class _SkipLaunch:
    """Stands in for an interpreted kernel while fake tensors trace the op (the interpreter would run it)."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


_SKIP_LAUNCH = _SkipLaunch()


def _interpreting(kernel) -> bool:
    return isinstance(kernel, InterpretedFunction)  # TRITON_INTERPRET=1 when triton was imported


def _check_device(kernel, t: Tensor) -> None:
    if t.device.type != "cuda" and not _interpreting(kernel):
        raise RuntimeError(
            f"the Triton minGRU scan needs CUDA tensors (got {t.device.type}); on the CPU it runs "
            "only in Triton's interpreter: set TRITON_INTERPRET=1 before triton is imported"
        )


def _launcher(kernel, t: Tensor):
    """The kernel inside the custom op: traceable (wrap_triton) on CUDA, as it is under the interpreter."""
    _check_device(kernel, t)
    if _interpreting(kernel):
        return _SKIP_LAUNCH if isinstance(t, torch._subclasses.FakeTensor) else kernel  # fake: shapes only
    return torch.library.wrap_triton(kernel)


def _direct(kernel, t: Tensor):
    """The kernel launched as it is (eager CUDA calls, or the interpreter): no tracing wrapper."""
    _check_device(kernel, t)
    return kernel


def _grid(P: int, R: int, hs: int, block_c: int) -> tuple[int, int, int]:
    """(sequences, channel blocks, directions): one launch covers both directions of every sequence."""
    return P * R, triton.cdiv(hs, block_c), 2


def _forward(G: Tensor, P: int, T: int, R: int, launch) -> Tensor:
    hs = G.shape[1] // 4
    H = torch.empty((G.shape[0], 2 * hs), dtype=G.dtype, device=G.device)
    block_t, block_c, warps = _tiles("fwd", T, hs)
    launch(_sweep_fwd, G)[_grid(P, R, hs, block_c)](
        G, H, T, R, hs, G.stride(0), H.stride(0), BLOCK_T=block_t, BLOCK_C=block_c, num_warps=warps
    )
    return H


def _backward_gates(G: Tensor, H: Tensor, dH: Tensor, P: int, T: int, R: int, launch) -> Tensor:
    hs = G.shape[1] // 4
    dG = torch.empty_like(G)
    block_t, block_c, warps = _tiles("bwd", T, hs)
    launch(_sweep_bwd, G)[_grid(P, R, hs, block_c)](
        G,
        H,
        dH,
        dG,
        T,
        R,
        hs,
        G.stride(0),
        H.stride(0),
        dH.stride(0),
        BLOCK_T=block_t,
        BLOCK_C=block_c,
        num_warps=warps,
    )
    return dG


@torch.library.triton_op("reseg::mingru_scan", mutates_args=())
def mingru_scan_triton(G: Tensor, P: int, T: int, R: int) -> Tensor:
    """Hidden states (M, 2*hs) in G's dtype of a bidirectional minGRU sweep; G (M, 4*hs) as in `scan.py`."""
    return _forward(G, P, T, R, _launcher)


@torch.library.triton_op("reseg::mingru_scan_backward", mutates_args=())
def mingru_scan_triton_backward(G: Tensor, H: Tensor, dH: Tensor, P: int, T: int, R: int) -> Tensor:
    """dL/dG (M, 4*hs) in G's dtype from dL/dH, by the adjoint scan."""
    return _backward_gates(G, H, dH, P, T, R, _launcher)


def _setup_context(ctx, inputs, output) -> None:
    G, P, T, R = inputs
    ctx.save_for_backward(G, output)
    ctx.dims = (P, T, R)


def _backward(ctx, dH: Tensor):
    G, H = ctx.saved_tensors
    dG = mingru_scan_triton_backward(G, H, dH.contiguous(), *ctx.dims)
    return dG, None, None, None


mingru_scan_triton.register_autograd(_backward, setup_context=_setup_context)


class _EagerScan(torch.autograd.Function):
    """The same kernels for eager calls without the custom op's dispatch, whose host time per call can exceed
    the forward kernel's own (docs/gpu_notes.md)."""

    @staticmethod
    def forward(ctx, G: Tensor, P: int, T: int, R: int) -> Tensor:  # type: ignore[override]
        H = _forward(G, P, T, R, _direct)
        ctx.save_for_backward(G, H)
        ctx.dims = (P, T, R)
        return H

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dH: Tensor):  # type: ignore[override]
        G, H = ctx.saved_tensors
        return _backward_gates(G, H, dH.contiguous(), *ctx.dims, _direct), None, None, None


EAGER_DIRECT = True  # False: eager calls go through the custom op too (the GPU profile compares both)


def mingru_scan_fused(G: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """`scan.mingru_scan` through the Triton kernels: G (M, 4*hs) -> H (M, 2*hs) in G's dtype.

    Eager calls launch the kernels straight from an autograd function; under torch.compile (and with
    EAGER_DIRECT off) they go through the reseg::mingru_scan custom op, which the compiler traces."""
    P, T, R = shape
    if G.shape[0] != P * T * R or G.shape[1] % 4:
        raise ValueError(
            f"gate pre-activations of shape {tuple(G.shape)} do not fit sequences {shape} (expected (P*T*R, 4*hidden))"
        )
    if EAGER_DIRECT and not torch.compiler.is_compiling():
        return _EagerScan.apply(G.contiguous(), P, T, R)
    return mingru_scan_triton(G.contiguous(), P, T, R)
