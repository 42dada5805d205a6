#!/usr/bin/env python
"""Fetch the standard split lists (TRX repository) and check their sha256.

    python data_scripts/get_splits.py                          # download to $FSVID_HOME/splits
    python data_scripts/get_splits.py splits/ --from trx/splits  # copy from a local folder, checked

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare splits).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["splits", *sys.argv[1:]], script=sys.argv[0]))
