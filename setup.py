"""The package list and package data (everything else is in pyproject.toml).

The hardware target profiles stay in ``deploy/targets/*.toml`` (the project's layout, one copy) and
ship inside the wheel as ``toolchain/targets/*.toml``: ``package_dir`` maps that package onto the
folder, so setuptools copies the files at build time (and puts them in the sdist).
``toolchain.energy.targets`` finds them there through ``importlib.resources`` when installed, and in
``deploy/targets`` when run from a checkout (an editable install included).
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["toolchain", "toolchain.*"]), "toolchain.targets"],
    package_dir={"toolchain.targets": "deploy/targets"},
    package_data={"toolchain": ["py.typed"], "toolchain.targets": ["*.toml"]},
)
