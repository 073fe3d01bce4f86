"""A Python check that an MTZ file is complete and that its header has the form CCP4's MTZ
library reads safely, run before iotbx.mtz (which uses that library) opens the file.

The CCP4 library trusts its input: a damaged header can crash or hang the process (header
fields copied into fixed-size buffers, a header without END read for ever, counts and sort
keys from the file used as array indices).  This check accepts what CCP4 programs, cctbx,
gemmi and reciprocalspaceship write, and answers anything else with one Sorry naming the
first problem, so that no byte sequence reaches the C library unless it reads it safely.
"""
from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from libtbx.utils import Sorry

MAGIC = b"MTZ "
RECORD = 80  # bytes per header record
DATA_START = 80  # reflection data start after the 20-word file header
COLUMN_TYPES = frozenset("HJFDQGLKMEPWABYIR")
MAX_LABEL = 30  # CCP4 column labels: char[31]
MAX_NAME = 60  # project, crystal and dataset names: char[65], less room for a suffix
MAX_COLUMNS = 10000
MAX_SYMMETRY_OPERATORS = 192
MAX_HISTORY = 1000
BATCH_WORDS, BATCH_INTEGERS, BATCH_REALS = 185, 29, 156
MAX_GONIOSTAT_LABEL = 8

# Characters of records whose fields the library reads: none of the parser's delimiters
# (comma, '=', tab), comment starts ('!', '#') or quotes, which would make its fields differ
# from a split on blanks.
_PLAIN = re.compile(r"[A-Za-z0-9 ._+\-:/()*\[\]~@%&^$?<>|{}]*\Z")
_QUOTED = re.compile(r"[A-Za-z0-9 ._+\-:/()*'\"]*\Z")  # SYMINF: quoted space-group names
_KEYWORD = re.compile(r"[A-Z][A-Z0-9_/]*\Z")
_INTEGER = re.compile(r"[+-]?\d{1,9}\Z")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d{1,3})?\Z")
_SYMMETRY_OPERATOR = re.compile(r"[XYZxyz0-9+\-*/., ]*\Z")
_PARSED = ("NCOL", "CELL", "SORT", "SYMI", "COLU", "COLS", "COLG", "VALM", "RESO", "NDIF",
           "PROJ", "CRYS", "DATA", "DCEL", "DWAV", "DRES")
# Minimum number of fields (keyword included) the library reads from each record.
_MIN_FIELDS = {"NCOL": 4, "CELL": 7, "SORT": 6, "SYMI": 7, "COLU": 5, "COLS": 4, "COLG": 6,
               "VALM": 2, "RESO": 3, "NDIF": 2, "PROJ": 2, "CRYS": 2, "DATA": 2, "DCEL": 8,
               "DWAV": 3, "DRES": 8}


class _Damaged(Exception):
    """The first problem found; check_mtz turns it into a Sorry naming the file."""


@dataclass
class _Header:
    n_columns: int = -1
    n_reflections: int = -1
    n_batches: int = -1
    sort: list[int] | None = None
    columns: list[tuple[str, str]] = field(default_factory=list)
    n_symmetry_operators: int = 0


def is_mtz(path: str | os.PathLike) -> bool:
    """True when the file starts with the MTZ signature."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def check_mtz(path: str | os.PathLike) -> None:
    """Sorry unless ``path`` is a complete MTZ file that CCP4's library can read safely."""
    try:
        _check(Path(path))
    except _Damaged as problem:
        raise Sorry(f"Cannot read {path}: not a valid MTZ file ({problem}); the file is "
                    f"damaged or truncated: re-export it.") from None


