"""meteor.batch: many derivatives against one native on Dask (local cluster and a real
scheduler with worker processes on 127.0.0.1), failed rows, resume, equality with single runs."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from meteor_cctbx.batch import dataset_names, expand_derivatives
from meteor_cctbx.command_line import run_as_command
from meteor_cctbx.example import write_amplitudes_mtz
from meteor_cctbx.programs import diffmap, phaseboost
from meteor_cctbx.programs.batch import Program
from meteor_cctbx.record import write_bytes
from meteor_cctbx.synthetic import small_example, structure_as_pdb

from helpers import assert_one_line_sorry, run_program

OCCUPANCIES = (0.3, 0.6, 1.0)
#: k fixed, TV weight scanned over a short range: seconds per dataset, a real scan in the
#: summary (helpers.FAST fixes both).
FIXED_K_SHORT_SCAN = ["kweight.mode=fixed", "tv.search_range=0.005 0.2"]
PHASEBOOST = ["batch.program=phaseboost", "phaseboost.max_iterations=3", *FIXED_K_SHORT_SCAN]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> SimpleNamespace:
    """One native, its model and derivatives of a ligand at rising occupancy (3 A), plus a
    damaged MTZ file."""
    directory = tmp_path_factory.mktemp("series")
    derivatives = []
    for occupancy in OCCUPANCIES:
        pair = small_example(d_min=3.0, ligand_occupancy=occupancy, seed=0)
        path = directory / "data" / f"occ_{occupancy:.1f}.mtz"
        path.parent.mkdir(exist_ok=True)
        write_amplitudes_mtz(path, pair.derivative)
        derivatives.append(path)
    write_amplitudes_mtz(directory / "native.mtz", pair.native)
    write_bytes(directory / "model.pdb", structure_as_pdb(pair.phasing_model).encode())
    broken = directory / "data" / "broken.mtz"
    broken.write_bytes(b"MTZ \x00\x00garbage" * 10)
    return SimpleNamespace(dir=directory, derivatives=derivatives, broken=broken)


def batch_args(series, *extra) -> list[str]:
    return [str(series.dir / "model.pdb"), f"native.file_name={series.dir / 'native.mtz'}",
            *[str(a) for a in extra]]


def run_quietly(program_class, args) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = run_as_command(program_class, [str(a) for a in args])
    return status, out.getvalue()


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def local_run(series, tmp_path_factory) -> SimpleNamespace:
    """A batch on a local cluster of two workers: the derivatives as a glob, the damaged file
    from a list file."""
    out = tmp_path_factory.mktemp("local_batch") / "meteor_batch"
    listing = series.dir / "more.txt"
    listing.write_text("# damaged on purpose\ndata/broken.mtz\n")
    args = batch_args(series, f"derivative.file_name={series.dir / 'data' / 'occ_*.mtz'}",
                      f"derivative.file_name={listing}", "dask.n_workers=2",
                      f"output.directory={out}", *FIXED_K_SHORT_SCAN)
    status, log = run_quietly(Program, args)
    assert status == 0, log[-3000:]
    return SimpleNamespace(out=out, args=args, log=log,
                           rows=read_csv(out / "summary.csv"),
                           record=json.loads((out / "summary.json").read_text()))


def test_n_derivatives_give_n_rows_and_a_damaged_file_one_failed_row(series, local_run):
    rows = {row["dataset"]: row for row in local_run.rows}
    assert list(rows) == ["occ_0.3", "occ_0.6", "occ_1.0", "broken"]
    assert [rows[name]["status"] for name in rows] == ["ok", "ok", "ok", "failed"]
    reason = rows["broken"]["reason"]
    assert "broken.mtz" in reason and "damaged" in reason
    assert not (local_run.out / "broken").exists()  # no partial output for a failed dataset
    for name in ("occ_0.3", "occ_0.6", "occ_1.0"):
        folder = local_run.out / name
        assert sorted(p.name for p in folder.iterdir()) == [
            "batch_row.json", "meteor_diffmap.json", "meteor_diffmap.log",
            "meteor_diffmap.mtz", "meteor_diffmap.png"]
        assert float(rows[name]["d_min"]) == pytest.approx(3.0, abs=0.01)
        parameters = json.loads((folder / "meteor_diffmap.json").read_text())["parameters"]
        assert parameters["kweight.mode"] == "fixed"  # the program's parameters pass through
        assert parameters["tv.search_range"] == [0.005, 0.2]
        assert parameters["derivative.file_name"] == str(series.dir / "data" / f"{name}.mtz")
        assert float(rows[name]["peak_max_sigma"]) > 5  # the ligand stands out
    # more ligand, larger isomorphous difference
    riso = [float(rows[name]["riso"]) for name in ("occ_0.3", "occ_0.6", "occ_1.0")]
    assert riso[0] < riso[1] < riso[2]
    record = local_run.record
    assert [row["dataset"] for row in record["datasets"]] == list(rows)
    assert record["n_ok"] == 3 and record["n_failed"] == 1
    assert record["dask"]["local"] and record["dask"]["n_workers"] == 2
    assert record["dask"]["threads_per_worker"] >= 1
    assert (local_run.out / "summary.png").stat().st_size > 1000
    assert "Dask: local cluster of 2 worker processes" in local_run.log


def test_batch_maps_equal_single_program_runs(series, local_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    derivative = series.derivatives[1]
    status, log = run_quietly(diffmap.Program, [derivative, series.dir / "native.mtz",
                                                series.dir / "model.pdb", *FIXED_K_SHORT_SCAN])
    assert status == 0, log[-2000:]
    batch_mtz = local_run.out / "occ_0.6" / "meteor_diffmap.mtz"
    assert batch_mtz.read_bytes() == (tmp_path / "meteor_diffmap.mtz").read_bytes()


def test_rerun_recomputes_nothing(series, local_run):
    folders = [local_run.out / name for name in ("occ_0.3", "occ_0.6", "occ_1.0")]
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for f in folders for p in f.iterdir()}
    args = [a for a in local_run.args if "more.txt" not in a]  # the damaged file left out
    status, log = run_quietly(Program, args)
    assert status == 0, log[-3000:]
    assert "3 finished earlier, 0 to compute" in log and "Dask:" not in log
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for f in folders for p in f.iterdir()}
    assert after == before
    record = json.loads((local_run.out / "summary.json").read_text())
    assert record["computed"] == [] and record["reused"] == ["occ_0.3", "occ_0.6", "occ_1.0"]
    assert read_csv(local_run.out / "summary.csv") == local_run.rows[:3]
    assert list(read_csv(local_run.out / "summary.csv")[0]) == list(local_run.rows[0])
    assert record["data"]["native"]["n_reflections"] > 1000  # kept from the first run


def test_other_parameters_into_the_same_directory_are_refused(local_run, capsys):
    args = [a for a in local_run.args if a != "kweight.mode=fixed"]
    status, _, err = run_program(Program, args, capsys)
    assert_one_line_sorry(status, err, "kweight.mode", "output.overwrite=True")


def test_parameter_of_another_program_is_refused(series, tmp_path, capsys):
    args = batch_args(series, f"derivative.file_name={series.derivatives[0]}",
                      "phaseboost.max_iterations=3", f"output.directory={tmp_path / 'b'}")
    status, _, err = run_program(Program, args, capsys)
    assert_one_line_sorry(status, err, "phaseboost.max_iterations", "batch.program=diffmap")
    assert not (tmp_path / "b").exists()


def test_missing_native_and_empty_glob(series, tmp_path, capsys):
    status, _, err = run_program(Program, [series.dir / "model.pdb",
                                           f"derivative.file_name={series.derivatives[0]}"],
                                 capsys)
    assert_one_line_sorry(status, err, "native.file_name=")
    status, _, err = run_program(Program, batch_args(series, "derivative.file_name=nothing*.mtz"),
                                 capsys)
    assert_one_line_sorry(status, err, "nothing*.mtz", "matches no file")


def test_derivative_lists_and_folder_names(tmp_path):
    for name in ("a/final.mtz", "b/final.mtz", "c.mtz"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "list.lst").write_text("a/final.mtz  # first\n\n# none\nb/final.mtz\n")
    paths = expand_derivatives([str(tmp_path / "list.lst"), str(tmp_path / "*.mtz"),
                                str(tmp_path / "a" / "final.mtz")])
    assert paths == [str(tmp_path / n) for n in ("a/final.mtz", "b/final.mtz", "c.mtz")]
    assert dataset_names(paths) == ["a_final", "b_final", "c"]


def start(command: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture
def dask_processes(tmp_path):
    """A `dask scheduler` and a `dask worker` (two worker processes, one thread each) started
    as separate processes on 127.0.0.1; yields the scheduler's address."""
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "NUMBA_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                       os.environ.get("PYTHONPATH")]))}
    scheduler_file = tmp_path / "scheduler.json"
    processes = [start([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                        "--no-dashboard", "--scheduler-file", str(scheduler_file)], env)]
    try:
        for _ in range(300):
            if scheduler_file.exists() and scheduler_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        processes.append(start([dask, "worker", address, "--host", "127.0.0.1",
                                "--nworkers", "2", "--nthreads", "1", "--no-dashboard"], env))
        yield address
    finally:
        for process in reversed(processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def test_scheduler_and_workers_as_processes_with_a_killed_worker(series, dask_processes,
                                                                 tmp_path, monkeypatch):
    """phaseboost through an existing scheduler; one worker is killed (SIGKILL) while it holds
    a dataset: the task runs again elsewhere and every dataset finishes, equal to a single
    meteor.phaseboost run."""
    from distributed import Client

    out = tmp_path / "batch"
    args = batch_args(series, *[f"derivative.file_name={p}" for p in series.derivatives],
                      f"dask.scheduler={dask_processes}", f"output.directory={out}",
                      *PHASEBOOST)
    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(zip(
        ("status", "log"), run_quietly(Program, args))))
    with Client(dask_processes, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
        runner.start()
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and runner.is_alive() and time.monotonic() < deadline:
            busy = [w for w, keys in client.processing().items() if keys]
            if busy:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)
                killed = busy[0]
            time.sleep(0.05)
        runner.join(timeout=120)
    assert killed is not None, "no worker was busy"
    assert outcome.get("status") == 0, outcome.get("log", "")[-3000:]
    rows = read_csv(out / "summary.csv")
    assert [row["status"] for row in rows] == ["ok"] * len(series.derivatives), rows
    assert all(int(row["iterations"]) >= 1 for row in rows)
    assert all(row["final_map"] == ("retrieved" if float(row["halves_cc"]) >= 0.15 else "initial")
               for row in rows)
    assert not list(out.rglob(".*.tmp*"))  # nothing left of the killed run
    monkeypatch.chdir(tmp_path)
    status, log = run_quietly(phaseboost.Program, [series.derivatives[2],
                                                   series.dir / "native.mtz",
                                                   series.dir / "model.pdb", *PHASEBOOST[1:]])
    assert status == 0, log[-2000:]
    assert (out / "occ_1.0" / "meteor_phaseboost.mtz").read_bytes() == \
        (tmp_path / "meteor_phaseboost.mtz").read_bytes()


