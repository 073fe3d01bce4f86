"""meteor.local_scale: local map scale, solvent confidence and scale modification."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.local_scale import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
