"""TV denoising: the periodic solver minimises scikit-image's ROF model on a periodic cell."""
import numpy as np
import pytest
from skimage.restoration import denoise_tv_chambolle

from meteor_cctbx.tv import TvSettings, denoise, tv_denoise_periodic


@pytest.fixture
def noisy_map():
    rng = np.random.default_rng(0)
    return rng.normal(size=(18, 20, 22)).astype(np.float32)


def rof_energy(u: np.ndarray, f: np.ndarray, weight: float) -> float:
    """|u - f|^2/2 + weight * isotropic TV with periodic forward differences."""
    gradient = [np.roll(u, -1, axis) - u for axis in range(3)]
    return float(0.5 * ((u - f) ** 2).sum()
                 + weight * np.sqrt(sum(g.astype(np.float64) ** 2 for g in gradient)).sum())


@pytest.fixture
def blob():
    """A noisy blob with wide empty margins: a periodic and an image solver then solve the same
    problem, since the flat background contributes no TV across the faces either way."""
    rng = np.random.default_rng(1)
    f = np.zeros((28, 30, 32), np.float32)
    f[10:18, 11:19, 12:20] = 2.0
    f[8:20, 9:21, 10:22] += rng.normal(0, 0.3, (12, 12, 12)).astype(np.float32)
    return f


def chambolle_periodic_reference(f: np.ndarray, weight: float, n: int) -> np.ndarray:
    """scikit-image's Chambolle iteration with wrap-around differences, in plain numpy."""
    dual = np.zeros((3,) + f.shape)
    out = f.astype(np.float64)
    for iteration in range(n):
        if iteration:
            out = f - sum(dual[a] - np.roll(dual[a], 1, a) for a in range(3))
        gradient = np.stack([np.roll(out, -1, a) - out for a in range(3)])
        norm = np.sqrt((gradient ** 2).sum(0))
        dual = (dual - gradient / 6) / (1 + norm / (6 * weight))
    return out


def test_reference_is_scikit_image_on_a_wrapped_map(noisy_map):
    pad = 2 * 6 + 2  # information moves at most two voxels per iteration
    wrapped = denoise_tv_chambolle(np.pad(noisy_map, pad, mode="wrap"), weight=0.4, eps=0,
                                   max_num_iter=6)[pad:-pad, pad:-pad, pad:-pad]
    assert np.abs(chambolle_periodic_reference(noisy_map, 0.4, 6) - wrapped).max() < 1e-5


def test_periodic_solver_reaches_scikit_image_minimiser(blob):
    ours = tv_denoise_periodic(blob, 0.3, 500)
    reference = denoise_tv_chambolle(blob, weight=0.3, eps=1e-12, max_num_iter=4000)
    assert rof_energy(ours, blob, 0.3) <= rof_energy(reference, blob, 0.3) * (1 + 1e-5)
    assert np.abs(ours - reference).max() < 0.01 * np.abs(blob).max()


@pytest.mark.parametrize("case, weight", [("noise", 0.4), ("blob", 0.3)])
def test_fast_gradient_projection_beats_chambolle_iterations(case, weight, noisy_map, blob):
    """50 iterations reach a lower ROF energy than 100 of Chambolle's iteration."""
    f = noisy_map if case == "noise" else blob
    chambolle = chambolle_periodic_reference(f, weight, 100)
    fast = tv_denoise_periodic(f, weight, 50)
    assert rof_energy(fast, f, weight) < rof_energy(chambolle, f, weight)
    energies = [rof_energy(tv_denoise_periodic(f, weight, n), f, weight) for n in (5, 20, 80)]
    assert energies[0] > energies[1] > energies[2]


def test_threaded_solver_uses_the_safe_threading_layer_and_threads_agree(noisy_map):
    """The same result with 1 and 2 threads (each voxel is computed by one thread), on the
    workqueue layer."""
    import numba

    threads = numba.get_num_threads()
    try:
        results = []
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            results.append(tv_denoise_periodic(noisy_map, 0.4, 20))
    finally:
        numba.set_num_threads(threads)
    assert numba.threading_layer() == "workqueue"
    assert numba.config.NUMBA_NUM_THREADS >= 2, "this test needs 2 threads to compare"
    assert np.array_equal(results[0], results[1])
    assert not np.array_equal(results[0], noisy_map)  # it did denoise


