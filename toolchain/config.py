"""Recipes: one TOML file per model (``models/<name>/recipe.toml``) parsed into typed dataclasses.

A recipe says what to train and where it goes: dataset, input encoding, time steps, architecture,
neuron parameters, training settings, export formats and hardware target. Every key is validated on
load; an unknown key, a wrong type or an impossible value raises :class:`RecipeError` naming the
file and the key (``models/x/recipe.toml: [neuron].voltage_decay: expected a number in [0, 1], got
1.5``). ``docs/recipes.md`` lists every key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from toolchain.errors import RecipeError
from toolchain.schema import Validated, bounded, choice, from_mapping, to_mapping


@dataclass
class DataConfig(Validated):
    """``[data]``: which dataset, and its loader's own options (``[data.options]``)."""

    dataset: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EncodingConfig(Validated):
    """``[encoding]``: how a sample becomes input over time.

    ``direct`` repeats the analog input every step, ``rate`` draws Bernoulli spikes with p = value,
    ``latency`` fires each input once (earlier for larger values), ``spikes`` takes data that is
    already a spike train ``[T, ...]``.
    """

    scheme: str = choice("direct", "rate", "latency", "spikes", default="direct")
    time_steps: int = bounded(8, ge=1, le=100_000)


@dataclass
class NeuronConfig(Validated):
    """``[neuron]``: CUBA-LIF parameters (see :mod:`toolchain.snn.dynamics`) and the surrogate.

    Decays are the fractions of current / voltage lost per time step, in [0, 1]: a
    ``current_decay`` of 1 makes the current equal to the input (a plain LIF).
    ``reset``: ``zero`` (Loihi) or ``subtract`` (the soft reset of snnTorch/SpikingJelly; no Loihi
    equivalent). ``numeric = "fixed_point"`` trains on Loihi's integer arithmetic (weights on the 8-bit grid,
    decays k/4096, threshold x 64; see :mod:`toolchain.snn.loihi`). ``synapse_delay`` is the
    steps a spike takes to reach the next layer's current: 1 as in Lava (its Dense process delivers
    a step later), 0 for the convention of most training frameworks.
    """

    model: str = choice("cuba", default="cuba")
    threshold: float = bounded(1.0, gt=0)
    current_decay: float = bounded(1.0, ge=0, le=1)
    voltage_decay: float = bounded(0.1, ge=0, le=1)
    surrogate: str = choice("sigmoid", "fast_sigmoid", "triangle", default="fast_sigmoid")
    surrogate_scale: float = bounded(10.0, gt=0)
    reset: str = choice("zero", "subtract", default="zero")
    numeric: str = choice("float", "fixed_point", default="float")
    synapse_delay: int = bounded(1, ge=0, le=1)


@dataclass
class ModelConfig(Validated):
    """``[model]``: the architecture (``docs/models.md``).

    ``mlp``: inputs -> ``hidden`` dense spiking layers -> one spiking neuron per class.
    ``conv1d`` (samples ``(features, frames)``) and ``vgg`` (images ``(C, H, W)``): one convolution
    layer per entry of ``channels`` (``kernel_size``, ``stride``, ``padding``), a ``pool`` of
    ``pool_size`` after each conv layer listed in ``pool_after`` (1-based), then ``hidden`` dense
    layers and the output layer. ``batch_norm`` applies to every dense/conv layer (the output too),
    ``dropout`` to every one but the output.
    The conv keys are ignored by ``mlp``. ``readout``: ``spike_count`` (the output layer's spikes
    summed over time) or ``potential`` (the output layer never fires and integrates its input; the
    logits are the time-mean of its synaptic input: the non-spiking linear readout of many SNN
    papers, exported as a population whose threshold no voltage reaches).
    """

    architecture: str = choice("mlp", "conv1d", "vgg", default="mlp")
    hidden: list[int] = bounded(default_factory=lambda: [128], ge=1)
    channels: list[int] = bounded(default_factory=lambda: [16, 32], ge=1)
    kernel_size: int = bounded(3, ge=1)
    stride: int = bounded(1, ge=1)
    padding: str = choice("same", "valid", default="same")
    pool_after: list[int] = bounded(default_factory=lambda: [1, 2], ge=1)
    pool: str = choice("sum", "avg", default="sum")
    pool_size: int = bounded(2, ge=2)
    batch_norm: bool = False
    dropout: float = bounded(0.0, ge=0, lt=1)
    readout: str = choice("spike_count", "potential", default="spike_count")

    def check(self) -> None:
        if self.architecture == "mlp":
            return
        if any(b <= a for a, b in zip(self.pool_after, self.pool_after[1:], strict=False)):
            raise ValueError(f"pool_after: expected increasing layer numbers, got {self.pool_after}")
        if self.pool_after and self.pool_after[-1] > len(self.channels):
            raise ValueError(
                f"pool_after: names conv layer {self.pool_after[-1]}, but channels = {self.channels} "
                f"has {len(self.channels)} layers"
            )


