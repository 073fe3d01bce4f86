"""meteor.example: write the built-in synthetic example (derivative, native, model, truth)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from meteor_cctbx.example import EXAMPLE_FILES, write_example


def main(args: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="meteor.example", description="Write a synthetic isomorphous pair to try the "
        "meteor programs on: " + ", ".join(EXAMPLE_FILES) + ".")
    parser.add_argument("directory", nargs="?", default="meteor_example")
    parser.add_argument("--d-min", type=float, default=1.8, help="resolution (A)")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(args)
    write_example(options.directory, d_min=options.d_min, seed=options.seed)
    print(f"Wrote {', '.join(EXAMPLE_FILES)} to {options.directory}/. Next:\n"
          f"  cd {options.directory} && meteor.diffmap derivative.mtz native.mtz model.pdb")
    return 0


if __name__ == "__main__":
    sys.exit(main())
