"""What meteor.diffmap and meteor.phaseboost share as programs: input files, checks before any
work, the data and isomorphism report, and the run record (MTZ, JSON, PNG, optional map)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from cctbx import miller
from cctbx.array_family import flex
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from meteor_cctbx import kweight, reflections
from meteor_cctbx.data_manager_state import SKIP_MERGE
from meteor_cctbx.difference_inputs import (DifferenceInputs, NativeSide,
                                            load_difference_inputs, resolve_files)
from meteor_cctbx.diffmap import complex_array, tv_grid_sampling
from meteor_cctbx.grid import CellGrid
from meteor_cctbx.phil import refuse_unused_template_output
from meteor_cctbx.record import (MtzNames, check_outputs_writable, output_set,
                                 params_as_dict, run_context, software_versions,
                                 write_cell_map_ccp4, write_json, write_map_coefficients_mtz,
                                 write_panels_png)
from meteor_cctbx.resources import check_cell_map_memory


def weighted_difference(difference: miller.array, sigma_delta: np.ndarray | None,
                        k: float | None, figures_of_merit: np.ndarray | None = None
                        ) -> miller.array:
    """The k-weighted difference w*dF (complex, derivative minus native; ``difference`` is
    already weighted by the ``figures_of_merit`` m when the map was) with sigmas
    w*m*sigma_D, sigma_D = sqrt(sigma_der^2 + sigma_nat^2) in the same order; w are the
    k-weights the map used (mean 1), or 1 without k-weighting (k None).  No sigmas without
    sigma_D."""
    values = difference.data().as_numpy_array()
    if sigma_delta is None:
        return difference
    weights = np.ones(len(values)) if k is None else kweight.kweights(values, sigma_delta, k)
    sigmas = np.asarray(sigma_delta) * weights
    if figures_of_merit is not None:
        sigmas = sigmas * figures_of_merit
    return difference.customized_copy(data=flex.complex_double(values * weights),
                                      sigmas=flex.double(sigmas))


def difference_names(files: dict, params) -> MtzNames:
    """MTZ project and crystal of the native, dataset '<derivative>_minus_<native>' (dataset
    names, or the labels or file names where those are equal), the native's wavelength."""
    derivative = reflections.mtz_dataset_names(files["derivative"], params.derivative.labels)
    native = reflections.mtz_dataset_names(files["native"], params.native.labels)
    names = {}
    for role, found in (("derivative", derivative), ("native", native)):
        labels = reflections.normalise_labels(getattr(params, role).labels)
        names[role] = [found[2] if found else None, labels[0] if labels else None,
                       Path(files[role]).stem]
    for derivative_name, native_name in zip(names["derivative"], names["native"]):
        if derivative_name and native_name and derivative_name != native_name:
            break
    else:
        derivative_name, native_name = "derivative", "native"
    dataset = f"{derivative_name}_minus_{native_name}"
    if native:
        return MtzNames(project=native[0], crystal=native[1], dataset=dataset,
                        wavelength=native[3] if native[3] > 0 else 1.0)
    return MtzNames(crystal=Path(files["native"]).stem, dataset=dataset)


#: Peak bytes per grid point of the difference-map steps (float32 maps and complex FFTs of
#: the TV and k-weighting scans, a generous bound).
MAP_BYTES_PER_POINT = 200


def check_search_ranges(params) -> None:
    """Sorry for a k or TV-weight search interval that holds no value to try, or free folds
    that do not fit in the data."""
    from meteor_cctbx.phil import choice

    if choice(params.kweight.mode) == "optimize" and not params.kweight.k_max > 0:
        raise Sorry(f"kweight.k_max={params.kweight.k_max:g} leaves no k to search "
                    f"(kweight.mode=optimize scans [0, k_max]): set kweight.k_max above 0, "
                    f"e.g. 1, or use kweight.mode=fixed.")
    for name, example in (("search_range", "0.001 1.0"), ("relative_search_range", "0.1 10")):
        interval = getattr(params.tv, name)
        if interval is not None and not 0 < interval[0] < interval[1]:
            raise Sorry(f"tv.{name}={interval[0]:g} {interval[1]:g} is not an interval of "
                        f"positive TV weights, smallest first (searched on a log scale): give "
                        f"e.g. tv.{name}={example}, or use tv.mode=fixed.")
    validation = params.validation
    if validation.n_folds * validation.free_fraction >= 1:
        raise Sorry(f"validation.n_folds={validation.n_folds} folds of "
                    f"validation.free_fraction={validation.free_fraction:g} hold out all the "
                    f"data: keep n_folds x free_fraction below 1 (e.g. 3 folds of 0.1).")


