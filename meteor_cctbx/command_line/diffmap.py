"""meteor.diffmap: isomorphous difference map (derivative minus native)."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.diffmap import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
