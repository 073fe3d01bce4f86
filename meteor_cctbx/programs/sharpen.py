"""meteor.sharpen: sharpen a map by a B-factor chosen by map clarity, or by half-map or
map-model FSC weighting."""
from __future__ import annotations

import contextlib
import os
import time

import numpy as np
from cctbx import miller
from iotbx.map_model_manager import map_model_manager as MapModelManager
from libtbx import group_args
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry, null_out

from meteor_cctbx import local_sharpen, sharpen, solvent_fraction
from meteor_cctbx.file_checks import check_input_file, check_map_file
from meteor_cctbx.phil import master_phil_str, refuse_unused_template_output
from meteor_cctbx.record import (MtzNames, Panel, check_outputs_writable, output_set,
                                 params_as_dict, run_context, software_versions, write_json,
                                 write_map_coefficients_mtz, write_map_manager,
                                 write_panels_png)

OUTPUT_SUFFIXES = (".ccp4", ".mtz", ".json", ".png")


class Program(ProgramTemplate):
    description = """
meteor.sharpen: make a blurred map interpretable by restoring its fall-off with resolution.

Methods (sharpening.method):
  b_factor  one B applied to every Fourier term to the resolution (d_cut), terms beyond it
            blurred; chosen by maximising a map-clarity score (sharpening.score =
            negentropy, kurtosis or adjusted_sa; never below 0 for a blurred map), or given
            as b_sharpen=<B> or as a target overall B b_iso=<B>
  half_map  the half maps' average weighted by 2 FSC/(1 + FSC) in shells, then sharpened by
            the B the score chooses (half_map_weighting=fsc, default), or cctbx's
            half_map_sharpen (half_map_weighting=cctbx, optionally anisotropic and local)
  model     map-model FSC-weighted shell sharpening (cctbx), optionally anisotropic and local
  auto      half_map with half maps, else model with a model, else b_factor
  local=True  b_factor and half_map (fsc): each voxel sharpened by its local Wilson B
            relative to the molecule's (from the half maps when given)

Inputs: a map (CCP4/MRC), two half maps, or map coefficients (MTZ, labels=FWT,PHWT); a model
for model sharpening; resolution=<A> unless it follows from the half maps or the MTZ.

Outputs: <prefix>.ccp4 (sharpened map on the input grid and origin), <prefix>.mtz (its map
coefficients FWT/PHWT), <prefix>.json (run record), <prefix>.png (score against B, half-map
FSC, applied scale against resolution).  output.prefix defaults to "meteor_sharpen".

Examples:
  meteor.sharpen map.ccp4 resolution=3.2
  meteor.sharpen half_map=half_1.mrc half_map=half_2.mrc
  meteor.sharpen half_map=half_1.mrc half_map=half_2.mrc sharpening.local=True
  meteor.sharpen map.ccp4 model.pdb resolution=2.8
  meteor.sharpen refine.mtz labels=2FOFCWT,PH2FOFCWT sharpening.score=kurtosis
"""

    datatypes = ["real_map", "miller_array", "model", "phil"]
    master_phil_str = master_phil_str("sharpen")

    # ------------------------------------------------------------------------------------------

    def validate(self):
        p = self.params
        refuse_unused_template_output(p, "meteor.sharpen")
        for path in [p.map_model.full_map, p.map_model.model, *p.map_model.half_map]:
            if path:
                check_input_file(path)
        n_maps = len(self.data_manager.get_real_map_names())
        n_reflection_files = len(self.data_manager.get_miller_array_names())
        if n_maps == 0 and n_reflection_files == 0:
            raise Sorry("No map given: give a map (CCP4/MRC), two half maps (half_map=...) or "
                        "map coefficients (MTZ).")
        if n_maps and n_reflection_files:
            raise Sorry("Give either maps or map coefficients, not both: the MTZ "
                        f"{self.data_manager.get_miller_array_names()[0]} and the map "
                        f"{self.data_manager.get_real_map_names()[0]} were both given.")
        if n_reflection_files > 1:
            raise Sorry("Give one reflection file with map coefficients, not "
                        f"{n_reflection_files}.")
        if len(self.data_manager.get_model_names()) > 1:
            raise Sorry("Give at most one model.")
        if len(p.map_model.half_map) not in (0, 2):
            raise Sorry(f"Give exactly two half maps, not {len(p.map_model.half_map)} "
                        f"({', '.join(p.map_model.half_map)}).")
        self.check_maps_and_model()
        s = p.sharpening
        self.method = self.resolve_method()
        if s.b_sharpen is not None and s.b_iso is not None:
            raise Sorry("Give sharpening.b_sharpen or sharpening.b_iso, not both.")
        if s.search.b_min >= s.search.b_max:
            raise Sorry(f"sharpening.search.b_min ({s.search.b_min:g}) must be below "
                        f"sharpening.search.b_max ({s.search.b_max:g}).")
        if self.method == "half_map" and not self._has_half_maps():
            raise Sorry("sharpening.method=half_map needs two half maps: give "
                        "half_map=<file 1> half_map=<file 2>.")
        if self.method == "model" and not self.data_manager.get_model_names():
            raise Sorry("sharpening.method=model needs a model: add a PDB/mmCIF file.")
        if self.method != "b_factor" and (s.b_sharpen is not None or s.b_iso is not None):
            raise Sorry(f"sharpening.b_sharpen and sharpening.b_iso apply to "
                        f"sharpening.method=b_factor, not {self.method}.")
        if (p.resolution is None and n_reflection_files == 0 and not self._has_half_maps()):
            raise Sorry("The resolution of a single map is not known: give "
                        "resolution=<nominal resolution in A>.")
        check_outputs_writable(self.output_paths().values(), p.output.overwrite)

    def map_file_names(self) -> list[str]:
        """The map files: full map, half maps, then any others, each group sorted by name
        (iotbx lists half maps in hash order, which differs from run to run)."""
        p = self.params.map_model
        names = [p.full_map] if p.full_map else []
        names += sorted(set(p.half_map) - set(names))
        return names + sorted(set(self.data_manager.get_real_map_names()) - set(names))

    def check_maps_and_model(self) -> None:
        """Sorry for a map cctbx cannot use (see file_checks.check_map_file), maps on
        different grids, or a model whose cell is not the map's."""
        from meteor_cctbx.reflections import fmt_cell, max_cell_difference

        names = self.map_file_names()
        for name in names:
            check_map_file(name, allow_constant=False)
        if not names:
            return
        first = self.data_manager.get_real_map(names[0])

        def grid(mm):
            return (tuple(mm.map_data().all()), tuple(mm.unit_cell_grid),
                    tuple(mm.origin_shift_grid_units),
                    tuple(round(v, 3) for v in mm.unit_cell_crystal_symmetry().unit_cell(
                    ).parameters()))
        for name in names[1:]:
            other = self.data_manager.get_real_map(name)
            if grid(other) != grid(first):
                raise Sorry(f"Map {name} is on another grid than {names[0]} (points, cell grid, "
                            f"origin, cell {grid(other)} against {grid(first)}): resample the "
                            f"maps onto one grid (e.g. phenix.map_box or a common box).")
        for model_name in self.data_manager.get_model_names():
            symmetry = self.data_manager.get_model(model_name).crystal_symmetry()
            if symmetry is None or symmetry.unit_cell() is None \
                    or symmetry.unit_cell().volume() < 10:
                continue
            map_cell = first.unit_cell_crystal_symmetry().unit_cell()
            if max_cell_difference(symmetry.unit_cell(), map_cell) > 1.0:
                raise Sorry(f"Model {model_name} has the cell {fmt_cell(symmetry.unit_cell())} "
                            f"but the map {names[0]} has {fmt_cell(map_cell)}: give a model "
                            f"placed in the map's cell (or one without a CRYST1 record).")

    def clamped_to_nyquist(self, resolution: float, map_manager) -> float:
        """``resolution``, or the map's Nyquist limit (2 voxels, A) with a warning when finer."""
        cell = map_manager.unit_cell_crystal_symmetry().unit_cell().parameters()
        nyquist = 2 * max(edge / n for edge, n in zip(cell[:3], map_manager.unit_cell_grid))
        if resolution >= nyquist:
            return resolution
        self._print(f"Warning: resolution={resolution:g} A is finer than the map's Nyquist "
                    f"limit (2 voxels = {nyquist:.3f} A); using {nyquist:.3f} A.")
        return nyquist

    def _has_half_maps(self) -> bool:
        if self.params.map_model.half_map:
            return True
        return len(self.data_manager.get_real_map_names()) in (2, 3)

    def resolve_method(self) -> str:
        """The method to run: sharpening.method, with auto resolved from the inputs."""
        s = self.params.sharpening
        if s.method != "auto":
            return s.method
        if s.b_sharpen is not None or s.b_iso is not None:
            return "b_factor"
        if self._has_half_maps():
            return "half_map"
        if self.data_manager.get_model_names():
            return "model"
        return "b_factor"

    def output_paths(self) -> dict[str, str]:
        if not self.params.output.prefix:
            raise Sorry("output.prefix is empty: give output.prefix=<path and file stem>.")
        return {suffix[1:]: self.params.output.prefix + suffix for suffix in OUTPUT_SUFFIXES}

    # ------------------------------------------------------------------------------------------

    def run(self):
        self.timings: dict[str, float] = {}
        dm = self.data_manager
        self.record: dict = {"program": "meteor.sharpen", "versions": software_versions(),
                             "run": run_context(self.map_file_names()  # not hash order
                                                + dm.get_miller_array_names()
                                                + dm.get_model_names()),
                             "parameters": params_as_dict(self.params),
                             "method": self.method}
        workers = self.params.nproc or -1
        with self.timed("read input"):
            mmm, map_coefficients = self.read_inputs()
        input_map = mmm.map_manager()
        fsc = None
        if mmm.map_manager_1() and mmm.map_manager_2():
            with self.timed("half-map FSC"):
                fsc = sharpen.half_map_fsc(mmm.map_manager_1(), mmm.map_manager_2())
            self.record["fsc"] = fsc.as_dict()
            self._print(f"Half-map FSC = {sharpen.FSC_CUTOFF} at d = "
                        f"{_format(fsc.d_min, '.2f')} A")
        resolution = self.clamped_to_nyquist(self.resolution(fsc, map_coefficients), input_map)
        d_min = resolution * self.params.sharpening.d_min_ratio
        self.record.update(resolution=resolution, fourier_d_min=d_min)
        with self.timed("Wilson B"):
            b_before = sharpen.wilson_b(input_map.map_as_fourier_coefficients(d_min=d_min),
                                        resolution)

        self.header(f"Sharpening by method {self.method}")
        with self.timed(f"sharpen ({self.method})"):
            sharpened, b_factor_result = self.sharpen(mmm, map_coefficients, resolution,
                                                      d_min, b_before,
                                                      workers)

        with self.timed("diagnostics"):
            scale = sharpen.applied_scale(
                input_map.map_data().as_numpy_array(), sharpened.map_data().as_numpy_array(),
                input_map.crystal_symmetry().unit_cell(), resolution, workers=workers)
            d_wilson = resolution
            if b_factor_result is not None and b_factor_result.d_signal > resolution:
                d_wilson = b_factor_result.d_signal  # FSC weight: no terms beyond
                b_before = sharpen.wilson_b(
                    input_map.map_as_fourier_coefficients(d_min=d_min), d_wilson)
            b_after = sharpen.wilson_b(sharpened.map_as_fourier_coefficients(d_min=d_min),
                                       d_wilson)
        self.record.update(effective_b=scale.effective_b, applied_scale=scale.as_dict(),
                           wilson_b_before=b_before, wilson_b_after=b_after,
                           wilson_b_d_min=d_wilson)
        self._print(f"Effective B applied: {scale.effective_b:.1f} A^2 (the input sharpened "
                    f"by exp(B d*^2/4) to {resolution:.2f} A correlates best with the result: "
                    f"CC {scale.correlation:.3f})")
        self._print(f"Overall (Wilson) B of the map to {d_wilson:.2f} A: {b_before:.1f} A^2 "
                    f"before, {b_after:.1f} A^2 after")

        with self.timed("write output"):
            self.write_outputs(sharpened, map_coefficients, b_factor_result, d_min, scale, fsc)
        self._print("Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))

    @contextlib.contextmanager
    def timed(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - start

    def read_inputs(self) -> tuple[MapModelManager, miller.array | None]:
        """The maps and model, origin shifted to (0, 0, 0), and the map coefficients if given."""
        try:
            if not self.data_manager.get_miller_array_names():
                mmm = self.data_manager.get_map_model_manager(from_phil=True)
                # iotbx names and labels the average of two half maps after the one it lists
                # first, in hash order: the output takes them from the maps sorted by name
                names = self.map_file_names()
                self.input_labels = list(self.data_manager.get_real_map(names[0]).labels or [])
                self.input_file_name = mmm.map_manager().file_name
                if len(names) >= 2 and "_and_" in str(self.input_file_name):
                    self.input_file_name = "_and_".join(
                        os.path.splitext(os.path.basename(n))[0] for n in names[:2]
                    ) + os.path.splitext(names[0])[1]
                return mmm, None
            map_coefficients = self.read_map_coefficients()
            map_manager = sharpen.map_manager_from_coefficients(map_coefficients)
            model = (self.data_manager.get_model() if self.data_manager.get_model_names()
                     else None)
            return MapModelManager(map_manager=map_manager, model=model), map_coefficients
        except (AssertionError, RuntimeError, ValueError) as error:
            raise Sorry(f"The map and model inputs do not fit together ({error}): give maps "
                        f"on one grid and a model placed in the same cell.") from error

    def read_map_coefficients(self) -> miller.array:
        """The complex array named by ``labels`` (or the only one) in the reflection file."""
        file_name = self.data_manager.get_miller_array_names()[0]
        arrays = {a.info().label_string(): a for a in
                  self.data_manager.get_miller_arrays(filename=file_name)
                  if a.is_complex_array()}
        if not arrays:
            from meteor_cctbx.reflections import describe_arrays

            held = describe_arrays(self.data_manager.get_miller_arrays(filename=file_name))
            raise Sorry(f"{file_name} holds no map coefficients (amplitude + phase pairs), only "
                        f"{held}: give an MTZ with map coefficients (e.g. FWT,PHWT) or a map.")
        available = ", ".join(arrays)
        if self.params.labels:
            wanted = ",".join(label for item in self.params.labels for label in
                              item.replace(",", " ").split())
            if wanted not in arrays:
                raise Sorry(f"No map coefficients labelled {wanted} in {file_name}: use "
                            f"labels= with one of: {available}.")
            return arrays[wanted].as_non_anomalous_array().merge_equivalents().array()
        if len(arrays) != 1:
            raise Sorry(f"{file_name} holds {len(arrays)} sets of map coefficients: choose "
                        f"one with labels= (available: {available}).")
        return next(iter(arrays.values())).as_non_anomalous_array().merge_equivalents().array()

    def resolution(self, fsc: sharpen.FscCurve | None,
                   map_coefficients: miller.array | None) -> float:
        if self.params.resolution is not None:
            resolution, source = self.params.resolution, "given"
        elif map_coefficients is not None:
            resolution, source = map_coefficients.d_min(), "limit of the map coefficients"
        elif fsc is not None and fsc.d_min is not None:
            resolution, source = fsc.d_min, f"half-map FSC = {sharpen.FSC_CUTOFF}"
        else:
            raise Sorry("The half maps do not correlate down to FSC = 0.143, so their "
                        "resolution is not known: give resolution=<nominal resolution in A>.")
        self._print(f"Resolution: {resolution:.2f} A ({source})")
        return resolution

    def sharpen(self, mmm: MapModelManager, map_coefficients: miller.array | None,
                resolution: float, d_min: float, map_wilson_b: float, workers: int):
        """The sharpened map_manager and, for b_factor, the B-factor result."""
        s = self.params.sharpening
        nproc = self.params.nproc or os.cpu_count() or 1
        mmm.set_log(self.logger if self.params.output.verbose else null_out())
        method = self.method
        if method == "half_map" and s.half_map_weighting == "cctbx":
            return sharpen.sharpen_with_half_maps(mmm, resolution, anisotropic=s.anisotropic,
                                                  local=s.local, nproc=nproc), None
        if method == "model":
            return sharpen.sharpen_with_model(mmm, resolution, anisotropic=s.anisotropic,
                                              local=s.local, nproc=nproc), None
        halves = ([self.fourier_map(m, workers) for m in (mmm.map_manager_1(),
                                                           mmm.map_manager_2())]
                  if mmm.map_manager_1() and mmm.map_manager_2() else None)
        if method == "half_map":
            form = sharpen.ShellWeightedForm.from_half_maps(*halves, d_min)
        else:
            form = self.sharpening_form(resolution, d_min)
            if s.noise_weight == "solvent" and s.b_sharpen is None and s.b_iso is None:
                # shells to the resolution (and never past the data): terms beyond it carry
                # no signal the weight could be measured on
                to = max(resolution, map_coefficients.d_min()) if map_coefficients \
                    else resolution
                form = self.solvent_noise_form(mmm.map_manager(), resolution, to,
                                               workers) or form
        search = sharpen.search_for_map(
            sharpen.BSearch(b_min=s.search.b_min, b_max=s.search.b_max,
                            n_steps=s.search.n_steps, tolerance=s.search.tolerance),
            map_wilson_b)
        if s.b_sharpen is None and s.b_iso is None:
            self._print(f"Searching b_sharpen from {search.b_min:g} to {search.b_max:g} "
                        f"A^2 ({search.n_steps} steps, refined to {search.tolerance:g} "
                        f"A^2), maximising {s.score}:")
        result = sharpen.sharpen_b_factor(
            mmm.map_manager(), resolution, form, score_name=s.score, search=search,
            b_sharpen=s.b_sharpen, b_iso=s.b_iso, map_wilson_b=map_wilson_b,
            solvent_content=self.params.solvent_content,
            adjusted_sa=sharpen.AdjustedSaSettings(
                region_weight=s.adjusted_sa.region_weight,
                fraction_occupied=s.adjusted_sa.fraction_occupied,
                sa_percent=s.adjusted_sa.sa_percent,
                max_regions_to_test=s.adjusted_sa.max_regions_to_test),
            workers=workers, report=sharpen.print_scan_point(self.logger, s.score))
        self.report_b_factor(result, form)
        if s.local:
            result.map_values = self.sharpen_locally(mmm.map_manager(), form, result, search,
                                                     halves, resolution, workers)
        return sharpen.map_manager_like(mmm.map_manager(), result.map_values), result

    def solvent_noise_form(self, map_manager, resolution: float, d_min: float,
                           workers: int) -> sharpen.ShellWeightedForm | None:
        """The shell weight from the noise in the solvent, or None (logged) without one."""
        values = map_manager.map_data().as_numpy_array().astype(np.float32)
        molecule = sharpen.MolecularRegion.of_map(map_manager, resolution,
                                                  self.params.solvent_content).mask
        form = sharpen.ShellWeightedForm.from_solvent_noise(
            sharpen.FourierMap.from_map(values, map_manager.crystal_symmetry().unit_cell(),
                                        workers), values, molecule, d_min)
        if form is None:
            self._print("No noise weight: the solvent is under 10 % of the map or no shell "
                        "holds significant signal; sharpening without it.")
        return form

    @staticmethod
    def fourier_map(map_manager, workers: int) -> sharpen.FourierMap:
        return sharpen.FourierMap.from_map(map_manager.map_data().as_numpy_array(),
                                           map_manager.crystal_symmetry().unit_cell(), workers)

    def sharpen_locally(self, map_manager, form, result: sharpen.BFactorSharpening,
                        search: sharpen.BSearch, halves, resolution: float,
                        workers: int) -> np.ndarray:
        """The map sharpened voxel by voxel around the global b_sharpen (local_sharpen.py)."""
        s = self.params.sharpening
        d_fit = max(resolution, result.d_signal)
        d_max = s.local_d_max or 2.0 * d_fit
        radius = s.local_radius or 1.6 * resolution
        if not d_max > d_fit:
            raise Sorry(f"sharpening.local_d_max ({d_max:g} A) must be above the resolution "
                        f"the local B is fitted to ({d_fit:.2f} A).")
        fourier = self.fourier_map(map_manager, workers)
        molecule = sharpen.MolecularRegion.of_map(map_manager, resolution,
                                                  self.params.solvent_content).mask
        local = local_sharpen.sharpen_b_locally(
            fourier, lambda b: form.factors(fourier.d_star_sq, b),
            halves or [fourier], molecule, result.b_sharpen, d_fit, d_max=d_max,
            radius=radius, b_min=search.b_min, b_max=search.b_max)
        summary = local.summary()
        self.record["local"] = {"from": "half maps" if halves else "map", "d_max": d_max,
                                "d_min": d_fit, **summary}
        low, _, median, _, high = summary["b_applied"]
        self._print(f"Local sharpening (local B from the {self.record['local']['from']}, "
                    f"{d_max:.2f}-{d_fit:.2f} A, window rms {radius:.1f} A): b_sharpen in the "
                    f"molecule {median:.1f} A^2 (5-95 %: {low:.1f} to {high:.1f})")
        return local.map_values

    def sharpening_form(self, resolution: float, d_min: float) -> sharpen.SharpeningForm:
        s = self.params.sharpening
        return sharpen.SharpeningForm(d_min=d_min, d_cut=s.d_cut or resolution,
                                      k_sharpen=s.k_sharpen, b_blur_hires=s.b_blur_hires)

    def report_b_factor(self, result: sharpen.BFactorSharpening,
                        form: sharpen.SharpeningForm) -> None:
        if result.solvent_fraction is not None:
            self._print(f"Solvent fraction: {result.solvent_fraction:.2f} "
                        f"({solvent_fraction.DEFINITION} at {self.record['resolution']:.2f} A)")
        if result.region_weight is not None:
            self._print(f"adjusted_sa region weight: {result.region_weight:.2f}")
        if result.b_iso_before is not None:
            self._print(f"Overall B of the input map: {result.b_iso_before:.1f} A^2")
        self._print(f"Chosen b_sharpen: {result.b_sharpen:.1f} A^2 ({result.choice}); "
                    f"{form.describe(result.b_sharpen)}")
        self.record["b_factor"] = {
            "b_sharpen": result.b_sharpen, "choice": result.choice,
            "score": self.params.sharpening.score if result.scan else None,
            "scan": result.scan.as_dict() if result.scan else None,
            "solvent_fraction": result.solvent_fraction, "region_weight": result.region_weight,
            "wilson_b_before": result.b_iso_before, **form.as_dict()}

    # ------------------------------------------------------------------------------------------

    def write_outputs(self, sharpened, map_coefficients, b_factor_result, d_min, scale, fsc):
        """Write the outputs as one set (see record.output_set): all or none appear."""
        paths = self.output_paths()
        check_outputs_writable(paths.values(), self.params.output.overwrite)
        if getattr(self, "input_labels", None) is not None:
            sharpened.labels, sharpened.file_name = list(self.input_labels), self.input_file_name
        sharpened.set_program_name("meteor.sharpen")
        sharpened.add_label(f"meteor.sharpen {self.method}: effective B "
                            f"{scale.effective_b:.1f} A**2")
        if map_coefficients is not None and b_factor_result is not None:
            coefficients = sharpen.sharpen_map_coefficients(
                map_coefficients, self.sharpening_form(self.record["resolution"], d_min),
                b_factor_result.b_sharpen)
        else:
            coefficients = sharpened.map_as_fourier_coefficients(d_min=d_min)
        self.record.update(timings=self.timings, outputs=paths)
        with output_set():
            write_map_manager(paths["ccp4"], sharpened)
            write_map_coefficients_mtz(paths["mtz"], [(coefficients, "FWT", "PHWT")],
                                       history=[f"meteor.sharpen {self.method}: effective B "
                                                f"{scale.effective_b:.1f} A**2"],
                                       title=f"meteor.sharpen {self.method}: effective B "
                                             f"{scale.effective_b:.1f} A**2",
                                       names=self.mtz_names())
            write_panels_png(paths["png"], self.panels(b_factor_result, scale, fsc),
                             title=f"meteor.sharpen ({self.method})")
            write_json(paths["json"], self.record)
        for kind, path in paths.items():
            self._print(f"Wrote {path}")

    def mtz_names(self) -> MtzNames:
        """Project and crystal of an MTZ input (its dataset + '_sharpened'), else the map's
        file name as crystal."""
        from meteor_cctbx.reflections import mtz_dataset_names

        inputs = (self.data_manager.get_miller_array_names()
                  or self.data_manager.get_real_map_names())
        found = mtz_dataset_names(inputs[0], self.params.labels) if inputs else None
        if found:
            return MtzNames(found[0], found[1], f"{found[2]}_sharpened",
                            found[3] if found[3] > 0 else 1.0)
        return MtzNames(crystal=os.path.splitext(os.path.basename(inputs[0]))[0]
                        if inputs else "crystal", dataset="sharpened")

    def panels(self, b_factor_result, scale, fsc) -> list[Panel]:
        panels = []
        if b_factor_result is not None and b_factor_result.scan is not None:
            points = b_factor_result.scan.points
            panels.append(Panel(title=f"{self.params.sharpening.score} against B",
                                xlabel="b_sharpen (A^2)",
                                ylabel=self.params.sharpening.score,
                                x=[p.parameter for p in points], y=[p.score for p in points],
                                chosen=b_factor_result.b_sharpen))
        if fsc is not None:
            panels.append(Panel(title="Half-map FSC", xlabel="1/d (1/A)", ylabel="FSC",
                                x=1.0 / fsc.d, y=fsc.fsc,
                                chosen=1.0 / fsc.d_min if fsc.d_min else None))
        line = scale.effective_b * scale.d_star_sq / 4.0
        line += np.mean(scale.log_ratio - line)
        panels.append(Panel(title=f"Applied scale (effective B {scale.effective_b:.1f} A^2)",
                            xlabel="d*^2 (1/A^2)", ylabel="ln(rms F out / rms F in)",
                            x=scale.d_star_sq, y=scale.log_ratio,
                            extra_curves=[("effective B", scale.d_star_sq, line)]))
        return panels

    def get_results(self):
        return group_args(**self.record)


def _format(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)
