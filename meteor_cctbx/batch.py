"""Many derivatives against one native: each dataset one Dask task running a difference program.

    from meteor_cctbx.batch import BatchSetup, run_batch
    rows = run_batch(setup, log).rows       # one summary row per dataset, in input order

The native side (native amplitudes, F_model with bulk solvent) is computed once in this
process and shared by all tasks (one task result, recovered if its worker dies); each task
runs the chosen program (``PROGRAMS``) on one derivative with that native side and writes the
program's usual outputs, its log and ``batch_row.json`` (the dataset's summary row and what it
was computed from) into the dataset's folder as one output set (record.output_set): a folder
either holds a complete set or its previous content.  A folder whose ``batch_row.json``
records the same parameters and input files is finished: rerunning skips it.  A dataset that
fails is a row with status "failed" and the reason (the Sorry), never a failed batch.
"""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import iotbx.phil
from libtbx.program_template import ProgramTemplate
from libtbx.utils import Sorry

from meteor_cctbx import reflections
from meteor_cctbx.difference_inputs import NativeSide, load_native_side
from meteor_cctbx.grid import available_cores
from meteor_cctbx.phil import remove_unused_template_output
from meteor_cctbx.record import (output_set, params_as_dict, release_outputs, to_jsonable,
                                 write_bytes, write_json)
from meteor_cctbx.reflections import one_line

BATCH_ROW = "batch_row.json"  # per dataset: the summary row, its fingerprint and its outputs
TEMPORARY_GLOB = ".*.tmp*"  # names of record.atomic_path's temporary files


def difference_columns(program) -> dict:
    """difference_result_columns of a finished diffmap or phaseboost program."""
    return difference_result_columns(program.result)


def difference_result_columns(result) -> dict:
    """Summary columns of a difference map result (DiffmapResult and those built on it):
    resolution, overall Riso/CCiso after scaling, the chosen k and TV weight with the criterion
    that chose each (negentropy or validation) and its best score, negentropy, and the highest
    and lowest values of the final map in units of its rms (peak heights)."""
    pair = result.pair
    overall = reflections.isomorphism_shells(pair.derivative, pair.native, n_bins=1)[0]
    final_map = result.grid.to_map(result.map_coefficients.data().as_numpy_array())
    rms = float(final_map.std()) or 1.0
    negentropies = result.metadata["negentropy"]
    criteria = result.metadata.get("criteria") or {}
    return {"d_min": pair.derivative.d_min(), "n_reflections": pair.derivative.size(),
            "riso": overall.r_iso, "cciso": overall.cc_iso,
            "k_parameter": result.k_parameter, "k_criterion": criteria.get("kweight"),
            "k_score": result.kweight_scan.best.score if result.kweight_scan else None,
            "tv_weight": result.tv_weight,
            "tv_weight_relative": result.metadata.get("tv_weight_relative"),
            "tv_criterion": criteria.get("tv"),
            "tv_score": result.tv_scan.best.score if result.tv_scan else None,
            "negentropy_raw": negentropies["raw"], "negentropy": negentropies["final"],
            "peak_max_sigma": float(final_map.max()) / rms,
            "peak_min_sigma": float(final_map.min()) / rms}


def phaseboost_columns(program) -> dict:
    """difference_columns plus the phase-retrieval iterations, why the loop stopped, and its
    reproducibility check: the halves' correlation and which map was written (None: no
    check)."""
    check = program.result.metadata.get("reproducibility") or {}
    return {**difference_columns(program), "iterations": len(program.result.iterations),
            "stop_reason": program.result.stop_reason,
            "halves_cc": check.get("correlation"), "final_map": check.get("final_map")}


def extrapolate_columns(program) -> dict:
    """The difference stage's columns, then the occupancy used (estimated or given), the
    estimate's interval and method, and the count of negative extrapolated amplitudes."""
    result = program.result
    estimate = result.occupancy_estimate
    chosen = estimate.chosen if estimate is not None else None
    interval = chosen.interval if chosen is not None and chosen.interval else (None, None)
    return {**difference_result_columns(result.difference), "occupancy": result.occupancy,
            "occupancy_low": interval[0], "occupancy_high": interval[1],
            "occupancy_method": estimate.method if estimate is not None else "given",
            "n_negative": result.n_negative}


