"""Outputs are all-or-nothing and reproducible.

* Every state the output files pass through while a run writes them is either the previous set
  or the new one (never a partial file, never a new MTZ beside the old record), checked at
  each file-system step in-process and by killing real runs with SIGKILL.
* The same inputs and parameters give byte-identical MTZ, map and PNG files and the same JSON
  apart from timings, run to run and with 1 or 2 threads (NUMBA_NUM_THREADS).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.programs.sharpen import Program as Sharpen

from helpers import (DIFFMAP_OUTPUTS, FAST, example_inputs, run_program, same_output,
                     without_timings)

OUTPUTS = DIFFMAP_OUTPUTS
RECORD = "meteor_diffmap.json"
WRITE_ALL = FAST + ["output.map=True", "output.overwrite=True"]


def visible_files(directory: Path) -> dict[str, bytes]:
    """Files a later pipeline step would see (temporaries are hidden dot files)."""
    return {p.name: p.read_bytes() for p in directory.iterdir() if not p.name.startswith(".")}


def assert_previous_or_new(state: dict[str, bytes], previous: dict[str, bytes],
                           new: dict[str, bytes]) -> None:
    """Each file is a complete previous or new one; a record vouches for a whole set."""
    for name, content in state.items():
        assert name in OUTPUTS, name
        assert content == previous.get(name) or same_output(name, content, new[name]), name
    if RECORD in state:
        if state[RECORD] == previous.get(RECORD):
            assert state == previous
        else:
            assert set(state) == set(new) and all(same_output(n, state[n], new[n])
                                                  for n in state)


@pytest.mark.parametrize("with_previous", [True, False], ids=["previous_set", "no_outputs"])
def test_every_step_of_writing_shows_the_previous_set_or_the_new_one(example, in_tmp, capsys,
                                                                     monkeypatch,
                                                                     with_previous):
    previous = {name: f"previous {name}".encode() for name in OUTPUTS} if with_previous else {}
    for name, content in previous.items():
        (in_tmp / name).write_bytes(content)
    states = []
    for function in ("replace", "remove"):
        real = getattr(os, function)

        def step(*args, _real=real, **kwargs):
            states.append(visible_files(in_tmp))  # what a kill just before this step leaves
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, function, step)
    status, _, err = run_program(Diffmap, example_inputs(example) + WRITE_ALL, capsys)
    monkeypatch.undo()
    assert status == 0, err
    new = visible_files(in_tmp)
    assert set(new) == set(OUTPUTS) and all(new[n] != previous.get(n) for n in OUTPUTS)
    assert len(states) >= len(OUTPUTS)
    for state in states:
        assert_previous_or_new(state, previous, new)
    assert states[0] == previous  # nothing changed while the outputs were being written


#: Runs meteor.diffmap (arguments after the first) in a process that SIGKILLs itself just
#: before its n-th call (first argument) of os.replace or os.remove: a fixed point of the
#: commit, not a moment that depends on timing.
KILL_AT_STEP = """
import os, signal, sys
import meteor_cctbx
from meteor_cctbx.command_line.diffmap import main
stop_at, calls = int(sys.argv[1]), [0]
def step(real):
    def call(*args, **kwargs):
        if any("meteor_diffmap" in str(a) for a in args):  # the output set's own files
            if calls[0] == stop_at:
                os.kill(os.getpid(), signal.SIGKILL)
            calls[0] += 1
        return real(*args, **kwargs)
    return call
os.replace, os.remove = step(os.replace), step(os.remove)
sys.exit(main(sys.argv[2:]))
"""


def count_steps(example, directory: Path, monkeypatch, capsys) -> int:
    """Calls of os.replace and os.remove on the output set's files in a run over a previous
    set: the commit's (removal of the previous record, then one rename per output) and the
    lock's removal.  Caches that other libraries write on first use do not count."""
    calls = []
    for function in ("replace", "remove"):
        real = getattr(os, function)

        def step(*args, _real=real, **kwargs):
            if any("meteor_diffmap" in str(a) for a in args):  # not numba's or matplotlib's
                calls.append(args)
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, function, step)
    status, _, err = run_program(Diffmap, example_inputs(example) + WRITE_ALL, capsys)
    monkeypatch.undo()
    assert status == 0, err
    return len(calls)


