"""Test-session setup shared by every test module."""

import os

import torch

# Without a GPU, the Triton kernels (reseg/models/scan_triton.py) run in Triton's interpreter, which must be
# chosen before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
