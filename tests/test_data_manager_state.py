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


def test_a_difference_program_converts_each_reflection_file_once(example, tmp_path,
                                                                 monkeypatch, capsys):
    """The DataManager takes its (unmerged) arrays from the program's cached reader, so each
    MTZ is converted once, and the DataManager's labels are those of the file."""
    import shutil

    import iotbx.mtz
    from libtbx.utils import null_out

    from helpers import FAST, example_inputs, run_program
    from meteor_cctbx.command_line import MeteorParser
    from meteor_cctbx.programs.diffmap import Program as Diffmap

    inputs = [shutil.copy(name, tmp_path) for name in example_inputs(example)]  # not cached
    converted = []
    convert = iotbx.mtz.object.as_miller_arrays

    def counting(self, *args, **kwargs):
        converted.append(self.title())
        return convert(self, *args, **kwargs)

    monkeypatch.setattr(iotbx.mtz.object, "as_miller_arrays", counting)
    monkeypatch.chdir(tmp_path)
    status, _, err = run_program(Diffmap, inputs + FAST, capsys)
    assert status == 0, err
    assert len(converted) == 2  # derivative and native, once each

    parser = MeteorParser(Diffmap, logger=null_out())
    parser.parse_args(inputs)
    labels = parser.data_manager.get_miller_array_labels(inputs[0])
    assert labels == [",".join(a.info().labels) for a in iotbx.mtz.object(inputs[0])
                      .as_miller_arrays(merge_equivalents=False)]
    assert len(converted) == 3  # the check's own conversion: the parser used the cache
