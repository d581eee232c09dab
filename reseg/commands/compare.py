"""`reseg compare RUN_DIR_OR_METRICS_JSON ... [--out DIR]`: per-class IoU of several runs side by side.

Each argument is a metrics.json written by `reseg evaluate`, or a folder holding one (directly or
below it, e.g. a training run with eval_val/metrics.json). Prints a markdown table (best per row in
bold) and writes compare.md, compare.csv and a grouped bar chart compare.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from reseg.errors import ResegError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN_DIR_OR_METRICS_JSON",
        help="metrics.json files or folders holding one (searched below the folder)",
    )
    parser.add_argument("--out", default="work_dirs/compare", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--labels",
        nargs="+",
        metavar="LABEL",
        help="names for the runs, one per run, in order (default: their folder names)",
    )


def run(args: argparse.Namespace) -> int:
    from reseg.report import compare_markdown, find_metrics, load_runs, write_compare

    if len(args.runs) < 1:
        raise ResegError("give at least one run folder or metrics.json")
    runs = load_runs(args.runs, args.labels)
    for given, (label, _) in zip(args.runs, runs):
        print(f"{label}: {find_metrics(given)}", file=sys.stderr)
    print(compare_markdown(runs))
    paths = write_compare(runs, args.out)
    print(f"wrote {', '.join(p.name for p in paths.values())} to {Path(args.out).resolve()}")
    return 0
