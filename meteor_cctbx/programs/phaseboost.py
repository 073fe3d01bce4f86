"""meteor.phaseboost as a ProgramTemplate: derivative phases by iterative TV phase retrieval,
then k-weighting and TV denoising."""
from __future__ import annotations

from cctbx import miller
from cctbx.array_family import flex

from meteor_cctbx.difference_inputs import DifferenceInputs
from meteor_cctbx.phaseboost import PhaseboostResult, compute_phaseboost, loop_grid_sampling
from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.phil import master_phil_str
from meteor_cctbx.programs.difference_program import DifferenceProgram
from meteor_cctbx.programs.diffmap import difference_panels, scan_panel
from meteor_cctbx.record import Panel


class Program(DifferenceProgram):
    description = """
meteor.phaseboost: difference map (derivative minus native) with derivative phases retrieved
by iterative TV denoising (a Gerchberg-Saxton-like loop that keeps the measured derivative
amplitudes), then k-weighting and TV denoising chosen as in meteor.diffmap (by validation
against held-out reflections, or by negentropy).
Output: <prefix>.mtz (DELFWT/PHDELWT final map, DF_RAW/PHIDF_RAW initial unweighted
difference, F_DERIV/PHI_DERIV retrieved derivative structure factors), <prefix>.json (run
record with every iteration), <prefix>.png.

Usage:
  meteor.phaseboost derivative.mtz native.mtz model.pdb [key=value ...] [params.eff]
"""
    program_name = "meteor.phaseboost"
    master_phil_str = master_phil_str("phaseboost")
    papers = PROGRAM_PAPERS["phaseboost"]
    citations = citation_phil("phaseboost")

    def grid_samplings(self) -> dict[str, float]:
        return {**super().grid_samplings(),
                "phaseboost.loop_sampling": loop_grid_sampling(self.params)}

    def compute(self, inputs: DifferenceInputs) -> PhaseboostResult:
        print("Phase retrieval and difference map:", file=self.logger)
        return compute_phaseboost(inputs.derivative, inputs.native, inputs.phases,
                                  self.params, self.logger, on_scaled=self.report_isomorphism)

    def weighted_difference_input(self) -> miller.array:
        """m (F_der' - F_nat), the retrieved difference the final k-weighting acted on."""
        pair = self.result.pair
        native = pair.native.data().as_numpy_array() * pair.unit_phases
        retrieved = self.result.derivative_coefficients
        return retrieved.customized_copy(data=flex.complex_double(
            pair.weighted(retrieved.data().as_numpy_array() - native)))

    def mtz_columns(self) -> list[tuple]:
        return super().mtz_columns() + [(self.result.derivative_coefficients, "F_DERIV",
                                         "PHI_DERIV")]

    def plot_panels(self) -> list[Panel]:
        iterations = self.result.iterations
        numbers = [i.iteration for i in iterations]
        tolerance = self.params.phaseboost.convergence_tolerance
        check = self.result.metadata.get("reproducibility")
        verdict = "" if check is None else (
            f"; halves' CC {check['correlation']:.2f}"
            f"{'' if check['reproducible'] else ', not reproducible: initial map'}")
        return [Panel(f"Phase retrieval: {self.result.stop_reason}{verdict}", "iteration",
                      "mean phase change (deg)", numbers, [i.phase_change for i in iterations],
                      log_y=True, hlines=[(tolerance, f"tolerance {tolerance:g} deg")]
                      if tolerance > 0 else [],
                      secondary=("negentropy after TV", [i.negentropy for i in iterations])),
                *difference_panels(self.result, "final "),
                scan_panel(self.result.loop_tv_scan, "loop TV weight (before scaling)",
                           "TV weight / map rms", "validation",
                           self.result.loop_tv_scan.best.parameter
                           if self.result.loop_tv_scan else None, log_x=True)]
