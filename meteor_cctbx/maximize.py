"""One-dimensional maximisation that records every evaluated point.

The search is a coarse scan followed by bracket refinement: after the scan, the best point and
its two neighbours bracket the maximum.  Each round evaluates one point: the vertex of the
parabola through the best point and its neighbours when that vertex lies inside the bracket and
away from the points already there, else the midpoint of the bracket's larger half.  It stops
when the bracket is narrower than ``tolerance``.  With ``log_scale`` the search runs on log10 of the parameter.  No point is evaluated
twice.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, TextIO

import numpy as np


@dataclass
class ScanPoint:
    """One evaluation: the parameter value, its score, the seconds it took and any other
    criteria computed on the way (e.g. the negentropy of a map scored by validation)."""

    parameter: float
    score: float
    seconds: float
    others: dict[str, float] = field(default_factory=dict)


@dataclass
class ScanResult:
    """All evaluations of a maximisation, in evaluation order, and the best of them."""

    name: str
    points: list[ScanPoint] = field(default_factory=list)
    skipped: list[float] = field(default_factory=list)  # coarse end points left out (lazy_ends)

    @property
    def best(self) -> ScanPoint:
        finite = [p for p in self.points if math.isfinite(p.score)]
        if not finite:
            raise ValueError(f"no finite score in the {self.name} scan")
        return max(finite, key=lambda p: (p.score, -p.parameter))

    def as_dict(self) -> dict:
        best = self.best
        return {"name": self.name, "best_parameter": best.parameter, "best_score": best.score,
                "points": [{"parameter": p.parameter, "score": p.score, "seconds": p.seconds,
                            **p.others} for p in self.points],
                "skipped_end_points": list(self.skipped)}

    def point_at(self, parameter: float) -> ScanPoint:
        """The evaluated point at ``parameter``."""
        return next(p for p in self.points if p.parameter == parameter)


def scan_point_logger(log: TextIO, label: str, criterion: str, unit: str = "",
                      indent: str = "    ") -> Callable[[ScanPoint], None]:
    """A ``report`` callback (maximize_scalar) that prints each evaluated point to ``log`` as
    one line: the parameter ``label`` (with ``unit``), its score by ``criterion``, the other
    criteria and the seconds it took.  The one way scans log their progress."""
    def report(point: ScanPoint) -> None:
        others = "".join(f"  {name} = {value:.5f}" for name, value in point.others.items())
        print(f"{indent}{label} = {point.parameter:<10.5g}{unit} {criterion} = "
              f"{point.score:.5f}{others}  ({point.seconds:.2f} s)", file=log, flush=True)
    return report


def evaluate_point(score: Callable[[float], float | tuple[float, dict]], x: float
                   ) -> ScanPoint:
    """``score(x)`` as a timed ScanPoint (a non-finite score becomes -inf)."""
    start = time.perf_counter()
    value = score(x)
    value, others = value if isinstance(value, tuple) else (value, {})
    value = float(value)
    return ScanPoint(x, value if math.isfinite(value) else -math.inf,
                     time.perf_counter() - start, dict(others))


def maximize_scalar(score: Callable[[float], float | tuple[float, dict]], lower: float,
                    upper: float, *,
                    name: str = "parameter", n_coarse: int = 9, log_scale: bool = False,
                    tolerance: float = 0.01, max_rounds: int = 20,
                    extra_points: Sequence[float] = (), lazy_ends: Sequence[str] = (),
                    report: Callable[[ScanPoint], None] | None = None) -> ScanResult:
    """Maximise ``score(x)`` for x in [lower, upper].

    ``score`` returns the score, or (score, other criteria) to be recorded with the point.
    ``tolerance`` is the final bracket width in the search variable (x, or log10 x with
    ``log_scale``).  ``extra_points`` are evaluated with the coarse scan (e.g. x = 0 on a log
    scale).  The ends of the coarse scan named in ``lazy_ends`` ("lower", "upper") are evaluated
    only when the best point is next to them, which the bracket then needs (the scan keeps at
    least two other coarse points); those left out are listed in the result's ``skipped``.
    ``report`` is called with every new point (progress logging).
    """
    if not lower < upper:
        raise ValueError(f"{name}: empty search interval [{lower}, {upper}]")
    if log_scale and lower <= 0:
        raise ValueError(f"{name}: a log-scale search needs a positive lower bound")
    to_x = (lambda u: 10.0 ** u) if log_scale else (lambda u: u)
    lo, hi = (math.log10(lower), math.log10(upper)) if log_scale else (lower, upper)
    result = ScanResult(name=name)
    scores: dict[float, float] = {}

    def evaluate(us: Sequence[float]) -> None:
        new = sorted({round(u, 12) for u in us} - scores.keys())
        for u in new:
            point = evaluate_point(score, to_x(u))
            scores[u] = point.score
            record(point)

    def best_position() -> float:
        return max(scores, key=lambda u: (scores[u], -u))

    def record(point: ScanPoint) -> None:
        result.points.append(point)
        if report is not None:
            report(point)

    outside = [x for x in extra_points if log_scale and x <= 0]  # e.g. "no denoising", x = 0
    for x in outside:
        record(evaluate_point(score, x))
    coarse = [round(u, 12) for u in np.linspace(lo, hi, n_coarse)]
    unknown = set(lazy_ends) - {"lower", "upper"}
    if unknown:
        raise ValueError(f"{name}: lazy_ends takes 'lower' and 'upper', not {sorted(unknown)}")
    lazy = {end: (coarse[0], coarse[1]) if end == "lower" else (coarse[-1], coarse[-2])
            for end in lazy_ends} if n_coarse >= 2 + len(set(lazy_ends)) else {}
    ends = [end for end, _ in lazy.values()]
    evaluate([u for u in coarse if u not in ends] +
             [math.log10(x) if log_scale else x for x in extra_points if x not in outside])
    for end, inner in lazy.values():
        if best_position() == inner:
            evaluate([end])
    result.skipped = [to_x(u) for u in ends if u not in scores]

    for _ in range(max_rounds):
        grid = sorted(scores)
        i = grid.index(best_position())
        left, best, right = grid[max(i - 1, 0)], grid[i], grid[min(i + 1, len(grid) - 1)]
        if right - left <= tolerance:
            break
        vertex = None
        if left < best < right:
            vertex = parabola_vertex((left, scores[left]), (best, scores[best]),
                                     (right, scores[right]))
        if vertex is None or not left < vertex < right or \
                min(abs(vertex - left), abs(vertex - right), abs(vertex - best)) < tolerance / 2:
            vertex = (left + best) / 2 if best - left > right - best else (best + right) / 2
        evaluate([vertex])
    return result


def parabola_vertex(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]
                    ) -> float | None:
    """Abscissa of the maximum of the parabola through three points, None if it has none."""
    (x1, y1), (x2, y2), (x3, y3) = a, b, c
    denominator = (x2 - x1) * (y2 - y3) - (x2 - x3) * (y2 - y1)
    if denominator == 0:
        return None
    numerator = (x2 - x1) ** 2 * (y2 - y3) - (x2 - x3) ** 2 * (y2 - y1)
    curvature_sign = (y1 - y2) * (x3 - x2) + (y3 - y2) * (x2 - x1)
    if curvature_sign >= 0:  # not concave: no maximum
        return None
    return x2 - 0.5 * numerator / denominator
