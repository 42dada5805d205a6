"""Which L frames of an n-frame video make a clip.

Two schemes, both returning ``(L,)`` int64 indices in ``0..n-1``, in time order:

- ``"trx"`` (:func:`trx_frame_indices`), the scheme of the released TRX/STRM code: L frames
  evenly spread between a start and an end frame, ``floor(linspace(start, end, L))``.
  Training jitters both ends by up to 5 frames; testing trims one frame at each end.
- ``"tsn"`` (:func:`tsn_frame_indices`), TSN-style segments: the video is cut into L equal
  segments and one frame is taken from each, at a random position in training and at the
  segment centre in testing.

At test time both are deterministic (the ``rng`` is not touched). In training all randomness
comes from the explicit ``numpy.random.Generator`` passed in, never from global state, so a
clip is a pure function of the generator's seed.

A video shorter than L frames is not an error here: both schemes then repeat frames (the
indices are clamped to the video). Whether such videos are used at all is the dataset's
``short_videos`` policy (:mod:`fsvid.data.episodes`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

FrameSampling = Literal["trx", "tsn"]


def _check(num_frames: int, length: int) -> None:
    if num_frames < 1:
        raise ValueError(f"cannot sample frames from a video with {num_frames} frames")
    if length < 1:
        raise ValueError(f"clip length must be at least 1, got {length}")


def trx_frame_indices(num_frames: int, length: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """The released TRX/STRM sampling, line by line (n = ``num_frames``, L = ``length``).

    1. n == L: every frame, ``0..n-1``.
    2. Training: ``pad = int(min(5, (n - L) / 2))``; if ``pad >= 1``, ``start ~ U{0..pad}``
       and ``end ~ U{n-1-pad..n-1}`` (both inclusive), else ``start, end = 0, n-1``.
       Testing: ``start, end = 1, n-2``.
    3. If ``end - start < L`` (a video of fewer than L + 3 frames at test time), fall back
       to ``start, end = 0, n-1``.
    4. Indices ``int(x)`` for ``x`` in ``np.linspace(start, end, L)``: truncation, i.e. the
       floor, as the released code casts each float with ``int``. The last index is ``end``
       exactly since linspace includes its end point.

    For n < L (kept only under the ``"repeat"`` policy) steps 2-3 give ``0..n-1`` and the
    floor of the linspace repeats frames evenly. For L == 1 the released code draws a random
    frame even at test time; here training draws ``U{start..end}`` and testing takes the
    middle frame ``(start + end) // 2``, so that testing stays deterministic.
    """
    _check(num_frames, length)
    n, L = num_frames, length
    if n == L:
        return np.arange(n, dtype=np.int64)
    if train:
        if rng is None:
            raise ValueError("training-time sampling needs a numpy Generator (rng)")
        pad = int(min(5, (n - L) / 2))
        if pad < 1:
            start, end = 0, n - 1
        else:
            start = int(rng.integers(0, pad, endpoint=True))
            end = int(rng.integers(n - 1 - pad, n - 1, endpoint=True))
    else:
        start, end = 1, n - 2
    if end - start < L:
        start, end = 0, n - 1
    if L == 1:
        middle = int(rng.integers(start, end, endpoint=True)) if train else (start + end) // 2
        return np.array([middle], dtype=np.int64)
    return np.linspace(start, end, L).astype(np.int64)  # floor of non-negative floats


def tsn_frame_indices(num_frames: int, length: int, train: bool, rng: np.random.Generator | None = None) -> np.ndarray:
    """TSN segment sampling: segment ``k`` covers ``[k n / L, (k+1) n / L)``.

    Training takes ``floor(k n / L + u (n / L))`` with ``u ~ U[0, 1)`` per segment, a
    uniformly random frame of the segment; testing takes ``floor((k + 0.5) n / L)``, the
    segment centre. For n < L segments are shorter than a frame and frames repeat.
    """
    _check(num_frames, length)
    n, L = num_frames, length
    width = n / L
    starts = np.arange(L) * width  # (L,)
    if train:
        if rng is None:
            raise ValueError("training-time sampling needs a numpy Generator (rng)")
        offsets = rng.random(L) * width
    else:
        offsets = np.full(L, width / 2)
    return np.minimum(np.floor(starts + offsets), n - 1).astype(np.int64)


def sample_frame_indices(
    num_frames: int,
    length: int,
    train: bool,
    rng: np.random.Generator | None = None,
    scheme: FrameSampling = "trx",
) -> np.ndarray:
    """Dispatch to :func:`trx_frame_indices` or :func:`tsn_frame_indices`: (L,) int64."""
    if scheme == "trx":
        return trx_frame_indices(num_frames, length, train, rng)
    if scheme == "tsn":
        return tsn_frame_indices(num_frames, length, train, rng)
    raise ValueError(f"unknown frame sampling scheme {scheme!r}; expected 'trx' or 'tsn'")
