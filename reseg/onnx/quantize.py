"""Static int8 quantisation of an fp32 ONNX file, and how far the result moves from it.

Per-channel int8 weights with reduce_range and uint8 activations calibrated (min/max) on network inputs,
for every convolution but the classifier and for the matrix products with constant weights (ReNet's input
projections, Gemm nodes); the recurrences (GRU nodes, minGRU's elementwise scan) stay fp32.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reseg.errors import ResegError
from reseg.onnx.export import INPUT_NAME, save_onnx
from reseg.onnx.session import OnnxSession, onnxruntime_module


def quantize_int8(
    fp32: str | Path, out: str | Path, inputs: Iterable[np.ndarray], metadata: Mapping[str, str] | None = None
) -> Path:
    """Static int8 quantisation of the convolutions and weight products (QOperator QLinearConv and QGemm,
    per-channel int8 weights with reduce_range, uint8 activations from min/max calibration on `inputs`),
    classifier and recurrences left fp32.

    reduce_range keeps the int16 pair sums of AVX2's u8*s8 instruction from saturating on CPUs without
    VNNI; the last convolution (the classifier) stays fp32 so the argmax is not taken over 256 levels.
    ReNet's projections (a Gemm per sweep, its weights an initializer) cost as much as a convolution
    (every position times 4 hidden per direction by the input channels), and their rounding errors enter
    the recurrence through sigmoid gates and convex averages of past states, which damp rather than grow
    them; the recurrence itself stays fp32, as do products of two activations if a graph has any. Whether
    int8 is good enough for a checkpoint is measured, not assumed: int8_agreement (the export report) and
    `--backend auto`'s agreement rule.
    """
    onnxruntime_module("it quantises the model")
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches = [np.ascontiguousarray(x, dtype=np.float32) for x in inputs]
    if not batches:
        raise ResegError("int8 calibration got no inputs")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {INPUT_NAME: x}

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="reseg-int8-") as tmp, warnings.catch_warnings(), quiet_quantizer():
        warnings.simplefilter("ignore")
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        keep_fp32 = fp32_nodes(onnx.load(str(pre), load_external_data=False).graph)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(quantized),
            Reader(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(QUANTIZED_OPS),
            nodes_to_exclude=keep_fp32,
            calibrate_method=CalibrationMethod.MinMax,
        )
        save_onnx(quantized, out, metadata)
    return out


QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")


def fp32_nodes(graph: Any) -> list[str]:
    """Nodes of QUANTIZED_OPS types that stay fp32: the last convolution (the classifier) and any matrix
    product whose second input is not a constant weight."""
    constants = {t.name for t in graph.initializer}
    constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    products = [
        n.name
        for n in graph.node
        if n.op_type in ("Gemm", "MatMul") and (len(n.input) < 2 or n.input[1] not in constants)
    ]
    return convs[-1:] + products


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    """Keep the quantiser's advice (WARNING and below) out of users' terminals, and nobody else's messages.

    It logs mostly through the module-level `logging.warning` (the root logger) and partly through loggers
    under `onnxruntime.quantization`: a filter on the root logger drops the records made in the quantiser's
    own files, and its loggers go to ERROR; both are undone on exit, and no logger's level but its own changes.
    """
    from onnxruntime import quantization

    folder = os.path.dirname(os.path.abspath(quantization.__file__)) + os.sep

    def keep(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not os.path.abspath(record.pathname).startswith(folder)

    root, own = logging.getLogger(), logging.getLogger(quantization.__name__)
    level = own.level
    root.addFilter(keep)
    own.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeFilter(keep)
        own.setLevel(level)


def int8_agreement(fp32: str | Path, int8: str | Path, inputs: Sequence[np.ndarray]) -> dict[str, float]:
    """Share of pixels whose argmax class is the same in both files, and the largest logit difference."""
    a, b = OnnxSession(fp32), OnnxSession(int8)
    same = total = 0
    worst = 0.0
    for x in inputs:
        ya, yb = a(torch.from_numpy(x)), b(torch.from_numpy(x))
        same += int((ya.argmax(1) == yb.argmax(1)).sum())
        total += ya.shape[0] * ya.shape[2] * ya.shape[3]
        worst = max(worst, float((ya - yb).abs().max()))
    return {"pixel_agreement": same / max(total, 1), "max_abs_diff": worst}