@dataclass(frozen=True)
class BatchProgram:
    """A program meteor.batch can run: the module holding its ProgramTemplate ``Program`` (a
    DifferenceProgram: it takes a precomputed NativeSide) and its summary columns."""

    module: str
    columns: Callable[[ProgramTemplate], dict] = difference_columns

    def program_class(self) -> type:
        return importlib.import_module(self.module).Program


# batch.program choices (phil/batch.phil) -> program; adding a program is one entry here
PROGRAMS: dict[str, BatchProgram] = {
    "diffmap": BatchProgram("meteor_cctbx.programs.diffmap"),
    "phaseboost": BatchProgram("meteor_cctbx.programs.phaseboost", phaseboost_columns),
    "extrapolate": BatchProgram("meteor_cctbx.programs.extrapolate", extrapolate_columns),
}


def program_master_phil(program: str) -> iotbx.phil.scope:
    """The master PHIL of ``program`` as its command line sees it (command_line.MeteorParser:
    iotbx's output scope added, the parts our programs do not use removed)."""
    master = iotbx.phil.parse(PROGRAMS[program].program_class().master_phil_str,
                              process_includes=True)
    master.adopt_scope(iotbx.phil.parse(ProgramTemplate.output_phil_str))
    remove_unused_template_output(master)
    return master


@dataclass(frozen=True)
class Dataset:
    """One derivative of the batch and the folder its outputs go to."""

    name: str  # the folder's name: the file's stem, made unique with its parent folders
    derivative: str  # absolute path of the reflection file
    folder: Path  # absolute


def is_list_file(path: str) -> bool:
    return Path(path).suffix.lower() in (".txt", ".lst", ".list")


def expand_derivatives(names: Sequence[str]) -> list[str]:
    """Derivative files from names, globs and list files, in order, each once (absolute).

    A name with glob characters is expanded (sorted); a .txt/.lst/.list file gives one path per
    line, relative to its folder (blank lines and # comments skipped).  A plain name is kept
    even if missing: its dataset then fails with the reason.
    """
    import glob

    paths: list[str] = []
    for name in names:
        if glob.has_magic(name):
            matches = sorted(glob.glob(os.path.expanduser(name)))
            if not matches:
                raise Sorry(f"derivative.file_name={name} matches no file: check the pattern.")
            paths.extend(matches)
        elif is_list_file(name):
            if not os.path.isfile(name):
                raise Sorry(f"List of derivatives {name} not found: check the path.")
            base = Path(name).resolve().parent
            for line in Path(name).read_text(errors="replace").splitlines():
                entry = line.split("#", 1)[0].strip()
                if entry:
                    paths.append(str(base / os.path.expanduser(entry)))
        else:
            paths.append(name)
    unique = dict.fromkeys(os.path.abspath(p) for p in paths)
    if not unique:
        raise Sorry("No derivatives given: give derivative.file_name=... once per file, as a "
                    "glob or as a text file listing them.")
    return list(unique)


def dataset_names(paths: Sequence[str]) -> list[str]:
    """Folder names for the derivative files: the file stem, or, for files whose stems repeat
    (dataset_1/final.mtz, dataset_2/final.mtz), the stem with as many parent folders as make
    it unique, joined by '_' (dataset_1_final)."""
    parts = [Path(p).with_suffix("").parts[::-1] for p in paths]
    depth = [1] * len(paths)
    while True:
        names = ["_".join(reversed(p[:d])) for p, d in zip(parts, depth)]
        repeated = {n for n in names if names.count(n) > 1}
        deeper = [i for i, n in enumerate(names) if n in repeated and depth[i] < len(parts[i])]
        if not deeper:
            return names
        for i in deeper:
            depth[i] += 1


