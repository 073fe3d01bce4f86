"""Helpers the tests share: running the programs in-process, synthetic maps and files, and
reading and comparing outputs."""
from __future__ import annotations

import json
from pathlib import Path

import iotbx.mtz
import numpy as np

from meteor_cctbx import family, kweight, tv
from meteor_cctbx.command_line import run_as_command
from meteor_cctbx.diffmap import compute_diffmap, tv_settings
from meteor_cctbx.maximize import maximize_scalar
from meteor_cctbx.model_phases import model_structure_factors
from meteor_cctbx.phil import default_params

#: Fixed k and TV weight: a difference-map run in about a second (no scans).
FAST = ["kweight.mode=fixed", "tv.mode=fixed"]

#: Every output of a default-prefix meteor.diffmap run with output.map=True.
DIFFMAP_OUTPUTS = ("meteor_diffmap.mtz", "meteor_diffmap.json", "meteor_diffmap.png",
                   "meteor_diffmap.ccp4", "meteor_diffmap.log")


def example_inputs(example) -> list[str]:
    """Derivative, native and model files of an example fixture (conftest.example)."""
    return [str(example.dir / name) for name in ("derivative.mtz", "native.mtz", "model.pdb")]


def read_map(path: Path):
    """(map_manager, numpy array of its values) of a CCP4/MRC map file."""
    from iotbx.map_manager import map_manager

    manager = map_manager(str(path))
    return manager, manager.map_data().as_numpy_array()


