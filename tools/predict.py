"""Thin wrapper: `python tools/predict.py ...` is `reseg predict ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))