class DifferenceProgram(ProgramTemplate):
    """ProgramTemplate base of the difference-map programs; subclasses implement compute()."""

    datatypes = ["model", "miller_array", "phil"]
    data_manager_options = [SKIP_MERGE]  # the data are read by reflections.read_miller_arrays
    program_name = "meteor"
    native_side: NativeSide | None = None  # set by meteor.batch: the native read beforehand

    def set_target_output_format(self) -> None:
        """No model is written; iotbx's model-format guess would misread our model scope."""

    def validate(self) -> None:
        refuse_unused_template_output(self.params, self.program_name)
        self.files = resolve_files(self.params, self.data_manager.get_miller_array_names(),
                                   self.data_manager.get_model_names())
        if self.params.d_min and self.params.d_max and self.params.d_min >= self.params.d_max:
            raise Sorry(f"d_min={self.params.d_min} must be smaller than "
                        f"d_max={self.params.d_max} (both in A).")
        check_search_ranges(self.params)
        check_outputs_writable(self.output_paths().values(), self.params.output.overwrite)

    def output_paths(self) -> dict[str, Path]:
        prefix = self.params.output.prefix
        if not prefix:
            raise Sorry("output.prefix is empty: give a name for the output files.")
        paths = {"mtz": Path(f"{prefix}.mtz"), "json": Path(f"{prefix}.json"),
                 "png": Path(f"{prefix}.png")}
        if self.params.output.map:
            paths["map"] = Path(f"{prefix}.ccp4")
        return paths

    def run(self) -> None:
        start = time.perf_counter()
        log = self.logger
        self.inputs = load_difference_inputs(self.params, self.files, log, self.native_side)
        native = self.inputs.native
        parameter, sampling = max(self.grid_samplings().items(), key=lambda item: item[1])
        check_cell_map_memory(native.unit_cell(), native.d_min(), sampling,
                              MAP_BYTES_PER_POINT, f"A map of the unit cell of "
                              f"{self.files['native']} at spacing d_min/{sampling:g}",
                              f"lower {parameter} or cut the data with d_min=<A>")
        self.result = self.compute(self.inputs)
        self.seconds = time.perf_counter() - start
        self.write_outputs()
        print(f"Done in {self.seconds:.1f} s.", file=log)

    def grid_samplings(self) -> dict[str, float]:
        """The unit-cell grids the run builds: parameter -> sampling (spacing d_min/sampling)."""
        return {"map.sampling": tv_grid_sampling(self.params)}

    def compute(self, inputs: DifferenceInputs):
        """The result; implementations pass ``on_scaled=self.report_isomorphism``."""
        raise NotImplementedError

    def report_isomorphism(self, pair) -> None:
        """Riso and CCiso in resolution shells of the scaled pair, in the log (right after
        scaling, before k-weighting and TV) and in the record."""
        log = self.logger
        shells = reflections.isomorphism_shells(pair.derivative, pair.native,
                                                self.params.isomorphism.n_bins)
        print("  Isomorphism (after scaling):", file=log)
        print(f"    {'d range (A)':>16s} {'n':>7s} {'Riso':>7s} {'CCiso':>7s}", file=log)
        for shell in shells:
            print(f"    {shell.d_max:7.2f} - {shell.d_min:5.2f} {shell.n:7d} "
                  f"{shell.r_iso:7.3f} {shell.cc_iso:7.3f}", file=log)
        self.inputs.summary["isomorphism_shells"] = [vars(s) for s in shells]

    def weighted_difference_input(self) -> miller.array:
        """The complex difference the k-weighting acted on: m dF here (figures of merit m)."""
        pair = self.result.pair
        return complex_array(pair.derivative, pair.weighted_difference)

    def mtz_columns(self) -> list[tuple]:
        """(complex array, amplitude label, phase label[, sigma label]) written to
        <prefix>.mtz: the final map, the k-weighted difference with its sigma, the raw one."""
        pair = self.result.pair
        weighted = weighted_difference(self.weighted_difference_input(), pair.sigma_delta,
                                       self.result.k_parameter, pair.figures_of_merit)
        return [(self.result.map_coefficients, "DELFWT", "PHDELWT"),
                (weighted, "DF", "PHIDF", "SIGDF"),
                (self.result.raw_coefficients, "DF_RAW", "PHIDF_RAW")]

    def plot_panels(self) -> list:
        raise NotImplementedError

    def record(self) -> dict:
        return {"program": self.program_name, "parameters": params_as_dict(self.params),
                "run": run_context(list(self.inputs.files.values())),
                "files": self.inputs.files, "data": self.inputs.summary,
                "result": self.result.metadata, "seconds_total": self.seconds,
                "versions": software_versions()}

    def write_outputs(self) -> None:
        """Write the outputs as one set (see record.output_set): all or none appear."""
        paths = self.output_paths()
        log = self.logger
        names = difference_names(self.inputs.files, self.params)
        with output_set():
            write_map_coefficients_mtz(
                paths["mtz"], self.mtz_columns(),
                history=[f"{self.program_name} (meteor_cctbx)"],
                title=f"{self.program_name} difference map {names.dataset}",
                names=names)
            if "map" in paths:
                miller_set = self.result.map_coefficients
                grid = CellGrid.for_set(miller_set, sampling=self.params.output.map_sampling)
                cell_map = grid.to_map(miller_set.data().as_numpy_array())
                write_cell_map_ccp4(paths["map"], cell_map, miller_set.unit_cell(),
                                    miller_set.space_group(),
                                    f"{self.program_name} difference map")
            write_panels_png(paths["png"], self.plot_panels(), title=self.program_name)
            write_json(paths["json"], {**self.record(),
                                       "outputs": {k: str(v) for k, v in paths.items()}})
        print("Output:", file=log)
        for kind, path in paths.items():
            print(f"  {kind:5s} {path}", file=log)

    def get_results(self):
        return self.result
