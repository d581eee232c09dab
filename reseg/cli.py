"""`reseg <command>`: one entry point; every tool in tools/ calls the same functions."""

from __future__ import annotations

import argparse
import importlib
import sys

from reseg.errors import ResegError

# name -> (module under reseg.commands, one-line help). Modules load lazily so `reseg --help` stays fast.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a model from a YAML config (torchrun-ready)"),
    "evaluate": ("evaluate", "score a checkpoint or saved predictions; write mIoU reports"),
    "predict": ("predict", "segment images, folders or globs"),
    "video": ("video", "segment a video file, camera, stream or frame folder"),
    "compare": ("compare", "side-by-side per-class IoU of several runs"),
    "data-stats": ("data_stats", "class pixel counts, frequencies and balancing weights"),
    "make-synthetic": ("make_synthetic", "generate the synthetic street-scene dataset (CamVid layout)"),
    "browse": ("browse", "grid of augmented samples, to see what the model sees"),
    "benchmark": ("benchmark", "speed and memory benchmark (ReNet, models, data, evaluator)"),
    "export": ("export", "export a checkpoint to ONNX or TorchScript"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reseg", description="ReSeg semantic segmentation pipeline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"reseg: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(f"reseg.commands.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"reseg {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except ResegError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
