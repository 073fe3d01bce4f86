"""The benchmark family's kinds of change (meteor_cctbx.family): what each moves."""
import numpy as np
import pytest

from meteor_cctbx import family


@pytest.fixture(scope="module")
def source():
    return family.source_small(d_min=2.0)


def sites_of(structure) -> np.ndarray:
    return np.array(structure.sites_cart()).reshape(-1, 3)


def test_loop_swings_the_loop_about_its_ends_and_moves_the_side_chains_as_spread(source):
    native = sites_of(source.true_native)
    spread = sites_of(source.minor_states["spread"])
    loop = sites_of(source.minor_states["loop"])
    n = min(len(native), len(spread))  # the ligand's atoms come after the native's kept ones
    assert spread.shape == loop.shape
    spread_shift = np.linalg.norm(spread[:n] - native[:n], axis=1)
    loop_shift = np.linalg.norm(loop[:n] - native[:n], axis=1)
    swung = np.linalg.norm(loop[:n] - spread[:n], axis=1) > 1e-6
    # only the loop differs from spread; its farthest atom moves by 3-6 A, its ends stay
    assert 6 <= swung.sum() < n / 4
    assert 3.0 <= loop_shift[swung].max() <= 6.0
    assert loop_shift[swung].max() > 1.5 * spread_shift[swung].max()
    group = np.flatnonzero(swung)
    inner = loop[:n][group]
    assert np.allclose(np.linalg.norm(inner[:, None] - inner[None], axis=2),
                       np.linalg.norm(native[group][:, None] - native[group][None], axis=2),
                       atol=1e-6)  # a rigid rotation
    # ligand and the rest of the moved atoms are those of spread
    assert np.allclose(loop[n:], spread[n:])
    # the loop's new sites count as signal, beside spread's
    assert len(source.signal_sites["loop"]) > len(source.signal_sites["spread"])


def test_unknown_change_is_refused(source):
    with pytest.raises(ValueError, match="unknown change"):
        family.make_case(source, "twist", 0.4, 1.0)


def test_sigmas_scaled_states_other_errors_for_the_same_measurements(source):
    case = family.make_case(source, "compact", 0.4, 1.0)
    overstated = family.with_sigmas_scaled(case, 1.25)
    for measured, stated in ((case.derivative, overstated.derivative),
                             (case.native, overstated.native)):
        assert np.array_equal(stated.data().as_numpy_array(), measured.data().as_numpy_array())
        assert np.allclose(stated.sigmas().as_numpy_array(),
                           1.25 * measured.sigmas().as_numpy_array())
    assert overstated.name == case.name + "_sigmas1.25x"
    assert overstated.true_difference is case.true_difference
