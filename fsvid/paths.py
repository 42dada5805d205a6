"""Where fsvid keeps generated data and runs by default.

Everything lives under one folder, ``$FSVID_HOME`` (default ``~/.cache/fsvid``), so that
notebooks run from ``notebooks/``, the CLI run from anywhere and the tests agree on it.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsvid_home() -> Path:
    """The folder for generated data and runs: ``$FSVID_HOME`` or ``~/.cache/fsvid``."""
    return Path(os.environ.get("FSVID_HOME", Path.home() / ".cache" / "fsvid")).expanduser()


def default_synthetic_root() -> Path:
    """Where the default synthetic datasets are generated (``$FSVID_HOME/synthetic``, one
    folder per set of settings: :func:`fsvid.engine.data.synthetic_root`)."""
    return fsvid_home() / "synthetic"


def default_runs_root() -> Path:
    """Where training runs write checkpoints and results (``$FSVID_HOME/runs``)."""
    return fsvid_home() / "runs"
