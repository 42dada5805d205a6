#!/usr/bin/env python
"""Check a prepared dataset against its split lists: missing, unreadable and too-short videos,
videos per class and frames per video (printed table, CSV files, PNG plot).

    python data_scripts/verify_dataset.py OUT --benchmark hmdb_ARN

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare verify).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["verify", *sys.argv[1:]], script=sys.argv[0]))
