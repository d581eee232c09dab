"""Thin wrapper: `python tools/export.py ...` is `reseg export ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
