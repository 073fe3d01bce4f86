"""Property: the reflection-file loaders either load a file or raise Sorry, whatever its bytes.

Random bytes and real MTZ files with flipped bits, cuts, splices and edited header records go
through ``read_miller_arrays`` and on to ``select_amplitudes``; any other exception fails the
test, and a crash of CCP4's MTZ library (which a damaged header used to cause) would end the
test process.  ``mtz_check`` makes this hold in-process.
"""
from __future__ import annotations

from pathlib import Path

import iotbx
import iotbx.mtz
import mmtbx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libtbx.utils import Sorry

from meteor_cctbx.reflections import read_miller_arrays

from conftest import SHARED_DATA
from helpers import loads_or_sorry

HEADER_TEXT = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .+-/'\",=!#()"
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def sources(example, tmp_path_factory) -> list[bytes]:
    """Small real MTZ files: amplitudes, intensities with anomalous pairs, map coefficients,
    and (when iotbx ships it) an unmerged file with batch headers."""
    directory = tmp_path_factory.mktemp("fuzz_sources")
    der = example.pair.derivative.resolution_filter(d_min=5.0)
    files = [directory / "amplitudes.mtz", directory / "anomalous.mtz"]
    der.as_mtz_dataset(column_root_label="F").mtz_object().write(str(files[0]))
    der.f_as_f_sq().generate_bijvoet_mates().set_observation_type_xray_intensity(
    ).as_mtz_dataset(column_root_label="I").mtz_object().write(str(files[1]))
    unmerged = Path(iotbx.__file__).parent / "regression/data/insulin_unmerged_cutted_from_ccp4.mtz"
    return [f.read_bytes() for f in files] + ([unmerged.read_bytes()] if unmerged.exists()
                                              else [])


def header_start(data: bytes) -> int:
    """Byte offset of the MTZ header records (0 if the file header is unreadable)."""
    if len(data) < 12:
        return 0
    return min(max((int.from_bytes(data[4:8], "little", signed=True) - 1) * 4, 0), len(data))


@st.composite
def mutated(draw, sources: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(sources)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "splice", "header", "number", "record"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[position:]
        elif kind == "splice":
            other = draw(st.integers(0, len(data)))
            data[position:other] = data[other:other + draw(st.integers(0, 400))]
        elif kind == "record":  # a header record copied over another one
            start = header_start(data)
            records = (len(data) - start) // 80
            if records > 1:
                source, target = (start + 80 * draw(st.integers(0, records - 1))
                                  for _ in range(2))
                data[target:target + 80] = data[source:source + 80]
        else:  # overwrite part of a header record with header-like text or digits
            start = header_start(data)
            if start < len(data):
                position = draw(st.integers(start, len(data) - 1))
            alphabet = HEADER_TEXT if kind == "header" else b"0123456789-+. E"
            text = draw(st.lists(st.sampled_from(list(alphabet)), min_size=1, max_size=16))
            data[position:position + len(text)] = bytes(text)
    return bytes(data)


def test_random_bytes_load_or_give_sorry(tmp_path):
    @FUZZ
    @given(prefix=st.sampled_from([b"", b"MTZ ", b"MTZ \x00\x00\x00\x00DA\x00\x00"]),
           body=st.binary(max_size=3000))
    def check(prefix, body):
        loads_or_sorry(tmp_path / "random.mtz", prefix + body)
    check()


def test_mutated_mtz_files_load_or_give_sorry(sources, tmp_path):
    outcomes = []

    @settings(FUZZ, max_examples=1000)
    @given(data=mutated(sources))
    def check(data):
        outcomes.append(loads_or_sorry(tmp_path / "mutated.mtz", data))
    check()
    assert outcomes.count("loaded") > 50 and outcomes.count("sorry") > 50  # both kinds met


@pytest.mark.parametrize("record, replacement, problem", [
    (b"END ", b"END                -", "wait for more input"),
    (b"VERS ", b"VERS MTZ:V1.1 &", "wait for more input"),
    (b"NDIF ", b"@/etc/passwd", "names a file"),
    (b"NCOL ", b"NCOL        5         4593", "has 3 fields"),
    (b"END ", b"MTZENDOFHEADERS", "ends inside the header"),
    (b"CRYSTAL ", b"DWAVEL        1    1.00000", "before its DATASET record"),
], ids=["continued_end", "continued_record", "include_file", "short_ncol", "no_end",
        "wavelength_before_dataset"])
def test_headers_that_derail_ccp4s_reader_give_sorry(example, tmp_path, record, replacement,
                                                     problem):
    """Records CCP4's parser would follow into standard input (a pipeline waits for ever) or
    into another file, or read past, are refused before it sees them."""
    data = bytearray((example.dir / "native.mtz").read_bytes())
    start = data.index(record, header_start(bytes(data)))
    data[start:start + 80] = replacement.ljust(80)
    path = tmp_path / "edited.mtz"
    path.write_bytes(bytes(data))
    with pytest.raises(Sorry, match=problem):
        read_miller_arrays(path)


def real_mtz_files() -> list[Path]:
    """MTZ files written by other programs (CCP4's MOSFLM/MTZUTILS unmerged, Phaser, phenix,
    reciprocalspaceship/gemmi) that ship with cctbx or the shared test data."""
    candidates = [*(Path(iotbx.__file__).parent / "regression/data").glob("*.mtz"),
                  *(Path(mmtbx.__file__).parent / "regression").glob("**/*.mtz"),
                  SHARED_DATA / "scaled-test-data.mtz"]
    return [path for path in candidates if path.is_file()]


@pytest.mark.parametrize("path", real_mtz_files(), ids=lambda p: p.name)
def test_real_mtz_files_pass_the_check_and_load_as_iotbx_reads_them(path):
    ours = read_miller_arrays(path)
    theirs = iotbx.mtz.object(str(path)).as_miller_arrays(merge_equivalents=False)
    assert [(a.info().label_string(), a.size()) for a in ours] == \
        [(a.info().label_string(), a.size()) for a in theirs]
