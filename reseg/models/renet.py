"""ReNet layer: two bidirectional RNN sweeps (down/up each column, then left/right each row).

After both sweeps every output position has seen the whole input. All columns (then all rows)
of all images form one batch of sequences, so each sweep is a single cuDNN/ATen RNN call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reseg.errors import ResegError

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


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


class ReNet(nn.Module):
    """(N, C, H, W) -> (N, 2*hidden, ceil(H/p), ceil(W/p)) with whole-image context."""

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int = 1, cell: str = "gru") -> None:
        super().__init__()
        if cell not in CELLS:
            raise ResegError(f"unknown ReNet cell {cell!r}; valid choices: {', '.join(CELLS)}")
        if patch_size < 1:
            raise ResegError(f"ReNet patch_size must be >= 1, got {patch_size}")
        self.patch_size, self.hidden_size, self.cell = patch_size, hidden_size, cell
        self.out_channels = 2 * hidden_size
        rnn = CELLS[cell]
        self.vertical = rnn(in_channels * patch_size**2, hidden_size, bidirectional=True)
        self.horizontal = rnn(2 * hidden_size, hidden_size, bidirectional=True)
        _init_rnn(self.vertical)
        _init_rnn(self.horizontal)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patchify(x)
        n, c, h, w = x.shape
        # Vertical sweep: sequences run along H, batch = every column of every image.
        cols = x.permute(2, 0, 3, 1).reshape(h, n * w, c)
        cols, _ = self.vertical(cols)
        # Horizontal sweep: sequences run along W, batch = every row of every image.
        rows = cols.reshape(h, n, w, -1).permute(2, 1, 0, 3).reshape(w, n * h, -1)
        rows, _ = self.horizontal(rows)
        return rows.reshape(w, n, h, -1).permute(1, 3, 2, 0).contiguous()
