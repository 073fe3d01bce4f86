"""iotbx's DataManager state does not grow with the number of runs in one process."""
from iotbx.data_manager import DataManager
from iotbx.data_manager.miller_array import MillerArrayDataManager

from meteor_cctbx.data_manager_state import forget_repeated_child_datatypes
from meteor_cctbx.programs.sharpen import Program as Sharpen


def test_child_datatypes_are_kept_once_however_many_data_managers():
    for _ in range(5):
        DataManager(datatypes=Sharpen.datatypes)
    children = MillerArrayDataManager.miller_array_child_datatypes
    assert len(children) > len(set(children))  # iotbx repeats them (the reason for the fix)
    forget_repeated_child_datatypes()
    assert len(children) == len(set(children)) > 0


def test_the_command_line_parser_leaves_each_child_datatype_once(tmp_path, monkeypatch):
    from meteor_cctbx.command_line import MeteorParser

    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        MeteorParser(Sharpen)
    children = MillerArrayDataManager.miller_array_child_datatypes
    assert len(children) == len(set(children))