def run_program(program_class, args, capsys) -> tuple[int, str, str]:
    """Run a program as its console script would; return (exit status, stdout, stderr)."""
    status = run_as_command(program_class, [str(a) for a in args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def mtz_arrays(path: Path) -> dict:
    """Miller arrays of an MTZ keyed by label string (e.g. 'DELFWT,PHDELWT')."""
    return {a.info().label_string(): a for a in iotbx.mtz.object(str(path)).as_miller_arrays()}


def difference_columns(path: Path, pair) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DF_RAW, DF (complex) and SIGDF of a difference program's MTZ on the reflections it
    shares with the input pair (a SyntheticPair), with sigma_D = sqrt(sigma_der^2 +
    sigma_nat^2) of the inputs on the same reflections."""
    arrays = mtz_arrays(path)
    raw, weighted, sigdf = arrays["DF_RAW,PHIDF_RAW"], arrays["DF,PHIDF"], arrays["SIGDF"]
    derivative, native = pair.derivative.common_sets(pair.native)
    derivative, raw = derivative.common_sets(raw)
    native, _ = native.common_sets(raw)
    weighted, _ = weighted.common_sets(raw)
    sigdf, _ = sigdf.common_sets(raw)
    sigma_d = np.hypot(derivative.sigmas().as_numpy_array(), native.sigmas().as_numpy_array())
    return (raw.data().as_numpy_array(), weighted.data().as_numpy_array(),
            sigdf.data().as_numpy_array(), sigma_d)


def assert_one_line_sorry(status: int, err: str, *fragments: str) -> None:
    """Exit status 1 and a single 'Sorry: ...' line containing every fragment."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert status == 1, err
    assert len(lines) == 1 and lines[0].startswith("Sorry: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def local_scale_params(**settings):
    """Default local_scale parameters with ``scope__name=value`` overrides."""
    from meteor_cctbx.phil import default_params

    extract = default_params("local_scale")
    for key, value in settings.items():
        scope, name = key.split("__")
        setattr(getattr(extract, scope), name, value)
    return extract


def sharpen_params(*settings: str):
    """meteor.sharpen parameters: the defaults with ``key=value`` settings (PHIL syntax)."""
    import libtbx.phil

    from meteor_cctbx.phil import master_phil

    master = master_phil("sharpen")
    return master.fetch(sources=[libtbx.phil.parse(s) for s in settings]).extract()


def map_manager_of(values: np.ndarray, symmetry, origin=(0, 0, 0), cell_grid=None,
                   wrapping: bool = True):
    """A map_manager of ``values`` (a box at ``origin`` of a ``cell_grid`` unit-cell grid;
    default: the whole unit cell of ``symmetry``)."""
    from cctbx.array_family import flex
    from iotbx.map_manager import map_manager

    return map_manager(map_data=flex.double(np.ascontiguousarray(values, dtype=np.float64)),
                       unit_cell_grid=cell_grid or values.shape,
                       unit_cell_crystal_symmetry=symmetry, origin_shift_grid_units=origin,
                       wrapping=wrapping and cell_grid is None)


def map_on_grid(coefficients, n_real: tuple[int, int, int],
                volume_scaled: bool = False) -> np.ndarray:
    """The map of ``coefficients`` on a unit-cell grid of ``n_real`` points (cctbx's FFT;
    ``volume_scaled``: on the absolute scale, divided by the cell volume)."""
    from cctbx import maptbx

    gridding = maptbx.crystal_gridding(coefficients.unit_cell(),
                                       space_group_info=coefficients.space_group_info(),
                                       pre_determined_n_real=n_real)
    fft_map = coefficients.fft_map(crystal_gridding=gridding)
    if volume_scaled:
        fft_map.apply_volume_scaling()
    return fft_map.real_map_unpadded().as_numpy_array()


def cc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two real-space maps (any shape, same size)."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def chain_sites(n_atoms: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """A self-avoiding random walk of 1.5 A steps inside a sphere: protein-like packing
    (Cartesian, A, centred on the origin)."""
    sites = [np.zeros(3)]
    direction = np.array([1.0, 0.0, 0.0])
    while len(sites) < n_atoms:
        for _ in range(100):
            step = direction + 0.9 * rng.normal(size=3)
            step /= np.linalg.norm(step)
            site = sites[-1] + 1.5 * step
            if np.linalg.norm(site) > radius:
                continue
            if len(sites) > 2 and np.min(np.linalg.norm(np.array(sites[:-2]) - site,
                                                          axis=1)) < 1.3:
                continue
            sites.append(site)
            direction = step
            break
        else:  # boxed in: restart the chain elsewhere in the sphere
            sites.append(rng.uniform(-radius / 2, radius / 2, 3))
    return np.array(sites)


def run_sharpen(args, directory: Path, monkeypatch) -> int:
    """meteor.sharpen's console entry point run in ``directory``; its exit status."""
    from meteor_cctbx.command_line.sharpen import main

    monkeypatch.chdir(directory)
    return main([str(a) for a in args])


def write_mtz(path: Path, columns: dict) -> Path:
    """Write {root label: miller array} into one MTZ (amplitudes get SIG<root> columns, map
    coefficients PHI<root>)."""
    dataset = None
    for label, array in columns.items():
        if dataset is None:
            dataset = array.as_mtz_dataset(column_root_label=label)
        else:
            dataset.add_miller_array(array, column_root_label=label)
    dataset.mtz_object().write(str(path))
    return path


#: Record entries that differ between runs of the same work besides timings.
RUN_SPECIFIC = ("date", "working_directory", "command_line")


def without_timings(value):
    """A JSON record without what differs between runs of the same work: every timing (keys
    naming seconds or timings), and the run's date, directory and command line."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items()
                if "seconds" not in k and "timings" not in k and k not in RUN_SPECIFIC}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def log_header(log: bytes) -> bytes:
    """The run log's header (versions, command line, non-default parameters, citations); the
    rest is the printed log, which holds clock times."""
    return log.split(b"=" * 79)[0]


def same_output(name: str, a: bytes, b: bytes) -> bool:
    """Whether two versions of output file ``name`` hold the same result (records apart from
    timings, logs by their headers, other files byte for byte)."""
    if name.endswith(".json"):
        return without_timings(json.loads(a)) == without_timings(json.loads(b))
    if name.endswith(".log"):
        return log_header(a) == log_header(b)
    return a == b


def loads_or_sorry(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` and read it as derivative amplitudes: 'loaded', 'sorry' (one
    line), or any other exception raised."""
    from libtbx.utils import Sorry

    from meteor_cctbx.reflections import read_miller_arrays, select_amplitudes

    path.write_bytes(data)
    try:
        arrays = read_miller_arrays(path)
        select_amplitudes(arrays, str(path), None, "Derivative")
    except Sorry as error:
        assert str(error).strip() and "\n" not in str(error).strip()
        return "sorry"
    return "loaded"


class OracleCase:
    """A family case with its F_model, the default diffmap and the truth, and a brute-force
    oracle of the TV weight."""

    def __init__(self, source, phasing_model, change, occupancy, noise):
        self.case = family.make_case(source, change, occupancy, noise)
        self.f_model = model_structure_factors(phasing_model, self.case.native).f_model
        self.default = compute_diffmap(self.case.derivative, self.case.native, self.f_model)
        self.grid = self.default.grid
        truth = self.case.true_difference.common_set(self.default.raw_coefficients)
        assert truth.indices().all_eq(self.default.raw_coefficients.indices())
        self.truth_map = self.grid.to_map(truth.data().as_numpy_array()).ravel()

    def cc(self, real_map) -> float:
        return float(np.corrcoef(np.asarray(real_map).ravel(), self.truth_map)[0, 1])

    def cc_output(self, result) -> float:
        """CC with the truth of a result's output coefficients (the map a user gets; its TV
        stage may have run on another grid)."""
        return self.cc(self.grid.to_map(result.map_coefficients.data().as_numpy_array()))

    def weighted_map(self) -> np.ndarray:
        """The map the default's TV stage denoised: m dF exp(i phi), k-weighted."""
        raw = self.default.pair.weighted_difference
        return self.grid.to_map(raw * kweight.kweights(raw, self.default.pair.sigma_delta,
                                                       self.default.k_parameter))

    def oracle(self) -> tuple[float, float]:
        """(best CC with the truth, its relative TV weight): brute force to 0.01 decade."""
        weighted = self.weighted_map()
        rms = float(weighted.std())
        settings = tv_settings(default_params("diffmap"))
        scan = maximize_scalar(lambda w: self.cc(tv.denoise(weighted, w * rms, settings)),
                               0.03, 10.0, n_coarse=13, log_scale=True, tolerance=0.01)
        return scan.best.score, scan.best.parameter
