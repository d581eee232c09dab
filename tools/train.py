"""Thin wrapper: `python tools/train.py ...` is `reseg train ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