def test_killed_runs_leave_the_previous_or_the_complete_outputs(example, tmp_path, capsys,
                                                               monkeypatch):
    """SIGKILL real runs at fixed steps of the commit: before its first step (the removal of
    the previous record), between two renames, and before the record's rename."""
    reference = tmp_path / "reference"
    reference.mkdir()
    previous = {name: f"previous {name}".encode() for name in OUTPUTS}
    for name, content in previous.items():
        (reference / name).write_bytes(content)
    monkeypatch.chdir(reference)
    n_steps = count_steps(example, reference, monkeypatch, capsys)
    new = visible_files(reference)
    assert n_steps == 1 + len(OUTPUTS) + 1, n_steps
    for stop_at in (0, 3, len(OUTPUTS)):
        directory = tmp_path / f"kill{stop_at}"
        directory.mkdir()
        for name, content in previous.items():
            (directory / name).write_bytes(content)
        result = subprocess.run([sys.executable, "-c", KILL_AT_STEP, str(stop_at),
                                 *example_inputs(example), *WRITE_ALL], cwd=directory,
                                capture_output=True, text=True)
        assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
        state = visible_files(directory)
        assert_previous_or_new(state, previous, new)
        if stop_at == 0:  # nothing touched yet
            assert state == previous
        else:  # the previous record is gone, stop_at - 1 new files are in place, none half
            assert RECORD not in state and set(state) == set(OUTPUTS) - {RECORD}
            renamed = [n for n in state if state[n] != previous[n]]
            assert len(renamed) == stop_at - 1, (stop_at, renamed)
        assert all(p.name.startswith(".meteor_diffmap.") for p in directory.iterdir()
                   if p.name not in state)  # only hidden temporaries may remain


def test_same_inputs_give_identical_outputs_with_one_or_two_threads(example, tmp_path):
    outputs = []
    for threads in ("1", "2"):
        directory = tmp_path / f"threads{threads}"
        directory.mkdir()
        for name in ("derivative.mtz", "native.mtz", "model.pdb"):
            (directory / name).write_bytes((example.dir / name).read_bytes())
        result = subprocess.run(
            [sys.executable, "-m", "meteor_cctbx.command_line.diffmap", "derivative.mtz",
             "native.mtz", "model.pdb", "output.map=True"], cwd=directory,
            capture_output=True, text=True, env={**os.environ, "NUMBA_NUM_THREADS": threads})
        assert result.returncode == 0, result.stderr
        outputs.append(visible_files(directory))
    one, two = outputs
    assert set(one) == set(two) >= set(OUTPUTS)
    for name in OUTPUTS:
        if name.endswith(".json"):
            record_one, record_two = (without_timings(json.loads(o[name])) for o in outputs)
            assert record_one == record_two
            assert record_one["result"]["tv_weight"] > 0  # the optimised scans ran
        else:
            assert same_output(name, one[name], two[name]), name


def test_sharpen_outputs_are_identical_with_one_or_two_threads(example, tmp_path, capsys,
                                                              monkeypatch):
    from meteor_cctbx.command_line import run_as_command

    monkeypatch.chdir(tmp_path)
    assert run_as_command(Diffmap, example_inputs(example) + WRITE_ALL
                          + ["output.prefix=input"]) == 0
    outputs = []
    for threads in ("1", "2"):
        directory = tmp_path / f"nproc{threads}"
        directory.mkdir()
        monkeypatch.chdir(directory)
        status, _, err = run_program(Sharpen, ["../input.ccp4", "resolution=2",
                                               f"nproc={threads}"], capsys)
        assert status == 0, err
        outputs.append(visible_files(directory))
    one, two = outputs
    assert set(one) == set(two) == {f"meteor_sharpen.{s}"
                                    for s in ("ccp4", "mtz", "png", "json", "log")}
    for name in ("meteor_sharpen.ccp4", "meteor_sharpen.mtz", "meteor_sharpen.png"):
        assert one[name] == two[name], name
    records = [without_timings(json.loads(o["meteor_sharpen.json"])) for o in outputs]
    assert [r["parameters"].pop("nproc") for r in records] == [1, 2]
    assert records[0] == records[1]
