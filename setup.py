"""meteor_cctbx: map-enhancement programs for weak signals, a cctbx plugin."""
from setuptools import find_packages, setup

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
    package_data={"meteor_cctbx": ["phil/*.phil", "examples/*"]},
    install_requires=["cctbx-base", "numpy", "scipy", "scikit-image", "matplotlib", "numba"],
    extras_require={"test": ["pytest", "hypothesis"]},
    entry_points={
        "console_scripts": [
            f"meteor.{name}=meteor_cctbx.command_line.{name}:main" for name in PROGRAMS
        ] + ["meteor.example=meteor_cctbx.command_line.example:main"],
    },
)
