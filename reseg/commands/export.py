"""`reseg export`: a checkpoint to ONNX or TorchScript with dynamic height/width, checked against PyTorch."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a reseg checkpoint (.pth)")
    parser.add_argument("--format", required=True, help="onnx or torchscript")
    parser.add_argument("--out", required=True, help="file to write (.onnx / .pt)")
    parser.add_argument("--dynamic", action="store_true",
                        help="ONNX: dynamic batch, height and width (TorchScript traces are always size-generic)")
    parser.add_argument("--size", nargs=2, type=int, metavar=("H", "W"), default=(64, 96),
                        help="trace input size (default 64 96); the check runs at another size")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--json", metavar="FILE", help="also write the export report as JSON")


def run(args: argparse.Namespace) -> int:
    from reseg.export import export
    from reseg.io import check_output_file, write_json

    if args.json:
        check_output_file(args.json, "--json")
    dynamic = args.dynamic or args.format != "onnx"
    res = export(args.checkpoint, args.format, args.out, tuple(args.size), dynamic=dynamic, opset=args.opset)
    print(f"wrote {res['path']} ({res['format']}, traced at {res['trace_size'][0]}x{res['trace_size'][1]})")
    print(f"checked against PyTorch at {res['check_size'][0]}x{res['check_size'][1]}: "
          f"max abs diff {res['max_abs_diff']:.3g}")
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0
