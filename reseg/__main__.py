"""`python -m reseg` is `reseg`; torchrun launches training this way."""

import sys

from reseg.cli import main

sys.exit(main())
