#!/usr/bin/env python
"""Prepare Kinetics-100 (kinetics_CMN lists) from Kinetics-400 clips.

    python data_scripts/prepare_kinetics.py RAW OUT --workers 8
    (RAW holds <youtube_id>_<start>_<end>.mp4, flat or in folders; see data_scripts/README.md)

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare kinetics).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["kinetics", *sys.argv[1:]], script=sys.argv[0]))
