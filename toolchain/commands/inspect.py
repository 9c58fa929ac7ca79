"""``toolchain inspect``:
print the layers, shapes, neuron parameters and quantization of a netx, NIR or ONNX file.
"""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub,
        "inspect",
        "print the layers, shapes, neuron parameters and quantization of a netx, NIR or ONNX file",
    )
