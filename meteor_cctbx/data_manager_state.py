"""Two ways in which iotbx's DataManager does work twice, and how our programs avoid them.

* It keeps state across instances that grows with every instance:
``MillerArrayDataManager.miller_array_child_datatypes`` is a class-level list to which every
new DataManager appends its child datatypes again (iotbx 2025.11); every reflection file a later
DataManager reads is then converted once per entry.  In one long-lived process (meteor.batch's
workers, the Python API in a loop, the test suite) the n-th run converts each MTZ about n times:
a run of meteor.sharpen took 1.2 s in a fresh process and 18 s after 130 other runs.
* It converts every reflection file it is given into miller arrays (iotbx's column grouping:
~0.45 s for the 41k-reflection 8a6g MTZ), and the difference programs, which read their data
through ``reflections.read_miller_arrays``, converted it again.  Programs that take their
arrays unmerged (``data_manager_options = ["miller_array_skip_merge"]``) let the DataManager
share that reader's conversion, cached per process (``convert_reflection_files_once``).
"""
from __future__ import annotations

SKIP_MERGE = "miller_array_skip_merge"  # iotbx's DataManager option: arrays as stored


def forget_repeated_child_datatypes() -> None:
    """Keep each child datatype once in iotbx's class-level list (order kept); call it after
    creating a DataManager."""
    from iotbx.data_manager.miller_array import MillerArrayDataManager

    children = MillerArrayDataManager.miller_array_child_datatypes
    children[:] = list(dict.fromkeys(children))


class _SharedConversion:
    """An iotbx reflection-file reader whose unmerged conversion is
    ``reflections.read_miller_arrays`` of its file (converted once per process); everything
    else is the reader's."""

    def __init__(self, reader, file_name: str):
        self._reader, self._file_name = reader, file_name

    def __getattr__(self, name: str):
        return getattr(self._reader, name)

    def as_miller_arrays(self, merge_equivalents: bool = True, **kwargs):
        if merge_equivalents or kwargs:
            return self._reader.as_miller_arrays(merge_equivalents=merge_equivalents, **kwargs)
        from meteor_cctbx.reflections import read_miller_arrays

        return read_miller_arrays(self._file_name)


def convert_reflection_files_once(data_manager) -> None:
    """When ``data_manager`` keeps arrays unmerged (option SKIP_MERGE), let it take them from
    ``reflections.read_miller_arrays`` (the same arrays, the same labels), so that a reflection
    file read by the DataManager and by the program is converted once; call it after creating
    the DataManager."""
    if SKIP_MERGE not in (data_manager.custom_options or ()):
        return
    get_reader = data_manager.get_miller_array

    def get_miller_array(filename=None):
        reader = get_reader(filename)
        name = filename if filename is not None else data_manager.get_default_miller_array_name()
        return _SharedConversion(reader, name)

    data_manager.get_miller_array = get_miller_array
