"""Thin wrapper: `python tools/browse.py ...` is `reseg browse ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["browse", *sys.argv[1:]]))
