"""Synthetic isomorphous pairs with a known true difference map: the built-in example, the
tests' ground truth and the benchmarks' input.

A native and a derivative structure (the derivative = native + a "ligand" at some occupancy)
give true structure factors F = F_calc + k_sol exp(-B_sol s^2/4) F_mask (flat bulk solvent).
Each data set is put on its own overall scale and anisotropic B, measured with noise
(sigma grows with resolution, as in real data), and the phasing model is the native with
coordinate and B-factor errors.  The truth is the complex difference F_der - F_nat on the
native's scale, whose map is the ideal derivative-minus-native map.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from cctbx import adptbx, crystal, miller, xray
from cctbx.array_family import flex
from cctbx.development import random_structure

K_SOL, B_SOL = 0.35, 46.0  # typical flat bulk-solvent parameters (e/A^3, A^2)


def random_protein_like(space_group_symbol: str = "P 21 21 21",
                        unit_cell: tuple = (36, 40, 44, 90, 90, 90), atoms_per_a3: float = 0.06,
                        b_iso: float = 18.0, seed: int = 0) -> xray.structure:
    """A compact blob of C/N/O/S atoms filling an ellipsoid inscribed in one asymmetric unit.

    Symmetry copies never overlap and about half the cell is solvent, so a bulk-solvent mask
    is meaningful.  Atoms keep at least 1.4 A from each other and from symmetry mates.
    """
    symmetry = crystal.symmetry(unit_cell=unit_cell, space_group_symbol=space_group_symbol)
    asu = symmetry.space_group_info().direct_space_asu()
    box_min = np.array([float(v) for v in asu.box_min()])
    box_max = np.array([float(v) for v in asu.box_max()])
    center, half = (box_min + box_max) / 2, (box_max - box_min) / 2
    volume = symmetry.unit_cell().volume() / symmetry.space_group().order_z()
    n_atoms = int(volume * atoms_per_a3)
    elements = list(np.random.default_rng(seed).choice(["C", "C", "C", "N", "O", "O", "S"],
                                                       size=n_atoms))
    flex.set_random_seed(seed)
    random.seed(seed)
    filled = random_structure.xray_structure(
        space_group_info=symmetry.space_group_info(), unit_cell=symmetry.unit_cell(),
        elements=elements, min_distance=1.4, general_positions_only=True,
        random_u_iso=False, u_iso=adptbx.b_as_u(b_iso))
    sites = _into_box(np.array(filled.sites_frac()).reshape(-1, 3), symmetry, box_min, box_max)
    filled.set_sites_frac(flex.vec3_double(sites))
    inside = (((sites - center) / (half * 0.92)) ** 2).sum(axis=1) <= 1.0
    blob = filled.select(flex.bool(inside))
    rng = np.random.default_rng(seed + 1)
    b_values = b_iso * rng.uniform(0.7, 1.5, blob.scatterers().size())
    blob.set_b_iso(values=flex.double(b_values))
    return blob


def _into_box(sites: np.ndarray, symmetry: crystal.symmetry, box_min: np.ndarray,
              box_max: np.ndarray) -> np.ndarray:
    """The symmetry mate of each fractional site that lies inside the box (asymmetric unit)."""
    result = sites.copy()
    placed = np.zeros(len(sites), bool)
    for op in symmetry.space_group().all_ops():
        matrix = np.array(op.r().as_double()).reshape(3, 3)
        mate = sites @ matrix.T + np.array(op.t().as_double())
        mate -= np.floor(mate)
        inside = np.all((mate >= box_min) & (mate < box_max), axis=1) & ~placed
        result[inside] = mate[inside]
        placed |= inside
    return result


def ligand_selection(structure: xray.structure, radius: float = 3.2, seed: int = 0
                     ) -> np.ndarray:
    """Boolean selection of the atoms within ``radius`` A of an atom near the blob's centre:
    the part present only in the derivative (a bound ligand, a moved side chain)."""
    sites = np.array(structure.sites_cart()).reshape(-1, 3)
    centre = sites.mean(axis=0)
    order = np.argsort(np.linalg.norm(sites - centre, axis=1))
    anchor = sites[order[np.random.default_rng(seed).integers(0, 10)]]
    return np.linalg.norm(sites - anchor, axis=1) <= radius


def true_structure_factors(structure: xray.structure, miller_set: miller.set) -> miller.array:
    """F_calc + flat bulk solvent (k_sol, B_sol fixed) of ``structure`` on ``miller_set``."""
    import mmtbx.f_model

    f_calc = miller_set.structure_factors_from_scatterers(structure, algorithm="fft").f_calc()
    fmodel = mmtbx.f_model.manager(f_obs=abs(f_calc), xray_structure=structure,
                                   k_sol=K_SOL, b_sol=B_SOL)
    return fmodel.f_model_no_scales()


def measured(f_true: miller.array, scale: float, b_cart: tuple, sigma_fraction: float,
             rng: np.random.Generator) -> miller.array:
    """Amplitudes 'measured' from true F: overall scale and anisotropic B applied, Gaussian
    noise with sigma = sigma_fraction <|F|>_shell (0.3 + 0.7 (d_min/d)^2)."""
    u_star = adptbx.u_cart_as_u_star(f_true.unit_cell(), adptbx.b_as_u(b_cart))
    hkl = np.array(f_true.indices(), dtype=float).reshape(-1, 3)
    u = np.array(u_star)
    quadratic = (hkl[:, 0] ** 2 * u[0] + hkl[:, 1] ** 2 * u[1] + hkl[:, 2] ** 2 * u[2]
                 + 2 * hkl[:, 0] * hkl[:, 1] * u[3] + 2 * hkl[:, 0] * hkl[:, 2] * u[4]
                 + 2 * hkl[:, 1] * hkl[:, 2] * u[5])
    amplitudes = np.abs(f_true.data().as_numpy_array()) * scale * \
        np.exp(-2 * np.pi ** 2 * quadratic)
    d = f_true.d_spacings().data().as_numpy_array()
    shells = np.minimum((f_true.d_min() / d) ** 2 * 10, 9.999).astype(int)
    shell_mean = np.bincount(shells, weights=amplitudes) / np.maximum(np.bincount(shells), 1)
    sigmas = sigma_fraction * shell_mean[shells] * (0.3 + 0.7 * (f_true.d_min() / d) ** 2)
    observed = np.abs(amplitudes + rng.normal(size=amplitudes.size) * sigmas)
    return f_true.customized_copy(data=flex.double(observed), sigmas=flex.double(sigmas)
                                  ).set_observation_type_xray_amplitude()


@dataclass
class SyntheticPair:
    """Measured derivative and native amplitudes, the phasing model and the truth."""

    derivative: miller.array
    native: miller.array
    phasing_model: xray.structure
    true_difference: miller.array  # complex F_der - F_nat, native scale
    native_structure: xray.structure
    derivative_structure: xray.structure


def make_pair(native_structure: xray.structure, derivative_structure: xray.structure,
              d_min: float, sigma_fraction: float = 0.05, coordinate_error: float = 0.3,
              b_error_fraction: float = 0.15, seed: int = 0) -> SyntheticPair:
    """Simulate an isomorphous pair from two structures of the same crystal.

    The derivative is measured on a scale 1.7 times the native's with a different anisotropic
    B, so scaling has something to do; the phasing model is the native structure with
    ``coordinate_error`` A rms coordinate errors and B-factors off by ``b_error_fraction``.
    """
    rng = np.random.default_rng(seed)
    miller_set = native_structure.build_miller_set(anomalous_flag=False, d_min=d_min)
    miller_set = miller_set.select(miller_set.d_spacings().data() >= d_min)
    f_native = true_structure_factors(native_structure, miller_set)
    f_derivative = true_structure_factors(derivative_structure, miller_set)
    native = measured(f_native, 1.0, (4.0, 2.0, -3.0, 0.0, 0.0, 0.0), sigma_fraction, rng)
    derivative = measured(f_derivative, 1.7, (-2.0, 5.0, 1.0, 0.0, 0.0, 0.0),
                          sigma_fraction, rng)
    model = native_structure.deep_copy_scatterers()
    flex.set_random_seed(seed + 7)
    if coordinate_error > 0:
        model.shake_sites_in_place(rms_difference=coordinate_error)
    b_values = model.extract_u_iso_or_u_equiv().as_numpy_array() * adptbx.u_as_b(1.0)
    model.set_b_iso(values=flex.double(b_values * rng.normal(1.0, b_error_fraction,
                                                             b_values.size).clip(0.5, 2.0)))
    truth = f_derivative.customized_copy(data=f_derivative.data() - f_native.data())
    return SyntheticPair(derivative, native, model, truth, native_structure,
                         derivative_structure)


def small_example(d_min: float = 2.0, ligand_occupancy: float = 1.0, seed: int = 0,
                  sigma_fraction: float = 0.05, **cell) -> SyntheticPair:
    """A small P212121 pair: random protein-like blob, a ~10-atom 'ligand' in the derivative."""
    native_plus = random_protein_like(seed=seed, **cell)
    ligand = ligand_selection(native_plus, seed=seed)
    native = native_plus.select(flex.bool(~ligand))
    derivative = native_plus.deep_copy_scatterers()
    occupancies = np.where(ligand, ligand_occupancy, 1.0)
    derivative.set_occupancies(flex.double(occupancies))
    return make_pair(native, derivative, d_min, sigma_fraction=sigma_fraction, seed=seed)


def structure_as_pdb(structure: xray.structure) -> str:
    """PDB text (with CRYST1) of an xray.structure, one residue per atom."""
    return structure.as_pdb_file(remark="synthetic model made by meteor_cctbx", resname="UNK")

