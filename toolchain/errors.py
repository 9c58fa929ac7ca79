"""The toolchain's own error types.

Every error a user can cause (a bad recipe, a missing data file, an impossible option) is raised as a
subclass of :class:`ToolchainError` with a message that names the file, key or layer and what was
expected. The CLI prints such errors as one line and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class ToolchainError(Exception):
    """Base class of every error the toolchain raises on purpose."""


class RecipeError(ToolchainError):
    """A recipe file is missing, unreadable or invalid (unknown key, wrong type, impossible value)."""


class DataError(ToolchainError):
    """A dataset is missing, corrupt or laid out differently from what its loader expects."""


class LavaUnavailableError(ToolchainError):
    """Lava (lava-nc / lava-dl) is not installed or cannot be imported on this interpreter."""


class NotImplementedYetError(ToolchainError):
    """A CLI command or option that a later milestone will provide."""


class QuantizationError(ToolchainError):
    """A value cannot be represented on the target's fixed-point grid (overflow, out of register range)."""


class UnsupportedDynamicsError(ToolchainError):
    """Neuron dynamics that have no exact equivalent in the target model (refused, never approximated)."""


class SimulationError(ToolchainError):
    """A network cannot be simulated as asked (inputs of the wrong shape or range, a backend refusal)."""


class FormatError(ToolchainError):
    """A model file (netx, NIR, ONNX) is missing, corrupt, or holds what the reader cannot represent."""


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message`` (errors are printed on one line)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
