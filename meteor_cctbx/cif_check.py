"""A Python check of CIF syntax, run before iotbx.cif's C++ parser sees a file: that parser
crashes the process (segmentation fault) on some damaged files, e.g. a loop_ or a data name
without values at the end of a file, or items before the first data_ block.

The check tokenizes the text (quoted strings, semicolon text fields, comments) and accepts a
sequence of data blocks in which every data name has a value and every loop has names and a
whole number of rows; anything else is one Sorry naming the file and the first problem.
"""
from __future__ import annotations

import os
import re

from libtbx.utils import Sorry

_TOKEN = re.compile(r"""
    (?P<text>^;.*?^;)                                   # semicolon text field
  | (?P<quoted>'(?:[^'\n]|'(?=\S))*'(?=\s|$)|"(?:[^"\n]|"(?=\S))*"(?=\s|$))
  | (?P<comment>\#[^\n]*)
  | (?P<word>[^\s]+)
""", re.VERBOSE | re.MULTILINE | re.DOTALL)


class _Invalid(Exception):
    """The first syntax problem; check_cif turns it into a Sorry naming the file."""


def _tokens(text: str):
    """(kind, token) for each token: 'name', 'loop', 'block', 'value', 'text', 'quoted'."""
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        if kind == "comment":
            continue
        token = match.group()
        if kind == "word":
            lower = token.lower()
            if token.startswith("_"):
                kind = "name"
            elif lower == "loop_":
                kind = "loop"
            elif lower.startswith(("data_", "save_", "global_")) or lower == "stop_":
                kind = "block"
            elif token[0] in "'\";[]$":
                raise _Invalid(f"unterminated or misplaced quote in {token[:20]!r}")
            else:
                kind = "value"
        elif kind == "text" and not token.rstrip().endswith(";"):
            raise _Invalid("unterminated text field")
        yield kind, token


def _check(text: str) -> None:
    if "\x00" in text:
        raise _Invalid("binary bytes")
    tokens = list(_tokens(text))
    in_block = False
    i = 0
    while i < len(tokens):
        kind, token = tokens[i]
        if kind == "block":
            in_block = token.lower().startswith(("data_", "save_"))
            i += 1
            continue
        if not in_block:
            raise _Invalid(f"{token[:30]!r} before the first data_ block")
        if kind == "name":
            if i + 1 >= len(tokens) or tokens[i + 1][0] not in ("value", "text", "quoted"):
                raise _Invalid(f"data name {token[:40]} has no value")
            i += 2
            continue
        if kind == "loop":
            names = values = 0
            i += 1
            while i < len(tokens) and tokens[i][0] == "name":
                names, i = names + 1, i + 1
            while i < len(tokens) and tokens[i][0] in ("value", "text", "quoted"):
                values, i = values + 1, i + 1
            if not names:
                raise _Invalid("a loop_ without data names")
            if not values or values % names:
                raise _Invalid(f"a loop of {names} data names holds {values} values, not a "
                               f"whole number of rows")
            continue
        raise _Invalid(f"value {token[:30]!r} without a data name")


def check_cif(path: str | os.PathLike) -> None:
    """Sorry unless ``path`` holds CIF text iotbx.cif can parse safely (see module doc)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
        _check(text)
    except _Invalid as problem:
        raise Sorry(f"Cannot read {path}: not a valid mmCIF file ({problem}); the file is "
                    f"damaged or truncated: re-export it.") from None


def looks_like_cif(path: str | os.PathLike) -> bool:
    """True for a .cif/.mmcif name or text whose first item is a data_ block."""
    if str(path).lower().endswith((".cif", ".mmcif")):
        return True
    try:
        with open(path, "rb") as handle:
            start = handle.read(4096)
    except OSError:
        return False
    lines = [line.strip() for line in start.splitlines()]
    first = next((line for line in lines if line and not line.startswith(b"#")), b"")
    return first.lower().startswith(b"data_")
