"""``python -m segedu``: the ``segedu`` command line."""

import sys

from .cli import main

sys.exit(main())
