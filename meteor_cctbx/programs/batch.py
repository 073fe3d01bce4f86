"""meteor.batch as a ProgramTemplate: one difference program over many derivatives against one
native, each dataset a Dask task (meteor_cctbx.batch), with a summary of the series."""
from __future__ import annotations

import os
from pathlib import Path

import iotbx.phil
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from meteor_cctbx.data_manager_state import SKIP_MERGE
from meteor_cctbx.batch import (BATCH_ROW, PROGRAMS, BatchSetup, Dataset, dataset_names,
                                expand_derivatives, program_master_phil, quoted, run_batch)
from meteor_cctbx.batch_summary import previous_record, write_summary
from meteor_cctbx.difference_inputs import resolve_files
from meteor_cctbx.phil import choice, master_phil_str
from meteor_cctbx.record import params_as_dict, software_versions

# batch parameters that may change between runs writing into one output.directory
RESUMABLE_CHANGES = ("derivative.file_name", "dask.", "output.overwrite", "output.directory",
                     "batch.resume")


def add_missing(target: iotbx.phil.scope, source: iotbx.phil.scope) -> None:
    """Add to ``target`` the objects of ``source`` it lacks, merging scopes of the same name;
    ``target``'s own definitions are kept."""
    for item in source.objects:
        same = [o for o in target.objects if o.name == item.name]
        if not same:
            target.adopt(item)
        elif item.is_scope and same[0].is_scope:
            add_missing(same[0], item)


def batch_master_phil_str() -> str:
    """phil/batch.phil, then every parameter of every program meteor.batch can run."""
    master = iotbx.phil.parse(master_phil_str("batch"))
    for program in PROGRAMS:
        add_missing(master, iotbx.phil.parse(
            PROGRAMS[program].program_class().master_phil_str, process_includes=True))
    return master.as_str(attributes_level=3)


