"""``toolchain export``: export a trained run with Loihi quantization to Lava-dl netx (HDF5), NIR or ONNX."""

from __future__ import annotations

import argparse

from toolchain.commands.common import register_planned


def register(sub: argparse._SubParsersAction) -> None:
    register_planned(
        sub, "export", "export a trained run with Loihi quantization to Lava-dl netx (HDF5), NIR or ONNX"
    )
