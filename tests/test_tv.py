"""TV denoising: the periodic solver is scikit-image's iteration on a periodic cell."""
import numpy as np
import pytest
from skimage.restoration import denoise_tv_chambolle

from meteor_cctbx.tv import TvSettings, chambolle_periodic, denoise, optimize_tv_weight


@pytest.fixture
def noisy_map():
    rng = np.random.default_rng(0)
    return rng.normal(size=(18, 20, 22)).astype(np.float32)


def test_periodic_solver_equals_scikit_image_on_a_wrapped_map(noisy_map):
    n_iterations = 6
    pad = 2 * n_iterations + 2  # information moves at most two voxels per iteration
    padded = np.pad(noisy_map, pad, mode="wrap")
    reference = denoise_tv_chambolle(padded, weight=0.4, eps=0, max_num_iter=n_iterations)
    reference = reference[pad:-pad, pad:-pad, pad:-pad]
    assert np.abs(chambolle_periodic(noisy_map, 0.4, n_iterations) - reference).max() < 1e-5


def test_threaded_solver_uses_the_safe_threading_layer(noisy_map):
    import numba

    chambolle_periodic(noisy_map, 0.4, 2)
    assert numba.threading_layer() == "workqueue"
    assert numba.get_num_threads() >= 1


def test_periodic_solver_commutes_with_cell_translations(noisy_map):
    shift = (5, 11, 3)
    denoised = chambolle_periodic(noisy_map, 0.3, 20)
    shifted = chambolle_periodic(np.roll(noisy_map, shift, axis=(0, 1, 2)), 0.3, 20)
    assert np.abs(np.roll(denoised, shift, axis=(0, 1, 2)) - shifted).max() < 1e-6


def test_non_periodic_mode_is_scikit_image(noisy_map):
    settings = TvSettings(max_iterations=30, periodic=False)
    ours = denoise(noisy_map, 0.2, settings)
    reference = denoise_tv_chambolle(noisy_map, weight=0.2, eps=0, max_num_iter=30)
    reference = (reference - reference.mean()) / reference.std() * noisy_map.std() \
        + noisy_map.mean()
    assert np.abs(ours - reference).max() < 1e-4


def test_denoised_map_keeps_mean_and_rms_and_is_smoother(noisy_map):
    denoised = denoise(noisy_map + 3.0, 0.5)
    assert denoised.dtype == np.float32
    assert denoised.mean() == pytest.approx(noisy_map.mean() + 3.0, abs=1e-4)
    assert denoised.std() == pytest.approx(noisy_map.std(), rel=1e-4)
    roughness = lambda m: np.abs(np.diff(m, axis=0)).mean()  # noqa: E731
    assert roughness(denoised) < 0.8 * roughness(noisy_map + 3.0)


def test_zero_weight_is_identity(noisy_map):
    assert np.array_equal(denoise(noisy_map, 0.0), noisy_map)


def test_weight_optimum_keeps_best_map_and_records_scan():
    rng = np.random.default_rng(3)
    signal = np.zeros((24, 24, 24), np.float32)
    signal[8:14, 9:15, 10:16] = 1.0
    noisy = signal + 0.3 * rng.normal(size=signal.shape).astype(np.float32)
    optimum = optimize_tv_weight(noisy, 0.01, 3.0, TvSettings(max_iterations=30))
    weights = [p.parameter for p in optimum.scan.points]
    assert 0.0 in weights and len(set(weights)) == len(weights)
    assert optimum.weight == optimum.scan.best.parameter
    assert np.array_equal(optimum.denoised_map, denoise(noisy, optimum.weight,
                                                       TvSettings(max_iterations=30)))
    cc = lambda a: np.corrcoef(a.ravel(), signal.ravel())[0, 1]  # noqa: E731
    assert cc(optimum.denoised_map) > cc(noisy) + 0.05
