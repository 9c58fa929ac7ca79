"""A longer fuzz run of the netx reader: mutated valid files must give a Network or a ToolchainError.

    .venv/bin/python benchmarks/fuzz_netx.py --inputs 3000 --seed 0

Each input is a valid netx file (a conv net with pooling, biases, a flatten and a dense layer,
written by :func:`toolchain.formats.netx.write_netx`) mutated one way, chosen at random: bytes XOR-ed
at random offsets, the file truncated, a dataset replaced by a random value (scalar, list, NaN,
string, opaque bytes), the ``/toolchain`` JSON replaced, or a group/dataset deleted. Prints how many
inputs were tried, how they ended (read / FormatError / other ToolchainError / failure) and the
slowest read; exits 1 if any input raised anything else. ``tests/test_netx.py`` runs a bounded
version of this on every test run (hypothesis, 50 inputs). Reads run forked (``read_netx``'s
default), so a crash of libhdf5 is counted as a contained ``FormatError``; ``--keep DIR`` saves
those inputs.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import FuzzTally, fuzz, fuzz_parser, report

from toolchain import ir
from toolchain.errors import FormatError
from toolchain.formats.netx import read_netx, write_netx

DATASETS = (
    "layer/0/shape",
    "layer/1/weight",
    "layer/1/bias",
    "layer/1/neuron/iDecay",
    "layer/2/stride",
    "layer/2/padding",
    "layer/2/groups",
    "layer/2/weight",
    "layer/3/type",
    "layer/4/shape",
    "layer/4/weight",
    "layer/4/neuron/vThMant",
    "layer/4/neuron/type",
)
DELETABLE = ("layer/1", "layer/2/neuron", "layer/4/weight", "toolchain", "layer/0/shape", "layer/3/type")


def valid_network() -> ir.Network:
    rng = np.random.default_rng(1)
    neurons = ir.CubaNeurons(i_decay=1024, v_decay=256, vth_mant=80)

    def w(*shape: int) -> np.ndarray:
        return (rng.integers(-30, 60, size=shape) * 2).astype(np.int64)

    biased = ir.CubaNeurons(1024, 256, 80, bias_mant=rng.integers(-30, 30, size=(4, 8, 8)), bias_exp=6)
    c1 = ir.Conv("conv1", w(4, 2, 3, 3), biased, (2, 8, 8), (1, 1), (1, 1))
    p1 = ir.Pool("pool1", "sum", 2, c1.out_shape)
    c2 = ir.Conv("conv2", w(6, 4, 3, 3), neurons, p1.out_shape, (1, 1), (1, 1))
    p2 = ir.Pool("pool2", "sum", 2, c2.out_shape)
    fc = ir.Dense("fc", w(5, 24), neurons)
    layers = (c1, p1, c2, p2, ir.Flatten("flat", p2.out_shape), fc)
    return ir.Network("fuzz", (2, 8, 8), "spikes", 8, layers)


def random_value(rng: np.random.Generator):
    choice = rng.integers(7)
    if choice == 0:
        return int(rng.integers(-(2**40), 2**40))
    if choice == 1:
        return float(rng.choice([np.nan, np.inf, -np.inf, 1.5, -0.0, 1e300]))
    if choice == 2:
        return rng.integers(-(2**20), 2**20, size=int(rng.integers(0, 7))).tolist()
    if choice == 3:
        return np.void(rng.bytes(int(rng.integers(1, 12))))
    if choice == 4:
        return "".join(chr(c) for c in rng.integers(1, 0x2FF, size=int(rng.integers(0, 12))))
    if choice == 5:
        return rng.integers(
            -300, 300, size=tuple(int(s) for s in rng.integers(1, 5, size=rng.integers(1, 5)))
        )
    return np.full(int(rng.integers(1, 4)), 10**9)


def mutate(data: bytes, path: Path, rng: np.random.Generator) -> str:
    kind = str(rng.choice(["flip", "truncate", "dataset", "attr", "delete"]))
    if kind == "flip":
        buffer = bytearray(data)
        for _ in range(int(rng.integers(1, 9))):
            buffer[int(rng.integers(len(buffer)))] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(buffer))
        return kind
    if kind == "truncate":
        path.write_bytes(data[: int(rng.integers(len(data)))])
        return kind
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        if kind == "dataset":
            key = str(rng.choice(DATASETS))
            del f[key]
            f.create_dataset(key, data=random_value(rng))
        elif kind == "attr":
            f["toolchain"].attrs["network"] = str(random_value(rng)).replace("\x00", "")
        else:
            del f[str(rng.choice(DELETABLE))]
    return kind


def main() -> int:
    parser = fuzz_parser(__doc__.splitlines()[0], inputs=3000)
    parser.add_argument("--keep", type=Path, help="copy every input that crashed or failed the reader here")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as folder:
        valid = write_netx(valid_network(), Path(folder) / "valid.net").read_bytes()
        path = Path(folder) / "fuzz.net"

        def format_error(exc: FormatError, tally: FuzzTally) -> str:
            crashed = "crashed" in str(exc)
            if crashed and args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, args.keep / f"crash-{sum(tally.outcomes.values()) + 1}.net")
            return "FormatError (HDF5 library crashed, contained)" if crashed else "FormatError"

        tally = fuzz(
            args.inputs, lambda: mutate(valid, path, rng), lambda: read_netx(path), format_error=format_error
        )
    return report(tally, args, slowest="slowest read")


if __name__ == "__main__":
    sys.exit(main())
