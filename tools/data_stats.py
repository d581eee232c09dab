"""Thin wrapper: `python tools/data_stats.py ...` is `reseg data-stats ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["data-stats", *sys.argv[1:]]))
