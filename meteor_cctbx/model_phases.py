"""Model structure factors for phasing and scaling: F_model = F_calc + k_mask * F_mask.

The model's structure factors come from cctbx with the chosen scattering table; the flat bulk
solvent (mmtbx.f_model, mask from the model) and overall scales are fitted against the native
amplitudes, and F_model is returned without those overall scales, on the absolute scale of the
model.  Phases are those of F_model (radians inside numpy, degrees in files).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import iotbx.pdb
import numpy as np
import mmtbx.f_model
import mmtbx.model
from cctbx import crystal, miller
from cctbx.array_family import flex
from libtbx import Auto
from libtbx.utils import Sorry, null_out

from meteor_cctbx.cif_check import check_cif, looks_like_cif
from meteor_cctbx.file_checks import check_input_file
from meteor_cctbx.messages import one_line
from meteor_cctbx.reflections import check_same_crystal_form, fmt_cell

SCATTERING_TABLES = ("n_gaussian", "wk1995", "it1992", "electron", "neutron")


def model_from_pdb_text(pdb_text: str, crystal_symmetry: crystal.symmetry | None = None
                        ) -> mmtbx.model.manager:
    """A model manager from PDB-format text (e.g. a benchmark family's phasing model), with
    ``crystal_symmetry`` when given (else the text's CRYST1)."""
    return mmtbx.model.manager(
        model_input=iotbx.pdb.input(source_info=None, lines=pdb_text.splitlines()),
        crystal_symmetry=crystal_symmetry)


def load_model(path: str | os.PathLike, data_symmetry: crystal.symmetry | None = None,
               max_cell_difference_percent: float = 3.0, log=None) -> mmtbx.model.manager:
    """Read a PDB/mmCIF model; give it the data's symmetry when it has none (said in the log).

    Sorry for an unreadable file, a model without atoms, or a symmetry that disagrees with the
    data (different space group, or cell edges differing beyond the threshold).
    """
    log = log or null_out()
    path = check_input_file(path, "model file")
    if looks_like_cif(path):
        check_cif(path)  # iotbx.cif's parser crashes on some damaged files
    try:
        model_input = iotbx.pdb.input(file_name=str(path))
    except Exception as error:
        raise Sorry(f"Cannot read model {path}: {one_line(error, 200)}; give a PDB or mmCIF "
                    f"model.") from error
    atoms = model_input.atoms()
    if atoms.size() == 0:
        raise Sorry(f"Model {path} has no atoms: give the model of the native structure.")
    check_atoms(atoms, path)
    symmetry = model_input.crystal_symmetry()
    usable = (symmetry is not None and symmetry.unit_cell() is not None
              and symmetry.space_group_info() is not None
              and symmetry.unit_cell().volume() > 10)
    if data_symmetry is not None:
        if not usable:
            print(f"  Model {path} has no usable CRYST1/cell record: using the data's "
                  f"symmetry ({data_symmetry.space_group_info()}, "
                  f"{fmt_cell(data_symmetry.unit_cell())}).", file=log)
            symmetry = data_symmetry
        else:
            check_same_crystal_form(symmetry, data_symmetry, f"Model {path}", "the data",
                                    max_cell_difference_percent,
                                    "give a model in the data's setting",
                                    "give a model for these data or raise the threshold")
            symmetry = data_symmetry
    elif not usable:
        raise Sorry(f"Model {path} has no crystal symmetry (CRYST1) and no data give one.")
    try:
        model = mmtbx.model.manager(model_input=model_input, crystal_symmetry=symmetry, log=log)
    except Exception as error:
        raise Sorry(f"Cannot build a model from {path}: {one_line(error, 200)}.") from error
    return model


#: Largest B (A^2) of a model that can phase: beyond it the atoms scatter (almost) nothing.
MAX_B_ISO = 999.0


def check_atoms(atoms, path) -> None:
    """Sorry for atoms that cannot give phases: negative or only zero occupancies, every
    B-factor beyond MAX_B_ISO, or every atom on one site."""
    occupancies = atoms.extract_occ().as_numpy_array()
    if (occupancies < 0).any():
        raise Sorry(f"Model {path}: {int((occupancies < 0).sum())} atoms have negative "
                    f"occupancy (lowest {occupancies.min():g}): occupancies lie between 0 and "
                    f"1; fix the model.")
    occupied = occupancies > 0
    if not occupied.any():
        raise Sorry(f"Model {path}: all {atoms.size()} atoms have zero occupancy, so the model "
                    f"gives no phases: give a model with occupied atoms.")
    b_iso = atoms.extract_b().as_numpy_array()[occupied]
    if (b_iso > MAX_B_ISO).all():
        raise Sorry(f"Model {path}: every occupied atom has B > {MAX_B_ISO:g} A^2 (lowest "
                    f"{b_iso.min():g}), so the model scatters nothing: give the refined model.")
    sites = atoms.extract_xyz().as_numpy_array()[occupied]
    if len(sites) > 1 and np.ptp(sites, axis=0).max() < 0.01:
        raise Sorry(f"Model {path}: all {len(sites)} occupied atoms sit on one site "
                    f"({', '.join(f'{v:.2f}' for v in sites[0])}): the coordinates are "
                    f"missing or damaged; give the refined model.")


def describe_model(model: mmtbx.model.manager) -> str:
    """'361 atoms' with what else matters for phasing: hydrogens, zero occupancies, altlocs."""
    hierarchy = model.get_hierarchy()
    atoms = hierarchy.atoms()
    notes = []
    hydrogens = sum(atom.element.strip().upper() in ("H", "D") for atom in atoms)
    if hydrogens:
        notes.append(f"{hydrogens} hydrogens, included")
    unoccupied = (atoms.extract_occ() <= 0).count(True)
    if unoccupied:
        notes.append(f"{unoccupied} with zero occupancy, contributing nothing")
    altlocs = sorted({group.altloc for group in hierarchy.atom_groups()} - {""})
    if altlocs:
        notes.append(f"alternate conformations {','.join(altlocs)} at their occupancies")
    return f"{atoms.size()} atoms" + (f" ({'; '.join(notes)})" if notes else "")


@dataclass
class ModelStructureFactors:
    """F_model on the native reflections, and what the bulk-solvent fit found."""

    f_model: miller.array  # complex, F_calc + k_mask F_mask, absolute scale of the model
    r_work: float  # R between |F_model| (with fitted overall scales) and the native data
    k_mask_mean: float
    scattering_table: str
    bulk_solvent: bool
    n_atoms: int
    seconds: float

    def as_dict(self) -> dict:
        return {"r_work": self.r_work, "k_mask_mean": self.k_mask_mean,
                "scattering_table": self.scattering_table, "bulk_solvent": self.bulk_solvent,
                "n_atoms": self.n_atoms, "seconds": self.seconds}


def model_structure_factors(model: mmtbx.model.manager, native: miller.array,
                            scattering_table: str = "n_gaussian",
                            bulk_solvent: bool = True) -> ModelStructureFactors:
    """F_model of ``model`` on the reflections of the native amplitudes ``native``."""
    if scattering_table not in SCATTERING_TABLES:
        raise Sorry(f"Unknown model.scattering_table={scattering_table}: choose one of "
                    f"{' '.join(SCATTERING_TABLES)}.")
    start = time.perf_counter()
    model.setup_scattering_dictionaries(scattering_table=scattering_table)
    xrs = model.get_xray_structure()
    if not (xrs.scatterers().extract_occupancies() > 0).count(True):
        raise Sorry("The model has no atoms with non-zero occupancy to compute phases from.")
    try:
        if bulk_solvent:
            flags = native.array(data=flex.bool(native.size(), False))
            fmodel = mmtbx.f_model.manager(f_obs=native, r_free_flags=flags,
                                           xray_structure=xrs)
            fmodel.update_all_scales(remove_outliers=False, log=null_out())
            f_model = fmodel.f_model_no_scales()
            r_work = float(fmodel.r_work())
            k_mask_mean = float(flex.mean(fmodel.k_masks()[0]))
        else:
            f_model = native.structure_factors_from_scatterers(xrs, algorithm="fft").f_calc()
            r_work = float(native.r1_factor(abs(f_model), scale_factor=Auto))
            k_mask_mean = 0.0
    except RuntimeError as error:  # mmtbx asserts when the model scatters nothing
        raise Sorry(f"The model's structure factors cannot be fitted to the native data "
                    f"({one_line(error, 200)[-80:]}): check the model's coordinates, B-factors and "
                    f"occupancies.") from error
    amplitudes = flex.abs(f_model.data()).as_numpy_array()
    if not np.isfinite(amplitudes).all() or not amplitudes.any():
        raise Sorry("The model gives zero or non-finite structure factors: check the model's "
                    "coordinates, B-factors and occupancies.")
    return ModelStructureFactors(
        f_model=f_model.set_info(miller.array_info(labels=["F_MODEL", "PHI_MODEL"])),
        r_work=r_work, k_mask_mean=k_mask_mean,
        scattering_table=scattering_table, bulk_solvent=bulk_solvent,
        n_atoms=int(xrs.scatterers().size()), seconds=time.perf_counter() - start)
