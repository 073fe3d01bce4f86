"""meteor_cctbx: map-enhancement programs for weak signals, a cctbx plugin."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

#: Start-up hook installed into site-packages (see _meteor_cctbx_libstdcxx.py): it loads
#: cctbx-base's libstdc++ before any other C++ library so that every import order is safe.
STARTUP_HOOK = "meteor_cctbx_libstdcxx.pth"


class BuildPyWithStartupHook(build_py):
    """build_py that also places the start-up hook at the top of the installed tree (wheels
    and editable installs alike)."""

    def run(self):
        super().run()
        self.copy_file(STARTUP_HOOK, os.path.join(self.build_lib, STARTUP_HOOK))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, STARTUP_HOOK)]


PROGRAMS = ("diffmap", "phaseboost", "sharpen", "local_scale", "extrapolate")

setup(
    name="meteor_cctbx",
    version="0.1.0",
    description="Difference maps, TV denoising, phase retrieval, sharpening and local scale "
                "for crystallography and cryo-EM, built on cctbx",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["meteor_cctbx", "meteor_cctbx.*"]),
    py_modules=["_meteor_cctbx_libstdcxx"],
    cmdclass={"build_py": BuildPyWithStartupHook},
    package_data={"meteor_cctbx": ["phil/*.phil", "examples/*"]},
    install_requires=["cctbx-base", "numpy", "scipy", "scikit-image", "matplotlib", "numba"],
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            f"meteor.{name}=meteor_cctbx.command_line.{name}:main" for name in PROGRAMS
        ] + ["meteor.example=meteor_cctbx.command_line.example:main"],
    },
)
