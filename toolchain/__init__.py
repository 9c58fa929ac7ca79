"""Neuromorphic deployment toolchain: train sparse SNNs, export them for Loihi, simulate, estimate energy.

The package reads as the data flows::

    recipe (config) -> data -> snn -> train -> export -> sim -> energy -> report

with ``cli`` on top. Lava is imported only by the modules that use it, always through
:mod:`toolchain.lava_compat`.
"""

__version__ = "0.1.0"
