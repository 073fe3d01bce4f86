"""A family of realistic two-state isomorphous pairs with known truth, for benchmarks and tests.

Every case is a crystal holding two states: the native, and a minor state present at
``occupancy`` q.  The derivative's structure factors are the mixture
F_der = (1 - q) F_nat + q F_minor (each state with its own flat bulk solvent), so the true
difference is F_der - F_nat = q (F_minor - F_nat) and the extrapolated structure factors
F_nat + (F_der - F_nat)/q are exactly F_minor.  Three kinds of change make the minor state:

* ``compact``: a ligand (for 8a6g, the chromophore OHD A 68 with its alternate conformations,
  or the atoms of another site of ``SITES_8A6G``) bound in the native's pocket; waters closer
  than 2.2 A to it leave;
* ``spread``: the ligand plus the side chains within 4.5 A of it and one loop of six residues
  moved by 0.5-2 A (one rigid displacement per side chain or loop), and B-factors raised by
  30 % within 10 A of the ligand;
* ``loop`` (not in the default family, ``CHANGES``): as ``spread``, but the loop swings about
  the axis through its end atoms (a hinge, like a lid closing over a ligand) so that its
  farthest atom moves by 3-6 A.

The true native is the deposited model shaken by ~0.3 A rms, so the phasing model (the deposited
model itself) is honestly wrong.  A non-isomorphous case (``cell_change`` per cent) grows the
derivative crystal's cell edges by that much with the asymmetric unit's Cartesian coordinates
kept (rigid molecules, the lattice expanded: the symmetry mates move by up to ~cell_change % of
the cell); both of its states are computed in that cell on the same indices, and its true
difference F_der - F_nat holds the lattice change as well as the minor state (as a reference
built from two refined models, each in its own cell, does).  Amplitudes are 'measured' on the
reflections of a real data set with noise drawn from its sigmas: sigma(h) = noise_scale x
(SIGF/<F>_shell of the real data at h) x <|F_true|>_shell, one real sigma column per data set;
each data set gets its own overall scale and anisotropic B.

    source = source_8a6g(data_dir, d_min=1.8)
    for case in family_cases(source):          # 2 changes x 4 occupancies x 2 noise levels
        case.derivative, case.native, case.phasing_model, case.true_difference, case.true_minor
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from cctbx import adptbx, miller, xray
from cctbx.array_family import flex

from meteor_cctbx.resolution_shells import shell_means
from meteor_cctbx.synthetic import true_structure_factors

CHANGES = ("compact", "spread")     # the default family
ALL_CHANGES = CHANGES + ("loop",)
WATER_CLASH = 2.2   # A: the native's waters closer than this to the ligand leave
OCCUPANCIES = (0.1, 0.2, 0.4, 1.0)
NOISE_SCALES = (1.0, 2.0)
N_SIGMA_SHELLS = 20
NATIVE_SCALE = (1.0, (4.0, 2.0, -3.0, 0.0, 0.0, 0.0))      # overall scale, B_cart (A^2)
DERIVATIVE_SCALE = (1.7, (-2.0, 5.0, 1.0, 0.0, 0.0, 0.0))


@dataclass
class TwoStateSource:
    """The structures and noise pattern every case of one family is drawn from.

    ``relative_sigmas`` hold, per data set ('native', 'derivative'), sigma(h)/<F>_shell(h) on
    ``miller_set`` (the real data's pattern); ``minor_states`` the pure minor structure of each
    kind of change; ``signal_sites`` the Cartesian sites (A) of what changes, per kind.
    """

    name: str
    miller_set: miller.set
    true_native: xray.structure
    minor_states: dict[str, xray.structure]
    phasing_model: xray.structure
    phasing_model_pdb: str
    relative_sigmas: dict[str, np.ndarray]
    signal_sites: dict[str, flex.vec3_double]
    _f_true: dict[str, miller.array] = field(default_factory=dict, repr=False)

    def true_structure_factors(self, state: str, cell_change: float = 0.0) -> miller.array:
        """Complex F (absolute scale, flat bulk solvent) of 'native' or a change kind, in the
        native's cell or in one whose edges are ``cell_change`` per cent longer (the same
        Cartesian coordinates, the same indices); cached."""
        key = (state, cell_change)
        if key not in self._f_true:
            structure = self.true_native if state == "native" else self.minor_states[state]
            miller_set = self.miller_set
            if cell_change:
                structure = with_cell_edges_scaled(structure, 1 + cell_change / 100)
                miller_set = miller_set.customized_copy(
                    crystal_symmetry=structure.crystal_symmetry())
            self._f_true[key] = true_structure_factors(structure, miller_set)
        return self._f_true[key]


@dataclass
class FamilyCase:
    """One measured pair of the family with its truths (complex arrays on the same set)."""

    name: str
    change: str
    occupancy: float
    noise_scale: float
    derivative: miller.array       # measured |F|, sigmas (own scale and anisotropy)
    native: miller.array
    phasing_model: xray.structure
    phasing_model_pdb: str
    true_native: miller.array      # complex F_nat
    true_minor: miller.array       # complex F of the pure minor state (native's cell)
    true_difference: miller.array  # complex F_der - F_nat = q (F_minor - F_nat), plus the
    #                                lattice change of a non-isomorphous case
    signal_sites: flex.vec3_double

    @property
    def true_derivative(self) -> miller.array:
        return self.true_native.customized_copy(
            data=self.true_native.data() + self.true_difference.data())


def relative_sigmas_of(amplitudes: miller.array, n_shells: int = N_SIGMA_SHELLS) -> np.ndarray:
    """sigma(h) / <F>_shell(h) in ``n_shells`` resolution shells of equal count."""
    f = amplitudes.data().as_numpy_array()
    sigma = amplitudes.sigmas().as_numpy_array()
    return sigma / shell_means(amplitudes.d_spacings().data().as_numpy_array(), f, n_shells)


def anisotropic_factors(miller_set: miller.set, b_cart: Sequence[float]) -> np.ndarray:
    """exp(-2 pi^2 h^T U* h) for B_cart (A^2) on ``miller_set``."""
    u_star = np.array(adptbx.u_cart_as_u_star(miller_set.unit_cell(), adptbx.b_as_u(b_cart)))
    h = np.array(miller_set.indices(), dtype=float).reshape(-1, 3)
    quadratic = (h[:, 0] ** 2 * u_star[0] + h[:, 1] ** 2 * u_star[1] + h[:, 2] ** 2 * u_star[2]
                 + 2 * (h[:, 0] * h[:, 1] * u_star[3] + h[:, 0] * h[:, 2] * u_star[4]
                        + h[:, 1] * h[:, 2] * u_star[5]))
    return np.exp(-2 * np.pi ** 2 * quadratic)


def measure(f_true: miller.array, relative_sigmas: np.ndarray, noise_scale: float,
            scale: float, b_cart: Sequence[float], rng: np.random.Generator) -> miller.array:
    """Amplitudes measured from complex ``f_true``: scale and anisotropy applied, then Gaussian
    noise sigma(h) = noise_scale relative_sigmas(h) <|F|>_shell; sigmas are reported as drawn
    (noise_scale included), so they are honest."""
    amplitudes = np.abs(f_true.data().as_numpy_array()) * scale * \
        anisotropic_factors(f_true, b_cart)
    d_spacings = f_true.d_spacings().data().as_numpy_array()
    sigmas = noise_scale * relative_sigmas * shell_means(d_spacings, amplitudes, N_SIGMA_SHELLS)
    observed = np.abs(amplitudes + rng.normal(size=amplitudes.size) * sigmas)
    return miller.array(f_true, flex.double(observed), flex.double(sigmas)
                        ).set_observation_type_xray_amplitude()


def check_change(change: str) -> None:
    """ValueError unless ``change`` is one of ALL_CHANGES."""
    if change not in ALL_CHANGES:
        raise ValueError(f"unknown change {change!r}; expected one of {ALL_CHANGES}")


def make_case(source: TwoStateSource, change: str, occupancy: float, noise_scale: float,
              seed: int = 0, cell_change: float = 0.0) -> FamilyCase:
    """One case of the family: measured pair, phasing model and truths; ``cell_change``
    (per cent) makes the derivative crystal non-isomorphous (module docstring)."""
    if not 0 < occupancy <= 1:
        raise ValueError(f"occupancy must be in (0, 1], got {occupancy}")
    check_change(change)
    f_native = source.true_structure_factors("native")
    f_minor = source.true_structure_factors(change)
    own_native, own_minor = (source.true_structure_factors(state, cell_change)
                             for state in ("native", change))
    minor_change = (own_minor.data() - own_native.data()) * occupancy
    f_derivative = own_native.customized_copy(data=own_native.data() + minor_change)
    difference = f_native.customized_copy(
        data=f_derivative.data() - f_native.data() if cell_change else minor_change)
    case_seed = [seed, ALL_CHANGES.index(change), int(round(occupancy * 1000)),
                 int(round(noise_scale * 100))] + ([int(round(cell_change * 100))]
                                                   if cell_change else [])
    rng = np.random.default_rng(case_seed)
    native = measure(f_native, source.relative_sigmas["native"], noise_scale, *NATIVE_SCALE,
                     rng)
    derivative = measure(f_derivative, source.relative_sigmas["derivative"], noise_scale,
                         *DERIVATIVE_SCALE, rng)
    name = (f"{source.name}_{change}_q{occupancy:g}_noise{noise_scale:g}"
            + (f"_cell{cell_change:+g}" if cell_change else ""))
    return FamilyCase(name, change, occupancy, noise_scale, derivative, native,
                      source.phasing_model, source.phasing_model_pdb, f_native, f_minor,
                      difference, source.signal_sites[change])


def with_sigmas_scaled(case: FamilyCase, factor: float) -> FamilyCase:
    """``case`` with both data sets' stated sigmas times ``factor``, the measured amplitudes
    unchanged: errors stated too large (``factor`` > 1) or too small, as real data often state
    them (the family's own sigmas are the noise drawn)."""
    def scaled(array: miller.array) -> miller.array:
        return array.customized_copy(sigmas=array.sigmas() * factor)

    return replace(case, name=f"{case.name}_sigmas{factor:g}x", derivative=scaled(case.derivative),
                   native=scaled(case.native))


def family_cases(source: TwoStateSource, changes: Sequence[str] = CHANGES,
                 occupancies: Sequence[float] = OCCUPANCIES,
                 noise_scales: Sequence[float] = NOISE_SCALES, seed: int = 0,
                 cell_changes: Sequence[float] = (0.0,)) -> Iterator[FamilyCase]:
    """Every combination of change, occupancy, noise level and cell change, in that order."""
    for change in changes:
        for occupancy in occupancies:
            for noise_scale in noise_scales:
                for cell_change in cell_changes:
                    yield make_case(source, change, occupancy, noise_scale, seed, cell_change)


# ------------------------------------------------------------------------- building states

def with_cell_edges_scaled(structure: xray.structure, factor: float) -> xray.structure:
    """Copy in a cell whose edges a, b, c are ``factor`` times longer (angles and space group
    kept), its atoms at the same Cartesian sites (isotropic ADPs)."""
    from cctbx import crystal

    parameters = list(structure.unit_cell().parameters())
    symmetry = crystal.symmetry(unit_cell=[p * factor for p in parameters[:3]] + parameters[3:],
                                space_group_info=structure.space_group_info())
    copy = xray.structure(crystal.special_position_settings(symmetry),
                          structure.scatterers().deep_copy())
    copy.set_sites_cart(structure.sites_cart())
    return copy


def shaken(structure: xray.structure, rms: float, seed: int) -> xray.structure:
    """Copy with random coordinate errors of ``rms`` A (seeded)."""
    copy = structure.deep_copy_scatterers()
    if rms > 0:
        flex.set_random_seed(seed)
        copy.shake_sites_in_place(rms_difference=rms)
    return copy


def minor_state(native: xray.structure, ligand: xray.structure, is_water: np.ndarray,
                change: str, moved_groups: Sequence[np.ndarray], rng: np.random.Generator,
                shift_range: tuple[float, float] = (0.5, 2.0), b_increase: float = 0.3,
                b_radius: float = 10.0, swing_range: tuple[float, float] = (3.0, 6.0)
                ) -> xray.structure:
    """The pure minor state: the native plus ``ligand`` without the waters within 2.2 A of it;
    for 'spread' also each group of atoms in ``moved_groups`` (atom indices; the loop last)
    rigidly displaced by 0.5-2 A in a random direction, and B raised by ``b_increase`` within
    ``b_radius`` A of the ligand; for 'loop' the same, but the loop rotated about the axis
    through its first and last atoms so that its farthest atom moves by ``swing_range`` A.
    ``is_water`` flags the native's waters."""
    check_change(change)
    sites = np.array(native.sites_cart()).reshape(-1, 3)
    distance = distance_to(sites, np.array(ligand.sites_cart()).reshape(-1, 3))
    keep = staying_atoms(is_water, distance)
    state = native.deep_copy_scatterers()
    if change != "compact":
        moved = sites.copy()
        for number, group in enumerate(moved_groups):
            direction = rng.normal(size=3)
            shift = rng.uniform(*shift_range)  # drawn for every group: spread's draws kept
            if change == "loop" and number == len(moved_groups) - 1:
                moved[group] = swung(sites[group], rng.uniform(*swing_range),
                                     np.sign(direction[0]) or 1.0)
            else:
                moved[group] += direction / np.linalg.norm(direction) * shift
        state.set_sites_cart(flex.vec3_double(moved))
        b = state.extract_u_iso_or_u_equiv().as_numpy_array() * adptbx.u_as_b(1.0)
        state.set_b_iso(values=flex.double(np.where(distance < b_radius,
                                                    b * (1 + b_increase), b)))
    state = state.select(flex.bool(keep))
    state.add_scatterers(ligand.scatterers())
    return state


def staying_atoms(is_water: np.ndarray, distance_to_ligand: np.ndarray) -> np.ndarray:
    """Bool per native atom: kept in a minor state (all but the waters closer than
    WATER_CLASH to the ligand); ``distance_to_ligand`` in A."""
    return ~(is_water & (distance_to_ligand < WATER_CLASH))


def swung(sites: np.ndarray, displacement: float, sense: float) -> np.ndarray:
    """``sites`` (Cartesian, A) rotated about the axis through the first and the last of them,
    by the angle (of sign ``sense``) that moves the site farthest from the axis by
    ``displacement`` A."""
    origin, axis = sites[0], sites[-1] - sites[0]
    axis = axis / np.linalg.norm(axis)
    relative = sites - origin
    along = relative @ axis
    radial = relative - along[:, None] * axis
    radius = float(np.linalg.norm(radial, axis=1).max())
    angle = sense * 2.0 * np.arcsin(min(1.0, displacement / (2.0 * radius)))
    rotated = radial * np.cos(angle) + np.cross(axis, radial) * np.sin(angle)
    return origin + along[:, None] * axis + rotated


def distance_to(sites: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each site, the distance (A) to the nearest of ``others`` (Cartesian, A)."""
    return np.min(np.linalg.norm(sites[:, None, :] - others[None, :, :], axis=2), axis=1)


def spread_groups(sites: np.ndarray, residues: np.ndarray, is_side_chain: np.ndarray,
                  is_water: np.ndarray, ligand_sites: np.ndarray, radius: float = 4.5,
                  loop_length: int = 6) -> list[np.ndarray]:
    """Atom groups the 'spread' change moves, each rigidly: the side chain of every residue
    with a side-chain atom within ``radius`` A of the ligand, and the ``loop_length``
    consecutive protein residues nearest the ligand beyond that radius (a loop that moves with
    it), whole."""
    distance = distance_to(sites, ligand_sites)
    near = np.unique(residues[is_side_chain & (distance < radius)])
    groups = [np.flatnonzero((residues == r) & is_side_chain) for r in near]
    protein = np.unique(residues[~is_water])
    centres = np.array([sites[residues == r].mean(axis=0) for r in protein])
    centre_distance = np.linalg.norm(centres - ligand_sites.mean(axis=0), axis=1)
    candidates = [i for i in range(len(protein) - loop_length)
                  if centre_distance[i] > 2 * radius
                  and not set(near) & set(protein[i:i + loop_length])]
    start = min(candidates, key=lambda i: centre_distance[i:i + loop_length].mean())
    groups.append(np.flatnonzero(np.isin(residues, protein[start:start + loop_length])))
    return groups


def source_from_models(name: str, native_input, ligand_input, ligand_selection: str,
                       miller_set: miller.set, relative_sigmas: dict[str, np.ndarray],
                       shake_rms: float = 0.3, seed: int = 0) -> TwoStateSource:
    """A source from a native model (iotbx.pdb.input; the phasing model) and a model holding
    the ligand (the atoms of ``ligand_selection``)."""
    hierarchy = native_input.construct_hierarchy()
    symmetry = native_input.crystal_symmetry()
    phasing_model = hierarchy.extract_xray_structure(crystal_symmetry=symmetry)
    atoms = hierarchy.atoms()
    residues = np.zeros(atoms.size(), dtype=np.int64)
    for number, group in enumerate(hierarchy.residue_groups()):
        for atom in group.atoms():
            residues[atom.i_seq] = number
    names = [atom.name.strip() for atom in atoms]
    resnames = [atom.parent().resname.strip() for atom in atoms]
    is_water = np.array([r in ("HOH", "WAT", "DOD") for r in resnames])
    is_side_chain = ~is_water & ~np.isin(names, ["N", "CA", "C", "O", "OXT"])
    ligand_hierarchy = ligand_input.construct_hierarchy()
    ligand_hierarchy = ligand_hierarchy.select(
        ligand_hierarchy.atom_selection_cache().selection(ligand_selection))
    ligand = ligand_hierarchy.extract_xray_structure(crystal_symmetry=symmetry)
    true_native = shaken(phasing_model, shake_rms, seed)
    sites = np.array(true_native.sites_cart()).reshape(-1, 3)
    ligand_sites = np.array(ligand.sites_cart()).reshape(-1, 3)
    groups = spread_groups(sites, residues, is_side_chain, is_water, ligand_sites)
    minor = {change: minor_state(true_native, ligand, is_water, change, groups,
                                 np.random.default_rng([seed, 17]))
             for change in ALL_CHANGES}
    moved = np.concatenate(groups)
    # what changes: the ligand and the moved atoms where they were (within 2 A of where
    # they went, but for the swung loop, whose new sites count too)
    kept = np.flatnonzero(staying_atoms(is_water, distance_to(sites, ligand_sites)))
    went = np.array(minor["loop"].sites_cart()).reshape(-1, 3)[np.searchsorted(kept, moved)]
    signal = {"compact": ligand.sites_cart(),
              "spread": ligand.sites_cart().concatenate(flex.vec3_double(sites[moved])),
              "loop": ligand.sites_cart().concatenate(
                  flex.vec3_double(np.concatenate([sites[moved], went])))}
    pdb_text = hierarchy.as_pdb_string(crystal_symmetry=symmetry)
    return TwoStateSource(name, miller_set, true_native, minor, phasing_model, pdb_text,
                          relative_sigmas, signal)


SITES_8A6G = {
    # the chromophore OHD A 68 (B ~19 A^2, below the model's median 24.5), taken out of the
    # deposited model in 8a6g-chromophore-removed.pdb
    "chromophore": "resname OHD",
    # a second, independent site: the side chains of Phe 100 and Tyr 183 (15 atoms, B ~33 A^2,
    # 11-14 A from the chromophore), taken out of the native model as if a fragment bound there
    "phe100_tyr183": "(resseq 100 or resseq 183) and not (name N or name CA or name C or name O)",
}


def source_8a6g(data_dir: str | os.PathLike, d_min: float | None = 1.8, shake_rms: float = 0.3,
                seed: int = 0, site: str = "chromophore") -> TwoStateSource:
    """The 8a6g family: reflections and sigma patterns of the real light (derivative) / dark
    (native) data in scaled-test-data.mtz, cut at ``d_min``, and the ligand of ``site``
    (``SITES_8A6G``): for the chromophore, native = the chromophore-free model and ligand = the
    chromophore of 8a6g.pdb; for another site, the chromophore-free model without the site's
    atoms is the native (and the phasing model), and those atoms are the ligand."""
    import iotbx.pdb

    from meteor_cctbx.reflections import load_amplitudes

    if site not in SITES_8A6G:
        raise ValueError(f"unknown 8a6g site {site!r}; expected one of {sorted(SITES_8A6G)}")
    data_dir = Path(data_dir)
    mtz = data_dir / "scaled-test-data.mtz"
    native = load_amplitudes(mtz, "F_off,SIGF_off", "Native")
    derivative = load_amplitudes(mtz, "F_on,SIGF_on", "Derivative")
    if d_min is not None:
        native = native.resolution_filter(d_min=d_min)
    native, derivative = native.common_sets(derivative)
    sigmas = {"native": relative_sigmas_of(native), "derivative": relative_sigmas_of(derivative)}
    tag = "8a6g" if d_min is None else f"8a6g_{d_min:g}A"
    free_model = iotbx.pdb.input(str(data_dir / "8a6g-chromophore-removed.pdb"))
    if site == "chromophore":
        native_input, ligand_input = free_model, iotbx.pdb.input(str(data_dir / "8a6g.pdb"))
    else:
        tag += f"_{site}"
        hierarchy = free_model.construct_hierarchy()
        selection = hierarchy.atom_selection_cache().selection(SITES_8A6G[site])
        native_input = iotbx.pdb.input(
            source_info=None, lines=hierarchy.select(~selection).as_pdb_string(
                crystal_symmetry=free_model.crystal_symmetry()).splitlines())
        # a second input of the same file: an input builds its hierarchy only once
        ligand_input = iotbx.pdb.input(str(data_dir / "8a6g-chromophore-removed.pdb"))
    reflections = native.customized_copy(data=None, sigmas=None).as_non_anomalous_set()
    return source_from_models(tag, native_input, ligand_input, SITES_8A6G[site], reflections,
                              sigmas, shake_rms=shake_rms, seed=seed)


def source_small(d_min: float = 2.0, seed: int = 0, shake_rms: float = 0.3,
                 **cell) -> TwoStateSource:
    """A small family for tests: the random protein-like blob of ``synthetic`` (one atom per
    residue) with a ~10-atom ligand taken out of it, sigma pattern of the synthetic model
    (0.05 <|F|> (0.3 + 0.7 (d_min/d)^2), 25 % spread per reflection)."""
    import iotbx.pdb

    from meteor_cctbx.synthetic import (ligand_selection, random_protein_like,
                                        structure_as_pdb)

    blob = random_protein_like(seed=seed, **cell)
    is_ligand = ligand_selection(blob, seed=seed)
    native = blob.select(flex.bool(~is_ligand))
    ligand = blob.select(flex.bool(is_ligand))
    native_input = iotbx.pdb.input(source_info=None,
                                   lines=structure_as_pdb(native).splitlines())
    ligand_input = iotbx.pdb.input(source_info=None,
                                   lines=structure_as_pdb(ligand).splitlines())
    miller_set = native.build_miller_set(anomalous_flag=False, d_min=d_min)
    d = miller_set.d_spacings().data().as_numpy_array()
    rng = np.random.default_rng([seed, 5])
    sigmas = {role: 0.05 * (0.3 + 0.7 * (d_min / d) ** 2) *
              rng.lognormal(0.0, 0.25, d.size) for role in ("native", "derivative")}
    return source_from_models(f"small_{d_min:g}A", native_input, ligand_input, "all",
                              miller_set, sigmas, shake_rms=shake_rms, seed=seed)


def write_case(case: FamilyCase, directory: str | os.PathLike) -> dict[str, Path]:
    """derivative.mtz and native.mtz (F, SIGF), model.pdb (phasing model), truth.mtz
    (FTRUE/PHTRUE: F_der - F_nat; FMINOR/PHMINOR: the pure minor state; FNAT/PHNAT)."""
    from meteor_cctbx.example import write_amplitudes_mtz
    from meteor_cctbx.record import write_bytes, write_map_coefficients_mtz

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {name: directory / f"{name}.mtz" for name in ("derivative", "native", "truth")}
    paths["model"] = directory / "model.pdb"
    write_amplitudes_mtz(paths["derivative"], case.derivative)
    write_amplitudes_mtz(paths["native"], case.native)
    write_bytes(paths["model"], case.phasing_model_pdb.encode())
    write_map_coefficients_mtz(paths["truth"], [(case.true_difference, "FTRUE", "PHTRUE"),
                                                (case.true_minor, "FMINOR", "PHMINOR"),
                                                (case.true_native, "FNAT", "PHNAT")])
    return paths
