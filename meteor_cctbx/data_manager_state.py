"""iotbx's DataManager keeps state across instances that grows with every instance.

``MillerArrayDataManager.miller_array_child_datatypes`` is a class-level list to which every
new DataManager appends its child datatypes again (iotbx 2025.11); every reflection file a later
DataManager reads is then converted once per entry.  In one long-lived process (meteor.batch's
workers, the Python API in a loop, the test suite) the n-th run converts each MTZ about n times:
a run of meteor.sharpen took 1.2 s in a fresh process and 18 s after 130 other runs.
"""
from __future__ import annotations


def forget_repeated_child_datatypes() -> None:
    """Keep each child datatype once in iotbx's class-level list (order kept); call it after
    creating a DataManager."""
    from iotbx.data_manager.miller_array import MillerArrayDataManager

    children = MillerArrayDataManager.miller_array_child_datatypes
    children[:] = list(dict.fromkeys(children))
