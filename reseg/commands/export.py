"""`reseg export`: a checkpoint to ONNX (fp32 or int8) or TorchScript for any height and width, checked against
PyTorch."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a checkpoint written by `reseg train`, a model folder (`reseg package`) or hf://user/repo",
    )
    parser.add_argument("--format", required=True, help="onnx or torchscript")
    parser.add_argument("--out", required=True, help="file to write (.onnx / .pt)")
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--static",
        action="store_true",
        help="ONNX: accept only the traced batch, height and width (default: any of them; "
        "TorchScript traces are always size-generic)",
    )
    shape.add_argument("--dynamic", action="store_true", help=argparse.SUPPRESS)  # the default; old scripts
    parser.add_argument(
        "--size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=(64, 96),
        help="trace input size (default 64 96); the check runs there and, unless --static, "
        "at a second size with batch 2",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="FRACTION",
        help="allowed max abs difference from PyTorch as a fraction of the logit range "
        "(default 1e-4, fp32); above it the export fails",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="ONNX: quantise the convolutions to int8 (what `predict/evaluate/video --int8` run), "
        "calibrated on --calibration or the checkpoint's training split; the report gives "
        "the agreement with fp32",
    )
    parser.add_argument(
        "--calibration",
        nargs="+",
        default=None,
        metavar="IMAGES",
        help="with --int8: images, folders or globs to calibrate on (default: 16 images of the "
        "training split named by the checkpoint's config)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the export report as JSON (sizes, differences, input normalisation, class names)",
    )


def run(args: argparse.Namespace) -> int:
    from reseg.errors import ResegError
    from reseg.export import DEFAULT_TOLERANCE, export
    from reseg.io import check_output_file, write_json

    if any(v <= 0 for v in args.size):
        raise ResegError(f"--size must be two positive integers H W, got {' '.join(map(str, args.size))}")
    check_output_file(args.out, "--out")
    if args.json:
        check_output_file(args.json, "--json")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    dynamic = not args.static or args.format != "onnx"
    if args.calibration and not args.int8:
        raise ResegError("--calibration goes with --int8")
    res = export(
        args.checkpoint,
        args.format,
        args.out,
        tuple(args.size),
        dynamic=dynamic,
        opset=args.opset,
        tolerance=tolerance,
        int8=args.int8,
        calibration=args.calibration,
    )
    kind = "any batch, height and width" if res["dynamic"] else "only this size"
    print(
        f"wrote {res['path']} ({res['format']}{', int8' if args.int8 else ''}, traced at "
        f"{res['trace_size'][0]}x{res['trace_size'][1]}; {kind})"
    )
    for c in res["checks"]:
        print(
            f"checked {'the fp32 export ' if args.int8 else ''}against PyTorch at {c['batch']}x{c['size'][0]}x"
            f"{c['size'][1]}: max abs diff {c['max_abs_diff']:.3g} (allowed {c['allowed_abs_diff']:.3g})"
        )
    if args.int8:
        q = res["int8"]
        print(
            f"int8 against fp32 on {q['calibration_images']} calibration image(s): "
            f"{q['pixel_agreement'] * 100:.2f}% of pixels get the same class, max abs logit diff "
            f"{q['max_abs_diff']:.3g}"
        )
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0