@dataclass
class TrainConfig(Validated):
    """``[train]``: optimisation settings. ``learning_rate`` is per step of the optimizer."""

    epochs: int = bounded(10, ge=1)
    batch_size: int = bounded(64, ge=1)
    learning_rate: float = bounded(1e-3, gt=0, le=10)
    optimizer: str = choice("adam", "sgd", default="adam")
    weight_decay: float = bounded(0.0, ge=0)
    #: bounded so that the per-epoch seeds derived from it fit torch's 64-bit generator
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    #: ``constant`` learning rate, or ``cosine``: annealed from ``learning_rate`` towards 0 over the
    #: epochs (the ANN teacher's over its own epochs), ``lr * (1 + cos(pi * (epoch - 1) / epochs)) / 2``
    schedule: str = choice("constant", "cosine", default="constant")
    device: str = choice("cpu", "cuda", "auto", default="cpu")
    #: after the ``epochs`` in float, this many more in Loihi fixed point at
    #: ``fixed_point_learning_rate`` (same ``schedule``): quantization-aware fine-tuning, with batch
    #: norm folded, every layer on the registers the export will write
    #: (:func:`toolchain.snn.numerics.apply_numerics`). The run's model is then a fixed-point model,
    #: whose export changes nothing. 0: none (the export quantizes the float model)
    fixed_point_epochs: int = bounded(0, ge=0)
    fixed_point_learning_rate: float = bounded(1e-4, gt=0, le=10)
    #: evaluate on the test split every this many epochs (and after the last), for the printed
    #: progress and ``history.csv``; reporting only, nothing is selected by it. 0: after the last only
    test_every_epochs: int = bounded(1, ge=0)


@dataclass
class DistillConfig(Validated):
    """``[distill]``: knowledge distillation from a teacher (``docs/training.md``); off by default.

    ``teacher``: ``none`` (no distillation), ``ann`` (the model's ANN twin, trained first in the
    same run for ``teacher_epochs``), ``run`` (the ``teacher.pt`` of an earlier run folder
    ``teacher_path``), ``onnx`` (an ONNX file ``teacher_path`` run with onnxruntime). The loss is
    ``(1 - alpha) * CE + alpha * KD``; ``loss``: ``kl`` (``temperature^2`` times the KL divergence
    of the softened distributions) or ``mse`` (of the logits).
    """

    teacher: str = choice("none", "ann", "run", "onnx", default="none")
    teacher_path: str = ""
    loss: str = choice("kl", "mse", default="kl")
    alpha: float = bounded(0.5, ge=0, le=1)
    temperature: float = bounded(4.0, gt=0)
    teacher_epochs: int = bounded(10, ge=1)
    teacher_learning_rate: float = bounded(1e-3, gt=0, le=10)
    cache_teacher_logits: bool = True

    def check(self) -> None:
        if self.teacher in ("run", "onnx") and not self.teacher_path:
            raise ValueError(f"teacher = {self.teacher!r} needs teacher_path (a run folder or an ONNX file)")


