"""Thin wrapper: `python tools/compare.py ...` is `reseg compare ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare", *sys.argv[1:]]))
