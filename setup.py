"""Packaging for rllib_worldmodel.

torch is constrained to a range whose newest release is 2.13.x on purpose: with no torch installed, a requirement
that admits a newer release makes pip download a multi-GB CUDA build even on CPU machines. `scripts/install.sh`
installs torch==2.13.0 first (the CPU build where one is on disk); a GPU user installs a CUDA build of the same
release (e.g. from the PyTorch CUDA index) first, and its local version (2.13.0+cu12x) satisfies this range.
"""

from setuptools import find_packages, setup

setup(
    name="rllib_worldmodel",
    version="0.1.0",
    description="World Models (Ha & Schmidhuber 2018) model-based RL for Ray RLlib's new API stack",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["rllib_worldmodel", "rllib_worldmodel.*"]),
    install_requires=[
        "ray[rllib]==2.60.0",
        "gymnasium==1.2.2",  # the version ray[rllib]==2.60.0 pins
        "torch>=2.4,<2.14",
        "numpy>=1.24",
        "vizdoom==1.3.2",
        "tensorboard>=2.14",
        "tensorboardX>=2.6",
        "pillow>=9.0",
        "cma>=3.3",
        "scipy>=1.9",  # also a ray[rllib] dependency; fidelity.py uses its rank correlation
        "lz4>=4.0",  # the replay in checkpoints (the library of RLlib's own optional sample compression)
    ],
    extras_require={
        "test": ["pytest>=7.4", "ruff>=0.5"],
        "box2d": ["box2d==2.3.10"],
    },
    entry_points={"console_scripts": ["rllib-worldmodel=rllib_worldmodel.cli:main"]},
)
