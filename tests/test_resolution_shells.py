"""Resolution shells of equal count, and sigmas held to the spread of the data."""
import numpy as np
import pytest

from meteor_cctbx.resolution_shells import (lowered_shells_note, shell_index, shell_means,
                                            sigmas_within_spread)


def test_shells_hold_equal_counts_from_low_to_high_resolution():
    d = np.random.default_rng(0).uniform(1.5, 30, 1003)
    index = shell_index(d, 10)
    counts = np.bincount(index)
    assert counts.size == 10 and counts.min() >= 100 and counts.max() <= 101
    assert all(d[index == i].max() <= d[index == i - 1].min() for i in range(1, 10))
    means = shell_means(d, d, 10)
    assert np.allclose(means[index == 3], d[index == 3].mean())


def test_sigmas_are_held_to_the_spread_of_the_data_they_describe():
    """In a shell where the values spread less than their sigmas say, the sigmas are lowered
    to the values' rms; elsewhere they are the stated sigmas, unchanged."""
    rng = np.random.default_rng(3)
    d = rng.uniform(1.8, 20, 4000)
    low = d > np.median(d)  # stated sigma 1 everywhere, too large for the high half (sd 0.5)
    delta_f = rng.normal(size=d.size) * np.where(low, 1.0, 0.5) + \
        np.where(low, rng.normal(size=d.size), 0)  # signal of rms 1 in the low half
    sigmas, ratios = sigmas_within_spread(np.ones(d.size), delta_f, d, n_shells=10)
    assert ratios.size == 10  # low resolution first
    assert np.all(ratios[:5] > 1.5) and np.all(np.abs(ratios[5:] - 0.25) < 0.05)
    index = shell_index(d, 10)
    for i, ratio in enumerate(ratios):
        shell = index == i
        assert shell.sum() == 400
        assert ratio == pytest.approx(np.mean(delta_f[shell] ** 2))
        if ratio >= 1:
            assert np.all(sigmas[shell] == 1.0)
        else:
            assert np.mean(sigmas[shell] ** 2) == pytest.approx(np.mean(delta_f[shell] ** 2))
    assert sigmas_within_spread(np.ones(50), delta_f[:50], d[:50])[1].size == 1  # < 100 per shell
    note = lowered_shells_note(ratios)
    assert note.startswith("lowered to the rms of |F_der| - |F_nat| in 5 of 10 resolution")
    assert lowered_shells_note(np.array([1.2, 1.0])) is None
