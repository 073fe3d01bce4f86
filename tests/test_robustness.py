"""Bad and awkward inputs across the programs (docs/bad_inputs.md): defective reflection data,
other settings and indexings, awkward models, unwritable outputs and a full disk.

Each case either works, with the log saying what was done and a map still close to the truth,
or stops with one line naming the file, the problem and the fix, leaving no output behind.
"""
from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path
from types import SimpleNamespace

import iotbx.mtz
import numpy as np
import pytest
from cctbx import crystal, sgtbx
from cctbx.array_family import flex
from libtbx.utils import Sorry

from meteor_cctbx.map_metrics import map_correlation
from meteor_cctbx.programs.diffmap import Program as Diffmap
from meteor_cctbx.programs.local_scale import Program as LocalScale
from meteor_cctbx.programs.phaseboost import Program as Phaseboost
from meteor_cctbx.programs.sharpen import Program as Sharpen
from meteor_cctbx.record import write_map_coefficients_mtz
from meteor_cctbx.reflections import as_amplitudes, match_indexing
from meteor_cctbx.synthetic import random_protein_like

from helpers import (DIFFMAP_OUTPUTS, FAST, assert_one_line_sorry, mtz_arrays, run_program,
                     same_output)

OUTPUTS = DIFFMAP_OUTPUTS


def write_raw_mtz(path: Path, symmetry, indices, columns, original_indices: bool = False
                  ) -> Path:
    """An MTZ holding exactly these rows, repeats included: H,K,L (with ``original_indices``,
    the asymmetric-unit indices and M/ISYM of these indices, as unmerged files have) and
    (label, MTZ type, values) columns; NaN values are written as missing."""
    mtz = iotbx.mtz.object()
    mtz.set_title("meteor_cctbx test data")
    mtz.set_space_group_info(symmetry.space_group_info())
    dataset = mtz.add_crystal("crystal", "project", symmetry.unit_cell()).add_dataset("data", 1)
    labels = [("H", "H"), ("K", "H"), ("L", "H")]
    labels += [("M_ISYM", "Y")] if original_indices else []
    for label, column_type in labels + [(label, kind) for label, kind, _ in columns]:
        dataset.add_column(label, column_type)
    n = len(indices)
    mtz.adjust_column_array_sizes(n)
    mtz.set_n_reflections(n)
    column = {c.label(): c for c in dataset.columns()}
    every = flex.bool(n, True)
    hkl = np.array(indices, dtype=np.float32).reshape(-1, 3)
    for k, label in enumerate("HKL"):
        column[label].set_values(values=flex.float(np.ascontiguousarray(hkl[:, k])),
                                 selection_valid=every)
    if original_indices:
        column["M_ISYM"].set_values(values=flex.float(n, 0), selection_valid=every)
        mtz.replace_original_index_miller_indices(flex.miller_index(list(indices)))
    for label, _, values in columns:
        values = np.asarray(values, dtype=np.float32)
        column[label].set_values(values=flex.float(values),
                                 selection_valid=flex.bool(list(~np.isnan(values))))
    mtz.write(str(path))
    return path


def noisy_intensities(amplitudes, rng):
    """I = |F|^2 measured with sigma 2|F|sigF/4 + 0.5 % of <I>: weak ones come out
    negative."""
    f = amplitudes.data().as_numpy_array()
    intensities = f ** 2
    sigmas = 0.5 * f * amplitudes.sigmas().as_numpy_array() + 0.005 * intensities.mean()
    return intensities + rng.normal(size=f.size) * sigmas, sigmas


@pytest.fixture(scope="module")
def files(example, tmp_path_factory):
    """Defective and awkward variants of the example's inputs."""
    d = tmp_path_factory.mktemp("robustness")
    rng = np.random.default_rng(5)
    der = example.pair.derivative
    symmetry = der.crystal_symmetry()
    indices = list(der.indices())
    f, sigf = der.data().as_numpy_array().copy(), der.sigmas().as_numpy_array().copy()
    out = {"der": example.dir / "derivative.mtz", "nat": example.dir / "native.mtz",
           "model": example.dir / "model.pdb"}

    # missing values (NaN and inf in MTZ), zero and negative sigmas, repeated reflections
    order = rng.permutation(der.size())
    nan, inf, zero_sigma, negative_sigma = np.split(order[:33], [8, 13, 20])
    f[nan] = sigf[nan] = np.nan
    f[inf] = sigf[inf] = np.inf
    sigf[zero_sigma] = 0
    sigf[negative_sigma] = -1
    repeats = order[100:130]
    out["defects"] = {"missing": len(nan) + len(inf),
                      "bad_sigma": len(zero_sigma) + len(negative_sigma),
                      "repeats": len(repeats)}
    out["der_defective"] = write_raw_mtz(
        d / "der_defective.mtz", symmetry, indices + [indices[i] for i in repeats],
        [("F", "F", np.concatenate([f, f[repeats] * 1.01])),
         ("SIGF", "Q", np.concatenate([sigf, sigf[repeats]]))])
    # NaN and inf amplitudes in mmCIF, where they are read as numbers
    f_cif = der.data().as_numpy_array().copy()
    f_cif[order[:4]], f_cif[order[4:9]] = np.nan, np.inf
    text = io.StringIO()
    der.customized_copy(data=flex.double(f_cif)).as_cif_simple(array_type="meas", out=text,
                                                              data_name="derivative")
    out["der_nan_cif"] = d / "der_nan.cif"
    out["der_nan_cif"].write_text(text.getvalue())
    f_clean = der.data().as_numpy_array()
    out["der_zero_sigmas"] = write_raw_mtz(d / "der_zero_sigmas.mtz", symmetry, indices,
                                           [("F", "F", f_clean), ("SIGF", "Q", 0 * f_clean)])
    lonely = f_clean.copy()
    lonely[:5] = np.nan  # F missing, its sigma present
    out["der_missing_f"] = write_raw_mtz(d / "der_missing_f.mtz", symmetry, indices,
                                         [("F", "F", lonely),
                                          ("SIGF", "Q", der.sigmas().as_numpy_array())])

    intensities, sigmas = noisy_intensities(der, rng)
    out["negative_intensities"] = int((intensities < 0).sum())
    out["der_negative_i"] = write_raw_mtz(d / "der_negative_i.mtz", symmetry, indices,
                                          [("I", "J", intensities), ("SIGI", "Q", sigmas)])

    # unmerged: each reflection seen at random symmetry and Friedel mates, as scaling
    # programs write them (asymmetric-unit H,K,L with M/ISYM, a BATCH column)
    i_true = der.f_as_f_sq()
    p1 = i_true.expand_to_p1()
    p1 = p1.concatenate(p1.customized_copy(indices=-p1.indices()))
    observed = p1.select(flex.bool(list(rng.random(p1.size()) < 0.5)))
    obs_sigma = observed.sigmas().as_numpy_array() + 0.002 * i_true.data().as_numpy_array().mean()
    out["der_unmerged"] = write_raw_mtz(
        d / "der_unmerged.mtz", symmetry, list(observed.indices()),
        [("BATCH", "B", rng.integers(1, 90, observed.size())),
         ("I", "J", observed.data().as_numpy_array() + rng.normal(size=observed.size())
          * obs_sigma),
         ("SIGI", "Q", obs_sigma)], original_indices=True)

    # anomalous intensities I(+), SIGI(+), I(-), SIGI(-)
    anomalous = i_true.generate_bijvoet_mates().set_observation_type_xray_intensity()
    anomalous = anomalous.customized_copy(data=anomalous.data() + flex.double(
        rng.normal(size=anomalous.size())) * anomalous.sigmas())
    anomalous.as_mtz_dataset(column_root_label="I").mtz_object().write(str(d / "der_anom.mtz"))
    out["der_anom"] = d / "der_anom.mtz"

    # the same derivative in another setting of P212121 (axes permuted)
    permuted = der.change_basis(sgtbx.change_of_basis_op("k,l,h")).map_to_asu()
    permuted.as_mtz_dataset(column_root_label="F").mtz_object().write(str(d / "der_perm.mtz"))
    out["der_permuted"] = d / "der_perm.mtz"

    data = (example.dir / "native.mtz").read_bytes()
    out["damaged"] = d / "damaged.mtz"
    out["damaged"].write_bytes(data[:-200])
    out.update(awkward_models(example.dir / "model.pdb", d))
    return out


