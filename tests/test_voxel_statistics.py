"""The threaded voxel statistics agree with numpy and do not depend on the thread count."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from meteor_cctbx import voxel_statistics


@pytest.fixture
def skewed_map() -> np.ndarray:
    """A float32 map of 3 blocks and a bit, with an offset far from zero and a long tail."""
    rng = np.random.default_rng(7)
    values = rng.standard_normal((3 * voxel_statistics.BLOCK + 1234,)) ** 3 + 40.0
    return values.astype(np.float32).reshape(-1, 2)


def with_threads(n: int, function, *args):
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(n)
        return function(*args)
    finally:
        numba.set_num_threads(threads)


def test_moments_are_numpys_in_float64(skewed_map):
    mean, std, lowest, highest = voxel_statistics.moments(skewed_map)
    assert mean == pytest.approx(skewed_map.mean(dtype=np.float64), rel=1e-13)
    assert std == pytest.approx(skewed_map.std(dtype=np.float64), rel=1e-11)
    assert (lowest, highest) == (skewed_map.min(), skewed_map.max())


def test_results_do_not_depend_on_the_number_of_threads(skewed_map):
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this test needs 2 threads to compare"
    for function, args in [(voxel_statistics.moments, (skewed_map,)),
                           (voxel_statistics.linear_histogram,
                            (skewed_map, float(skewed_map.min()), 0.05))]:
        one, two = (with_threads(n, function, *args) for n in (1, 2))
        assert np.array_equal(one, two)


def test_linear_histogram_shares_each_value_between_its_two_bins(skewed_map):
    lowest, width = float(skewed_map.min()), 0.05
    counts = voxel_statistics.linear_histogram(skewed_map, lowest, width)
    assert counts.sum() == pytest.approx(skewed_map.size, rel=1e-12)
    position = (skewed_map.ravel() - np.float32(lowest)) * np.float32(1 / width)
    index = position.astype(np.int64)
    upper = (position - index).astype(np.float64)
    reference = np.bincount(index, 1 - upper, counts.size) + \
        np.bincount(index + 1, upper, counts.size)
    assert np.allclose(counts, reference, rtol=1e-9, atol=1e-9)
    # the first moment survives linear binning exactly: sum of value shares = sum of positions
    assert (counts * np.arange(counts.size)).sum() == pytest.approx(
        position.astype(np.float64).sum(), rel=1e-9)


def test_histogram_of_a_map_with_a_far_outlier_stays_small(skewed_map, monkeypatch):
    """Many bins (one value far out) give longer blocks, not a huge blocks x bins array; the
    histogram is the same."""
    width = 0.001
    values = skewed_map.ravel().copy()
    values[17] = 1e3
    reference = voxel_statistics.linear_histogram(values, float(values.min()), width)
    monkeypatch.setattr(voxel_statistics, "MAX_HISTOGRAM_CELLS", 2 * reference.size)
    allocated = []
    original = voxel_statistics._block_linear_histograms

    def recording(*args):
        result = original(*args)
        allocated.append(result.size)
        return result

    monkeypatch.setattr(voxel_statistics, "_block_linear_histograms", recording)
    counts = voxel_statistics.linear_histogram(values, float(values.min()), width)
    assert allocated[0] <= 2 * reference.size < 4 * reference.size  # 4 blocks otherwise
    assert np.allclose(counts, reference, rtol=1e-12, atol=1e-9)
    assert counts.sum() == pytest.approx(values.size, rel=1e-12)


def test_affine_copy_and_in_place(skewed_map):
    expected = (skewed_map.astype(np.float64) - 40.0) * 0.5 + 3.0
    copy = voxel_statistics.affine(skewed_map, 40.0, 0.5, 3.0)
    assert copy.shape == skewed_map.shape and copy.dtype == np.float32
    assert np.allclose(copy, expected, atol=1e-4)
    assert not np.shares_memory(copy, skewed_map)
    target = skewed_map.copy()
    result = voxel_statistics.affine(target, 40.0, 0.5, 3.0, in_place=True)
    assert np.shares_memory(result, target) and np.array_equal(result, copy)
    with pytest.raises(ValueError, match="in-place"):
        voxel_statistics.affine(skewed_map.astype(np.float64), 40.0, 0.5, in_place=True)


def test_kernels_run_on_the_safe_threading_layer(skewed_map):
    """The first threaded kernel of a process may be one of these (not TV's): numba's OpenMP
    layer applied an in-place rescaling twice here."""
    voxel_statistics.moments(skewed_map)
    assert numba.threading_layer() == "workqueue"


def test_affine_with_zero_scale_is_the_added_constant(skewed_map):
    assert np.array_equal(voxel_statistics.affine(skewed_map, 40.0, 0.0, 3.0),
                          np.full(skewed_map.shape, 3.0, np.float32))
