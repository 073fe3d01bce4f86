"""meteor.extrapolate: extrapolated structure factors of the minor state."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.extrapolate import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