def awkward_models(model: Path, directory: Path) -> dict:
    """The phasing model with hydrogens, alternate conformations and unoccupied atoms added;
    and one whose every atom has zero occupancy."""
    lines = model.read_text().splitlines()
    edited, k, serial = [], 0, 9000
    for line in lines:
        if not line.startswith(("ATOM", "HETATM")):
            edited.append(line)
            continue
        x = float(line[30:38])
        if k < 30:  # a riding-like hydrogen 1 A away
            serial += 1
            edited += [line, f"ATOM  {serial:5d}  H1 " + line[16:30] + f"{x + 1.0:8.3f}"
                       + line[38:76] + " H"]
        elif k < 45:  # two conformers, half occupied each, 0.3 A apart
            edited += [line[:16] + altloc + line[17:30] + f"{x + shift:8.3f}" + line[38:54]
                       + "  0.50" + line[60:] for altloc, shift in (("A", 0.0), ("B", 0.3))]
        elif k < 60:  # present but unoccupied
            edited.append(line[:54] + "  0.00" + line[60:])
        else:
            edited.append(line)
        k += 1
    awkward = directory / "model_awkward.pdb"
    awkward.write_text("\n".join(edited) + "\n")
    unoccupied = directory / "model_unoccupied.pdb"
    unoccupied.write_text("\n".join(line[:54] + "  0.00" + line[60:]
                                    if line.startswith(("ATOM", "HETATM")) else line
                                    for line in lines) + "\n")
    return {"model_awkward": awkward, "model_unoccupied": unoccupied}


def run_and_score(example, directory: Path, args, capsys, prefix: str) -> tuple[str, float]:
    """Run diffmap (in ``directory``, the cwd); return its log and the map's CC with the
    true map."""
    status, out, err = run_program(Diffmap, [*args, f"output.prefix={prefix}"] + FAST, capsys)
    assert status == 0, err
    cc = map_correlation(mtz_arrays(directory / f"{prefix}.mtz")["DELFWT,PHDELWT"],
                         example.pair.true_difference)
    return out, cc


@pytest.fixture(scope="module")
def reference(example, tmp_path_factory):
    """The example's map from clean inputs (same settings as run_and_score) and its CC with
    the true map: what every run on defective but recoverable data is held to."""
    from meteor_cctbx.command_line import run_as_command

    directory = tmp_path_factory.mktemp("reference")
    cwd = os.getcwd()
    os.chdir(directory)
    try:
        status = run_as_command(Diffmap, [str(example.dir / n) for n in
                                          ("derivative.mtz", "native.mtz", "model.pdb")] + FAST)
    finally:
        os.chdir(cwd)
    assert status == 0
    coefficients = mtz_arrays(directory / "meteor_diffmap.mtz")["DELFWT,PHDELWT"]
    return SimpleNamespace(map=coefficients,
                           cc=map_correlation(coefficients, example.pair.true_difference))


# ----------------------------------------------------------------------------------------------
# Files that cannot be read


def unreadable_file(tmp_path: Path) -> Path:
    """A file whose reading fails: no read permission for ordinary users; for root (whom
    permissions do not bind), a file that fails with an I/O error."""
    if os.geteuid() != 0:
        path = tmp_path / "unreadable.mtz"
        path.write_bytes(b"MTZ ")
        path.chmod(0)
        return path
    return Path("/proc/self/mem")  # reading address 0 fails with EIO


