"""``python -m cas_admin``: the same as the ``cas-admin`` console script."""

import sys

from cas_admin.cli import main

sys.exit(main())
