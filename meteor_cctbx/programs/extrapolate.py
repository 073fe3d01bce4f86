"""meteor.extrapolate as a ProgramTemplate: extrapolated structure factors of the minor state
and a blind occupancy estimate with a bootstrap interval."""
from __future__ import annotations

import numpy as np
from libtbx import Auto
from libtbx.utils import Sorry

from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.difference_inputs import DifferenceInputs
from meteor_cctbx.extrapolate import ExtrapolationResult, compute_extrapolation
from meteor_cctbx.phaseboost import loop_grid_sampling
from meteor_cctbx.phil import choice, master_phil_str
from meteor_cctbx.programs.difference_program import DifferenceProgram
from meteor_cctbx.programs.diffmap import difference_panels
from meteor_cctbx.record import Panel


def estimator_panels(result: ExtrapolationResult) -> list[Panel]:
    """One panel per estimator: its curve over occupancy, the estimate (dashed) and the
    interval's ends (dotted curves at the interval's ends)."""
    if result.occupancy_estimate is None:
        return [Panel(f"occupancy given: {result.occupancy:g}", "occupancy", "", [], [])]
    panels = []
    for name, estimator in result.occupancy_estimate.estimators.items():
        x = estimator.curve_occupancy
        level = 0.0 if name == "vanish" else 1.0
        extra = [("target", [x[0], x[-1]], [level, level])]
        if estimator.interval is not None:
            low, high = estimator.interval
            span = [np.nanmin(estimator.curve_value), np.nanmax(estimator.curve_value)]
            extra += [("interval", [low, low], span), ("interval", [high, high], span)]
        status = (f"{estimator.estimate:.3f} [{estimator.interval[0]:.3f}, "
                  f"{estimator.interval[1]:.3f}]" if estimator.estimate is not None
                  else "withheld")
        ylabel = ("native density left at native-only atoms" if name == "vanish"
                  else "new density / model atoms")
        panels.append(Panel(f"{name}: {status}", "occupancy", ylabel, list(x),
                            list(estimator.curve_value), chosen=estimator.estimate,
                            extra_curves=extra))
    return panels


class Program(DifferenceProgram):
    description = """
meteor.extrapolate: extrapolated structure factors of the minor state of a derivative crystal,
F_extr = F_nat + N dF with N = 1/occupancy, from the k-weighted, TV-denoised difference of
meteor.diffmap (or meteor.phaseboost's, or the raw difference), and a blind estimate of the
occupancy with a bootstrap interval over reflections.

Output: <prefix>.mtz (FEXTR/SIGFEXTR extrapolated amplitudes for refinement, FWT/PHWT map
coefficients F_nat + 2 N dF of the extrapolated state, DELFWT/PHDELWT F_extr - F_model),
<prefix>.json (run record: "occupancy" with estimate, interval, method and every estimator's
curve), <prefix>.png (estimator curves and intervals).

Usage:
  meteor.extrapolate derivative.mtz native.mtz model.pdb [key=value ...] [params.eff]
  meteor.extrapolate derivative.mtz native.mtz model.pdb extrapolate.occupancy=0.3
"""
    program_name = "meteor.extrapolate"
    master_phil_str = master_phil_str("extrapolate")
    papers = PROGRAM_PAPERS["extrapolate"]
    citations = citation_phil("extrapolate")

    def grid_samplings(self) -> dict[str, float]:
        samplings = {**super().grid_samplings(),
                     "extrapolate.peak_sampling": self.params.extrapolate.peak_sampling}
        if choice(self.params.extrapolate.difference) == "phaseboost":
            samplings["phaseboost.loop_sampling"] = loop_grid_sampling(self.params)
        return samplings

    def validate(self) -> None:
        occupancy = self.params.extrapolate.occupancy
        if occupancy is not Auto and occupancy is not None and occupancy <= 0:
            raise Sorry("extrapolate.occupancy must be above 0 (N = 1/occupancy), or Auto to "
                        "estimate it.")
        super().validate()

    def compute(self, inputs: DifferenceInputs) -> ExtrapolationResult:
        print("Difference and extrapolation:", file=self.logger)
        return compute_extrapolation(inputs.derivative, inputs.native, inputs.phases,
                                     self.params, self.logger,
                                     on_scaled=self.report_isomorphism)

    def mtz_columns(self) -> list[tuple]:
        return [(self.result.f_extr, "FEXTR", "SIGFEXTR"),
                (self.result.map_coefficients, "FWT", "PHWT"),
                (self.result.delta_coefficients, "DELFWT", "PHDELWT")]

    def plot_panels(self) -> list[Panel]:
        return estimator_panels(self.result) + difference_panels(self.result.difference)
