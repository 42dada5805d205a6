"""Matplotlib for the figures (the experiments' and the notebooks'): a headless backend outside
notebooks, clips as images, and saving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor


def pyplot() -> Any:
    """``matplotlib.pyplot``, switched to the Agg backend unless a notebook draws inline."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline") and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def finish(fig: Any, path: str | Path | None, dpi: int = 100) -> Any:
    """Lay ``fig`` out tightly and save it as ``path`` (its folder made) when given; returns it."""
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def to_images(clip: Tensor | np.ndarray) -> np.ndarray:
    """A clip as (L, H, W, 3) float images in [0, 1].

    Accepts (L, 3, H, W) tensors or arrays (float in [0, 1] or uint8) and (L, H, W, 3) arrays
    (float or uint8). ImageNet-normalised clips are rescaled to [0, 1] per clip for display.
    """
    array = clip.detach().cpu().numpy() if isinstance(clip, Tensor) else np.asarray(clip)
    if array.ndim != 4 or 3 not in (array.shape[1], array.shape[-1]):
        raise ValueError(f"expected a clip (L, 3, H, W) or (L, H, W, 3), got shape {array.shape}")
    if array.shape[1] == 3 and array.shape[-1] != 3:
        array = array.transpose(0, 2, 3, 1)  # (L, H, W, 3)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    array = array.astype(np.float32)
    if array.min() < 0.0 or array.max() > 1.0:  # normalised input: stretch for display
        array = (array - array.min()) / max(float(array.max() - array.min()), 1e-8)
    return array
