"""``python -m segedu.cli`` (as under ``torchrun ... -m segedu.cli train``)."""

import sys

from . import main

sys.exit(main())
