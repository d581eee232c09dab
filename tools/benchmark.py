"""Thin wrapper: `python tools/benchmark.py ...` is `reseg benchmark ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
