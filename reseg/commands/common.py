"""The inference options `predict`, `video` and `evaluate` share, and the Predictor they build from them.

Kept free of heavy imports: `reseg predict --help` must not load torch.
"""

from __future__ import annotations

import argparse
from typing import Any

from reseg.backend_names import CHOICES
from reseg.config import INFERENCE_KEYS

BACKEND_HELP = (
    "eager: PyTorch (the default; with --amp, the fast path on CPUs with native bf16); "
    "onnxruntime: the model exported to ONNX and run by ONNX Runtime on the CPU (faster fp32 on "
    "CPUs without bf16); onnxruntime-int8: the same with int8 convolutions and ReNet projections "
    "(as --int8); auto: the fastest of these (and, on CPUs with native bf16, eager under bf16 "
    "autocast) whose masks agree with eager's on at least 99%% of "
    "the calibration images' pixels, measured on the first batch once per model, input size, batch "
    "and machine (the choice and its reason are printed). Exported and quantised models and auto's "
    "measurements are cached in ~/.cache/reseg/onnx (RESEG_CACHE_DIR moves it), keyed by the "
    "weights, so only the first run exports or measures"
)


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """The Predictor options shared by `predict`, `video` and `evaluate` (defaults: the checkpoint's eval config)."""
    from reseg.config import EVAL_MODES

    g = parser.add_argument_group("inference (defaults: the checkpoint's eval settings)")
    g.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    g.add_argument("--backend", choices=CHOICES, default=None, help=BACKEND_HELP)
    g.add_argument(
        "--int8",
        action="store_true",
        default=None,
        help="ONNX Runtime with int8 convolutions and ReNet projections (static quantisation, "
        "per-channel weights, calibrated on --calibration images or the checkpoint's training "
        "split); implies --backend onnxruntime",
    )
    g.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="IMAGES",
        help="with --int8 or --backend auto: images, folders or globs to calibrate on and, for auto, "
        "to compare masks on (default: 16 images of the training split named by the checkpoint's "
        "config, under --data-root where given)",
    )
    g.add_argument("--mode", choices=EVAL_MODES, default=None, help="whole image or sliding window")
    g.add_argument("--crop", type=int, nargs=2, metavar=("H", "W"), default=None, help="sliding-window size")
    g.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), default=None, help="sliding-window step")
    g.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the horizontally flipped image",
    )
    g.add_argument(
        "--scales",
        type=float,
        nargs="+",
        default=None,
        metavar="S",
        help="average over these scales, e.g. 0.75 1.0 1.25",
    )
    g.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="mixed precision (eager backend): bf16 on CPUs with native bf16 support, fp16 on CUDA",
    )
    g.add_argument("--amp-dtype", choices=("bf16", "fp16"), default=None, help="force this autocast type")
    g.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last memory layout (eager backend)",
    )
    g.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the model (eager backend; slow start)"
    )
    g.add_argument(
        "--infer-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="run the model at this size (height width, as every size here) and upsample the result "
        "to the input's size",
    )
    g.add_argument("--batch", type=int, default=None, help="images per forward pass")


# Predictor arguments that only the command line sets (the config's inference keys come from INFERENCE_KEYS)
_RUNTIME_OPTIONS = ("channels_last", "compile", "backend", "int8", "calibration", "data_root")


def predictor_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Predictor keyword arguments the command line asks for (None = the checkpoint's setting)."""
    options = {name: getattr(args, name, None) for name in (*INFERENCE_KEYS.values(), *_RUNTIME_OPTIONS)}
    amp, amp_dtype = getattr(args, "amp", None), getattr(args, "amp_dtype", None)
    options["amp"] = amp_dtype if amp_dtype and amp is not False else amp
    return options


def build_predictor(args: argparse.Namespace):  # -> Predictor (import kept lazy for `--help` speed)
    """Predictor from a checkpoint plus the command line's overrides."""
    from reseg.predictor import Predictor

    return Predictor.from_checkpoint(args.checkpoint, device=getattr(args, "device", "auto"), **predictor_options(args))
