"""meteor.diffmap as a ProgramTemplate: isomorphous difference map with k-weighting and TV
denoising chosen by validation against held-out reflections."""
from __future__ import annotations

from meteor_cctbx.diffmap import DiffmapResult, compute_diffmap
from meteor_cctbx.difference_inputs import DifferenceInputs
from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.phil import master_phil_str
from meteor_cctbx.programs.difference_program import DifferenceProgram
from meteor_cctbx.record import Panel


def scan_panel(scan, title: str, xlabel: str, criterion: str | None, chosen: float | None,
               log_x: bool = False) -> Panel:
    """The criterion against a scanned parameter, with negentropy on a second axis when the
    criterion is validation, and the chosen value (empty panel when not optimised)."""
    if scan is None:
        return Panel(f"{title} (not optimised)", xlabel, "score", [], [])
    ylabel = "CC_free (held-out reflections)" if criterion == "validation" else "negentropy"
    points = scan.points
    secondary = (("negentropy", [p.others["negentropy"] for p in points])
                 if points and "negentropy" in points[0].others else None)
    return Panel(f"{title}: chosen by {criterion}", xlabel, ylabel,
                 [p.parameter for p in points], [p.score for p in points], chosen=chosen,
                 log_x=log_x, secondary=secondary)


def difference_panels(result, prefix: str = "") -> list[Panel]:
    """k and TV scan panels of a diffmap-like result."""
    criteria = result.metadata["criteria"]
    return [scan_panel(result.kweight_scan, f"{prefix}k-weighting", "k", criteria["kweight"],
                       result.k_parameter),
            scan_panel(result.tv_scan, f"{prefix}TV denoising", "TV weight / map rms",
                       criteria["tv"], result.metadata["tv_weight_relative"], log_x=True)]


class Program(DifferenceProgram):
    description = """
meteor.diffmap: isomorphous difference map (derivative minus native) with model phases.

Both data sets are scaled to |F_model| (model with bulk solvent), the difference amplitudes are
k-weighted and the map is TV-denoised; k and the TV weight are chosen by validation against
held-out reflections (or by negentropy).  Output: <prefix>.mtz (DELFWT/PHDELWT final map, DF_RAW/PHIDF_RAW unweighted),
<prefix>.json (run record), <prefix>.png (the scans of both criteria).

Usage:
  meteor.diffmap derivative.mtz native.mtz model.pdb [key=value ...] [params.eff]
  meteor.diffmap data.mtz model.pdb native.file_name=data.mtz derivative.labels=F_on \\
                 native.labels=F_off
"""
    program_name = "meteor.diffmap"
    master_phil_str = master_phil_str("diffmap")
    papers = PROGRAM_PAPERS["diffmap"]
    citations = citation_phil("diffmap")

    def compute(self, inputs: DifferenceInputs) -> DiffmapResult:
        print("Difference map:", file=self.logger)
        return compute_diffmap(inputs.derivative, inputs.native, inputs.phases, self.params,
                               self.logger, on_scaled=self.report_isomorphism)

    def plot_panels(self) -> list[Panel]:
        return difference_panels(self.result)
