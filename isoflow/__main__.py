"""``python -m isoflow ...``: the ``isoflow`` command (isoflow.commands), for an environment
whose scripts folder is not on PATH."""

import sys

from isoflow.commands import main

sys.exit(main())
