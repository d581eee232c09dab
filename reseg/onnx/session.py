"""Running an ONNX file with ONNX Runtime on the CPU: (N, 3, H, W) float32 in, (N, C, H, W) logits out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError


class SessionError(ResegError):
    """onnxruntime is missing, or cannot load or run an ONNX file."""


def onnxruntime_module(why: str = "it runs the ONNX files") -> Any:
    """onnxruntime (imported only when asked for: an optional dependency), or a SessionError saying how to
    install it and `why` it is needed."""
    try:
        import onnxruntime
    except ImportError:
        raise SessionError(f"onnxruntime is not installed (pip install onnxruntime); {why}") from None
    return onnxruntime


class OnnxSession:
    """An ONNX Runtime CPU session for one file, called like the model: tensor in, float32 tensor out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ort = onnxruntime_module()
        self.path = Path(path)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # Idle pool threads would spin and take the cores from PyTorch's threads (padding, softmax and argmax
        # run between calls; on 2 cores that slowed the next PyTorch op many times over).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's own exception types
            raise SessionError(f"onnxruntime cannot load {self.path}: {' '.join(str(err).split())[:300]}") from None
        self.input_name = self.session.get_inputs()[0].name

    def metadata(self, key: str) -> str | None:
        """A value the file's metadata holds under `key` (None when absent)."""
        return self.session.get_modelmeta().custom_metadata_map.get(key)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The file's first output for a float32 input array; a failure names the file and the input shape."""
        arr = np.ascontiguousarray(x, dtype=np.float32)
        try:
            return self.session.run(None, {self.input_name: arr})[0]
        except Exception as err:  # onnxruntime raises its own types for shape mismatches
            raise SessionError(
                f"onnxruntime cannot run {self.path} on a {'x'.join(map(str, arr.shape))} input: "
                f"{' '.join(str(err).split())[:300]}"
            ) from None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise SessionError(f"ONNX Runtime runs on the CPU here; got a tensor on {x.device}")
        return torch.from_numpy(self.run(x.detach().float().numpy()))
