"""``python -m fsvid.experiments ...``: the same as ``fsvid sweep ...``."""

from fsvid.experiments.cli import main

raise SystemExit(main())
