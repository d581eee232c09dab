"""Thin wrapper: `python tools/make_synthetic.py ...` is `reseg make-synthetic ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["make-synthetic", *sys.argv[1:]]))