def fista_periodic_reference(f: np.ndarray, weight: float, n: int) -> np.ndarray:
    """The fast gradient projection of ``tv_denoise_periodic`` in plain numpy (float64), two
    passes per iteration: u = f - div(y), then the projected dual step and the momentum."""
    f = f.astype(np.float64)
    dual = np.zeros((3,) + f.shape)
    extrapolated = dual.copy()
    t = 1.0
    divergence = lambda p: sum(p[a] - np.roll(p[a], 1, a) for a in range(3))  # noqa: E731
    for _ in range(n):
        u = f - divergence(extrapolated)
        z = extrapolated - np.stack([np.roll(u, -1, a) - u for a in range(3)]) / 12
        z *= weight / np.maximum(np.sqrt((z ** 2).sum(0)), weight)
        t_next = (1 + np.sqrt(1 + 4 * t * t)) / 2
        extrapolated = z + (t - 1) / t_next * (z - dual)
        dual, t = z, t_next
    return f - divergence(dual)


@pytest.mark.parametrize("shape", [(18, 20, 22), (1, 6, 7), (2, 5, 6), (3, 4, 5)])
def test_one_pass_iteration_is_the_two_pass_algorithm(shape):
    """The fused kernel (dual step and next primal in one pass, slab by slab) computes the
    two-pass iteration, also for cells only one to three planes thick."""
    f = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    reference = fista_periodic_reference(f, 0.4, 25)
    assert np.abs(tv_denoise_periodic(f, 0.4, 25) - reference).max() < 1e-5


def test_one_pass_iteration_does_not_depend_on_the_slabs(noisy_map):
    """Every voxel gets the same arithmetic whatever the slabs: bitwise equal results."""
    from meteor_cctbx.tv import _fista_step

    results = []
    nx = noisy_map.shape[0]
    for starts in ([0, nx], [0, 7, nx], list(range(nx + 1))):
        primal = noisy_map.copy()
        extrapolated = np.zeros((3,) + noisy_map.shape, np.float32)
        dual = np.zeros_like(extrapolated)
        for momentum in (0.0, 0.3, 0.5):
            _fista_step(noisy_map, primal, extrapolated, dual, np.float32(0.4),
                        np.float32(1 / 12), np.float32(momentum), np.array(starts, np.int64))
        results.append((primal, extrapolated, dual))
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other))


def test_reused_dual_buffers_start_each_denoising_from_zero(noisy_map):
    """The dual arrays a thread keeps between denoisings of one shape are reused and zeroed:
    a map denoised after another map of the same shape (and after a map of another shape)
    is bitwise the map denoised in a fresh thread, whose buffers are new."""
    import threading

    from meteor_cctbx.tv import zeroed_dual_buffers

    def fresh_thread_result() -> np.ndarray:
        out = {}
        thread = threading.Thread(target=lambda: out.update(
            result=tv_denoise_periodic(noisy_map, 0.4, 20)))
        thread.start()
        thread.join()
        return out["result"]

    reference = fresh_thread_result()
    tv_denoise_periodic(noisy_map[::-1].copy() * 3, 0.9, 20)  # leaves other values behind
    first = zeroed_dual_buffers(noisy_map.shape)
    assert zeroed_dual_buffers(noisy_map.shape)[0] is first[0]  # kept for this shape
    first[0][:] = 5.0  # as if a denoising had left its dual there
    assert np.array_equal(tv_denoise_periodic(noisy_map, 0.4, 20), reference)
    tv_denoise_periodic(noisy_map[:, :, :-1].copy(), 0.4, 20)  # another shape replaces them
    assert zeroed_dual_buffers(noisy_map.shape)[0] is not first[0]
    assert np.array_equal(tv_denoise_periodic(noisy_map, 0.4, 20), reference)


def test_periodic_solver_commutes_with_cell_translations(noisy_map):
    shift = (5, 11, 3)
    denoised = tv_denoise_periodic(noisy_map, 0.3, 20)
    shifted = tv_denoise_periodic(np.roll(noisy_map, shift, axis=(0, 1, 2)), 0.3, 20)
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
