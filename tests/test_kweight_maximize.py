"""k-weights follow their formula; the 1-D maximiser finds known optima and records points."""
import io
import math

import numpy as np
import pytest

from meteor_cctbx.kweight import kweights
from meteor_cctbx.maximize import maximize_scalar, parabola_vertex, scan_point_logger


def test_kweights_formula_and_normalisation():
    rng = np.random.default_rng(0)
    delta = rng.normal(size=1000) * 10
    sigma = rng.uniform(1, 5, 1000)
    k = 0.3
    w = kweights(delta, sigma, k)
    expected = 1 / (1 + sigma ** 2 / np.mean(sigma ** 2) + k * delta ** 2 / np.mean(delta ** 2))
    assert np.allclose(w, expected / expected.mean())
    assert w.mean() == pytest.approx(1.0)


def test_k_zero_is_not_unweighted():
    sigma = np.array([1.0, 2.0, 4.0])
    w = kweights(np.array([1.0, 1.0, 1.0]), sigma, 0.0)
    assert w[0] > w[1] > w[2]


def test_large_differences_are_down_weighted_for_positive_k():
    w = kweights(np.array([1.0, 5.0, 20.0]), np.ones(3), 1.0)
    assert w[0] > w[1] > w[2]
    with pytest.raises(ValueError):
        kweights(np.ones(3), np.ones(3), -0.1)


@pytest.mark.parametrize("optimum", [0.0, 0.137, 0.61, 1.0])
def test_linear_search_finds_known_optimum(optimum):
    result = maximize_scalar(lambda x: -(x - optimum) ** 2, 0.0, 1.0, n_coarse=11,
                             tolerance=0.002)
    assert result.best.parameter == pytest.approx(optimum, abs=0.002)
    parameters = [p.parameter for p in result.points]
    assert len(parameters) == len(set(parameters)) <= 30


@pytest.mark.parametrize("optimum", [0.0021, 0.037, 0.4])
def test_log_search_finds_known_optimum_and_scores_extra_points(optimum):
    def score(x: float) -> float:
        return -99.0 if x <= 0 else -(math.log10(x) - math.log10(optimum)) ** 2

    result = maximize_scalar(score, 1e-3, 1.0, log_scale=True, n_coarse=9, tolerance=0.02,
                             extra_points=(0.0,))
    assert math.log10(result.best.parameter) == pytest.approx(math.log10(optimum), abs=0.02)
    assert result.points[0].parameter == 0.0
    assert result.as_dict()["best_parameter"] == result.best.parameter


def test_narrow_peak_between_coarse_points_is_found():
    result = maximize_scalar(lambda x: math.exp(-((x - 0.52) / 0.04) ** 2), 0, 1, n_coarse=11,
                             tolerance=0.001)
    assert result.best.parameter == pytest.approx(0.52, abs=0.002)


@pytest.mark.parametrize("optimum, scored_end", [(0.004, 1e-3), (0.05, None), (0.3, 1.0)])
def test_lazy_ends_are_scored_only_beside_the_best(optimum, scored_end):
    """With lazy_ends the coarse scan's two ends are scored only when the best point is next
    to one; the maximum found is the full scan's."""
    def score(x):
        return -(math.log10(x) - math.log10(optimum)) ** 2

    lazy = maximize_scalar(score, 1e-3, 1.0, log_scale=True, n_coarse=5, tolerance=0.02,
                           lazy_ends=("lower", "upper"))
    full = maximize_scalar(score, 1e-3, 1.0, log_scale=True, n_coarse=5, tolerance=0.02)
    scored = {p.parameter for p in lazy.points}
    ends = {1e-3, 1.0}
    assert scored | set(lazy.skipped) >= ends and not scored & set(lazy.skipped)
    assert scored & ends == ({scored_end} if scored_end else set())
    assert lazy.best.parameter == pytest.approx(full.best.parameter)
    assert lazy.best.parameter == pytest.approx(optimum, rel=0.05)


@pytest.mark.parametrize("optimum, upper_scored", [(0.0, False), (0.2, False), (0.9, True)])
def test_lazy_upper_end_of_a_three_point_scan(optimum, upper_scored):
    """The k scan's shape: 0, 1/2 and 1 with only the upper end lazy; 1 is scored only when
    1/2 beats 0, and the maximum is the full scan's."""
    def score(x):
        return -(x - optimum) ** 2

    lazy = maximize_scalar(score, 0.0, 1.0, n_coarse=3, tolerance=0.25, lazy_ends=("upper",))
    full = maximize_scalar(score, 0.0, 1.0, n_coarse=3, tolerance=0.25)
    scored = {p.parameter for p in lazy.points}
    assert 0.0 in scored and 0.5 in scored
    assert (1.0 in scored) == upper_scored and (lazy.skipped == [1.0]) != upper_scored
    assert lazy.best.parameter == full.best.parameter
    with pytest.raises(ValueError, match="lazy_ends"):
        maximize_scalar(score, 0.0, 1.0, n_coarse=3, lazy_ends=("top",))


def test_parabola_vertex():
    assert parabola_vertex((0, 0), (1, 1), (2, 0)) == pytest.approx(1.0)
    assert parabola_vertex((0, 0), (1, 2), (3, 0)) == pytest.approx(1.5)
    assert parabola_vertex((0, 0), (1, -1), (2, 0)) is None


def test_scan_point_logger_prints_one_line_per_evaluated_point():
    log = io.StringIO()
    result = maximize_scalar(lambda x: (-(x - 0.3) ** 2, {"other": 2 * x}), 0.0, 1.0,
                             name="x", n_coarse=5, tolerance=0.05,
                             report=scan_point_logger(log, "x", "score", " A", "  "))
    lines = log.getvalue().splitlines()
    assert len(lines) == len(result.points)
    for line, point in zip(lines, result.points):
        assert line.startswith(f"  x = {point.parameter:<10.5g} A score = {point.score:.5f}")
        assert f"other = {point.others['other']:.5f}" in line and line.endswith(" s)")
