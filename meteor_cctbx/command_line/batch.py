"""meteor.batch: one difference program over many derivatives against one native, on Dask."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.batch import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
