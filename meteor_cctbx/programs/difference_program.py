"""What meteor.diffmap and meteor.phaseboost share as programs: input files, checks before any
work, the data and isomorphism report, and the run record (MTZ, JSON, PNG, optional map)."""
from __future__ import annotations

import time
from pathlib import Path

from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from meteor_cctbx import reflections
from meteor_cctbx.difference_inputs import (DifferenceInputs, load_difference_inputs,
                                            resolve_files)
from meteor_cctbx.record import (check_outputs_writable, output_set, params_as_dict,
                                 software_versions, write_cell_map_ccp4, write_json,
                                 write_map_coefficients_mtz, write_panels_png)
from meteor_cctbx.resources import check_cell_map_memory


#: Peak bytes per grid point of the difference-map steps (float32 maps and complex FFTs of
#: the TV and k-weighting scans, a generous bound).
MAP_BYTES_PER_POINT = 200


def check_search_ranges(params) -> None:
    """Sorry for a k or TV-weight search interval that holds no value to try."""
    from meteor_cctbx.phil import choice

    if choice(params.kweight.mode) == "optimize" and not params.kweight.k_max > 0:
        raise Sorry(f"kweight.k_max={params.kweight.k_max:g} leaves no k to search "
                    f"(kweight.mode=optimize scans [0, k_max]): set kweight.k_max above 0, "
                    f"e.g. 1, or use kweight.mode=fixed.")
    lower, upper = params.tv.search_range
    if not 0 < lower < upper:
        raise Sorry(f"tv.search_range={lower:g} {upper:g} is not an interval of positive TV "
                    f"weights, smallest first (searched on a log scale): give e.g. "
                    f"tv.search_range=0.001 1.0, or use tv.mode=fixed.")


class DifferenceProgram(ProgramTemplate):
    """ProgramTemplate base of the difference-map programs; subclasses implement compute()."""

    datatypes = ["model", "miller_array", "phil"]
    program_name = "meteor"

    def set_target_output_format(self) -> None:
        """No model is written; iotbx's model-format guess would misread our model scope."""

    def validate(self) -> None:
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
        self.inputs = load_difference_inputs(self.params, self.files, log)
        native = self.inputs.native
        check_cell_map_memory(native.unit_cell(), native.d_min(), self.params.map.sampling,
                              MAP_BYTES_PER_POINT, f"A map of the unit cell of "
                              f"{self.files['native']} at spacing d_min/{self.params.map.sampling:g}",
                              "lower map.sampling (3 is usual) or cut the data with d_min=<A>")
        self.result = self.compute(self.inputs)
        shells = reflections.isomorphism_shells(self.result.pair.derivative,
                                                self.result.pair.native,
                                                self.params.isomorphism.n_bins)
        print("Isomorphism (after scaling):", file=log)
        print(f"  {'d range (A)':>16s} {'n':>7s} {'Riso':>7s} {'CCiso':>7s}", file=log)
        for shell in shells:
            print(f"  {shell.d_max:7.2f} - {shell.d_min:5.2f} {shell.n:7d} {shell.r_iso:7.3f} "
                  f"{shell.cc_iso:7.3f}", file=log)
        self.inputs.summary["isomorphism_shells"] = [vars(s) for s in shells]
        self.seconds = time.perf_counter() - start
        self.write_outputs()
        print(f"Done in {self.seconds:.1f} s.", file=log)

    def compute(self, inputs: DifferenceInputs):
        raise NotImplementedError

    def mtz_columns(self) -> list[tuple]:
        """(complex array, amplitude label, phase label) triples written to <prefix>.mtz."""
        return [(self.result.map_coefficients, "DELFWT", "PHDELWT"),
                (self.result.raw_coefficients, "DF_RAW", "PHIDF_RAW")]

    def plot_panels(self) -> list:
        raise NotImplementedError

    def record(self) -> dict:
        return {"program": self.program_name, "parameters": params_as_dict(self.params),
                "files": self.inputs.files, "data": self.inputs.summary,
                "result": self.result.metadata, "seconds_total": self.seconds,
                "versions": software_versions()}

    def write_outputs(self) -> None:
        """Write the outputs as one set (see record.output_set): all or none appear."""
        paths = self.output_paths()
        log = self.logger
        with output_set():
            write_map_coefficients_mtz(paths["mtz"], self.mtz_columns(),
                                       history=[f"{self.program_name} (meteor_cctbx)"])
            if "map" in paths:
                grid = self.result.grid
                cell_map = grid.to_map(self.result.map_coefficients.data().as_numpy_array())
                miller_set = self.result.map_coefficients
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