def _check(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(DATA_START)
        if len(start) < DATA_START or start[:4] != MAGIC:
            raise _Damaged("no MTZ file header")
        byte_order = _byte_order(start[8:12])
        (header_word,) = struct.unpack(byte_order + "i", start[4:8])
        header_start = (header_word - 1) * 4
        if not DATA_START <= header_start <= size - 2 * RECORD:
            raise _Damaged(f"header position {header_word} outside the file of {size} bytes")
        handle.seek(header_start)
        text = handle.read()
    header, end = _main_header(text)
    reflection_bytes = header_start - DATA_START
    if header.n_columns * header.n_reflections * 4 != reflection_bytes:
        raise _Damaged(f"{header.n_reflections} reflections x {header.n_columns} columns do "
                       f"not fill the {reflection_bytes} bytes of data")
    _history_and_batches(text, end, header.n_batches)


def _byte_order(stamp: bytes) -> str:
    """'<' or '>' from the machine stamp (IEEE floats and integers only)."""
    float_format, integer_format = stamp[0] >> 4, stamp[1] >> 4
    if float_format not in (1, 4) or integer_format not in (1, 4):
        raise _Damaged(f"unknown number format stamp {stamp[:2].hex()}")
    return "<" if integer_format == 4 else ">"


def _record(text: bytes, position: int, what: str) -> str:
    """The printable 80-character record at ``position``, checked safe for CCP4's parser."""
    record = text[position:position + RECORD]
    if len(record) < RECORD:
        raise _Damaged(f"the file ends inside the {what}")
    if any((byte < 32 and byte != 9) or byte > 126 for byte in record):  # text or tabs
        raise _Damaged(f"non-text bytes in the {what} at byte {position}")
    record = record.decode("ascii")
    fields = record.split()
    # The parser continues a record ending in '&', '-' or '\' by reading standard input,
    # and reads a file named by a first field starting with '@'.
    if fields and fields[-1] in ("&", "-", "\\"):
        raise _Damaged(f"header record {fields[0][:12]!r} ends in {fields[-1]!r}, which makes "
                       f"CCP4's reader wait for more input")
    if fields and fields[0].lstrip("'\"").startswith("@"):
        raise _Damaged(f"header record {fields[0][:12]!r} names a file for CCP4's reader to "
                       f"include")
    return record


def _fields(record: str, keyword: str) -> list[str]:
    if keyword == "SYMI":
        if not _QUOTED.match(record):
            raise _Damaged(f"unexpected characters in {record.strip()!r}")
        parts = re.findall(r"'[^']*'|\"[^\"]*\"|[^\s'\"]+", record)
        if "".join(parts).count("'") % 2 or "".join(parts).count('"') % 2:
            raise _Damaged(f"unbalanced quotes in {record.strip()!r}")
        return [part.strip("'\"") for part in parts]
    if not _PLAIN.match(record):
        raise _Damaged(f"unexpected characters in {record.strip()!r}")
    return record.split()


def _integer(value: str, low: int, high: int, what: str) -> int:
    if not _INTEGER.match(value) or not low <= int(value) <= high:
        raise _Damaged(f"{what} {value!r} is not an integer in [{low}, {high}]")
    return int(value)


def _number(value: str, what: str) -> float:
    if not _NUMBER.match(value):
        raise _Damaged(f"{what} {value!r} is not a number")
    return float(value)


def _name(value: str, limit: int, what: str) -> None:
    if len(value) > limit:
        raise _Damaged(f"{what} {value[:20]!r}... longer than {limit} characters")


def _main_header(text: bytes) -> tuple[_Header, int]:
    """Check the records up to END; return what later checks need and END's end offset."""
    header = _Header()
    seen: dict[str, int] = {}
    block: list[str] | None = None  # dataset records since the last PROJECT
    project = crystal = ""
    position = 0
    while True:
        record = _record(text, position, "header")
        position += RECORD
        keyword_field = (record.split() or [""])[0]
        if not _KEYWORD.match(keyword_field) or not record.startswith(keyword_field):
            raise _Damaged(f"header record {record.strip()[:30]!r} has no keyword")
        if keyword_field == "END":
            break
        if keyword_field.startswith("END"):
            raise _Damaged(f"header record {keyword_field!r} looks like END")
        keyword = record[:4]
        seen[keyword] = seen.get(keyword, 0) + 1
        if keyword not in _PARSED and keyword != "SYMM":
            continue  # VERS, TITLE, BATCH, ...: read as text or not at all
        if keyword == "SYMM":
            _symmetry_operator(record[4:])
            header.n_symmetry_operators += 1
            continue
        fields = _fields(record, keyword)
        if len(fields) < _MIN_FIELDS[keyword] or len(fields) > 20:
            raise _Damaged(f"header record {record.strip()!r} has {len(fields)} fields")
        if keyword == "NCOL":
            header.n_columns = _integer(fields[1], 1, MAX_COLUMNS, "column count")
            header.n_reflections = _integer(fields[2], 0, 2 ** 31 - 1, "reflection count")
            header.n_batches = _integer(fields[3], 0, 10 ** 6, "batch count")
        elif keyword == "SORT":
            header.sort = [_integer(v, 0, MAX_COLUMNS, "sort column") for v in fields[1:6]]
        elif keyword == "SYMI":
            _integer(fields[1], 0, MAX_SYMMETRY_OPERATORS, "operator count")
            _integer(fields[2], 0, MAX_SYMMETRY_OPERATORS, "primitive operator count")
            _name(fields[5], 20, "space-group name")
            _name(fields[6], 10, "point-group name")
        elif keyword in ("CELL", "RESO"):
            for value in fields[1:7 if keyword == "CELL" else 3]:
                _number(value, keyword)
        elif keyword == "COLU":
            _column(fields, header)
        elif keyword in ("COLS", "COLG"):
            _name(fields[1], MAX_LABEL, "column label")
        elif keyword == "PROJ":
            block = ["PROJ"]
            project = fields[2] if len(fields) > 2 else "dummy"
            crystal = project
            _name(project, MAX_NAME, "project name")
        elif keyword in ("CRYS", "DATA", "DCEL", "DWAV", "DRES"):
            block = _dataset_record(keyword, fields, block)
            if keyword == "CRYS" and len(fields) > 2:
                crystal = fields[2]
                _name(crystal, MAX_NAME, "crystal name")
            if keyword == "DATA":
                _integer(fields[1], 0, 10 ** 6, "dataset id")
                name = fields[2] if len(fields) > 2 else ""
                _name(name, MAX_NAME, "dataset name")
                if name == "HKL_base" and not project == crystal == "HKL_base":
                    raise _Damaged("dataset HKL_base outside the HKL_base crystal")
            if keyword in ("DCEL", "DWAV"):
                for value in fields[2:8 if keyword == "DCEL" else 3]:
                    _number(value, keyword)
            if keyword == "DRES":
                for value in fields[2:8]:
                    _integer(value, -10 ** 6, 10 ** 6, "DRES index")
    for keyword in ("NCOL", "SORT"):
        if seen.get(keyword) != 1:
            raise _Damaged(f"{seen.get(keyword, 0)} {keyword} records in the header")
    if seen.get("SYMI", 0) > 1 or header.n_symmetry_operators > MAX_SYMMETRY_OPERATORS:
        raise _Damaged("more than one space group in the header")
    if len(header.columns) != header.n_columns:
        raise _Damaged(f"{len(header.columns)} COLUMN records for {header.n_columns} columns")
    if [c for c in header.columns[:3]] != [("H", "H"), ("K", "H"), ("L", "H")]:
        raise _Damaged("the first columns are not the indices H, K, L")
    if any(key > header.n_columns for key in header.sort):
        raise _Damaged("sort order names a column that does not exist")
    return header, position


def _symmetry_operator(text: str) -> None:
    from cctbx import sgtbx

    if not _SYMMETRY_OPERATOR.match(text) or text.count(",") != 2:
        raise _Damaged(f"symmetry operator {text.strip()!r}")
    try:
        sgtbx.rt_mx(text.strip())
    except (RuntimeError, ValueError):
        raise _Damaged(f"symmetry operator {text.strip()!r}") from None


def _column(fields: list[str], header: _Header) -> None:
    if len(fields) > 6:
        raise _Damaged(f"COLUMN record for {fields[1]!r} has {len(fields)} fields")
    label, column_type = fields[1], fields[2]
    _name(label, MAX_LABEL, "column label")
    if column_type not in COLUMN_TYPES:
        raise _Damaged(f"column {label!r} has unknown type {column_type!r}")
    if len(fields) == 6:
        _integer(fields[5], 0, 10 ** 6, "dataset id")
    header.columns.append((label, column_type))


def _dataset_record(keyword: str, fields: list[str], block: list[str] | None) -> list[str]:
    """Dataset records come in blocks PROJECT [CRYSTAL] DATASET [DCELL] [DWAVEL] [DRES]."""
    if block is None:
        raise _Damaged(f"{fields[0]} record before any PROJECT record")
    order = ["PROJ", "CRYS", "DATA", "DCEL", "DWAV", "DRES"]
    if keyword in block or order.index(keyword) < order.index(block[-1]):
        raise _Damaged(f"{fields[0]} record out of order")
    if keyword in ("DCEL", "DWAV", "DRES") and "DATA" not in block:
        raise _Damaged(f"{fields[0]} record before its DATASET record")
    return block + [keyword]


def _history_and_batches(text: bytes, position: int, n_batches: int) -> None:
    """Check the records after END: history, batch headers, MTZENDOFHEADERS."""
    batches_read = False
    while True:
        record = _record(text, position, "history and batch headers")
        position += RECORD
        fields = _fields(record, "")
        keyword = fields[0][:4].upper() if fields else ""
        if fields and not fields[0][0].isalpha():
            raise _Damaged(f"record {record.strip()[:30]!r} after END")
        if keyword == "MTZE":
            break
        if keyword == "MTZH":
            if len(fields) < 2:
                raise _Damaged("MTZHIST record without a line count")
            lines = _integer(fields[1], 0, MAX_HISTORY, "history line count")
            if position + lines * RECORD > len(text):
                raise _Damaged("the file ends inside the history")
            position += lines * RECORD
        elif keyword == "MTZB":
            if batches_read or n_batches == 0:
                raise _Damaged("unexpected batch headers")
            for _ in range(n_batches):
                position = _batch(text, position)
            batches_read = True
    if n_batches and not batches_read:
        raise _Damaged(f"{n_batches} batches announced but no batch headers")


def _batch(text: bytes, position: int) -> int:
    """Check one batch header (BH record, title, binary words, BHCH); return its end."""
    fields = _fields(_record(text, position, "batch headers"), "")
    if not fields or fields[0].upper() != "BH" or len(fields) < 5:
        raise _Damaged("damaged batch header")
    _integer(fields[1], -2 ** 31, 2 ** 31 - 1, "batch number")
    sizes = [_integer(v, 0, 10 ** 6, "batch header size") for v in fields[2:5]]
    if sizes != [BATCH_WORDS, BATCH_INTEGERS, BATCH_REALS]:
        raise _Damaged(f"batch header sizes {sizes}")
    position += RECORD
    if len(text) < position + RECORD + 4 * BATCH_WORDS:
        raise _Damaged("the file ends inside the batch headers")
    position += RECORD + 4 * BATCH_WORDS  # title (copied as text) and the binary words
    fields = _fields(_record(text, position, "batch headers"), "")
    if len(fields) == 4:
        for value in fields[1:]:
            _name(value, MAX_GONIOSTAT_LABEL, "goniostat axis name")
    return position + RECORD
