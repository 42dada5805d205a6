#!/usr/bin/env python
"""Prepare UCF101 (ucf_ARN lists) from the official download.

    python data_scripts/prepare_ucf.py RAW OUT --workers 8
    (RAW holds UCF-101/<Class>/v_<Class>_gXX_cXX.avi; see data_scripts/README.md)

Run with --help for every option. The logic lives in fsvid.prepare (python -m fsvid.prepare ucf).
"""

import sys

from fsvid.prepare.cli import main

if __name__ == "__main__":
    sys.exit(main(["ucf", *sys.argv[1:]], script=sys.argv[0]))