def file_fingerprint(path: str | None) -> list | None:
    """[absolute path, size, modification time (ns)] of an input file, None when absent."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return [os.path.abspath(path), None, None]
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


@dataclass
class BatchSetup:
    """Everything a batch needs, decided by the program's validate()."""

    program: str  # key of PROGRAMS
    program_phil: str  # the program's parameters common to all datasets (PHIL text)
    program_params: object  # their extract (native side, fingerprint)
    files: dict  # native, phases, model (absolute or None)
    datasets: list[Dataset]
    directory: Path
    prefix: str  # of each dataset's outputs inside its folder
    dask: object  # the dask PHIL scope
    resume: bool
    batch_parameters: dict  # the batch's parameters, for summary.json

    def fingerprint(self, dataset: Dataset) -> dict:
        """What a finished dataset was computed from: program, parameters and input files."""
        parameters = {k: v for k, v in params_as_dict(self.program_params).items()
                      if not (k.startswith("output.") and k != "output.map")
                      and not k.endswith(".file_name")}
        inputs = {"derivative": file_fingerprint(dataset.derivative),
                  **{role: file_fingerprint(path) for role, path in self.files.items()}}
        return json.loads(json.dumps(to_jsonable(
            {"program": self.program, "parameters": parameters, "inputs": inputs})))

    def task(self, dataset: Dataset) -> "DatasetTask":
        lines = [f"derivative.file_name = {quoted(dataset.derivative)}",
                 f"output.prefix = {quoted(str(dataset.folder / self.prefix))}"]
        lines += [f"{role}.file_name = {quoted(path)}" for role, path in self.files.items()
                  if path]
        return DatasetTask(dataset, self.program, self.program_phil + "\n" + "\n".join(lines),
                           self.prefix, self.fingerprint(dataset))


def quoted(text: str) -> str:
    """A PHIL string value (quoted, so that spaces and # in paths survive)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class DatasetTask:
    """One Dask task: run ``program`` with parameters ``phil`` on one dataset."""

    dataset: Dataset
    program: str
    phil: str
    prefix: str
    fingerprint: dict


def base_row(dataset: Dataset, status: str, reason: str = "", seconds: float = 0.0) -> dict:
    return {"dataset": dataset.name, "status": status, "reason": reason,
            "derivative": dataset.derivative, "seconds": round(seconds, 3)}


def remove_temporaries(folder: Path) -> None:
    """Remove what an interrupted output set left in ``folder`` (atomic_path's temporary
    files), and the folder itself when that leaves it empty."""
    if not folder.is_dir():
        return
    for leftover in folder.glob(TEMPORARY_GLOB):
        with contextlib.suppress(OSError):
            leftover.unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # only succeeds when empty


def make_program(task: DatasetTask, log) -> ProgramTemplate:
    """The dataset's program, parameters set, ready for validate() and run()."""
    from iotbx.data_manager import DataManager

    from meteor_cctbx.data_manager_state import forget_repeated_child_datatypes

    program_class = PROGRAMS[task.program].program_class()
    params = program_master_phil(task.program).fetch(
        source=iotbx.phil.parse(task.phil)).extract()
    data_manager = DataManager(datatypes=program_class.datatypes, logger=log)
    forget_repeated_child_datatypes()
    return program_class(data_manager, params, logger=log)


# numba's workqueue threading layer (numba_threads.py) must not be entered by two threads at
# once: a worker process started with several threads still runs one dataset at a time
_ONE_DATASET_AT_A_TIME = threading.Lock()


def run_dataset(task: DatasetTask, native_side: NativeSide) -> dict:
    """Run one dataset (on a Dask worker); return its summary row.  Never raises for a bad
    dataset: a Sorry, or any other error, becomes a row with status "failed"."""
    with _ONE_DATASET_AT_A_TIME:
        start = time.perf_counter()
        folder = task.dataset.folder
        log = io.StringIO()
        try:
            remove_temporaries(folder)  # from a run of this task on a worker that died
            folder.mkdir(parents=True, exist_ok=True)
            program = make_program(task, log)
            program.validate()
            program.native_side = native_side
            with output_set():
                program.run()
                row = {**base_row(task.dataset, "ok"), **PROGRAMS[task.program].columns(program)}
                row["seconds"] = round(time.perf_counter() - start, 3)
                log_path = folder / f"{task.prefix}.log"
                write_bytes(log_path, log.getvalue().encode())
                outputs = [Path(p).name for p in program.output_paths().values()]
                write_json(folder / BATCH_ROW, {"row": row, "columns": list(row),
                                                "fingerprint": task.fingerprint,
                                                "outputs": outputs + [log_path.name]})
            return to_jsonable(row)
        except Sorry as error:
            reason = one_line(error)
        except Exception as error:  # a bug or a library failure: still only this dataset's
            reason = f"{type(error).__name__}: {one_line(error)}"
        finally:
            release_outputs()  # the program's claim on its outputs (record.claim_outputs)
        remove_temporaries(folder)
        return base_row(task.dataset, "failed", reason, time.perf_counter() - start)


