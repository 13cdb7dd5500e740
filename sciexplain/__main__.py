"""``python -m sciexplain``: the command line (see :mod:`sciexplain.cli`)."""

import sys

from .cli import main

sys.exit(main())
