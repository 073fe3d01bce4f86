"""Bad and awkward inputs across the programs (docs/bad_inputs.md): defective reflection data,
other settings and indexings, awkward models, unwritable outputs and a full disk.

Each case either works, with the log saying what was done and a map still close to the truth,
or stops with one line naming the file, the problem and the fix, leaving no output behind.
"""
from __future__ import annotations

import errno
import io
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

from helpers import assert_one_line_sorry, mtz_arrays, run_program

FAST = ["kweight.mode=fixed", "tv.mode=fixed"]
OUTPUTS = ("meteor_diffmap.mtz", "meteor_diffmap.json", "meteor_diffmap.png",
           "meteor_diffmap.ccp4")


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
], ids=["missing_file", "unknown_labels", "unknown_parameter", "out_of_range_parameter",
        "damaged_mtz"])
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
