"""meteor.sharpen: sharpen a map by a B-factor chosen by map clarity, or by half-map or
map-model FSC weighting.  Inputs are checked and read by sharpen_inputs, the chosen method
runs in sharpen_method (the science is in sharpen and local_sharpen), and sharpen_outputs
writes the set; this class orders the steps and keeps the run record."""
from __future__ import annotations

from libtbx import group_args
from libtbx.program_template import ProgramTemplate

from meteor_cctbx import sharpen
from meteor_cctbx.citations import PROGRAM_PAPERS, citation_phil
from meteor_cctbx.phil import master_phil_str, refuse_unused_template_output
from meteor_cctbx.record import (check_outputs_writable, params_as_dict, run_context,
                                 software_versions, timed)
from meteor_cctbx.sharpen_inputs import (check_inputs, choose_resolution, clamped_to_nyquist,
                                         half_map_fsc, map_file_names, read_inputs)
from meteor_cctbx.sharpen_method import (diagnose, sharpen_by_method, sharpening_form)
from meteor_cctbx.sharpen_outputs import (PROGRAM_NAME, mtz_names, output_coefficients,
                                          output_paths, write_outputs)


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

    program_name = PROGRAM_NAME
    datatypes = ["real_map", "miller_array", "model", "phil"]
    master_phil_str = master_phil_str("sharpen")
    papers = PROGRAM_PAPERS["sharpen"]
    citations = citation_phil("sharpen")

    def validate(self):
        refuse_unused_template_output(self.params, PROGRAM_NAME)
        self.method = check_inputs(self.data_manager, self.params)
        check_outputs_writable(output_paths(self.params.output.prefix).values(),
                               self.params.output.overwrite)

    def run(self):
        p, dm, log, method = self.params, self.data_manager, self.logger, self.method
        self.timings: dict[str, float] = {}
        self.record: dict = {"program": PROGRAM_NAME, "versions": software_versions(),
                             "run": run_context(map_file_names(dm, p)  # not hash order
                                                + dm.get_miller_array_names()
                                                + dm.get_model_names()),
                             "parameters": params_as_dict(p), "method": method}
        workers = p.nproc or -1
        with timed(self.timings, "read input"):
            inputs = read_inputs(dm, p)
        input_map = inputs.mmm.map_manager()
        fsc = None
        if inputs.has_half_maps:
            with timed(self.timings, "half-map FSC"):
                fsc = half_map_fsc(inputs.mmm, log)
            self.record["fsc"] = fsc.as_dict()
        resolution = clamped_to_nyquist(
            choose_resolution(p.resolution, fsc, inputs.map_coefficients, log), input_map, log)
        d_min = resolution * p.sharpening.d_min_ratio
        self.record.update(resolution=resolution, fourier_d_min=d_min)
        with timed(self.timings, "Wilson B"):
            b_before = sharpen.wilson_b(input_map.map_as_fourier_coefficients(d_min=d_min),
                                        resolution)

        self.header(f"Sharpening by method {method}")
        with timed(self.timings, f"sharpen ({method})"):
            sharpened = sharpen_by_method(method, inputs, p, resolution, d_min, b_before,
                                          workers, log)
        self.record.update(sharpened.record)
        with timed(self.timings, "diagnostics"):
            diagnostics = diagnose(input_map, sharpened, resolution, d_min, b_before,
                                   workers, log)
        self.record.update(diagnostics.as_record())

        with timed(self.timings, "write output"):
            paths = output_paths(p.output.prefix)
            coefficients = output_coefficients(
                inputs, sharpened, sharpening_form(p, resolution, d_min), d_min)
            self.record.update(timings=self.timings, outputs=paths)
            write_outputs(paths, p.output.overwrite, method, inputs, sharpened, coefficients,
                          diagnostics, fsc, mtz_names(dm, p.labels), p.sharpening.score,
                          self.record, log)
        self._print("Timings (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items()))

    def get_results(self):
        return group_args(**self.record)
