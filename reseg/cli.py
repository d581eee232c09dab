"""`reseg <command>`: one entry point; every tool in tools/ calls the same functions."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
import warnings
from pathlib import Path

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
    "adapt": ("adapt", "adapt a checkpoint to new streets from unlabeled images or video (batch-norm statistics)"),
    "package": ("package", "write a shareable model folder (Hugging Face Hub layout) from a checkpoint"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reseg", description="ReSeg semantic segmentation pipeline.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _debug_wanted(argv: list[str]) -> tuple[bool, list[str]]:
    """`--debug` anywhere on the line (or RESEG_DEBUG=1) shows tracebacks; it is removed before parsing."""
    debug = "--debug" in argv or os.environ.get("RESEG_DEBUG", "").strip() not in ("", "0", "false", "no")
    return debug, [a for a in argv if a != "--debug"]


def _report_crash(name: str, err: BaseException, debug: bool) -> int:
    """One line for an unexpected exception; the traceback only when asked for."""
    if debug:
        traceback.print_exc()
    detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
    print(f"reseg {name}: unexpected error: {type(err).__name__}{': ' + detail if detail else ''}", file=sys.stderr)
    if not debug:
        print("rerun with --debug (or RESEG_DEBUG=1) to see the traceback", file=sys.stderr)
    return 1


_PACKAGE_DIR = Path(__file__).resolve().parent


def one_line_warnings(fallback=warnings.formatwarning):  # -> a warnings.formatwarning replacement
    """reseg's own warnings as one plain line, `warning: <message>`: a user needs the message, not the
    source line that raised it; other libraries' warnings keep `fallback`'s format."""

    def format_warning(message, category, filename, lineno, line=None) -> str:
        try:
            ours = _PACKAGE_DIR in Path(filename).resolve().parents
        except (OSError, ValueError):
            ours = False
        return f"warning: {message}\n" if ours else fallback(message, category, filename, lineno, line)

    return format_warning


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug, argv = _debug_wanted(argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = build_parser()
        if argv and argv[0] not in ("-h", "--help"):
            parser.print_usage(sys.stderr)
            print(f"reseg: error: unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
        parser.print_help()
        return 0
    previous = warnings.formatwarning
    warnings.formatwarning = one_line_warnings(previous)  # only while a command runs: importing reseg changes nothing
    try:
        return _run_command(argv[0], argv[1:], debug)
    finally:
        warnings.formatwarning = previous


def _run_command(name: str, rest: list[str], debug: bool) -> int:
    module = importlib.import_module(f"reseg.commands.{COMMANDS[name][0]}")
    parser = argparse.ArgumentParser(prog=f"reseg {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an unexpected error (or set RESEG_DEBUG=1)"
    )
    args = parser.parse_args(rest)
    args.debug = debug
    try:
        return int(module.run(args) or 0)
    except ResegError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything else is a bug or an unforeseen input: one line, not a traceback
        return _report_crash(name, err, debug)


if __name__ == "__main__":
    sys.exit(main())
