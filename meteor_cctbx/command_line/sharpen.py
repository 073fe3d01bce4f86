"""meteor.sharpen: sharpen a map by clarity-chosen B, half-map or model FSC weighting."""
from meteor_cctbx.command_line import main_for
from meteor_cctbx.programs.sharpen import Program

main = main_for(Program)

if __name__ == "__main__":
    raise SystemExit(main())
