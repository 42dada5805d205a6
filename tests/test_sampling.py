"""Temporal sampling: exact test-time indices, training jitter ranges, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from fsvid.data.sampling import sample_frame_indices, trx_frame_indices, tsn_frame_indices


@pytest.mark.parametrize(
    "n, L, expected",
    [
        (48, 8, [1, 7, 13, 20, 26, 33, 39, 46]),  # floor(linspace(1, 46, 8))
        (11, 8, [1, 2, 3, 4, 5, 6, 7, 9]),  # end - start = 8 >= L: trimmed ends
        (10, 8, [0, 1, 2, 3, 5, 6, 7, 9]),  # end - start = 7 < L: falls back to 0..n-1
        (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),  # n == L: every frame
        (5, 8, [0, 0, 1, 1, 2, 2, 3, 4]),  # shorter than L: frames repeat
        (1, 3, [0, 0, 0]),
        (30, 1, [14]),  # L == 1: middle of 1..28
    ],
)
def test_trx_test_indices_exact(n: int, L: int, expected: list[int]) -> None:
    indices = trx_frame_indices(n, L, train=False)
    assert indices.dtype == np.int64
    assert indices.tolist() == expected


def test_trx_training_jitter_range_and_bounds() -> None:
    rng = np.random.default_rng(0)
    n, L = 48, 8  # pad = int(min(5, 20)) = 5
    draws = np.stack([trx_frame_indices(n, L, train=True, rng=rng) for _ in range(600)])  # (600, L)
    assert set(draws[:, 0].tolist()) == set(range(0, 6))  # start ~ U{0..5}
    assert set(draws[:, -1].tolist()) == set(range(42, 48))  # end ~ U{42..47}
    assert (np.diff(draws, axis=1) > 0).all()  # distinct and in time order
    # each draw is floor(linspace(start, end, L)) of its own ends
    for row in draws[:20]:
        assert row.tolist() == np.linspace(row[0], row[-1], L).astype(np.int64).tolist()


def test_trx_training_small_pad() -> None:
    rng = np.random.default_rng(1)
    # n = 13, L = 8: pad = int(2.5) = 2, end - start >= 8 always
    draws = np.stack([trx_frame_indices(13, 8, train=True, rng=rng) for _ in range(300)])
    assert set(draws[:, 0].tolist()) == {0, 1, 2} and set(draws[:, -1].tolist()) == {10, 11, 12}
    # n = 9, L = 8: pad = int(0.5) = 0, no jitter at all
    fixed = {tuple(trx_frame_indices(9, 8, train=True, rng=rng)) for _ in range(20)}
    assert fixed == {(0, 1, 2, 3, 4, 5, 6, 8)}
    # n = 12, L = 8: pad 2; (start, end) = (2, 9) falls back to (0, 11)
    draws = np.stack([trx_frame_indices(12, 8, train=True, rng=rng) for _ in range(300)])
    ends = {(int(row[0]), int(row[-1])) for row in draws}
    assert ends == {(s, e) for s in (0, 1, 2) for e in (9, 10, 11)} - {(2, 9)}
    assert draws.min() >= 0 and draws.max() <= 11


def test_tsn_test_indices_exact() -> None:
    assert tsn_frame_indices(16, 8, train=False).tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert tsn_frame_indices(10, 4, train=False).tolist() == [1, 3, 6, 8]
    assert tsn_frame_indices(3, 8, train=False).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]


def test_tsn_training_stays_in_segments_and_covers_them() -> None:
    rng = np.random.default_rng(2)
    n, L = 20, 4  # segments of 5 frames
    draws = np.stack([tsn_frame_indices(n, L, train=True, rng=rng) for _ in range(400)])  # (400, L)
    for k in range(L):
        assert set(draws[:, k].tolist()) == set(range(5 * k, 5 * k + 5))
    short = np.stack([tsn_frame_indices(3, 8, train=True, rng=rng) for _ in range(100)])
    assert short.min() >= 0 and short.max() <= 2 and (np.diff(short, axis=1) >= 0).all()


@pytest.mark.parametrize("scheme", ["trx", "tsn"])
def test_determinism_with_a_seed(scheme: str) -> None:
    a = [sample_frame_indices(60, 8, True, np.random.default_rng(7), scheme) for _ in range(3)]
    b = [sample_frame_indices(60, 8, True, np.random.default_rng(7), scheme) for _ in range(3)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    rng = np.random.default_rng(7)
    sequence = [tuple(sample_frame_indices(60, 8, True, rng, scheme)) for _ in range(10)]
    assert len(set(sequence)) > 1  # the generator advances
    # test time neither needs nor consumes randomness
    rng = np.random.default_rng(7)
    state = rng.bit_generator.state
    first = sample_frame_indices(60, 8, False, rng, scheme)
    assert rng.bit_generator.state == state
    assert np.array_equal(first, sample_frame_indices(60, 8, False, None, scheme))


def test_sampling_errors() -> None:
    with pytest.raises(ValueError, match="0 frames"):
        trx_frame_indices(0, 8, train=False)
    with pytest.raises(ValueError, match="numpy Generator"):
        trx_frame_indices(40, 8, train=True)
    with pytest.raises(ValueError, match="numpy Generator"):
        tsn_frame_indices(40, 8, train=True)
    with pytest.raises(ValueError, match="unknown frame sampling scheme 'uniform'"):
        sample_frame_indices(40, 8, False, None, "uniform")  # type: ignore[arg-type]
