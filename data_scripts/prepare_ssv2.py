#!/usr/bin/env python
"""Prepare Something-Something-v2 (ssv2_OTAM or ssv2_CMN lists) from the official download.

    python data_scripts/prepare_ssv2.py RAW OUT --benchmark ssv2_OTAM --workers 8
    (RAW holds 20bn-something-something-v2/<id>.webm; see data_scripts/README.md)

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare ssv2).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["ssv2", *sys.argv[1:]], script=sys.argv[0]))