def as_in_a_terminal() -> None:
    """In the child: SIGINT delivered and handled by default, as a shell starts a command
    (a test runner may leave it ignored or blocked, which children inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_ctrl_c_leaves_complete_sets_only(series, tmp_path):
    """SIGINT to the whole process group while datasets are in flight: exit status 130, each
    dataset folder complete or absent, the summary lists exactly the complete ones, and no
    worker process is left."""
    import psutil

    out = tmp_path / "batch"
    slow = ["tv.mode=fixed", "tv.max_iterations=3000"]  # datasets stay in flight for seconds
    command = [sys.executable, "-m", "meteor_cctbx.command_line.batch",
               *batch_args(series, *[f"derivative.file_name={p}" for p in series.derivatives],
                           "dask.n_workers=2", f"output.directory={out}", *FIXED_K_SHORT_SCAN,
                           *slow)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True, text=True, preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + 90
    while not (out.exists() and any(out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "no worker processes"
    os.killpg(process.pid, signal.SIGINT)
    log, _ = process.communicate(timeout=90)
    assert process.returncode == 130, log[-3000:]
    assert "Traceback" not in log and "rerun the same command" in log
    complete = []
    for folder in (p for p in out.iterdir() if p.is_dir()):
        row = json.loads((folder / "batch_row.json").read_text())  # no folder without one
        assert all((folder / name).is_file() for name in row["outputs"])
        complete.append(folder.name)
    assert not list(out.rglob(".*.tmp*"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert sorted(row["dataset"] for row in summary["datasets"]) == sorted(complete)
    assert len(complete) < len(series.derivatives)
    gone = psutil.wait_procs(workers, timeout=20)[1] == []
    assert gone, "worker processes left running"


def test_extrapolate_through_the_batch_equals_a_single_run(series, tmp_path, monkeypatch):
    from meteor_cctbx.programs import extrapolate

    out = tmp_path / "batch"
    given = ["extrapolate.occupancy=0.5", *FIXED_K_SHORT_SCAN]
    status, log = run_quietly(Program, batch_args(
        series, f"derivative.file_name={series.derivatives[2]}", "batch.program=extrapolate",
        "dask.n_workers=1", f"output.directory={out}", *given))
    assert status == 0, log[-3000:]
    row = read_csv(out / "summary.csv")[0]
    assert row["status"] == "ok" and float(row["occupancy"]) == 0.5
    assert row["occupancy_method"] == "given"
    monkeypatch.chdir(tmp_path)
    status, log = run_quietly(extrapolate.Program, [series.derivatives[2],
                                                    series.dir / "native.mtz",
                                                    series.dir / "model.pdb", *given])
    assert status == 0, log[-2000:]
    assert (out / "occ_1.0" / "meteor_extrapolate.mtz").read_bytes() == \
        (tmp_path / "meteor_extrapolate.mtz").read_bytes()