@dataclass
class RegularizationConfig(Validated):
    """``[regularization]``: penalties on spiking activity and on the logits; off by default.

    ``activation`` (``none``, ``l1``, ``l2``) of each layer's firing rates (spike counts per neuron
    and time step) times ``activation_weight``; ``layer_weights`` scales single layers by name
    (default 1 for every hidden spiking layer, 0 for the output layer); ``logits_weight`` (lambda)
    times the mean squared logit. See :mod:`toolchain.train.losses`.
    """

    activation: str = choice("none", "l1", "l2", default="none")
    activation_weight: float = bounded(0.0, ge=0)
    layer_weights: dict[str, float] = field(default_factory=dict)
    logits_weight: float = bounded(0.0, ge=0)

    def check(self) -> None:
        for name, weight in self.layer_weights.items():
            if not weight >= 0:
                raise ValueError(f"layer_weights.{name}: expected a number >= 0, got {weight}")
        if self.activation == "none" and self.activation_weight > 0:
            raise ValueError(
                f"activation_weight = {self.activation_weight} has no effect with activation = 'none' "
                "(set activation to 'l1' or 'l2')"
            )


@dataclass
class TTFSConfig(Validated):
    """``[ttfs]``: time-to-first-spike coding (``docs/ttfs.md``); off by default.

    ``enabled = true`` trains the surrogate DNN of Park & Yoon (2021) instead of the rate-coded SNN:
    the ANN twin of ``[model]`` with every hidden ReLU replaced by a temporal kernel of trainable
    time constant (init ``time_constant``) and delay (init ``time_delay``), window
    ``time_window`` steps; ``encode_input`` codes the input pixels by an input kernel too.
    ``relax_epochs`` (E): a layer uses the kernel with probability ``min(1, epoch / E)`` per
    training step, otherwise ReLU (0: always the kernel). ``kernel_reg`` (lambda) times
    ``sum (tau - tau_0)^2 + (t_d - t_d0)^2`` from epoch ``kernel_reg_from_epoch``;
    ``bn_reg`` times the expected spikes per sample modelled from the batch norms' gamma and beta
    from epoch ``bn_reg_from_epoch`` (needs ``[model].batch_norm``). Training rounds spike times
    to the nearest step (straight-through), from epoch ``ceil_from_epoch`` on (0: never) takes their
    ceiling as inference does (straight-through).
    """

    enabled: bool = False
    time_constant: float = bounded(2.0, gt=0)
    time_delay: float = bounded(0.0, ge=-1000, le=1000)
    time_window: int = bounded(8, ge=1, le=10_000)
    epsilon: float = bounded(1e-30, gt=0, lt=1)
    encode_input: bool = True
    relax_epochs: int = bounded(0, ge=0)
    kernel_reg: float = bounded(0.0, ge=0)
    kernel_reg_from_epoch: int = bounded(1, ge=1)
    bn_reg: float = bounded(0.0, ge=0)
    bn_reg_from_epoch: int = bounded(1, ge=1)
    ceil_from_epoch: int = bounded(0, ge=0)


@dataclass
class ExportConfig(Validated):
    """``[export]``: the formats ``toolchain export`` / ``run`` write."""

    formats: list[str] = choice("netx", "nir", "onnx", default_factory=lambda: ["netx", "nir", "onnx"])


@dataclass
class TargetConfig(Validated):
    """``[target]``: the hardware profile (``deploy/targets/<name>.toml``) for energy estimates."""

    name: str = "loihi"


