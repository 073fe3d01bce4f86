"""meteor.phaseboost: difference map with derivative phases from iterative TV retrieval."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.phaseboost import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
