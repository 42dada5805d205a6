"""``python -m fsvid.prepare COMMAND ...``: see :mod:`fsvid.prepare.cli`."""

import sys

from fsvid.prepare.cli import main

sys.exit(main())