@dataclass
class Recipe(Validated):
    """A whole recipe. ``name`` defaults to the recipe's folder name."""

    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)
    ttfs: TTFSConfig = field(default_factory=TTFSConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    target: TargetConfig = field(default_factory=TargetConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)

    @property
    def trained_numeric(self) -> str:
        """The numeric mode of the trained model: ``fixed_point`` when ``[neuron].numeric`` says so
        or ``[train].fixed_point_epochs`` fine-tuned it on Loihi's registers, else ``float``."""
        return "fixed_point" if self.train.fixed_point_epochs > 0 else self.neuron.numeric


def parse_recipe(table: dict[str, Any], source: str = "<recipe>", default_name: str = "recipe") -> Recipe:
    """Build a :class:`Recipe` from a parsed TOML table; ``source`` names the file in errors."""
    table = dict(table)
    table.setdefault("name", default_name)
    try:
        recipe = from_mapping(Recipe, table)
        _check_dataset(recipe)
    except RecipeError as exc:
        raise RecipeError(f"{source}: {exc}") from None
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate ``path`` (a ``recipe.toml``, or a folder containing one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "recipe.toml"
    if not path.is_file():
        raise RecipeError(
            f"{path}: recipe not found (expected a TOML file such as models/<name>/recipe.toml)"
        )
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:  # tomllib parses nested arrays and tables recursively
        raise RecipeError(f"{path}: not valid TOML (arrays or tables nested too deeply)") from None
    return parse_recipe(table, str(path), default_name=path.parent.name or "recipe")


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe (every default filled in) as TOML, atomically."""
    from toolchain.io import write_text

    write_text(path, dump_recipe(recipe))


def dump_recipe(recipe: Recipe) -> str:
    return tomli_w.dumps(recipe.to_dict())


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    """A copy of ``recipe`` with dotted-key overrides (``train.epochs=3``) validated like the file."""
    table = recipe.to_dict()
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = table
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                where = ".".join(parents[: depth + 1])
                raise RecipeError(f"{dotted}: {where} is a value, not a table; set {where} itself")
        node[leaf] = value
    return parse_recipe(table, f"recipe {recipe.name!r} with overrides", recipe.name)


def parse_assignments(assignments: list[str]) -> dict[str, Any]:
    """``["neuron.numeric=fixed_point", "model.hidden=[256, 256]"]`` as dotted-key overrides.

    A value is read as TOML (numbers, booleans, lists, quoted strings); a bare word that is not
    valid TOML is taken as a string. Raises :class:`RecipeError` for an item without ``=``.
    """
    overrides: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=3")
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except (tomllib.TOMLDecodeError, RecursionError):
            value = text
        overrides[key.strip()] = value
    return overrides


def _check_dataset(recipe: Recipe) -> None:
    if not recipe.name.strip() or len(recipe.name) > 200 or not recipe.name.isprintable():
        raise RecipeError(
            f"name: expected 1 to 200 printable characters (no control characters such as NUL or a "
            f"line break), got {recipe.name[:80]!r}"
        )
    if recipe.train.fixed_point_epochs and recipe.neuron.numeric == "fixed_point":
        raise RecipeError(
            "[train].fixed_point_epochs: the model already trains in fixed point ([neuron].numeric = "
            '"fixed_point"); fine-tuning in fixed point follows float training only'
        )
    if recipe.train.fixed_point_epochs and recipe.ttfs.enabled:
        raise RecipeError("[train].fixed_point_epochs: a TTFS network has no Loihi fixed-point mode")
    from toolchain.data import dataset_options  # the data stage validates its own options

    dataset_options(recipe.data.dataset, recipe.data.options)


__all__ = [
    "DataConfig",
    "DistillConfig",
    "EncodingConfig",
    "ExportConfig",
    "ModelConfig",
    "NeuronConfig",
    "Recipe",
    "RegularizationConfig",
    "TTFSConfig",
    "TargetConfig",
    "TrainConfig",
    "dump_recipe",
    "load_recipe",
    "parse_assignments",
    "parse_recipe",
    "save_recipe",
    "with_overrides",
]
