"""Property: CCP4/MRC maps with damaged headers and mmCIF reflection files with damaged text
either load or raise Sorry, whatever their bytes.

Maps go through what meteor.sharpen and meteor.local_scale do with a map file (the Python
check of file_checks.check_map_file, then iotbx's DataManager); mmCIF files through
``read_miller_arrays`` and ``select_amplitudes``.  Any other exception fails the test.  Few
examples run here (derandomized, so the same ones every time) to keep the suite fast.
"""
from __future__ import annotations

import io
import struct
from pathlib import Path

import iotbx.ccp4_map
import numpy as np
import pytest
from cctbx import crystal
from cctbx.array_family import flex
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from libtbx.utils import Sorry

from meteor_cctbx.file_checks import check_map_file

from helpers import loads_or_sorry

FUZZ = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure shows fast
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
#: Header words (4-byte offsets / 4) a damaged map most likely gets wrong: grid, mode, start,
#: cell grid, cell, axis order, space group, symmetry bytes, map stamp, machine stamp, labels.
HEADER_WORDS = list(range(0, 25)) + [52, 53, 55]


@pytest.fixture(scope="module")
def map_bytes(tmp_path_factory) -> bytes:
    """A 12 x 10 x 8 map of a P1 cell with one label, as iotbx writes it."""
    path = tmp_path_factory.mktemp("fuzz_map") / "map.ccp4"
    symmetry = crystal.symmetry((24, 20, 16, 90, 90, 90), "P1")
    values = np.random.default_rng(0).normal(size=(12, 10, 8))
    iotbx.ccp4_map.write_ccp4_map(file_name=str(path), unit_cell=symmetry.unit_cell(),
                                  space_group=symmetry.space_group(),
                                  map_data=flex.double(values), labels=flex.std_string(["x"]))
    return path.read_bytes()


def map_loads_or_sorry(path: Path, data: bytes) -> str:
    """'loaded' or 'sorry' (one line); any other exception propagates."""
    from iotbx.data_manager import DataManager

    path.write_bytes(data)
    try:
        check_map_file(path)
        manager = DataManager()
        manager.process_real_map_file(str(path))
        manager.get_real_map(str(path)).map_data()
    except Sorry as error:
        assert str(error).strip() and "\n" not in str(error).strip()
        return "sorry"
    return "loaded"


@st.composite
def damaged_map(draw, original: bytes) -> bytes:
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["word", "flip", "cut", "value"]))
        if kind == "word":  # a header field set to an integer or float of any size
            word = draw(st.sampled_from(HEADER_WORDS))
            value = draw(st.one_of(st.integers(-2 ** 31, 2 ** 31 - 1),
                                   st.sampled_from([0, 1, 2, 3, 4, 6, 12, -1, 1024, 10 ** 6])))
            packed = (struct.pack("<i", value) if draw(st.booleans())
                      else struct.pack("<f", draw(st.floats(width=32, allow_nan=True))))
            data[4 * word:4 * word + 4] = packed
        elif kind == "flip":
            position = draw(st.integers(0, min(1023, len(data) - 1)))
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "cut":
            del data[draw(st.integers(0, len(data) - 1)):]
        elif len(data) > 1028:  # one voxel set to a value, NaN and infinities included
            position = 1024 + 4 * draw(st.integers(0, (len(data) - 1028) // 4))
            data[position:position + 4] = struct.pack("<f", draw(st.floats(width=32)))
        if not data:
            break
    return bytes(data)


def test_damaged_map_headers_load_or_give_sorry(map_bytes, tmp_path):
    outcomes = []

    @FUZZ
    @given(data=damaged_map(map_bytes))
    def check(data):
        outcomes.append(map_loads_or_sorry(tmp_path / "damaged.ccp4", data))
    check()
    assert outcomes.count("loaded") >= 5 and outcomes.count("sorry") >= 5  # both kinds met


@pytest.fixture(scope="module")
def cif_text(example) -> str:
    """The example's derivative amplitudes (to 5 A) as an SF-mmCIF file."""
    text = io.StringIO()
    example.pair.derivative.resolution_filter(d_min=5.0).as_cif_simple(
        array_type="meas", out=text, data_name="derivative")
    return text.getvalue()


@st.composite
def damaged_cif(draw, original: str) -> str:
    lines = original.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "duplicate", "token", "cut", "junk"]))
        k = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[k]
        elif kind == "duplicate":
            lines.insert(k, lines[draw(st.integers(0, len(lines) - 1))])
        elif kind == "token":  # one field replaced by a CIF null, a word, a quote or a number
            fields = lines[k].split()
            if fields:
                fields[draw(st.integers(0, len(fields) - 1))] = draw(st.sampled_from(
                    ["?", ".", "nan", "inf", "-1e40", "'", "loop_", "_refln.index_h", "x",
                     "1e308", "0", "-0"]))
                lines[k] = " ".join(fields)
        elif kind == "cut":
            lines = lines[:k]
        else:
            lines.insert(k, draw(st.text(alphabet="abc_;'\" 0123456789.-#\t", max_size=30)))
        if not lines:
            break
    return "\n".join(lines) + "\n"


def test_damaged_mmcif_reflection_files_load_or_give_sorry(cif_text, tmp_path):
    outcomes = []

    @FUZZ
    @given(text=damaged_cif(cif_text))
    def check(text):
        outcomes.append(loads_or_sorry(tmp_path / "damaged.cif", text.encode()))
    check()
    assert outcomes.count("loaded") >= 5 and outcomes.count("sorry") >= 5
