"""Thin wrapper: `python tools/video.py ...` is `reseg video ...`."""

import sys

from reseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["video", *sys.argv[1:]]))