def finished_row(task: DatasetTask) -> dict | None:
    """The row of a complete output set computed from the same fingerprint, or None."""
    path = task.dataset.folder / BATCH_ROW
    try:
        record = json.loads(path.read_text())
        complete = all((task.dataset.folder / name).is_file() for name in record["outputs"])
        if complete and record["fingerprint"] == task.fingerprint:
            return {name: record["row"][name] for name in record["columns"]}  # in row order
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


@dataclass
class DaskSettings:
    """How the batch was distributed, for the log and summary.json."""

    scheduler: str
    local: bool
    n_workers: int
    threads_per_worker: int | None  # FFT/TV threads of local workers (None: as started)


@contextlib.contextmanager
def sigint_ignored_by_children() -> Iterator[None]:
    """Processes started in the block ignore SIGINT: Ctrl-C reaches the whole process group,
    but only this process should act on it (it then stops the local cluster itself)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def dask_client(dask_params, log) -> Iterator[tuple[object, DaskSettings]]:
    """A distributed Client: to dask.scheduler, or to a local cluster of n_workers processes
    with one task slot each and threads_per_worker FFT/TV threads (NUMBA_NUM_THREADS)."""
    import dask
    from distributed import Client, LocalCluster

    if dask_params.scheduler:
        try:
            client = Client(dask_params.scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as error:
            raise Sorry(f"Cannot reach the Dask scheduler at dask.scheduler="
                        f"{dask_params.scheduler} ({one_line(error)}): start it (dask "
                        f"scheduler) or give its address as tcp://host:port.") from None
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"]
            settings = DaskSettings(dask_params.scheduler, False, len(workers), None)
            print(f"Dask: scheduler {dask_params.scheduler} with {len(workers)} workers "
                  f"({sum(w['nthreads'] for w in workers.values())} threads)", file=log)
            yield client, settings
        finally:
            client.close()
        return
    cores = available_cores()
    n_workers = dask_params.n_workers or cores
    threads = dask_params.threads_per_worker or max(1, cores // n_workers)
    config = {"distributed.scheduler.allowed-failures": dask_params.allowed_failures,
              "distributed.worker.daemon": False}
    with dask.config.set(config), sigint_ignored_by_children():
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.CRITICAL,
                               env={"NUMBA_NUM_THREADS": str(threads)})
    try:
        client = Client(cluster)
        settings = DaskSettings(cluster.scheduler_address, True, n_workers, threads)
        print(f"Dask: local cluster of {n_workers} worker processes x {threads} FFT/TV "
              f"threads ({cores} cores)", file=log)
        try:
            yield client, settings
        finally:
            client.close()
    finally:
        cluster.close()


@dataclass
class BatchResult:
    rows: list[dict]  # in the order of setup.datasets
    computed: list[str] = field(default_factory=list)  # datasets run this time
    reused: list[str] = field(default_factory=list)  # finished earlier
    native_summary: dict = field(default_factory=dict)
    dask: DaskSettings | None = None
    interrupted: bool = False
    seconds: float = 0.0


# (column, format) of the log line of a finished dataset, where its row has the column
LOGGED = (("d_min", "d_min {:.2f} A"), ("riso", "Riso {:.3f}"),
          ("peak_max_sigma", "peaks {:+.1f}"), ("peak_min_sigma", "/{:+.1f} rms"),
          ("occupancy", "occupancy {:.2f}"))


def describe_row(row: dict) -> str:
    if row["status"] != "ok":
        return f"failed: {row['reason']}"
    parts = [fmt.format(row[k]) for k, fmt in LOGGED if row.get(k) is not None]
    return "ok  " + "  ".join(parts).replace("  /", "/")


def run_batch(setup: BatchSetup, log) -> BatchResult:
    """Compute every unfinished dataset on Dask; return the rows of all datasets.

    On KeyboardInterrupt the tasks are cancelled, a local cluster is stopped, what the
    unfinished tasks had staged is removed, and the result (``interrupted``) holds the rows of
    the datasets finished so far.
    """
    start = time.perf_counter()
    tasks = [setup.task(dataset) for dataset in setup.datasets]
    rows: dict[str, dict] = {}
    result = BatchResult([])
    if setup.resume:
        for task in tasks:
            row = finished_row(task)
            if row is not None:
                rows[task.dataset.name] = row
                result.reused.append(task.dataset.name)
    todo = [task for task in tasks if task.dataset.name not in rows]
    print(f"Datasets: {len(tasks)} ({len(result.reused)} finished earlier, {len(todo)} to "
          f"compute)", file=log)
    if todo:
        native_side = load_native_side(setup.program_params, setup.files, log)
        result.native_summary = {"native": reflections.data_summary(native_side.native),
                                 **native_side.phases_summary}
        setup.directory.mkdir(parents=True, exist_ok=True)
        try:
            with dask_client(setup.dask, log) as (client, settings):
                result.dask = settings
                compute_on_dask(client, todo, native_side, rows, result, log)
        except KeyboardInterrupt:
            result.interrupted = True
            for task in todo:
                if task.dataset.name in rows:
                    continue
                row = finished_row(task)  # finished while the interrupt was handled
                if row is not None:
                    rows[task.dataset.name] = row
                    result.computed.append(task.dataset.name)
                elif result.dask is None or result.dask.local:  # its workers are stopped
                    remove_temporaries(task.dataset.folder)
    result.rows = [rows[t.dataset.name] for t in tasks if t.dataset.name in rows]
    result.seconds = time.perf_counter() - start
    return result


def shared(value):
    """The value itself: a task whose result every dataset's task reads (compute_on_dask)."""
    return value


