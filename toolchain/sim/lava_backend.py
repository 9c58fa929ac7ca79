"""The Lava backend: a netx file run in Lava (``Loihi2SimCfg(select_tag="fixed_pt")``) on the CPU.

:func:`simulate_lava` loads the file with lava-dl's ``netx.hdf5.Network`` for every sample and runs
it for the network's ``time_steps`` steps:

- the input comes from a ``RingBuffer`` source process holding the sample's ``T`` steps (0/1 spikes,
  or the 8-bit graded payloads ``round(x * 255)``: then netx is built with
  ``input_message_bits = 8``) and connected to the first layer's input port;
- a ``potential`` readout (an output layer that never fires) is read from its LIF process's ``v``
  after every step (the run advances one step at a time then), in Lava's integers;
- every layer's spikes go to an ``Extractor`` process (``lava.proc.io.extractor``), which hands one
  whole vector per step to this process through a channel. A ``RingBuffer`` sink read with
  ``data.get()`` moves one value per message (seconds for a ``256 x 100`` buffer); the extractor
  moves one message per step, so reading every layer costs about as much as reading the output.
- netx computes each dense layer's weight exponent itself (``optimize_weight_bits``: weights shifted
  left by ``k`` bits, exponent ``-k``) and ignores the file's; the exponent of the deployment graph
  (``-8`` for graded input) is added to it through the synapse's ``weight_exp`` process parameter.
  Lava's fixed-point ``Conv`` declares a ``weight_exp`` but does not apply it;
  :mod:`toolchain.lava_compat` (fix 5) makes it shift the sums as the dense model does, and the
  graph's exponent is set on the conv's ``weight_exp`` variable, so graded input into a first conv
  layer runs exactly.

Each sample gets a fresh network, compiled and started: Lava cannot re-initialise a runtime (a
second ``create_runtime`` from the same executable hangs) and a conv synapse's buffer is no ``Var``
that could be reset, so one long run would leak state between samples. Start-up (load, compile,
start the actor processes), stepping and reading are timed separately.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolchain import ir
from toolchain.activity import Activity, LayerCounts
from toolchain.errors import SimulationError
from toolchain.sim.reference import (
    SimulationResult,
    SimulationTiming,
    check_inputs,
    layer_counts_template,
    readout,
    scores,
)


@dataclass(frozen=True)
class LavaTiming:
    """Seconds spent per phase over all samples: ``startup_s`` (netx load, compile, runtime start),
    ``run_s`` (the ``T`` steps), ``read_s`` (receiving the extracted spikes and stopping); and each
    sample's ``T`` steps alone, ``run_s_per_sample``."""

    startup_s: float
    run_s: float
    read_s: float
    samples: int
    time_steps: int
    run_s_per_sample: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, float | list[float]]:
        steps = self.samples * self.time_steps
        return {
            "startup_s": self.startup_s,
            "run_s": self.run_s,
            "read_s": self.read_s,
            "startup_per_sample_s": self.startup_s / self.samples if self.samples else 0.0,
            "per_step_s": self.run_s / steps if steps else 0.0,
            "run_s_per_sample": list(self.run_s_per_sample),
            "per_sample_s": (self.startup_s + self.run_s + self.read_s) / self.samples
            if self.samples
            else 0.0,
        }


def _lava_shape_map(ir_shape: tuple[int, ...], lava_shape: tuple[int, ...], what: str) -> bool:
    """Whether a layer's ``(C, H, W)`` values map onto Lava's ``(W, H, C)`` by reversing the axes
    (``True``) or feed a flat dense port in C order (``False``); anything else is refused."""
    if len(lava_shape) == 1 and math.prod(lava_shape) == math.prod(ir_shape):
        return False  # a dense layer's port: the values flattened in C order
    reversed_shape = tuple(reversed(ir_shape))
    squeeze = tuple(s for s in reversed_shape if s != 1)
    if math.prod(lava_shape) == math.prod(ir_shape) and squeeze == tuple(s for s in lava_shape if s != 1):
        return True
    raise SimulationError(f"{what}: Lava's shape {lava_shape} does not match the network's {ir_shape}")


def _to_lava(
    values: np.ndarray, ir_shape: tuple[int, ...], lava_shape: tuple[int, ...], transpose: bool
) -> np.ndarray:
    """``values`` ``[T, *ir_shape]`` as Lava's ``[*lava_shape, T]``."""
    steps = values.shape[0]
    if transpose:
        values = values.transpose(0, *range(values.ndim - 1, 0, -1))
    return np.moveaxis(values.reshape(steps, *lava_shape), 0, -1)


def _from_lava(values: np.ndarray, ir_shape: tuple[int, ...], transpose: bool) -> np.ndarray:
    """Lava's per-step vectors ``[T, *lava_shape]`` as ``[T, *ir_shape]``."""
    steps = values.shape[0]
    if transpose:
        values = values.reshape(steps, *reversed(ir_shape))
        return values.transpose(0, *range(values.ndim - 1, 0, -1))
    return values.reshape(steps, *ir_shape)


