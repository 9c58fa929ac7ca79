"""Lava-dl netx HDF5: a deployment graph written so ``lava.lib.dl.netx.hdf5.Network`` loads it, and read back.

The schema is the one netx reads (lava-dl 0.6.0, ``lava/lib/dl/netx/hdf5.py``) and slayer's
``export_hdf5`` writes (``lava/lib/dl/slayer/block/base.py``)::

    /layer/<i>/type          b"input" | b"dense" | b"conv" | b"flatten"   (S10, shape (1,))
    /layer/<i>/shape         output shape in (C, H, W) order; netx reverses it to (W, H, C)
    /layer/<i>/weight        dense [out, in] (torch's flatten order); conv [C_out, C_in / groups, kH, kW]
    /layer/<i>/bias          optional: per neuron, (N,) for dense, (W, H, C) for conv (netx's order)
    /layer/<i>/stride, padding, dilation  (H, W) order (netx reverses them), groups     conv only
    /layer/<i>/neuron/       type b"CUBA", iDecay, vDecay, vThMant, refDelay = 1, gradedSpike = False
    /toolchain               attrs ``format_version`` and ``network`` (JSON): what netx has no field for

Layer 0 is an ``input`` layer with a ``shape`` and no ``neuron`` group: netx then builds no input
process and only takes its shape (``hdf5.py:596-597``), so spikes or graded payloads go straight
into the first dense/conv layer's port. A network with input neurons (slayer's ``Input`` block,
:class:`toolchain.ir.InputNeurons`) has them as layer 0's ``neuron`` group with the block's
``weight`` and ``bias``; netx builds an ``Input`` block whose neurons' ``a_in`` the input drives.
The conventions (each verified in the source, listed with
their lines in ``docs/formats.md``): netx reverses ``shape``/``stride``/``padding`` to (W, H, C);
it flips a conv kernel's spatial axes and transposes it to (out, W, H, in), and Lava's conv flips
them back before ``torch.conv2d``, so the file holds torch's (cross-correlation) kernel; it
transposes a (W, H, C) output back to (C, H, W) before flattening into a dense layer; it derives
each dense layer's weight exponent from the weights (``utils.optimize_weight_bits``), so the file
holds no exponent; it sets every neuron's ``bias_exp`` to 6, ``du = iDecay - 1``, ``dv = vDecay``,
``vth = vThMant``. Everything else (the graph's name, time steps, input encoding, the weight
exponent of graded input, layer names, 1-D convolutions, metadata) is the ``/toolchain`` group, which
netx never opens (it reads only ``/layer``, ``hdf5.py:570``).

:func:`read_netx` treats every file as untrusted: each size is checked before an array is read,
every value is validated, and anything wrong is a :class:`~toolchain.errors.FormatError` naming the
file and the key.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from toolchain import ir
from toolchain.errors import FormatError, QuantizationError, ToolchainError
from toolchain.formats.hdf5 import file_links
from toolchain.formats.lower import lower_pooling
from toolchain.io import atomic_write
from toolchain.isolation import CAN_ISOLATE, memory_limit, run_isolated
from toolchain.loihi_numbers import BIAS_EXP, INPUT_SHIFT, scaled_bias

FORMAT_VERSION = 1
#: the group netx ignores, holding what netx has no field for
SIDECAR = "toolchain"
#: payload bits of graded input (``hdf5.Network(input_message_bits=8)``)
GRADED_MESSAGE_BITS = 8
#: the neuron netx builds for a dense layer without a ``neuron`` group: a non-leaky integrator that
#: never fires (``lava/lib/dl/netx/hdf5.py:348-357``; ``1 << 18 - 1`` there is ``1 << 17``)
NEURONLESS_DENSE = {"i_decay": 0, "v_decay": 4096, "vth_mant": 1 << 17}
#: reader limits: layers in a file, elements of all arrays together, bytes of the sidecar's JSON
MAX_LAYERS = 4096
#: HDF5 objects (groups, datasets) in a file: a few dozen per layer at most
MAX_OBJECTS = 32 * MAX_LAYERS
MAX_FILE_ELEMENTS = 2**26
MAX_SIDECAR_BYTES = 2**24
#: bytes of one string field (a neuron type, a layer type): far more than any holds
MAX_STRING_BYTES = 4096
#: what reading one string may allocate beyond four times the file's size (:meth:`_Reader.bounded_read`)
STRING_READ_SLACK_BYTES = 64 * 2**20
SUPPORTED_TYPES = ("input", "dense", "conv", "flatten")
#: layer types slayer writes that netx cannot load (``hdf5.py:625-683``) or the toolchain cannot hold
UNSUPPORTED_TYPES = ("pool", "average", "concat", "convT", "unpool", "dense_rec", "dense_comp")


# ----------------------------------------------------------------------------------------------
# writing


def write_netx(network: ir.Network, path: str | Path) -> Path:
    """Write ``network`` (pooling lowered first, :func:`~toolchain.formats.lower.lower_pooling`) as netx HDF5.

    Refuses, naming the layer, what netx cannot hold exactly: a synapse delay other than 1 (Lava's
    ``Dense``), a weight exponent other than the graded input's -8, a bias that is not a multiple of
    ``2**6`` state units (netx's fixed ``bias_exp``), and the dense weight matrices netx's
    ``optimize_weight_bits`` cannot load or Lava would change (all zero; all <= 0 with a
    power-of-two minimum). The file is written atomically.
    """
    path = Path(path)
    lowered = lower_pooling(network)
    if lowered.synapse_delay_steps != 1:
        raise FormatError(
            f"network {lowered.name!r}: synapse_delay_steps = {lowered.synapse_delay_steps}; "
            "netx builds Lava Dense/Conv synapses, which delay by exactly 1 step"
        )
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        _write(handle, lowered)
    return atomic_write(path, lambda out: out.write(buffer.getvalue()))


def netx_input_shape(network: ir.Network) -> tuple[int, ...]:
    """The shape of the input port of the network netx builds from ``network``'s file.

    The first synaptic layer's input in netx's order: ``(N,)`` for a dense layer (the input
    flattened in C order), ``(W, H, C)`` for a 2-D conv (the input transposed ``(2, 1, 0)``),
    ``(L, 1, C)`` for a 1-D conv. Feed ``x.transpose(2, 1, 0)`` of a ``(C, H, W)`` sample.
    """
    if network.input_layer is not None:  # the input neurons' a_in, in netx's (W, H, C) order
        return _whc(network.input_shape) if len(network.input_shape) > 1 else network.input_shape
    first = network.synaptic_layers()[0]
    if isinstance(first, ir.Dense):
        return first.in_shape
    return _whc(first.in_shape)


def _write(handle: h5py.File, network: ir.Network) -> None:
    group = handle.create_group("layer")
    records: list[dict[str, Any]] = []
    _write_input(group.create_group("0"), network.input_shape, network.input_layer)
    shape = network.input_shape
    synaptic = 0
    for layer in network.layers:
        if isinstance(layer, ir.Dense) and len(shape) > 1:
            # netx flattens (with its transpose back to C, H, W) only after an explicit flatten record
            _write_flatten(group.create_group(str(len(records) + 1)), shape)
            records.append({"name": None, "kind": "flatten"})
        target = group.create_group(str(len(records) + 1))
        if isinstance(layer, ir.Flatten):
            _write_flatten(target, layer.in_shape)
        elif isinstance(layer, ir.Dense):
            _check_exponent(network, layer, synaptic)
            _check_dense_weights(layer)
            _write_dense(target, layer)
        elif isinstance(layer, ir.Conv):
            _check_exponent(network, layer, synaptic)
            _write_conv(target, layer)
        else:  # pragma: no cover - lower_pooling leaves no Pool
            raise FormatError(f"layer {layer.name!r}: {layer.kind} layers cannot be written to netx")
        record: dict[str, Any] = {"name": layer.name, "kind": layer.kind}
        if isinstance(layer, ir.Conv):
            record["dims"] = len(layer.kernel_size)
        records.append(record)
        synaptic += isinstance(layer, ir.Dense | ir.Conv)
        shape = layer.out_shape
    graded = network.graded_payloads
    sidecar = {
        "name": network.name,
        "input_shape": list(network.input_shape),
        "input_encoding": network.input_encoding,
        "time_steps": network.time_steps,
        "synapse_delay_steps": network.synapse_delay_steps,
        "readout": network.readout,
        "layers": records,
        **({"input_layer_name": network.input_layer.name} if network.input_layer is not None else {}),
        "lava": {
            "input_message_bits": GRADED_MESSAGE_BITS if graded else 0,
            "input_weight_exp": -INPUT_SHIFT if graded else 0,
            "input_port_shape": list(netx_input_shape(network)),
        },
        "metadata": network.metadata,
    }
    extra = handle.create_group(SIDECAR)
    extra.attrs["format_version"] = FORMAT_VERSION
    try:
        extra.attrs["network"] = json.dumps(sidecar, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"network {network.name!r}: metadata cannot be stored as JSON ({exc})") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _type(group: h5py.Group, name: str) -> None:
    group.create_dataset("type", (1,), "S10", [name.encode("ascii")])


def _write_input(group: h5py.Group, input_shape: tuple[int, ...], neurons: ir.InputNeurons | None) -> None:
    _type(group, "input")
    group.create_dataset("shape", data=np.array(_chw(input_shape), dtype=np.int64))
    if neurons is not None:  # slayer's Input block: its transform and its neurons
        group.create_dataset("weight", data=np.array([neurons.scale_mant], dtype=np.int64))
        group.create_dataset("bias", data=np.array([neurons.offset_mant], dtype=np.int64))
        _write_neuron(group.create_group("neuron"), neurons.neurons)


def _write_flatten(group: h5py.Group, in_shape: tuple[int, ...]) -> None:
    _type(group, "flatten")
    group.create_dataset("shape", data=np.array([math.prod(in_shape), 1, 1], dtype=np.int64))


def _write_dense(group: h5py.Group, layer: ir.Dense) -> None:
    _type(group, "dense")
    group.create_dataset("shape", data=np.array(layer.out_shape, dtype=np.int64))
    group.create_dataset("inFeatures", data=int(layer.weight.shape[1]))
    group.create_dataset("outFeatures", data=int(layer.weight.shape[0]))
    group.create_dataset("weight", data=layer.weight.astype(np.int16))
    bias = _netx_bias(layer)
    if bias is not None:
        group.create_dataset("bias", data=bias.astype(np.int16))
    _write_neuron(group.create_group("neuron"), layer.neurons)


def _write_conv(group: h5py.Group, layer: ir.Conv) -> None:
    one_d = len(layer.kernel_size) == 1
    weight = layer.weight[:, :, None, :] if one_d else layer.weight
    pair = lambda v: (1, v[0]) if one_d else tuple(v)  # noqa: E731
    pad = lambda v: (0, v[0]) if one_d else tuple(v)  # noqa: E731
    _type(group, "conv")
    group.create_dataset("shape", data=np.array(_chw(layer.out_shape), dtype=np.int64))
    group.create_dataset("inChannels", data=int(layer.in_shape[0]))
    group.create_dataset("outChannels", data=int(layer.weight.shape[0]))
    group.create_dataset("kernelSize", data=np.array(weight.shape[2:], dtype=np.int64))
    group.create_dataset("stride", data=np.array(pair(layer.stride), dtype=np.int64))
    group.create_dataset("padding", data=np.array(pad(layer.padding), dtype=np.int64))
    group.create_dataset("dilation", data=np.array([1, 1], dtype=np.int64))
    group.create_dataset("groups", data=int(layer.groups))
    group.create_dataset("weight", data=weight.astype(np.int16))
    bias = _netx_bias(layer)
    if bias is not None:
        # netx takes a bias shaped like its (W, H, C) neurons as per-neuron (blocks/process.py:59)
        group.create_dataset("bias", data=bias.reshape(_chw(layer.out_shape)).transpose(2, 1, 0))
    _write_neuron(group.create_group("neuron"), layer.neurons)


def _write_neuron(group: h5py.Group, neurons: ir.CubaNeurons) -> None:
    _type(group, "CUBA")
    group.create_dataset("iDecay", data=int(neurons.i_decay))
    group.create_dataset("vDecay", data=int(neurons.v_decay))
    group.create_dataset("vThMant", data=int(neurons.vth_mant))
    group.create_dataset("refDelay", data=int(neurons.ref_delay))
    group.create_dataset("gradedSpike", data=bool(neurons.graded_spike))


def _netx_bias(layer: ir.SynapticLayer) -> np.ndarray | None:
    """The bias mantissas for netx's fixed ``bias_exp = 6``, or a refusal when they are not exact."""
    neurons = layer.neurons
    if neurons.bias_mant is None:
        return None
    exp = neurons.bias_exp
    # Lava's scale_bias: bias_mant << bias_exp (an arithmetic right shift below 0)
    effective = scaled_bias(neurons.bias_mant, exp)
    mant, rest = np.divmod(effective, 2**BIAS_EXP)
    if rest.any():
        raise QuantizationError(
            f"layer {layer.name!r}: bias_mant << bias_exp (bias_exp = {exp}) is not a multiple of "
            f"2^{BIAS_EXP} for {int((rest != 0).sum())} neurons: netx fixes bias_exp = {BIAS_EXP} "
            "(lava/lib/dl/netx/hdf5.py:158); quantize the bias with bias_exp >= 6 for netx"
        )
    if mant.min() < ir.BIAS_MANT_MIN or mant.max() > ir.BIAS_MANT_MAX:
        raise QuantizationError(
            f"layer {layer.name!r}: the bias needs mantissas in [{mant.min()}, {mant.max()}] with netx's "
            f"bias_exp = {BIAS_EXP}, beyond the 13-bit register [{ir.BIAS_MANT_MIN}, {ir.BIAS_MANT_MAX}]"
        )
    return mant.astype(np.int16)


def _check_exponent(network: ir.Network, layer: ir.SynapticLayer, synaptic_index: int) -> None:
    graded_first = network.graded_payloads and synaptic_index == 0
    expected = -INPUT_SHIFT if graded_first else 0
    if layer.weight_exp != expected:
        raise FormatError(
            f"layer {layer.name!r}: weight_exp = {layer.weight_exp}; a netx file holds no weight "
            "exponent (netx derives one from the weights, lava/lib/dl/netx/utils.py:80), so only 0 "
            "(and -8 on the first layer for graded input, kept in the /toolchain group) can be written"
        )


def _check_dense_weights(layer: ir.Dense) -> None:
    """Refuse the weight matrices netx's ``optimize_weight_bits`` (``utils.py:80-158``) mishandles."""
    low, high = int(layer.weight.min()), int(layer.weight.max())
    if low == 0 and high == 0:
        raise FormatError(
            f"layer {layer.name!r}: all weights are 0; netx's optimize_weight_bits divides by the "
            "largest weight (lava/lib/dl/netx/utils.py:131) and cannot load the layer"
        )
    if high <= 0 and (-low) & (-low - 1) == 0:
        raise FormatError(
            f"layer {layer.name!r}: all weights are <= 0 and the smallest, {low}, is a power of two: "
            "netx scales it to -256 (lava/lib/dl/netx/utils.py:129), which Lava's inhibitory sign mode "
            "clips to -255 and truncates (lava/utils/weightutils.py: clip_weights, truncate_weights)"
        )


def _chw(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An IR shape in the file's (C, H, W) order: a 1-D ``(C, L)`` becomes ``(C, 1, L)``."""
    return (shape[0], 1, shape[1]) if len(shape) == 2 else tuple(shape)


def _whc(shape: tuple[int, ...]) -> tuple[int, ...]:
    c, h, w = _chw(shape)
    return (w, h, c)


# ----------------------------------------------------------------------------------------------
# reading


def read_netx(
    path: str | Path,
    *,
    time_steps: int | None = None,
    input_encoding: ir.InputEncoding | None = None,
    isolated: bool = True,
) -> ir.Network:
    """Read a netx HDF5 file (ours, or one slayer's ``export_hdf5`` wrote) as a deployment graph.

    ``time_steps`` and ``input_encoding`` default to the values in the file's ``/toolchain`` group
    (given, they take precedence over it); a file without one (written by slayer) states neither,
    so both keyword arguments are needed (on the command line: ``--time-steps`` and
    ``--input-encoding``, the flags the error names). Raises
    :class:`~toolchain.errors.FormatError` naming the file and key for a missing, truncated or
    corrupt file, an unsupported layer, an absurd size or an invalid value.

    ``isolated`` (the default where ``os.fork`` exists) parses in a forked child process: libhdf5
    itself can crash (a segmentation fault) or loop on a corrupt file (found by
    ``benchmarks/fuzz_netx.py``), which no ``except`` can catch; the child's death or a read longer
    than :data:`READ_TIMEOUT_S` becomes a :class:`~toolchain.errors.FormatError` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such netx file")
    if isolated and CAN_ISOLATE:
        return _read_isolated(path, time_steps, input_encoding)
    return _read_in_process(path, time_steps, input_encoding)


#: the longest a (forked) read may take before it is stopped as a hang
READ_TIMEOUT_S = 120.0


def _read_in_process(path: Path, time_steps: int | None, input_encoding: str | None) -> ir.Network:
    try:
        handle = h5py.File(path, "r")
    except Exception as exc:  # h5py raises OSError, but a corrupt superblock may raise anything
        raise FormatError(f"{path}: not a readable HDF5 file ({_first_line(exc)})") from None
    try:
        with handle:
            file_links(handle, path, limit=MAX_OBJECTS)  # names that are not UTF-8 are refused first
            return _Reader(path, handle).network(time_steps, input_encoding)
    except ToolchainError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{path}: {exc}") from None
    except Exception as exc:  # anything h5py/numpy raise on a corrupt file: one line naming the file
        raise FormatError(f"{path}: corrupt netx file ({type(exc).__name__}: {_first_line(exc)})") from None


def _read_isolated(path: Path, time_steps: int | None, input_encoding: str | None) -> ir.Network:
    """:func:`_read_in_process` in a forked child (:func:`toolchain.isolation.run_isolated`)."""
    return run_isolated(
        lambda: _read_in_process(path, time_steps, input_encoding),
        path,
        timeout_s=READ_TIMEOUT_S,
        what="netx file",
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


class _Reader:
    """Reads one open file, checking every link, size and value before it is used."""

    def __init__(self, path: Path, handle: h5py.File) -> None:
        self.path = path
        self.handle = handle
        self.elements = 0

    def fail(self, where: str, what: str) -> FormatError:
        return FormatError(f"{self.path}: {where}: {what}")

    # -- low-level access ---------------------------------------------------------------------

    def child(self, group: h5py.Group, key: str, where: str, kind: type) -> Any:
        link = group.get(key, getlink=True)
        if link is None:
            raise self.fail(where, f"missing {'group' if kind is h5py.Group else 'dataset'} {key!r}")
        if not isinstance(link, h5py.HardLink):
            raise self.fail(f"{where}/{key}", f"is a {type(link).__name__}; only plain datasets and groups")
        obj = group[key]
        if not isinstance(obj, kind):
            raise self.fail(f"{where}/{key}", f"expected a {kind.__name__}, found a {type(obj).__name__}")
        return obj

    def array(
        self, group: h5py.Group, key: str, where: str, *, max_elements: int | None = None
    ) -> np.ndarray:
        """A numeric dataset as integers: sizes checked before reading, values finite and integral."""
        dataset = self.child(group, key, where, h5py.Dataset)
        name = f"{where}/{key}"
        if dataset.dtype.kind not in "iufb":
            raise self.fail(name, f"expected numbers, found dtype {dataset.dtype}")
        if dataset.external:
            raise self.fail(name, "data stored in external files is not read")
        size = math.prod(dataset.shape) if dataset.shape is not None else 0
        limit = MAX_FILE_ELEMENTS if max_elements is None else max_elements
        if dataset.shape is None or size > limit or self.elements + size > MAX_FILE_ELEMENTS:
            raise self.fail(name, f"shape {dataset.shape} is beyond what the reader accepts ({limit} values)")
        self.elements += size
        values = np.asarray(dataset[()])
        if values.dtype.kind == "f":
            if not np.isfinite(values).all():
                raise self.fail(name, "holds NaN or infinite values")
            if (np.abs(values) > 2**31).any() or (values != np.round(values)).any():
                raise self.fail(name, "holds values that are not integers (netx would truncate them)")
        elif values.dtype.kind == "u" and values.size and values.max() > 2**31:
            raise self.fail(name, f"holds the value {values.max()}, beyond any register")
        elif values.dtype.kind == "i" and values.size and np.abs(values.astype(np.float64)).max() > 2**31:
            raise self.fail(name, "holds values beyond any register")
        return values.astype(np.int64)

    def scalar(self, group: h5py.Group, key: str, where: str) -> int:
        values = self.array(group, key, where, max_elements=1)
        if values.size != 1:
            raise self.fail(f"{where}/{key}", f"expected one number, found shape {values.shape}")
        return int(values.reshape(-1)[0])

    def pair(self, group: h5py.Group, key: str, where: str) -> tuple[int, int]:
        """A conv parameter: a scalar or (H, W)."""
        values = self.array(group, key, where, max_elements=2).reshape(-1)
        if values.size == 1:
            return int(values[0]), int(values[0])
        if values.size != 2:
            raise self.fail(f"{where}/{key}", f"expected 1 or 2 numbers, found {values.size}")
        return int(values[0]), int(values[1])

    def string(self, group: h5py.Group, key: str, where: str) -> str:
        dataset = self.child(group, key, where, h5py.Dataset)
        name = f"{where}/{key}"
        if dataset.dtype.kind not in "SOU" or dataset.shape is None or math.prod(dataset.shape) != 1:
            raise self.fail(name, f"expected one string, found dtype {dataset.dtype} shape {dataset.shape}")
        if dataset.dtype.kind == "O" and h5py.check_string_dtype(dataset.dtype) is None:
            raise self.fail(name, f"expected a string, found dtype {dataset.dtype}")
        if dataset.dtype.kind in "SU" and dataset.dtype.itemsize > MAX_STRING_BYTES:
            # the header alone declares the size: refuse before h5py allocates it for a string never written
            raise self.fail(
                name, f"declares a string of {dataset.dtype.itemsize} bytes (at most {MAX_STRING_BYTES})"
            )
        if dataset.dtype.kind == "O" and dataset.id.get_storage_size() > MAX_STRING_BYTES:
            raise self.fail(name, f"holds a string of more than {MAX_STRING_BYTES} bytes")
        value = np.asarray(self.bounded_read(lambda: dataset[()], name)).reshape(-1)[0]
        if isinstance(value, bytes):
            try:
                value = value.decode("ascii")
            except UnicodeDecodeError:
                raise self.fail(name, "is not ASCII text") from None
        if not isinstance(value, str) or len(value) > 64:
            raise self.fail(name, f"expected a short string, found {value!r:.80}")
        return value

    def bounded_read(self, read: Any, name: str) -> Any:
        """``read()`` of a string, allocating at most :data:`STRING_READ_SLACK_BYTES` plus four
        times the file's size: a variable-length string's length is read from the file, and
        libhdf5 allocates it before reading the string (a fuzzed file: 932.8 MiB)."""
        try:
            with memory_limit(STRING_READ_SLACK_BYTES + 4 * self.path.stat().st_size):
                return read()
        except (MemoryError, OSError) as exc:
            what = f"declares a string longer than the file, or is unreadable ({_first_line(exc)})"
            raise self.fail(name, what) from None

    def shape(self, group: h5py.Group, where: str) -> tuple[int, ...]:
        values = self.array(group, "shape", where, max_elements=8).reshape(-1)
        if values.size == 0 or values.min() < 1 or math.prod(int(v) for v in values) > ir.MAX_LAYER_NEURONS:
            raise self.fail(f"{where}/shape", f"{tuple(values.tolist())} is not a valid layer size")
        return tuple(int(v) for v in values)

    # -- the network --------------------------------------------------------------------------

    def network(self, time_steps: int | None, input_encoding: str | None) -> ir.Network:
        sidecar = self.sidecar()
        layers_group = self.child(self.handle, "layer", "/", h5py.Group)
        count = len(layers_group)
        if not 1 <= count <= MAX_LAYERS:
            raise self.fail("/layer", f"holds {count} layers (expected 1 to {MAX_LAYERS})")
        keys = set(layers_group.keys())
        if keys != {str(i) for i in range(count)}:
            raise self.fail("/layer", f"layer groups must be named 0..{count - 1}, found {sorted(keys)[:8]}")
        encoding = input_encoding if input_encoding is not None else (sidecar or {}).get("input_encoding")
        steps = time_steps if time_steps is not None else (sidecar or {}).get("time_steps")
        if encoding is None or steps is None:
            missing = [
                flag
                for flag, value in (("--time-steps N", steps), ("--input-encoding graded|spikes", encoding))
                if value is None
            ]
            raise self.fail(
                "/toolchain",
                "missing (not written by the toolchain), so the file states neither the time steps nor "
                f"the input encoding: give {' and '.join(missing)}",
            )
        records = sidecar["layers"] if sidecar else None
        declared = tuple(sidecar["input_shape"]) if sidecar else None
        input_name = (sidecar or {}).get("input_layer_name") or "input"
        layers, input_shape, input_layer = self.layers(
            layers_group, count, encoding, records, declared, input_name
        )
        try:
            return ir.Network(
                name=sidecar["name"] if sidecar else self.path.stem,
                input_shape=input_shape,
                input_encoding=encoding,  # type: ignore[arg-type]
                time_steps=int(steps),
                layers=tuple(layers),
                synapse_delay_steps=1,
                metadata=sidecar["metadata"] if sidecar else {"source": f"netx file {self.path.name}"},
                readout=(sidecar or {}).get("readout") or ir.implied_readout(layers),
                input_layer=input_layer,
            )
        except ir.IRError as exc:
            raise self.fail("/layer", str(exc)) from None

    def layers(
        self,
        group: h5py.Group,
        count: int,
        encoding: str,
        records: list[dict[str, Any]] | None,
        declared: tuple[int, ...] | None,
        input_name: str = "input",
    ) -> tuple[list[ir.Layer], tuple[int, ...], ir.InputNeurons | None]:
        """The IR layers of ``/layer``, the input shape (``declared`` by ``/toolchain`` if present)
        and the input layer's neurons (slayer's ``Input`` block), if it has any."""
        start = 0
        first = self.child(group, "0", "/layer", h5py.Group)
        input_shape: tuple[int, ...] | None = None
        input_layer: ir.InputNeurons | None = None
        if self.string(first, "type", "/layer/0") == "input":
            input_shape = self.shape(first, "/layer/0")
            if "neuron" in first:
                input_layer = self.input_neurons(first, input_name)
            start = 1
        if declared is not None:
            if input_shape is not None and math.prod(declared) != math.prod(input_shape):
                raise self.fail(
                    "/toolchain", f"input_shape {declared} does not match /layer/0/shape {input_shape}"
                )
            input_shape = declared  # the IR's own shape, e.g. (C, L) for the file's (C, 1, L)
        if records is not None and len(records) != count - start:
            raise self.fail("/toolchain", f"describes {len(records)} layers, the file has {count - start}")
        layers: list[ir.Layer] = []
        shape = input_shape
        synaptic = 0
        for index in range(start, count):
            where = f"/layer/{index}"
            layer_group = self.child(group, str(index), "/layer", h5py.Group)
            kind = self.string(layer_group, "type", where)
            record = records[index - start] if records is not None else {}
            name = record.get("name") or f"layer{index}"
            if kind == "input":
                raise self.fail(where, "an input layer is only allowed first")
            if kind in UNSUPPORTED_TYPES:
                raise self.fail(where, f"layer type {kind!r} is not supported (netx cannot load it either)")
            if kind not in SUPPORTED_TYPES:
                raise self.fail(where, f"unknown layer type {kind!r} (expected one of {SUPPORTED_TYPES})")
            if records is not None and record["kind"] != kind:
                raise self.fail(where, f"type {kind!r}, the /toolchain group says {record['kind']!r}")
            if shape is None and kind != "dense":
                raise self.fail(where, f"a {kind} layer first needs an input layer with the input's shape")
            if kind == "flatten":
                assert shape is not None
                if records is not None and record.get("name") is None:
                    continue  # written only because netx needs it before a dense layer
                layer: ir.Layer = ir.Flatten(name, shape)
            else:
                graded_payloads = encoding == "graded" and synaptic == 0 and input_layer is None
                exp = -INPUT_SHIFT if graded_payloads else 0
                if kind == "dense":
                    layer = self.dense(layer_group, where, name, exp)
                else:
                    assert shape is not None
                    layer = self.conv(layer_group, where, name, exp, shape, record.get("dims", 2))
                synaptic += 1
            if shape is None:
                shape = layer.in_shape
            if math.prod(layer.in_shape) != math.prod(shape):
                raise self.fail(
                    where, f"expects {math.prod(layer.in_shape)} inputs, the layer before gives {shape}"
                )
            layers.append(layer)
            shape = layer.out_shape
        if not layers:
            raise self.fail("/layer", "holds no dense or conv layer")
        assert input_shape is not None or isinstance(layers[0], ir.Dense)
        return layers, input_shape if input_shape is not None else layers[0].in_shape, input_layer

    def input_neurons(self, group: h5py.Group, name: str) -> ir.InputNeurons:
        """slayer's ``Input`` block: its neurons and its ``weight`` / ``bias`` (netx's ``transform``,
        ``hdf5.py:279-289``: 64 and 0 when absent), each one number."""
        where = "/layer/0"
        transform = {}
        for key, default in (("weight", 64), ("bias", 0)):
            if key not in group:
                transform[key] = default
                continue
            values = self.array(group, key, where, max_elements=1).reshape(-1)
            if values.size != 1 or not np.isfinite(values[0]) or values[0] != np.round(values[0]):
                raise self.fail(f"{where}/{key}", f"expected one integer (units of 1/64), found {values}")
            transform[key] = int(values[0])
        neurons = self.neuron(group, where, None)
        return self.guard(
            where, lambda: ir.InputNeurons(name, neurons, transform["weight"], transform["bias"])
        )

    def guard(self, where: str, build: Any) -> Any:
        try:
            return build()
        except ir.IRError as exc:
            raise self.fail(where, str(exc)) from None

    def common(self, group: h5py.Group, where: str) -> None:
        for key in ("delay", "weight_rec"):
            if key in group:
                raise self.fail(f"{where}/{key}", "synaptic delays and recurrent weights are not supported")
        link = group.get("weight", getlink=True)
        if isinstance(link, h5py.HardLink) and isinstance(group["weight"], h5py.Group):
            raise self.fail(f"{where}/weight", "complex (real/imag) weights are not supported")

    def dense(self, group: h5py.Group, where: str, name: str, exp: int) -> ir.Dense:
        self.common(group, where)
        shape = self.shape(group, where)
        neurons = math.prod(shape)
        weight = self.array(group, "weight", where, max_elements=ir.MAX_LAYER_WEIGHTS)
        if weight.ndim == 1 and weight.size % neurons == 0:
            weight = weight.reshape(neurons, -1)
        if weight.ndim != 2 or weight.shape[0] != neurons:
            raise self.fail(f"{where}/weight", f"shape {weight.shape} does not match {neurons} neurons")
        bias = self.bias(group, where, (neurons,), None)
        cuba = self.neuron(group, where, bias)
        return self.guard(where, lambda: ir.Dense(name, weight, cuba, weight_exp=exp))

    def conv(
        self, group: h5py.Group, where: str, name: str, exp: int, in_shape: tuple[int, ...], dims: Any
    ) -> ir.Conv:
        self.common(group, where)
        out_chw = self.shape(group, where)
        if len(out_chw) != 3:
            raise self.fail(f"{where}/shape", f"a conv layer needs (C, H, W), found {out_chw}")
        weight = self.array(group, "weight", where, max_elements=ir.MAX_LAYER_WEIGHTS)
        if weight.ndim == 5 and weight.shape[4] == 1:
            weight = weight[..., 0]  # slayer's kernels carry a unit time axis
        if weight.ndim != 4:
            raise self.fail(f"{where}/weight", f"expected [C_out, C_in, kH, kW], found shape {weight.shape}")
        stride, padding = self.pair(group, "stride", where), self.pair(group, "padding", where)
        dilation = self.pair(group, "dilation", where) if "dilation" in group else (1, 1)
        groups = self.scalar(group, "groups", where) if "groups" in group else 1
        if dilation != (1, 1):
            raise self.fail(f"{where}/dilation", f"{dilation}: only dilation 1 is supported")
        if groups < 1 or groups > weight.shape[0]:
            raise self.fail(f"{where}/groups", f"{groups} is not a valid number of groups")
        in_chw = _chw(in_shape)
        if len(in_chw) != 3:
            raise self.fail(where, f"a conv layer needs a (C, H, W) input, the layer before gives {in_shape}")
        if dims not in (1, 2):
            raise self.fail("/toolchain", f"layer {name!r}: dims must be 1 or 2, got {dims!r}")
        if dims == 1:
            if weight.shape[2] != 1 or stride[0] != 1 or padding[0] != 0 or in_chw[1] != 1:
                raise self.fail(
                    where, "the /toolchain group says 1-D, but the conv is not (1, k) over (C, 1, L)"
                )
            weight, stride_t, padding_t = weight[:, :, 0, :], (stride[1],), (padding[1],)
            in_ir: tuple[int, ...] = (in_chw[0], in_chw[2])
        else:
            stride_t, padding_t, in_ir = stride, padding, in_chw
        if len(in_shape) == 1 or math.prod(in_ir) != math.prod(in_shape):
            raise self.fail(where, f"a conv layer cannot follow a layer of shape {in_shape}")
        out_shape = (out_chw[0], out_chw[2]) if dims == 1 else out_chw
        bias = self.bias(group, where, out_shape, out_chw)
        cuba = self.neuron(group, where, bias)
        conv = self.guard(
            where,
            lambda: ir.Conv(name, weight, cuba, in_ir, stride_t, padding_t, groups=groups, weight_exp=exp),
        )
        if _chw(conv.out_shape) != out_chw:
            raise self.fail(
                f"{where}/shape", f"{out_chw} differs from the convolution's output {_chw(conv.out_shape)}"
            )
        return conv

    def bias(
        self, group: h5py.Group, where: str, out_shape: tuple[int, ...], out_chw: tuple[int, ...] | None
    ) -> np.ndarray | None:
        if "bias" not in group:
            return None
        bias = self.array(group, "bias", where, max_elements=max(math.prod(out_shape), 1))
        if out_chw is None:  # dense: one per neuron
            if bias.size != math.prod(out_shape):
                raise self.fail(f"{where}/bias", f"shape {bias.shape} does not match {out_shape} neurons")
            return bias.reshape(out_shape)
        channels = out_chw[0]
        if bias.ndim == 1 and bias.size == channels:  # per channel, as slayer writes it
            return np.broadcast_to(bias[:, None, None], out_chw).reshape(out_shape).copy()
        if bias.shape == (out_chw[2], out_chw[1], channels):  # per neuron, in netx's (W, H, C)
            return bias.transpose(2, 1, 0).reshape(out_shape).copy()
        raise self.fail(f"{where}/bias", f"shape {bias.shape} is neither ({channels},) nor (W, H, C)")

    def neuron(self, group: h5py.Group, where: str, bias: np.ndarray | None) -> ir.CubaNeurons:
        if "neuron" not in group and self.string(group, "type", where) == "dense":
            # netx's non-leaky integrator for a dense layer without neurons (hdf5.py:348-357)
            return self.guard(
                where, lambda: ir.CubaNeurons(**NEURONLESS_DENSE, bias_mant=bias, bias_exp=BIAS_EXP)
            )
        where = f"{where}/neuron"
        neuron = self.child(group, "neuron", where.rsplit("/", 1)[0], h5py.Group)
        kind = self.string(neuron, "type", where)
        if kind not in ("CUBA", "LOIHI"):
            raise self.fail(f"{where}/type", f"neuron type {kind!r} is not supported (only CUBA)")
        if "messageBits" in neuron and self.scalar(neuron, "messageBits", where) != 0:
            raise self.fail(f"{where}/messageBits", "graded output spikes are not supported")
        ref_delay = self.scalar(neuron, "refDelay", where) if "refDelay" in neuron else 1
        graded = self.scalar(neuron, "gradedSpike", where) if "gradedSpike" in neuron else 0
        values = {key: self.scalar(neuron, key, where) for key in ("iDecay", "vDecay", "vThMant")}
        return self.guard(
            where,
            lambda: ir.CubaNeurons(
                i_decay=values["iDecay"],
                v_decay=values["vDecay"],
                vth_mant=values["vThMant"],
                bias_mant=bias,
                bias_exp=BIAS_EXP,
                ref_delay=ref_delay,
                graded_spike=bool(graded),
            ),
        )

    def sidecar(self) -> dict[str, Any] | None:
        where = f"/{SIDECAR}"
        if SIDECAR not in self.handle:
            return None
        group = self.child(self.handle, SIDECAR, "/", h5py.Group)
        if "network" not in group.attrs:
            raise self.fail(where, "missing attribute 'network'")
        raw = group.attrs.get_id("network")
        if raw.get_storage_size() > MAX_SIDECAR_BYTES or raw.shape not in ((), None):
            raise self.fail(f"{where}.network", "is not one JSON string of a sane size")
        text = self.bounded_read(lambda: group.attrs["network"], f"{where}.network")
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="strict")
        if not isinstance(text, str):
            raise self.fail(f"{where}.network", f"expected a JSON string, found {type(text).__name__}")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise self.fail(f"{where}.network", f"invalid JSON ({_first_line(exc)})") from None
        return _check_sidecar(data, lambda what: self.fail(f"{where}.network", what))


def _check_sidecar(data: Any, fail: Any) -> dict[str, Any]:
    expected = {
        "name": str,
        "input_shape": list,
        "input_encoding": str,
        "time_steps": int,
        "synapse_delay_steps": int,
        "layers": list,
        "metadata": dict,
    }
    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    for key, kind in expected.items():
        if not isinstance(data.get(key), kind) or isinstance(data.get(key), bool):
            raise fail(f"{key!r} must be a {kind.__name__}")
    if data["input_encoding"] not in ir.INPUT_ENCODINGS:
        raise fail(f"input_encoding must be one of {ir.INPUT_ENCODINGS}")
    if not isinstance(data.get("input_layer_name", ""), str):
        raise fail("input_layer_name must be a string")
    if "readout" in data and data["readout"] not in ir.READOUTS:
        raise fail(f"readout must be one of {ir.READOUTS}")
    if data["synapse_delay_steps"] != 1:
        raise fail("synapse_delay_steps must be 1 (netx's synapses)")
    if not all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= ir.MAX_LAYER_NEURONS
        for v in data["input_shape"]
    ):
        raise fail("input_shape must be positive integers")
    if not 1 <= data["time_steps"] <= 2**31:
        raise fail("time_steps must be a positive integer")
    for record in data["layers"]:
        if (
            not isinstance(record, dict)
            or not isinstance(record.get("kind"), str)
            or not isinstance(record.get("name"), str | None)
        ):
            raise fail("each layer record needs a 'kind' string and a 'name' (string or null)")
    return data


__all__ = ["FORMAT_VERSION", "netx_input_shape", "read_netx", "write_netx"]
