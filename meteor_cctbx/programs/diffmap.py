"""meteor.diffmap as a ProgramTemplate: isomorphous difference map with k-weighting and TV
denoising chosen by negentropy."""
from __future__ import annotations

from meteor_cctbx.diffmap import DiffmapResult, compute_diffmap
from meteor_cctbx.difference_inputs import DifferenceInputs
from meteor_cctbx.phil import master_phil_str
from meteor_cctbx.programs.difference_program import DifferenceProgram
from meteor_cctbx.record import Panel


def scan_panel(scan, title: str, xlabel: str, log_x: bool = False) -> Panel:
    """Negentropy against a scanned parameter (empty panel when the step was not optimised)."""
    if scan is None:
        return Panel(f"{title} (not optimised)", xlabel, "negentropy", [], [])
    return Panel(title, xlabel, "negentropy", [p.parameter for p in scan.points],
                 [p.score for p in scan.points], chosen=scan.best.parameter, log_x=log_x)


class Program(DifferenceProgram):
    description = """
meteor.diffmap: isomorphous difference map (derivative minus native) with model phases.

Both data sets are scaled to |F_model| (model with bulk solvent), the difference amplitudes are
k-weighted and the map is TV-denoised; k and the TV weight are chosen by maximising the map's
negentropy.  Output: <prefix>.mtz (DELFWT/PHDELWT final map, DF_RAW/PHIDF_RAW unweighted),
<prefix>.json (run record), <prefix>.png (negentropy scans).

Usage:
  meteor.diffmap derivative.mtz native.mtz model.pdb [key=value ...] [params.eff]
  meteor.diffmap data.mtz model.pdb native.file_name=data.mtz derivative.labels=F_on \\
                 native.labels=F_off
"""
    program_name = "meteor.diffmap"
    master_phil_str = master_phil_str("diffmap")

    def compute(self, inputs: DifferenceInputs) -> DiffmapResult:
        print("Difference map:", file=self.logger)
        return compute_diffmap(inputs.derivative, inputs.native, inputs.phases, self.params,
                               self.logger, on_scaled=self.report_isomorphism)

    def plot_panels(self) -> list[Panel]:
        return [scan_panel(self.result.kweight_scan, "k-weighting", "k"),
                scan_panel(self.result.tv_scan, "TV denoising", "TV weight", log_x=True)]
