"""numba's threading layer for every threaded kernel of the package (tv, voxel_statistics).

numba picks OpenMP once cctbx has loaded libgomp, and that layer gave wrong results here with
two threads (TV: a 0.4 difference after two iterations; an in-place rescaling applied twice);
its own workqueue layer is correct.  Each kernel module imports this one, so that whichever
kernel runs first finds the layer set (tests/test_tv.py, tests/test_voxel_statistics.py check
both facts stay true).  The workqueue layer must not be entered by two threads at once: the
kernels keep the GIL, and meteor.batch runs one dataset per worker process at a time.
"""
import numba

numba.config.THREADING_LAYER = "workqueue"
