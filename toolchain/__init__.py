"""Neuromorphic deployment toolchain: train sparse SNNs, export them for Loihi, simulate, estimate energy.

The package reads as the data flows::

    recipe (config) -> data -> snn -> train -> export -> sim -> energy -> report

with ``cli`` on top. Lava is imported only by the modules that use it, always through
:mod:`toolchain.lava_compat`.
"""

__version__ = "0.1.0"

#: the stable Python API (docs/api.md), re-exported from :mod:`toolchain.api` on first use, so that
#: ``import toolchain`` stays light (no torch)
API: tuple[str, ...] = (
    "compare",
    "estimate_energy",
    "fit",
    "load_dataset",
    "load_inputs",
    "load_recipe",
    "load_run",
    "plot_activity",
    "plot_raster",
    "quantize",
    "quantize_nir",
    "read",
    "simulate",
    "write",
)


def __getattr__(name: str) -> object:
    if name in API:
        from toolchain import api

        return getattr(api, name)
    if name == "ToolchainError":
        from toolchain.errors import ToolchainError

        return ToolchainError
    raise AttributeError(f"module 'toolchain' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API, "ToolchainError"})


__all__ = ["API", "ToolchainError", "__version__", *API]
