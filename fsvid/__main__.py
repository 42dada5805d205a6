"""``python -m fsvid``: the same as the ``fsvid`` command."""

import sys

from fsvid.cli import main

sys.exit(main())
