#!/usr/bin/env python
"""Prepare HMDB51 (hmdb_ARN lists) from the official download.

    python data_scripts/prepare_hmdb.py RAW OUT --workers 8
    (RAW holds <class>/<video>.avi, all archives extracted; see data_scripts/README.md)

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare hmdb).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["hmdb", *sys.argv[1:]], script=sys.argv[0]))
