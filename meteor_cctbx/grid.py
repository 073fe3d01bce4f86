"""Map coefficients <-> real-space float32 grid over the whole unit cell, with threaded FFTs.

Convention (cctbx's): F(h) = sum_j f_j exp(+2 pi i h.x_j) and
rho(x) = (1/V) sum_h F(h) exp(-2 pi i h.x), in e/A^3 on the absolute scale of F (F000 absent,
so the map has mean zero).  The grid is cctbx's crystal_gridding for the space group, so its
dimensions are compatible with the symmetry and have no prime factor above 5.

The space-group expansion of the asymmetric-unit reflections onto the P1 half-complex grid is
computed once per reflection set; each transform afterwards is a gather, a scatter and one
numpy FFT (pocketfft via scipy.fft, ``workers`` threads).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.fft
from cctbx import maptbx, miller
from cctbx.array_family import flex


def available_cores() -> int:
    """The cores this process may use (its CPU affinity)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def fft_workers() -> int:
    """Threads for FFTs: the cores this process may use, at most NUMBA_NUM_THREADS.

    One environment variable, NUMBA_NUM_THREADS, thus sets the threads of both threaded steps
    (FFTs and the numba TV kernels); results do not depend on it (tests/test_outputs.py).
    """
    import numba

    return max(1, min(available_cores(), numba.config.NUMBA_NUM_THREADS))


@dataclass(frozen=True)
class CellGrid:
    """Transforms between coefficients on ``miller_set`` (asymmetric unit) and a unit-cell grid.

    ``source[j]`` is the asymmetric-unit reflection whose value, times ``factor[j]`` (and
    conjugated where ``conjugate[j]``), goes to flat position ``target[j]`` of the half-complex
    (rfftn) grid.
    """

    miller_set: miller.set
    n_real: tuple[int, int, int]
    source: np.ndarray
    target: np.ndarray
    factor: np.ndarray
    conjugate: np.ndarray
    volume: float

    @classmethod
    def for_set(cls, miller_set: miller.set, sampling: float = 3.0,
                n_real: tuple[int, int, int] | None = None) -> "CellGrid":
        """Grid with spacing about d_min/sampling (A) for the non-anomalous ``miller_set``."""
        if miller_set.anomalous_flag():
            raise ValueError("map coefficients must be non-anomalous")
        miller_set = miller.set(miller_set, miller_set.indices(), anomalous_flag=False)
        if n_real is None:
            gridding = maptbx.crystal_gridding(
                unit_cell=miller_set.unit_cell(), d_min=miller_set.d_min(),
                resolution_factor=1.0 / sampling,
                space_group_info=miller_set.space_group_info(),
                symmetry_flags=maptbx.use_space_group_symmetry)
            n_real = tuple(int(n) for n in gridding.n_real())
        # Expanding F = 1 and F = i to P1 gives, for every symmetry mate in cctbx's order, its
        # phase-shift factor f and whether it is stored as a Friedel mate (F(h') = conj(f F)):
        # then expand(i) = -i expand(1).  The set's expansion says which reflection it came from.
        ones = miller.array(miller_set, flex.complex_double(miller_set.size(), 1 + 0j))
        p1 = ones.expand_to_p1()
        p1_i = ones.customized_copy(data=ones.data() * 1j).expand_to_p1()
        p1_set, iselection = miller_set.expand_to_p1(return_iselection=True)
        if not (p1_set.indices().all_eq(p1.indices()) and p1_i.indices().all_eq(p1.indices())):
            raise RuntimeError("cctbx expanded the set and the array to P1 in different orders")
        hkl = np.array(p1.indices(), dtype=np.int64).reshape(-1, 3)
        stored = p1.data().as_numpy_array()
        conjugate = np.abs(p1_i.data().as_numpy_array() + 1j * stored) < 1e-6
        factor = np.where(conjugate, np.conj(stored), stored)
        source = iselection.as_numpy_array().astype(np.int64)
        # the P1 set holds one reflection of each Friedel pair: add the mates, then keep the
        # half space l >= 0 that rfftn stores (both mates on the l = 0 plane)
        hkl = np.concatenate([hkl, -hkl])
        factor = np.concatenate([factor, factor])
        source = np.concatenate([source, source])
        conjugate = np.concatenate([conjugate, ~conjugate])
        keep = hkl[:, 2] >= 0
        hkl, factor, source, conjugate = hkl[keep], factor[keep], source[keep], conjugate[keep]
        n = np.array(n_real)
        if len(hkl) and np.any(np.abs(hkl).max(axis=0) * 2 >= n):
            raise ValueError(f"grid {n_real} too coarse for the reflections (d_min "
                             f"{miller_set.d_min():.2f} A)")
        half = (n[0], n[1], n[2] // 2 + 1)
        target = np.ravel_multi_index((hkl[:, 0] % n[0], hkl[:, 1] % n[1], hkl[:, 2]), half)
        order = np.argsort(target, kind="stable")
        target, order_unique = np.unique(target[order], return_index=True)
        pick = order[order_unique]
        return cls(miller_set=miller_set, n_real=tuple(n_real), source=source[pick],
                   target=target, factor=factor[pick].astype(np.complex128),
                   conjugate=conjugate[pick], volume=miller_set.unit_cell().volume())

    @property
    def half_shape(self) -> tuple[int, int, int]:
        return (self.n_real[0], self.n_real[1], self.n_real[2] // 2 + 1)

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.n_real))

    def to_map(self, coefficients: np.ndarray) -> np.ndarray:
        """Real-space map (float32, e/A^3, shape n_real) of complex ``coefficients`` on the set."""
        values = np.asarray(coefficients, dtype=np.complex128)[self.source] * self.factor
        values = np.where(self.conjugate, np.conj(values), values)
        spectrum = np.zeros(self.half_shape, dtype=np.complex64)
        # irfftn computes sum G exp(+2 pi i k.n / N) / N; rho needs exp(-2 pi i h.x): use conj(F)
        spectrum.flat[self.target] = np.conj(values) * (self.n_voxels / self.volume)
        return scipy.fft.irfftn(spectrum, s=self.n_real, workers=fft_workers())

    def to_coefficients(self, real_map: np.ndarray) -> np.ndarray:
        """Complex coefficients on the set of a real-space map; symmetry mates are averaged.

        Exact inverse of ``to_map`` for maps with the space-group symmetry; for others, the
        coefficients of the map's projection onto the symmetric maps.
        """
        spectrum = scipy.fft.rfftn(np.asarray(real_map, dtype=np.float32),
                                   workers=fft_workers())
        values = np.conj(spectrum.ravel()[self.target].astype(np.complex128))
        values *= self.volume / self.n_voxels
        values = np.where(self.conjugate, np.conj(values), values) * np.conj(self.factor)
        size = self.miller_set.size()
        counts = np.bincount(self.source, minlength=size)
        real = np.bincount(self.source, weights=values.real, minlength=size)
        imag = np.bincount(self.source, weights=values.imag, minlength=size)
        return (real + 1j * imag) / np.maximum(counts, 1)