#: a Lava run expected to take longer than this gets a warning with its estimate
LONG_LAVA_RUN_S = 180.0


class LavaProgress:
    """The progress of a Lava run, sample by sample, for people: a line on each sample on a
    terminal, else a line every 10% or 30 s, each with the time left; after the first sample, a
    warning with the estimated time when the whole run will take more than :data:`LONG_LAVA_RUN_S`.

    Call it with the number of samples done (``simulate_lava(..., progress=LavaProgress(n))``).
    """

    def __init__(
        self,
        samples: int,
        *,
        label: str = "lava",
        stream: Any = None,
        tty: bool | None = None,
        clock: Any = time.perf_counter,
    ) -> None:
        import sys

        self.samples = samples
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.last_line = self.start
        self.last_done = 0

    def __call__(self, done: int) -> None:
        now = self.clock()
        per_sample_s = (now - self.start) / max(done, 1)
        left_s = per_sample_s * (self.samples - done)
        if done == 1 and per_sample_s * self.samples > LONG_LAVA_RUN_S:
            print(
                f"warning: Lava will take about {_duration(per_sample_s * self.samples)} for {self.samples} "
                f"samples ({per_sample_s:.1f} s each); ask for fewer samples to finish sooner",
                file=self.stream,
                flush=True,
            )
        text = f"{self.label}: {done}/{self.samples} samples, {per_sample_s:.2f} s each"
        elapsed = f", {_duration(now - self.start)} in all"
        text += f", about {_duration(left_s)} left" if done < self.samples else elapsed
        if self.tty:
            end = "" if done < self.samples else "\n"
            print(f"\r{text}", end=end, file=self.stream, flush=True)
        elif (
            done in (1, self.samples)
            or done - self.last_done >= max(1, self.samples // 10)
            or now - self.last_line >= 30
        ):
            print(text, file=self.stream, flush=True)
            self.last_line, self.last_done = now, done


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def simulate_lava(
    netx_path: str | Path,
    inputs: np.ndarray,
    *,
    network: ir.Network | None = None,
    record_spikes: bool = False,
    progress: Any = None,
) -> SimulationResult:
    """Run the netx file ``netx_path`` in Lava on ``inputs``, sample by sample.

    ``inputs`` are as :func:`toolchain.sim.reference.simulate` takes them. ``network`` is the file's
    deployment graph (read with :func:`toolchain.formats.netx.read_netx` when not given): it gives
    the input encoding, the time steps, the layer names and the weight exponents. The activity holds
    the spikes of every layer (Lava measures nothing else; the static counts are the graph's, the
    other activity counts are 0). ``progress``, if given, is called with the number of samples done.
    """
    from toolchain import lava_compat

    path = Path(netx_path)
    if not path.is_file():
        raise SimulationError(f"{path}: netx file not found")
    if network is None:
        from toolchain.formats.netx import read_netx

        network = read_netx(path)
    x_all = check_inputs(network, inputs).numpy()
    graded = network.input_encoding == "graded"
    samples = int(x_all.shape[0] if graded else x_all.shape[1])
    steps = network.time_steps
    synaptic = network.synaptic_layers()
    lava = lava_compat.import_lava()
    from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel
    from lava.proc.io.source import RingBuffer as Source

    run_cfg = lava.run_configs.Loihi2SimCfg(
        select_tag="fixed_pt", exception_proc_model_map={Extractor: PyLoihiExtractorModel}
    )
    counts = np.zeros((samples, network.num_classes), dtype=np.int64)
    read_v = network.readout == "potential"
    potentials = np.zeros((steps, samples, network.num_classes), dtype=np.int64) if read_v else None
    totals = np.zeros(len(synaptic), dtype=np.int64)
    recorded: dict[str, np.ndarray] | None = (
        {layer.name: np.zeros((steps, samples, *layer.out_shape), np.uint8) for layer in synaptic}
        if record_spikes
        else None
    )
    startup_s = run_s = read_s = 0.0
    run_s_per_sample: list[float] = []
    input_layer = network.input_layer
    if recorded is not None and input_layer is not None:
        recorded = {input_layer.name: np.zeros((steps, samples, *network.input_shape), np.uint8), **recorded}
    for sample in range(samples):
        start = time.perf_counter()
        try:
            net = lava.netx.hdf5.Network(
                net_config=str(path), input_message_bits=8 if network.graded_payloads else 0
            )
        except (RuntimeError, ValueError, KeyError, OSError, NotImplementedError) as exc:
            raise SimulationError(
                f"{path}: lava-dl's netx cannot load it ({type(exc).__name__}: {exc})"
            ) from None
        blocks = list(net.layers)
        in_block = blocks.pop(0) if input_layer is not None else None
        _check_blocks(path, network, blocks)
        # the input neurons' a_in (as lava-dl's tutorials feed it), else the network's input port
        port = net.inp if in_block is None else in_block.neuron.a_in
        in_transpose = _lava_shape_map(network.input_shape, tuple(port.shape), f"{path}: input")
        step_inputs = (
            np.broadcast_to(x_all[sample], (steps, *network.input_shape)) if graded else x_all[:, sample]
        )
        if input_layer is not None:
            step_inputs = input_layer.current(np.asarray(step_inputs), graded)
        source = Source(
            data=_to_lava(
                np.asarray(step_inputs), network.input_shape, tuple(port.shape), in_transpose
            ).astype(np.int32)
        )
        source.s_out.connect(port)
        extractors = []
        transposes = []
        populations: list[tuple[str, tuple[int, ...], Any]] = [
            (layer.name, layer.out_shape, block) for layer, block in zip(synaptic, blocks, strict=True)
        ]
        if in_block is not None and recorded is not None:
            populations.insert(0, (input_layer.name, network.input_shape, in_block))  # type: ignore[union-attr]
        for name, out_shape, block in populations:
            shape = tuple(block.out.shape)
            transposes.append(_lava_shape_map(out_shape, shape, f"{path}: layer {name!r}"))
            extractor = Extractor(shape=shape, buffer_size=steps)
            block.out.connect(extractor.in_port)
            extractors.append(extractor)
        try:
            source.create_runtime(run_cfg=run_cfg)
            started = time.perf_counter()
            if potentials is None:
                source.run(condition=lava.run_conditions.RunSteps(num_steps=steps))
            else:
                out_layer, out_block = synaptic[-1], blocks[-1]
                for t in range(steps):
                    source.run(condition=lava.run_conditions.RunSteps(num_steps=1))
                    v = np.asarray(out_block.neuron.v.get())[None]
                    potentials[t, sample] = _from_lava(v, out_layer.out_shape, transposes[-1]).reshape(-1)
            ran = time.perf_counter()
            first_synaptic = len(populations) - len(synaptic)  # 1 when the input neurons are recorded
            for index, ((name, out_shape, _), extractor, transpose) in enumerate(
                zip(populations, extractors, transposes, strict=True)
            ):
                raw = np.stack([np.asarray(extractor.receive()) for _ in range(steps)])
                spikes = _from_lava(raw, out_shape, transpose).astype(np.int64)
                if recorded is not None:
                    recorded[name][:, sample] = spikes
                if index >= first_synaptic:
                    totals[index - first_synaptic] += int(spikes.sum())
                if index == len(populations) - 1:
                    counts[sample] = spikes.reshape(steps, -1).sum(axis=0)
        finally:
            source.stop()
        done = time.perf_counter()
        startup_s += started - start
        run_s += ran - started
        run_s_per_sample.append(ran - started)
        read_s += done - ran
        if progress is not None:
            progress(sample + 1)
    activity = _activity(network, totals, samples)
    timing = LavaTiming(startup_s, run_s, read_s, samples, steps, tuple(run_s_per_sample))
    return SimulationResult(
        counts=counts,
        predictions=readout(scores(network.readout, counts, potentials)),
        potentials=potentials,
        readout=network.readout,
        activity=activity,
        spikes=recorded,
        timing=SimulationTiming(startup_s, run_s + read_s, samples, steps),
        metadata={"lava_timing": timing.to_dict()},
    )


def _check_blocks(path: Path, network: ir.Network, blocks: list[Any]) -> None:
    """Check that netx built the graph's synaptic layers; set their exponents as the graph says."""
    synaptic = network.synaptic_layers()
    if len(blocks) != len(synaptic):
        raise SimulationError(
            f"{path}: netx built {len(blocks)} layers, the network has {len(synaptic)} synaptic layers "
            f"({', '.join(layer.name for layer in synaptic)})"
        )
    for layer, block in zip(synaptic, blocks, strict=True):
        kind = type(block).__name__
        if layer.weight_exp == 0:
            continue
        if kind == "Conv":  # a Var of Lava's Conv, applied by toolchain.lava_compat's fix 5
            var = block.synapse.weight_exp
            var.init = np.asarray(var.init).reshape(-1) + layer.weight_exp
            continue
        if kind != "Dense":
            raise SimulationError(
                f"{path}: layer {layer.name!r}: weight_exp = {layer.weight_exp}, but Lava's fixed-point "
                f"{kind} applies no weight exponent"
            )
        params = block.synapse.proc_params
        params.overwrite("weight_exp", int(params.get("weight_exp", 0)) + layer.weight_exp)


def _activity(network: ir.Network, totals: np.ndarray, samples: int) -> Activity:
    per = 1.0 / samples if samples else 0.0
    layers = [
        LayerCounts(
            **{
                **template.to_dict(),
                "spikes_per_sample": float(total) * per,
                "synops_per_sample": 0.0,
                "active_updates_per_sample": 0.0,
                "idle_updates_per_sample": 0.0,
                "input_events_per_sample": 0.0,
            }
        )
        for template, total in zip(layer_counts_template(network), totals, strict=True)
    ]
    return Activity(
        network=network.name,
        source="lava",
        samples=samples,
        time_steps=network.time_steps,
        layers=tuple(layers),
        metadata={"measured": ["spikes_per_sample"]},
    )


__all__ = ["LONG_LAVA_RUN_S", "LavaProgress", "LavaTiming", "simulate_lava"]