def compute_on_dask(client, todo: list[DatasetTask], native_side: NativeSide,
                    rows: dict[str, dict], result: BatchResult, log) -> None:
    """Submit one task per dataset, all reading one native side; collect the rows."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker
    from tqdm import tqdm

    try:  # a worker that cannot import the package would never return a task's row
        client.run(exec, "import meteor_cctbx.batch")
    except Exception as error:
        raise Sorry(f"The Dask workers cannot import meteor_cctbx ({one_line(error)}): install "
                    f"meteor_cctbx with pip where the workers run (its start-up hook "
                    f"included).") from None
    # The native side travels inside the graph, not by client.scatter: scattered data lost
    # with a killed worker cannot be recovered, a task's result is recomputed from the graph.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Large object", UserWarning)
        native_future = client.submit(shared, native_side, pure=False,
                                      key=f"meteor-batch-native-{os.urandom(4).hex()}")
    futures = {client.submit(run_dataset, task, native_future, pure=False,
                             key=f"meteor-batch-{task.dataset.name}-{os.urandom(4).hex()}"): task
               for task in todo}
    bar = tqdm(total=len(todo), unit="dataset", desc="meteor.batch", disable=None)
    try:
        for number, future in enumerate(as_completed(futures), start=1):
            task = futures[future]
            try:
                row = future.result()
            except KilledWorker:
                row = base_row(task.dataset, "failed",
                               "the workers running it died repeatedly (out of memory, or "
                               "killed): give the workers more memory and rerun")
            except Exception as error:  # lost scheduler, cancelled future
                row = base_row(task.dataset, "failed", f"Dask: {one_line(error)}")
            rows[task.dataset.name] = row
            result.computed.append(task.dataset.name)
            bar.update()
            print(f"  [{number:{len(str(len(todo)))}d}/{len(todo)}] {task.dataset.name}: "
                  f"{describe_row(row)}  ({row['seconds']:.1f} s)", file=log, flush=True)
    except KeyboardInterrupt:
        client.cancel(list(futures))
        raise
    finally:
        bar.close()

