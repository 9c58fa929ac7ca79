"""A longer fuzz run of the ONNX reader: mutated valid files must be described or give a ToolchainError.

    .venv/bin/python benchmarks/fuzz_onnx.py --inputs 5000 --seed 0

Each input is one of two valid files written by :mod:`toolchain.export.onnx` (the unrolled SNN of a
small MLP over 4 steps, and the ANN twin of a small VGG with sum pooling and batch norm) mutated
one way, chosen at random: bytes overwritten, inserted or deleted at random offsets, an absurd
32-bit word written, the file truncated (``fuzzing.mutate_bytes``), or a field of the parsed
model changed before it is serialized again (an initializer's dims set to a negative or gigantic
size, its data type to an unknown or mismatched one, its data removed or moved to "external"
storage pointing elsewhere, an attribute or a metadata entry replaced by invalid UTF-8). Each
is run through :func:`toolchain.export.inspect.describe`, then the text and JSON renderings.
Prints how many inputs were tried, how they ended and the slowest one; exits 1 if any input
raised anything other than a ``ToolchainError``. ``tests/test_onnx.py`` runs a bounded version of
this on every test run (hypothesis, 50 inputs).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import fuzz, fuzz_parser, mutate_bytes, report


def valid_files(folder: Path) -> list[bytes]:
    import torch

    from toolchain.config import ModelConfig, NeuronConfig
    from toolchain.export.onnx import export_ann_onnx, export_snn_onnx
    from toolchain.snn.ann import build_ann
    from toolchain.snn.models import build_model

    torch.manual_seed(0)
    snn = build_model(ModelConfig(architecture="mlp", hidden=[8]), NeuronConfig(), (16,), 4)
    vgg = ModelConfig(architecture="vgg", channels=[2], pool_after=[1], hidden=[], batch_norm=True)
    return [
        export_snn_onnx(snn, 4, folder / "snn.onnx", record_spikes=True).read_bytes(),
        export_ann_onnx(build_ann(vgg, (1, 8, 8), 3), folder / "ann.onnx").read_bytes(),
    ]


def mutate_fields(data: bytes, rng: np.random.Generator) -> tuple[str, bytes]:
    import onnx

    model = onnx.load_model_from_string(data)
    tensors = list(model.graph.initializer)
    tensor = tensors[int(rng.integers(len(tensors)))]
    kind = str(rng.choice(["dims", "dtype", "no-data", "external", "utf8", "attribute"]))
    if kind == "dims":
        tensor.dims[int(rng.integers(len(tensor.dims)))] = int(rng.choice([-1, 0, 2**40, 3]))
    elif kind == "dtype":
        tensor.data_type = int(rng.choice([0, 8, 16, 23, 99, 1000]))
    elif kind == "no-data":
        tensor.ClearField("raw_data")
    elif kind == "external":
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        entry = tensor.external_data.add()
        entry.key, entry.value = "location", str(rng.choice(["/etc/passwd", "../../x", "/dev/zero"]))
    elif kind == "utf8":
        entry = model.metadata_props.add()
        entry.key, entry.value = "key", "value"
        blob = model.SerializeToString().replace(b"value", b"\xff\xfe\xfd\x80\x81")
        return kind, blob
    else:
        nodes = [n for n in model.graph.node if n.attribute]
        node = nodes[int(rng.integers(len(nodes)))]
        attribute = node.attribute[0]
        attribute.type = int(rng.choice([0, 1, 2, 5, 7, 13]))
    return kind, model.SerializeToString()


def main() -> int:
    from toolchain.export.inspect import describe, format_description

    args = fuzz_parser(__doc__.splitlines()[0], inputs=5000).parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        valid = valid_files(Path(folder))
        path = Path(folder) / "fuzz.onnx"

        def write_input() -> str:
            data = valid[int(rng.integers(len(valid)))]
            mutate = mutate_fields if rng.random() < 0.3 else mutate_bytes
            kind, blob = mutate(data, rng)
            path.write_bytes(blob)
            return kind

        def read() -> None:
            described = describe(path)
            format_description(described)
            json.dumps(described)

        tally = fuzz(args.inputs, write_input, read, success="described")
    return report(tally, args)


if __name__ == "__main__":
    sys.exit(main())