@pytest.mark.parametrize("make_file, fragments", [
    (unreadable_file, ["not readable", "check its permissions"]),
    (lambda d: d / "text.mtz", ["text.mtz", "not a valid MTZ file", "re-export"]),
    (lambda d: d / "text.hkl", ["text.hkl", "not a reflection file iotbx recognises"]),
], ids=["unreadable_file", "text_named_mtz", "unknown_format"])
def test_unreadable_reflection_file_is_one_sorry(files, in_tmp, tmp_path, capsys, make_file,
                                                 fragments):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name in ("text.mtz", "text.hkl"):
        (inputs / name).write_text("These are not the reflections\nyou are looking for.\n")
    status, _, err = run_program(Diffmap, [make_file(inputs), files["nat"], files["model"]],
                                 capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert [p.name for p in in_tmp.iterdir()] == ["inputs"]


# ----------------------------------------------------------------------------------------------
# Defective reflection data: dropped or merged, with the log saying so


def amplitudes_and_log(array) -> tuple[object, str]:
    log = io.StringIO()
    return as_amplitudes(array, "test.mtz", "Derivative", log), log.getvalue()


def test_nan_inf_and_non_positive_sigmas_are_dropped_and_counted(example):
    der = example.pair.derivative
    f, s = der.data().as_numpy_array().copy(), der.sigmas().as_numpy_array().copy()
    f[:4], f[4:7], s[7:9], s[10:15], s[15:17] = np.nan, np.inf, -np.inf, 0, -2
    result, text = amplitudes_and_log(der.customized_copy(data=flex.double(f),
                                                          sigmas=flex.double(s)))
    assert "dropping 9 reflections with NaN or infinite values" in text
    assert "dropping 7 reflections with zero or negative sigma" in text
    assert result.size() == der.size() - 16
    assert np.isfinite(result.data().as_numpy_array()).all()
    assert (result.sigmas().as_numpy_array() > 0).all()


def test_every_reflection_unusable_is_one_sorry(example):
    der = example.pair.derivative
    with pytest.raises(Sorry, match="no usable reflection"):
        as_amplitudes(der.customized_copy(sigmas=der.sigmas() * 0), "x.mtz", "Derivative")


def test_intensities_without_sigmas_are_one_sorry(example):
    intensities = example.pair.derivative.f_as_f_sq().customized_copy(sigmas=None)
    with pytest.raises(Sorry, match="no sigmas, which French-Wilson needs"):
        as_amplitudes(intensities.set_observation_type_xray_intensity(), "x.mtz", "Native")


def test_negative_amplitudes_are_one_sorry(example):
    der = example.pair.derivative
    with pytest.raises(Sorry, match="include 1 negative values: these columns are not"):
        as_amplitudes(der.customized_copy(data=der.data() * flex.double(
            [-1.0] + [1.0] * (der.size() - 1))), "x.mtz", "Derivative")


def test_repeated_reflections_are_merged_with_cctbx(example):
    der = example.pair.derivative
    twice = der.concatenate(der.customized_copy(data=der.data() * 1.02)
                            ).set_observation_type_xray_amplitude()
    result, text = amplitudes_and_log(twice)
    assert f"{2 * der.size()} observations of {der.size()} unique" in text
    assert "merged with cctbx" in text
    a, b = result.common_sets(der)
    assert a.size() == der.size()
    assert np.allclose(a.data().as_numpy_array(), 1.01 * b.data().as_numpy_array(), rtol=1e-6)


def test_defective_file_is_cleaned_and_still_gives_the_map(example, files, reference, in_tmp,
                                                           capsys):
    out, cc = run_and_score(example, in_tmp, [files["der_defective"], files["nat"],
                                              files["model"]], capsys, "defective")
    n = files["defects"]
    assert f"dropping {n['bad_sigma']} reflections with zero or negative sigma" in out
    assert f"{example.pair.derivative.size() - n['missing'] - n['bad_sigma'] + n['repeats']} " \
           f"observations of" in out and "merged with cctbx" in out
    used = example.pair.derivative.size() - n["missing"] - n["bad_sigma"]
    assert f"{used} reflections" in out.split("derivative", 1)[1].splitlines()[0]
    assert cc > reference.cc - 0.02


def test_nan_and_inf_amplitudes_in_mmcif_are_dropped(example, files, reference, in_tmp, capsys):
    out, cc = run_and_score(example, in_tmp, [files["der_nan_cif"], files["nat"],
                                              files["model"]], capsys, "nan")
    assert "dropping 9 reflections with NaN or infinite values" in out
    assert cc > reference.cc - 0.02


def test_all_sigmas_zero_is_one_sorry(files, in_tmp, capsys):
    status, _, err = run_program(Diffmap, [files["der_zero_sigmas"], files["nat"],
                                           files["model"]], capsys)
    assert_one_line_sorry(status, err, "der_zero_sigmas.mtz", "no usable reflection")
    assert not list(in_tmp.iterdir())


def test_missing_amplitude_with_a_sigma_is_one_sorry(files, in_tmp, capsys):
    status, _, err = run_program(Diffmap, [files["der_missing_f"], files["nat"],
                                           files["model"]], capsys)
    assert_one_line_sorry(status, err, "der_missing_f.mtz", "Inconsistent observation/sigma",
                          "re-export")
    assert not list(in_tmp.iterdir())


def test_negative_intensities_go_through_french_wilson(example, files, reference, in_tmp,
                                                       capsys):
    assert files["negative_intensities"] > 20
    out, cc = run_and_score(example, in_tmp, [files["der_negative_i"], files["nat"],
                                              files["model"]], capsys, "negative_i")
    assert f"({files['negative_intensities']} negative) to amplitudes" in out
    assert cc > reference.cc - 0.04


def test_unmerged_intensities_are_merged_with_cctbx(example, files, reference, in_tmp,
                                                   capsys):
    out, cc = run_and_score(example, in_tmp, [files["der_unmerged"], files["nat"],
                                              files["model"]], capsys, "unmerged")
    assert "labels I,SIGI" in out and "unmerged, repeated or Bijvoet-mate" in out
    assert "merged with cctbx" in out and "French-Wilson" in out
    assert cc > reference.cc - 0.04


def test_anomalous_pairs_are_averaged(example, files, reference, in_tmp, capsys):
    out, cc = run_and_score(example, in_tmp, [files["der_anom"], files["nat"], files["model"]],
                            capsys, "anomalous")
    assert "I(+),SIGI(+),I(-),SIGI(-)" in out and "Bijvoet mates" in out
    assert cc > reference.cc - 0.04


# ----------------------------------------------------------------------------------------------
# Settings and indexing


def test_other_setting_is_reindexed_onto_the_native(example, files, reference, in_tmp,
                                                    capsys):
    out, _ = run_and_score(example, in_tmp, [files["der_permuted"], files["nat"],
                                             files["model"]], capsys, "permuted")
    assert "reindexed" in out and "onto the native's setting" in out
    assert map_correlation(mtz_arrays(in_tmp / "permuted.mtz")["DELFWT,PHDELWT"],
                           reference.map) > 0.9999


@pytest.fixture(scope="module")
def p4_pair():
    """Amplitudes of a P4 structure, and a noisy second measurement of them."""
    structure = random_protein_like("P 4", (40, 40, 46, 90, 90, 90), seed=3)
    native = abs(structure.structure_factors(d_min=3.0).f_calc())
    rng = np.random.default_rng(0)
    values = native.data().as_numpy_array()
    derivative = native.customized_copy(data=flex.double(values * rng.normal(1, 0.05,
                                                                             values.size)))
    return derivative, native


@pytest.mark.parametrize("operator", ["k,h,-l", "-h,-k,l", "h,k,l"])
def test_alternative_indexing_is_detected_and_undone(p4_pair, operator):
    derivative, native = p4_pair
    given = derivative.change_basis(sgtbx.change_of_basis_op(operator)).map_to_asu()
    log = io.StringIO()
    match = match_indexing(given, native, 3.0, "der.mtz", "nat.mtz", log)
    # k,h,-l is the twin law of P4; -h,-k,l and h,k,l are symmetry operations
    assert (match.change_of_basis is not None) == (operator == "k,h,-l")
    assert ("reindexed" in log.getvalue()) == (operator == "k,h,-l")
    a, b = match.derivative.common_sets(derivative)
    assert a.size() == derivative.size()
    assert np.array_equal(a.data().as_numpy_array(), b.data().as_numpy_array())


def test_ambiguous_indexing_keeps_the_file_and_warns(p4_pair):
    _, native = p4_pair
    twin = native.change_basis(sgtbx.change_of_basis_op("k,h,-l")).map_to_asu()
    a, b = native.common_sets(twin)
    perfect_twin = a.customized_copy(data=(a.data() + b.data()) / 2)
    log = io.StringIO()
    match = match_indexing(perfect_twin, native, 3.0, "der.mtz", "nat.mtz", log)
    assert match.change_of_basis is None
    assert "ambiguous" in log.getvalue()


# ----------------------------------------------------------------------------------------------
# Models


def test_hydrogens_altlocs_and_unoccupied_atoms_are_handled(example, files, reference, in_tmp,
                                                            capsys):
    out, cc = run_and_score(example, in_tmp, [files["der"], files["nat"],
                                              files["model_awkward"]], capsys, "awkward")
    assert "30 hydrogens, included" in out
    assert "15 with zero occupancy" in out
    assert "alternate conformations A,B" in out
    assert cc > reference.cc - 0.03


def test_model_without_occupied_atoms_is_one_sorry(files, in_tmp, capsys):
    status, _, err = run_program(Diffmap, [files["der"], files["nat"],
                                           files["model_unoccupied"]], capsys)
    assert_one_line_sorry(status, err, "model_unoccupied.pdb", "zero occupancy")
    assert not list(in_tmp.iterdir())


# ----------------------------------------------------------------------------------------------
# Output locations


def unwritable_directory(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: permission bits for ordinary users;
    for root (whom they do not bind), a pseudo file system that refuses new files."""
    if os.geteuid() != 0:
        directory = tmp_path / "read_only"
        directory.mkdir()
        directory.chmod(0o555)
        return directory
    for candidate in (Path("/sys"), Path("/proc")):
        try:
            (candidate / ".meteor_probe").touch()
        except OSError:
            return candidate
    pytest.skip("running as root with no read-only directory available")


@pytest.mark.parametrize("program", [Diffmap, Phaseboost])
def test_unwritable_output_directory_is_one_sorry_before_any_work(files, in_tmp, tmp_path,
                                                                  capsys, program):
    directory = unwritable_directory(tmp_path)
    status, out, err = run_program(program, [files["der"], files["nat"], files["model"],
                                             f"output.prefix={directory}/out"], capsys)
    assert_one_line_sorry(status, err, str(directory), "not writable", "output.prefix")
    assert "Data:" not in out


def test_output_directory_that_is_a_file_is_one_sorry(files, in_tmp, capsys):
    (in_tmp / "results").write_text("a file")
    status, _, err = run_program(Diffmap, [files["der"], files["nat"], files["model"],
                                           "output.prefix=results/out"], capsys)
    assert_one_line_sorry(status, err, "results", "is a file, not a directory")


def fill_disk_in(monkeypatch, target: str) -> str:
    """Make one writer hit a full disk the way it does for real: the MTZ writer raises
    RuntimeError, the CCP4 map writer leaves a short file and returns, matplotlib and
    Python's file objects raise OSError(ENOSPC).  Each leaves half a file behind."""
    import matplotlib.figure

    from meteor_cctbx import record

    def half(path: str) -> None:
        with open(path, "r+b") as handle:
            handle.truncate(os.path.getsize(path) // 2)

    if target == "mtz":
        write = iotbx.mtz.object.write

        def full(self, file_name):
            write(self, file_name)
            half(file_name)
            raise RuntimeError("cctbx Error: MTZ write failed.")
        monkeypatch.setattr(iotbx.mtz.object, "write", full)
        return "MTZ write failed"
    if target == "ccp4":
        from iotbx import ccp4_map

        write = ccp4_map.write_ccp4_map

        def full(file_name, **kwargs):
            write(file_name=file_name, **kwargs)
            half(file_name)
        monkeypatch.setattr(ccp4_map, "write_ccp4_map", full)
        return "incomplete"
    if target == "png":
        def full(self, fname, **kwargs):
            Path(fname).write_bytes(b"\x89PNG half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
        return os.strerror(errno.ENOSPC)

    def full_write_bytes(path, data):
        with record.atomic_path(path) as tmp:
            Path(tmp).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(record, "write_bytes", full_write_bytes)
    return os.strerror(errno.ENOSPC)


@pytest.mark.parametrize("target", ["mtz", "ccp4", "png", "json"])
def test_full_disk_keeps_previous_outputs_and_leaves_no_partial_file(files, in_tmp, capsys,
                                                                     monkeypatch, target):
    previous = {name: f"previous {name}".encode() for name in OUTPUTS}
    for name, content in previous.items():
        (in_tmp / name).write_bytes(content)
    reason = fill_disk_in(monkeypatch, target)
    status, _, err = run_program(Diffmap, [files["der"], files["nat"], files["model"],
                                           "output.overwrite=True", "output.map=True"] + FAST,
                                 capsys)
    assert_one_line_sorry(status, err, f"meteor_diffmap.{target}", reason,
                          "check free disk space")
    assert {p.name: p.read_bytes() for p in in_tmp.iterdir()} == previous


# ----------------------------------------------------------------------------------------------
# The other programs


@pytest.mark.parametrize("make_args, fragments", [
    (lambda f: [f["der"], "missing.mtz", f["model"]], ["missing.mtz", "not found"]),
    (lambda f: [f["der"], f["nat"], f["model"], "native.labels=FOO"],
     ["FOO", "available: F,SIGF (amplitude)"]),
    (lambda f: [f["der"], f["nat"], f["model"], "nonsense=1"], ["nonsense", "--show-defaults"]),
    (lambda f: [f["der"], f["nat"], f["model"], "phaseboost.max_iterations=0"],
     ["max_iterations", "0"]),
    (lambda f: [f["der"], f["damaged"], f["model"]],
     ["damaged.mtz", "not a valid MTZ file", "re-export"]),
    (lambda f: [f["der"], f["nat"], f["model"], "phaseboost.loop_sampling=200"],
     ["native.mtz", "d_min/200", "GiB of memory", "lower phaseboost.loop_sampling"]),
], ids=["missing_file", "unknown_labels", "unknown_parameter", "out_of_range_parameter",
        "damaged_mtz", "loop_grid_beyond_memory"])
def test_phaseboost_bad_input_is_one_sorry(files, in_tmp, capsys, make_args, fragments):
    status, _, err = run_program(Phaseboost, make_args(files), capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())


@pytest.fixture(scope="module")
def small_map(tmp_path_factory) -> Path:
    """A 32^3 CCP4 map of noise in a P1 cell, and its truncated copy."""
    import iotbx.ccp4_map

    directory = tmp_path_factory.mktemp("maps")
    symmetry = crystal.symmetry((30, 30, 30, 90, 90, 90), "P1")
    values = flex.double(np.random.default_rng(0).normal(size=(32, 32, 32)))
    iotbx.ccp4_map.write_ccp4_map(file_name=str(directory / "map.ccp4"),
                                  unit_cell=symmetry.unit_cell(),
                                  space_group=symmetry.space_group(), map_data=values,
                                  labels=flex.std_string(["noise"]))
    data = (directory / "map.ccp4").read_bytes()
    (directory / "truncated.ccp4").write_bytes(data[: len(data) // 3])
    indices = symmetry.build_miller_set(anomalous_flag=False, d_min=4.0)
    rng = np.random.default_rng(1)
    coefficients = indices.array(data=flex.complex_double(
        rng.normal(size=indices.size()) + 1j * rng.normal(size=indices.size())))
    write_map_coefficients_mtz(directory / "two_maps.mtz", [(coefficients, "FWT", "PHWT"),
                                                           (coefficients, "DELFWT", "PHDELWT")])
    return directory / "map.ccp4"


@pytest.mark.parametrize("args, fragments", [
    (["missing.ccp4", "resolution=3"], ["missing.ccp4", "not found"]),
    (["{dir}", "resolution=3"], ["is a directory"]),
    (["{dir}/truncated.ccp4", "resolution=3"], ["truncated.ccp4", "not a complete CCP4/MRC"]),
    (["{map}", "resolution=-3"], ["resolution", "-3"]),
    (["{map}", "resolution=3", "sharpening.bogus=1"], ["sharpening.bogus", "--show-defaults"]),
    (["{map}", "resolution=3", "output.prefix=no/such/dir/x"], ["no/such/dir", "not exist"]),
], ids=["missing_map", "directory", "truncated_map", "out_of_range", "unknown_parameter",
        "output_directory_missing"])
def test_sharpen_bad_input_is_one_sorry(small_map, in_tmp, capsys, args, fragments):
    args = [a.format(dir=small_map.parent, map=small_map) for a in args]
    status, _, err = run_program(Sharpen, args, capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())


def test_sharpen_unwritable_directory_and_full_disk(small_map, in_tmp, tmp_path, capsys,
                                                    monkeypatch):
    directory = unwritable_directory(tmp_path)
    status, _, err = run_program(Sharpen, [small_map, "resolution=3",
                                           f"output.prefix={directory}/x"], capsys)
    assert_one_line_sorry(status, err, "not writable")
    (in_tmp / "meteor_sharpen.json").write_text("previous")
    reason = fill_disk_in(monkeypatch, "mtz")
    status, _, err = run_program(Sharpen, [small_map, "resolution=3", "output.overwrite=True",
                                           "sharpening.b_sharpen=20"], capsys)
    assert_one_line_sorry(status, err, "meteor_sharpen.mtz", reason)
    assert [p.name for p in in_tmp.iterdir()] == ["meteor_sharpen.json"]
    assert (in_tmp / "meteor_sharpen.json").read_text() == "previous"


@pytest.mark.parametrize("args, fragments", [
    (["missing.ccp4"], ["missing.ccp4", "not found"]),
    (["{dir}/truncated.ccp4"], ["truncated.ccp4", "not a complete CCP4/MRC"]),
    (["{map}", "scale.bogus=1"], ["scale.bogus", "--show-defaults"]),
    (["{dir}/two_maps.mtz"], ["two_maps.mtz", "FWT,PHWT", "DELFWT,PHDELWT", "input.labels"]),
    (["{map}", "output.prefix={unwritable}/x"], ["not writable", "output.prefix"]),
], ids=["missing_map", "truncated_map", "unknown_parameter", "ambiguous_map_coefficients",
        "unwritable_output_directory"])
def test_local_scale_bad_input_is_one_sorry(small_map, in_tmp, tmp_path, capsys, args,
                                            fragments):
    unwritable = unwritable_directory(tmp_path) if "{unwritable}" in " ".join(args) else None
    args = [a.format(dir=small_map.parent, map=small_map, unwritable=unwritable) for a in args]
    status, _, err = run_program(LocalScale, args, capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())


# ----------------------------------------------------------------------------------------------
# Round two (issue 13): inputs that used to crash or answer unclearly


def edited_atoms(model: Path, path: Path, edit) -> Path:
    """A copy of ``model`` with ``edit(line) -> line`` applied to each ATOM/HETATM record."""
    path.write_text("\n".join(edit(line) if line.startswith(("ATOM", "HETATM")) else line
                              for line in model.read_text().splitlines()) + "\n")
    return path


@pytest.fixture(scope="module")
def round_two(files, example, tmp_path_factory) -> dict:
    """Inputs of the round-two cases: awkward models, copies and damaged amplitudes."""
    d = tmp_path_factory.mktemp("round_two")
    model = files["model"]
    out = {
        "model_b9999": edited_atoms(model, d / "model_b9999.pdb",
                                    lambda line: line[:60] + "9999.0" + line[66:]),
        "model_one_site": edited_atoms(model, d / "model_one_site.pdb",
                                       lambda line: line[:30] + "  10.000  10.000  10.000"
                                       + line[54:]),
        "model_negative_occupancy": edited_atoms(model, d / "model_negative_occupancy.pdb",
                                                 lambda line: line[:54] + " -1.00"
                                                 + line[60:]),
        "der_copy": d / "derivative_copy.mtz",
        "unclosed_phil": d / "unclosed.eff",
    }
    out["der_copy"].write_bytes(files["nat"].read_bytes())
    out["unclosed_phil"].write_text("kweight {\n  mode = fixed\n")
    der = example.pair.derivative
    write_raw_mtz(d / "der_zero.mtz", der.crystal_symmetry(), list(der.indices()),
                  [("F", "F", 0 * der.data().as_numpy_array()),
                   ("SIGF", "Q", der.sigmas().as_numpy_array())])
    out["der_zero"] = d / "der_zero.mtz"
    f = der.data().as_numpy_array().copy()
    f[17] = 3e38
    write_raw_mtz(d / "der_huge.mtz", der.crystal_symmetry(), list(der.indices()),
                  [("F", "F", f), ("SIGF", "Q", der.sigmas().as_numpy_array())])
    out["der_huge"] = d / "der_huge.mtz"
    return out


ROUND_TWO_DIFFMAP = [
    (lambda f, r: [f["der"], f["nat"], r["model_b9999"]],
     ["model_b9999.pdb", "B > 999", "refined model"]),
    (lambda f, r: [f["der"], f["nat"], r["model_one_site"]],
     ["model_one_site.pdb", "on one site"]),
    (lambda f, r: [f["der"], f["nat"], r["model_one_site"], "model.bulk_solvent=False"],
     ["model_one_site.pdb", "on one site"]),
    (lambda f, r: [f["der"], f["nat"], r["model_negative_occupancy"]],
     ["model_negative_occupancy.pdb", "negative occupancy", "fix the model"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "tv.search_range=1.0 0.001"],
     ["tv.search_range=1 0.001", "smallest first"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "tv.relative_search_range=10 0.1"],
     ["tv.relative_search_range=10 0.1", "smallest first"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "kweight.k_max=0", "kweight.mode=optimize"],
     ["kweight.k_max=0", "set kweight.k_max above 0"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "validation.free_fraction=0.4"],
     ["validation.n_folds=3", "free_fraction=0.4", "below 1"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "output.prefix=" + "a" * 300],
     ["bytes long", "shorter output.prefix"]),
    (lambda f, r: ["b" * 300 + ".mtz", f["nat"], f["model"]],
     ["not found", "304 bytes long", "check the path"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "output.prefix=outdir/"],
     ["hidden file", "file stem"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "output.prefix=."],
     ["hidden file", "file stem"]),
    (lambda f, r: [r["der_copy"], f["nat"], f["model"]],
     ["derivative_copy.mtz", "native.mtz", "identical amplitudes"]),
    (lambda f, r: [r["der_zero"], f["nat"], f["model"]],
     ["der_zero.mtz", "all zero", "labels"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], r["unclosed_phil"]],
     ["unclosed.eff", "not valid PHIL", "fix its syntax"]),
    (lambda f, r: [f["der"], f["nat"], f["model"], "map.sampling=200"],
     ["native.mtz", "d_min/200", "GiB of memory", "lower map.sampling"]),
]
ROUND_TWO_DIFFMAP_IDS = ["model_all_b_9999", "model_atoms_on_one_site",
                         "model_one_site_without_bulk_solvent", "negative_occupancy",
                         "reversed_tv_search_range", "reversed_relative_tv_search_range",
                         "k_max_zero", "free_folds_beyond_the_data", "prefix_too_long",
                         "input_name_too_long", "prefix_is_a_directory", "prefix_is_dot",
                         "derivative_identical_to_native", "all_zero_amplitudes",
                         "phil_file_with_unclosed_brace", "grid_beyond_memory"]


@pytest.mark.parametrize("make_args, fragments", ROUND_TWO_DIFFMAP, ids=ROUND_TWO_DIFFMAP_IDS)
def test_round_two_diffmap_input_is_one_sorry(files, round_two, in_tmp, capsys, make_args,
                                              fragments):
    status, _, err = run_program(Diffmap, FAST + make_args(files, round_two), capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())  # nothing written, hidden files included


def test_one_huge_amplitude_is_dropped_with_a_warning(example, files, round_two, reference,
                                                      in_tmp, capsys):
    out, cc = run_and_score(example, in_tmp, [round_two["der_huge"], files["nat"],
                                              files["model"]], capsys, "huge")
    assert "Warning: Derivative: dropping 1 reflections with amplitude values over 1000" in out
    assert cc > reference.cc - 0.01


def test_unexpected_failure_is_one_line_naming_step_inputs_and_log(files, in_tmp, capsys,
                                                                   monkeypatch):
    from meteor_cctbx import difference_inputs

    def broken(*args, **kwargs):
        raise ValueError("an unforeseen\nproblem")
    monkeypatch.setattr(difference_inputs, "check_not_identical", broken)
    status, _, err = run_program(Diffmap, [files["der"], files["nat"], files["model"]] + FAST,
                                 capsys)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    log = in_tmp / "meteor_diffmap_error.log"
    for fragment in ("unexpected failure in load_difference_inputs (difference_inputs.py",
                     "ValueError",
                     "an unforeseen problem", "derivative.mtz", str(log)):
        assert fragment in lines[0], (fragment, lines[0])
    text = log.read_text()
    assert "Traceback" in text and "check_not_identical" not in lines[0]
    assert "load_difference_inputs" in text and "derivative.mtz" in text
    assert sorted(p.name for p in in_tmp.iterdir()) == ["meteor_diffmap_error.log"]


def test_closed_stdout_still_runs(small_map, tmp_path):
    import subprocess
    import sys

    result = subprocess.run(f"'{sys.executable}' -m meteor_cctbx.command_line.local_scale "
                            f"'{small_map}' output.prefix=run >&-",
                            shell=True, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run.cxc", "run.json", "run.log", "run.png", "run_confidence.mrc", "run_scale.mrc"]


@pytest.fixture(scope="module")
def bad_maps(small_map) -> dict:
    """Maps cctbx cannot use, made from the 32^3 noise map: other data modes, a zero cell,
    NaN, infinite and constant values, a map on another grid; and a model of another cell."""
    import mrcfile

    directory = small_map.parent
    data = bytearray(small_map.read_bytes())
    start = 1024 + int.from_bytes(data[92:96], "little")
    out = {}
    values = np.random.default_rng(2).normal(size=(32, 32, 32))
    for name, dtype in (("int8", np.int8), ("float16", np.float16)):
        out[name] = directory / f"{name}.mrc"
        with mrcfile.new(out[name], overwrite=True) as handle:
            handle.set_data((values * 10).astype(dtype))
            handle.voxel_size = 1.0

    def edited(name: str, offset: int, payload: bytes) -> Path:
        copy = bytearray(data)
        copy[offset:offset + len(payload)] = payload
        (directory / name).write_bytes(bytes(copy))
        return directory / name
    out["zero_cell"] = edited("zero_cell.ccp4", 40, bytes(12))
    out["nan"] = edited("nan.ccp4", start + 4 * 1000, np.float32(np.nan).tobytes())
    out["inf"] = edited("inf.ccp4", start + 4 * 1000, np.float32(np.inf).tobytes())
    out["constant"] = edited("constant.ccp4", start, bytes(len(data) - start))
    import iotbx.ccp4_map

    symmetry = crystal.symmetry((30, 30, 30, 90, 90, 90), "P1")
    out["other_grid"] = directory / "other_grid.ccp4"
    iotbx.ccp4_map.write_ccp4_map(file_name=str(out["other_grid"]),
                                  unit_cell=symmetry.unit_cell(),
                                  space_group=symmetry.space_group(),
                                  map_data=flex.double(values[:30, :30, :30].copy()),
                                  labels=flex.std_string(["other grid"]))
    return out


ROUND_TWO_MAPS = [
    (lambda m, f: [m["int8"], "resolution=3"], ["int8.mrc", "8-bit integers (MRC mode 0)",
                                                "convert it"]),
    (lambda m, f: [m["float16"], "resolution=3"], ["float16.mrc", "16-bit floats",
                                                   "convert it"]),
    (lambda m, f: [m["zero_cell"], "resolution=3"], ["zero_cell.ccp4", "no valid cell",
                                                     "set the cell"]),
    (lambda m, f: [m["nan"], "resolution=3"], ["nan.ccp4", "1 NaN", "repair"]),
    (lambda m, f: [m["inf"], "resolution=3"], ["inf.ccp4", "1 infinite", "repair"]),
    (lambda m, f: [m["constant"], "resolution=3"], ["constant.ccp4", "is constant"]),
    (lambda m, f: [m["constant"], "resolution=3", "sharpening.score=kurtosis"],
     ["constant.ccp4", "is constant"]),
    (lambda m, f: [f"half_map={m['map']}", f"half_map={m['other_grid']}"],
     ["other_grid.ccp4", "another grid", "resample"]),
    (lambda m, f: [m["map"], f["model"], "resolution=3"],
     ["model.pdb", "36.00 40.00 44.00", "map's cell"]),
    (lambda m, f: [f["der"]], ["derivative.mtz", "no map coefficients", "F,SIGF (amplitude)",
                               "FWT,PHWT"]),
]
ROUND_TWO_MAP_IDS = ["mode_0_int8", "float16", "zero_cell", "nan_voxel", "inf_voxel",
                     "constant_map", "constant_map_kurtosis", "half_maps_on_other_grids",
                     "model_of_another_cell", "amplitudes_only_mtz"]


@pytest.mark.parametrize("make_args, fragments", ROUND_TWO_MAPS, ids=ROUND_TWO_MAP_IDS)
def test_round_two_sharpen_input_is_one_sorry(small_map, bad_maps, files, in_tmp, capsys,
                                              make_args, fragments):
    status, _, err = run_program(Sharpen, make_args({**bad_maps, "map": small_map}, files),
                                 capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())


@pytest.mark.parametrize("args, fragments", [
    (["{int8}"], ["int8.mrc", "MRC mode 0"]),
    (["{nan}"], ["nan.ccp4", "NaN"]),
    (["{constant}"], ["constant.ccp4", "is constant"]),
    (["{map}", "scale.kernel_radius=1000"], ["map.ccp4", "GiB of memory",
                                             "smaller scale.kernel_radius"]),
], ids=["mode_0_int8", "nan_voxel", "constant_map", "kernel_beyond_memory"])
def test_round_two_local_scale_input_is_one_sorry(small_map, bad_maps, in_tmp, capsys, args,
                                                  fragments):
    names = {**{k: str(v) for k, v in bad_maps.items()}, "map": str(small_map)}
    status, _, err = run_program(LocalScale, [a.format(**names) for a in args], capsys)
    assert_one_line_sorry(status, err, *fragments)
    assert not list(in_tmp.iterdir())


def test_resolution_beyond_nyquist_is_clamped_with_a_warning(small_map, in_tmp, capsys):
    status, out, err = run_program(Sharpen, [small_map, "resolution=0.3",
                                             "sharpening.b_sharpen=20"], capsys)
    assert status == 0, err
    voxel = 30 / 32
    assert f"finer than the map's Nyquist limit (2 voxels = {2 * voxel:.3f} A)" in out
    record = json.loads((in_tmp / "meteor_sharpen.json").read_text())
    assert record["resolution"] == pytest.approx(2 * voxel)


# ----------------------------------------------------------------------------------------------
# Round two: outputs locked per prefix, no temporary file outliving a run, one output set for
# every program, byte-identical outputs


def hold_lock(path: Path):
    """A separate process holding the flock on ``path`` (as a concurrent run does)."""
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


@pytest.mark.parametrize("program", ["diffmap", "local_scale"])
def test_concurrent_run_with_the_same_prefix_is_one_sorry(files, small_map, in_tmp, capsys,
                                                          program):
    program_class, args, lock = {
        "diffmap": (Diffmap, [files["der"], files["nat"], files["model"]] + FAST,
                    ".meteor_diffmap.lock"),
        "local_scale": (LocalScale, [small_map, "output.prefix=run"], ".run.lock"),
    }[program]
    holder = hold_lock(in_tmp / lock)
    try:
        status, _, err = run_program(program_class, args, capsys)
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert_one_line_sorry(status, err, lock, "Another run", "output.prefix")
    assert [p.name for p in in_tmp.iterdir()] == [lock]  # the other run's lock, untouched
    status, _, err = run_program(program_class, args, capsys)  # once it is gone: runs
    assert status == 0, err
    assert not [p.name for p in in_tmp.iterdir() if p.name.startswith(".")]


def test_leftovers_of_killed_runs_are_removed_by_the_next_run(files, in_tmp, capsys):
    leftovers = [".meteor_diffmap.mtz.k3j2_x9a.tmp.mtz", ".meteor_diffmap.json.abcd1234.tmp.json",
                 ".meteor_diffmap.lock"]
    for name in leftovers:
        (in_tmp / name).write_bytes(b"half a file")
    (in_tmp / ".other.mtz.k3j2_x9a.tmp.mtz").write_bytes(b"another prefix's")
    status, _, err = run_program(Diffmap, [files["der"], files["nat"], files["model"]] + FAST,
                                 capsys)
    assert status == 0, err
    assert sorted(p.name for p in in_tmp.iterdir()) == sorted(
        [".other.mtz.k3j2_x9a.tmp.mtz", "meteor_diffmap.json", "meteor_diffmap.log",
         "meteor_diffmap.mtz",
         "meteor_diffmap.png"])


@pytest.mark.parametrize("program", ["diffmap", "local_scale"])
def test_sigterm_while_writing_leaves_the_previous_set_and_no_temporary(files, small_map,
                                                                        in_tmp, capsys,
                                                                        monkeypatch, program):
    """SIGTERM arriving while the PNG is written (half of it on disk) stops the run as Ctrl-C
    would: exit 143, every temporary file removed, the previous outputs byte-identical."""
    import signal

    import matplotlib.figure

    names, args = {
        "diffmap": (OUTPUTS[:3], [files["der"], files["nat"], files["model"]] + FAST),
        "local_scale": (("run.cxc", "run.json", "run.png", "run_confidence.mrc",
                         "run_scale.mrc"), [small_map, "output.prefix=run"]),
    }[program]
    previous = {name: f"previous {name}".encode() for name in names}
    for name, content in previous.items():
        (in_tmp / name).write_bytes(content)

    def terminated(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG half")
        os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", terminated)
    status, _, err = run_program({"diffmap": Diffmap, "local_scale": LocalScale}[program],
                                 args + ["output.overwrite=True"], capsys)
    assert status == 128 + signal.SIGTERM, err
    assert "Interrupted (SIGTERM)" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in in_tmp.iterdir()} == previous


def test_local_scale_full_disk_keeps_the_previous_set(small_map, in_tmp, capsys, monkeypatch):
    names = ("run.cxc", "run.json", "run.log", "run.png", "run_confidence.mrc", "run_scale.mrc")
    previous = {name: f"previous {name}".encode() for name in names}
    for name, content in previous.items():
        (in_tmp / name).write_bytes(content)
    reason = fill_disk_in(monkeypatch, "png")
    status, _, err = run_program(LocalScale, [small_map, "output.prefix=run",
                                              "output.overwrite=True"], capsys)
    assert_one_line_sorry(status, err, "run.png", reason)
    assert {p.name: p.read_bytes() for p in in_tmp.iterdir()} == previous


@pytest.fixture(scope="module")
def labelled_half_maps(small_map) -> list[Path]:
    """Two noisy half maps of the 32^3 map, each with its own labels."""
    import iotbx.ccp4_map

    symmetry = crystal.symmetry((30, 30, 30, 90, 90, 90), "P1")
    rng = np.random.default_rng(3)
    base = rng.normal(size=(32, 32, 32))
    paths = []
    for k in (1, 2):
        paths.append(small_map.parent / f"half_{k}.ccp4")
        iotbx.ccp4_map.write_ccp4_map(
            file_name=str(paths[-1]), unit_cell=symmetry.unit_cell(),
            space_group=symmetry.space_group(),
            map_data=flex.double(base + 0.5 * rng.normal(size=base.shape)),
            labels=flex.std_string([f"half map {k}", f"processed by step {k}"]))
    return paths


def outputs_of_two_runs(program_class, args, tmp_path, capsys, monkeypatch,
                        in_subprocesses: bool = False) -> list[dict[str, bytes]]:
    """The files of two identical runs, in-process or (``in_subprocesses``) in processes with
    different PYTHONHASHSEED."""
    import subprocess
    import sys

    outputs = []
    for seed in ("1", "2"):
        directory = tmp_path / f"run{seed}"
        directory.mkdir()
        if in_subprocesses:
            module = program_class.__module__.replace(".programs.", ".command_line.")
            result = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                                    cwd=directory, capture_output=True, text=True,
                                    env={**os.environ, "PYTHONHASHSEED": seed})
            assert result.returncode == 0, result.stderr
        else:
            monkeypatch.chdir(directory)
            status, _, err = run_program(program_class, args, capsys)
            assert status == 0, err
        outputs.append({p.name: p.read_bytes() for p in directory.iterdir()})
    return outputs


@pytest.mark.parametrize("program", ["local_scale", "sharpen_half_maps", "phaseboost"])
def test_identical_runs_give_identical_files(example, small_map, labelled_half_maps, tmp_path,
                                             capsys, monkeypatch, program):
    """Every file byte-identical, the JSON records equal apart from timings; sharpen's half
    maps in processes with different PYTHONHASHSEED (meteor.diffmap: test_outputs.py)."""
    program_class, args = {
        "local_scale": (LocalScale, [small_map, "output.prefix=run", "modify.mode=amplify"]),
        "sharpen_half_maps": (Sharpen, [f"half_map={p}" for p in labelled_half_maps]
                              + ["resolution=3"]),
        "phaseboost": (Phaseboost, [example.dir / n for n in ("derivative.mtz", "native.mtz",
                                                              "model.pdb")]
                       + FAST + ["phaseboost.max_iterations=2", "d_min=3.5",
                                 "output.map=True"])}[program]
    one, two = outputs_of_two_runs(program_class, args, tmp_path, capsys, monkeypatch,
                                   in_subprocesses=program == "sharpen_half_maps")
    assert set(one) == set(two) and len(one) >= 4
    from meteor_cctbx.record import _ASCTIME

    for name, content in one.items():  # no clock in map labels (runs may share a second)
        assert not (name.endswith((".mrc", ".ccp4")) and _ASCTIME.search(content[224:1024]))
    for name in one:
        assert same_output(name, one[name], two[name]), name


def test_the_package_has_no_import_circle():
    """No module of meteor_cctbx imports, even inside a function, one that imports it back
    (file_checks <-> reflections <-> model_phases used to)."""
    import ast

    root = Path(__file__).resolve().parents[1] / "meteor_cctbx"
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        name = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {node.module for node in ast.walk(ast.parse(path.read_text()))
                       if isinstance(node, ast.ImportFrom) and node.module
                       and node.module.startswith("meteor_cctbx.")}

    def reaches(start: str, target: str, seen: set[str]) -> bool:
        for module in graph.get(start, ()):
            if module == target or (module not in seen and reaches(module, target,
                                                                   seen | {module})):
                return True
        return False
    circles = [name for name in graph if reaches(name, name, {name})]
    assert not circles


def test_every_step_of_local_scale_writing_shows_the_previous_set_or_the_new_one(
        small_map, in_tmp, capsys, monkeypatch):
    """What a kill before each rename or removal would leave: the previous set or, once the
    JSON record is new, the whole new set (it used to rename each file as it was written)."""
    names = ("run.cxc", "run.json", "run.log", "run.png", "run_confidence.mrc", "run_scale.mrc")
    previous = {name: f"previous {name}".encode() for name in names}
    for name, content in previous.items():
        (in_tmp / name).write_bytes(content)
    states = []

    def visible() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in in_tmp.iterdir() if not p.name.startswith(".")}
    for function in ("replace", "remove"):
        real = getattr(os, function)

        def step(*args, _real=real, **kwargs):
            states.append(visible())
            return _real(*args, **kwargs)
        monkeypatch.setattr(os, function, step)
    status, _, err = run_program(LocalScale, [small_map, "output.prefix=run",
                                              "output.overwrite=True"], capsys)
    monkeypatch.undo()
    assert status == 0, err
    new = visible()
    assert set(new) == set(names) and all(new[n] != previous[n] for n in names)
    assert len(states) >= len(names) and states[0] == previous
    for state in states:  # a JSON record vouches for a whole set; without one, no half file
        assert all(state[n] in (previous[n], new[n]) for n in state)
        assert "run.json" not in state or state in (previous, new)
