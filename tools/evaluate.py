"""Thin wrapper: `python tools/evaluate.py ...` is `reseg evaluate ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
