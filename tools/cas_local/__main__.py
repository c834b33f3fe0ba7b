"""``python -m cas_local``: the same as the ``cas-local`` console script."""

import sys

from cas_local.cli import main

sys.exit(main())