class Program(ProgramTemplate):
    description = """
meteor.batch: one difference program (batch.program = diffmap, phaseboost, extrapolate) run
on many derivatives against one native, each dataset a task on Dask (a local cluster, or an
existing scheduler with dask.scheduler=tcp://host:port). The native amplitudes and the model
phases (F_model with bulk solvent) are computed once and shared. Every parameter of the
program applies to every dataset.

Output, in output.directory (meteor_batch): one folder per dataset (the derivative file's
stem) with the program's usual outputs, its log and batch_row.json; summary.csv (one row per
dataset: status ok/failed with the reason, resolution, Riso, chosen parameters, negentropy,
peak heights, seconds), summary.json and summary.png. A failed dataset does not stop the
batch; rerunning the same command computes only the datasets not finished.

Usage:
  meteor.batch model.pdb native.file_name=native.mtz derivative.file_name=a.mtz \\
               derivative.file_name=b.mtz [key=value ...]
  meteor.batch model.pdb native.file_name=dark.mtz derivative.file_name='series/*.mtz' \\
               batch.program=phaseboost dask.scheduler=tcp://head-node:8786
  meteor.batch model.pdb native.file_name=native.mtz derivative.file_name=datasets.txt
"""
    program_name = "meteor.batch"
    datatypes = ["model", "miller_array", "phil"]
    data_manager_options = [SKIP_MERGE]  # the data are read by reflections.read_miller_arrays
    master_phil_str = batch_master_phil_str()

    def set_target_output_format(self) -> None:
        """No model is written; iotbx's model-format guess would misread our model scope."""

    def validate(self) -> None:
        params = self.params
        program = choice(params.batch.program)
        if program not in PROGRAMS:
            raise Sorry(f"batch.program={program} is not available in this installation: "
                        f"choose one of {' '.join(PROGRAMS)}.")
        if not params.native.file_name:
            raise Sorry("No native given: give native.file_name=native.mtz (the data set "
                        "every derivative is compared with).")
        native = os.path.abspath(params.native.file_name)
        positional = [f for f in self.data_manager.get_miller_array_names()
                      if os.path.abspath(f) != native]
        paths = expand_derivatives(list(params.derivative.file_name) + positional)
        directory = Path(params.output.directory or "").absolute()
        if not params.output.directory:
            raise Sorry("output.directory is empty: give the directory of the batch.")
        if directory.exists() and not directory.is_dir():
            raise Sorry(f"output.directory={directory} is a file: choose a directory.")
        program_params, program_phil = self.program_parameters(program, native, paths[0])
        prefix = params.output.prefix or program_params.output.prefix
        if prefix in (BATCH_ROW.split(".")[0], "") or "/" in prefix:
            raise Sorry(f"output.prefix={prefix} cannot be used: give a plain file name.")
        files = resolve_files(program_params, [], self.data_manager.get_model_names())
        files = {role: os.path.abspath(files[role]) if files[role] else None
                 for role in ("native", "phases", "model")}
        if program_params.d_min and program_params.d_max and \
                program_params.d_min >= program_params.d_max:
            raise Sorry(f"d_min={program_params.d_min} must be smaller than "
                        f"d_max={program_params.d_max} (both in A).")
        batch_parameters = params_as_dict(params)
        self.check_previous_batch(directory, batch_parameters)
        datasets = [Dataset(name, path, directory / name)
                    for name, path in zip(dataset_names(paths), paths)]
        self.setup = BatchSetup(program, program_phil, program_params, files, datasets,
                                directory, prefix, params.dask, params.batch.resume,
                                batch_parameters)

    def program_parameters(self, program: str, native: str, derivative: str):
        """The chosen program's parameters from the batch's (extract and PHIL text); Sorry for
        a parameter of another program."""
        batch_master = self.master_phil
        batch_only = {d.path for d in iotbx.phil.parse(master_phil_str("batch"))
                      .all_definitions()} - {"native.file_name", "output.prefix"}
        given = batch_master.fetch_diff(source=batch_master.format(python_object=self.params))
        lines = [f"native.file_name = {quoted(native)}",
                 f"derivative.file_name = {quoted(derivative)}"]
        master = program_master_phil(program)
        working, unused = master.fetch(sources=[given, iotbx.phil.parse("\n".join(lines))],
                                       track_unused_definitions=True)
        foreign = [u.path for u in unused if u.path not in batch_only]
        if foreign:
            raise Sorry(f"{', '.join(foreign)}: not a parameter of meteor.{program} "
                        f"(batch.program={program}); remove it or choose the program it "
                        f"belongs to.")
        return working.extract(), master.fetch_diff(source=working).as_str()

    def check_previous_batch(self, directory: Path, parameters: dict) -> None:
        """Sorry if output.directory holds a batch run with other parameters (apart from the
        derivative list and Dask settings), unless output.overwrite=True."""
        try:
            previous = previous_record(directory)
        except ValueError as error:
            raise Sorry(f"{directory / 'summary.json'} exists but is not a meteor.batch "
                        f"summary ({error}): set output.overwrite=True or choose another "
                        f"output.directory.") from None
        if self.params.output.overwrite or previous is None:
            return
        old = previous.get("parameters", {})
        changed = sorted(k for k in set(old) | set(parameters)
                         if old.get(k) != parameters.get(k)
                         and not k.startswith(RESUMABLE_CHANGES))
        if changed:
            raise Sorry(f"output.directory={directory} holds a batch run with other parameters "
                        f"({', '.join(changed)}): set output.overwrite=True to replace its "
                        f"results or choose another output.directory.")

    def run(self) -> None:
        setup, log = self.setup, self.logger
        print(f"meteor.batch: meteor.{setup.program} on {len(setup.datasets)} derivatives "
              f"against {setup.files['native']}; output in {setup.directory}", file=log)
        self.result = run_batch(setup, log)
        result = self.result
        record = {"program": self.program_name, "batch_program": f"meteor.{setup.program}",
                  "parameters": setup.batch_parameters, "files": setup.files,
                  "data": result.native_summary or self.previous_data(setup.directory),
                  "computed": result.computed,
                  "reused": result.reused, "interrupted": result.interrupted,
                  "dask": vars(result.dask) if result.dask else None,
                  "seconds_total": result.seconds, "versions": software_versions()}
        setup.directory.mkdir(parents=True, exist_ok=True)
        self.summary_paths = write_summary(setup.directory, result.rows, record)
        ok = sum(row["status"] == "ok" for row in result.rows)
        print(f"{ok} of {len(result.rows)} datasets ok, {len(result.rows) - ok} failed "
              f"({len(result.computed)} computed, {len(result.reused)} finished earlier) in "
              f"{result.seconds:.1f} s.", file=log)
        for path in self.summary_paths.values():
            print(f"  {path}", file=log)
        if result.interrupted:
            print(f"Interrupted: {len(setup.datasets) - len(result.rows)} datasets not "
                  f"finished; rerun the same command to compute them.", file=log)
            raise KeyboardInterrupt

    @staticmethod
    def previous_data(directory: Path) -> dict:
        """The native's summary from the earlier run (when this one computed nothing)."""
        try:
            return (previous_record(directory) or {}).get("data") or {}
        except ValueError:
            return {}

    def get_results(self):
        return self.result
