"""ONNX export of ANN twins and unrolled SNNs: onnx.checker, onnxruntime against torch, safe reading."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolchain.config import ModelConfig, NeuronConfig
from toolchain.data import dataset_shape
from toolchain.errors import ToolchainError
from toolchain.export.inspect import describe, format_description
from toolchain.export.onnx import OPSET, OnnxExportError, export_ann_onnx, export_snn_onnx
from toolchain.formats.onnx import OnnxFormatError, read_onnx, run_onnx
from toolchain.snn.ann import build_ann
from toolchain.snn.models import build_model
from toolchain.snn.neurons import CubaLIF
from toolchain.snn.numerics import apply_numerics
from toolchain.snn.surrogate import SurrogateSpike

TIME_STEPS = 8
#: (id, [model] table, sample shape, classes): the digits MLP, a CIFAR-like VGG with sum pooling
#: and batch norm, a GSC-like strided conv1d with batch norm and average pooling
CASES = [
    ("mlp-digits", {"architecture": "mlp", "hidden": [32, 16]}, (64,), 10),
    (
        "vgg-cifar",
        {"architecture": "vgg", "channels": [4, 8], "pool_after": [1, 2], "hidden": [16], "batch_norm": True},
        (3, 32, 32),
        10,
    ),
    (
        "conv1d-gsc",
        {
            "architecture": "conv1d",
            "channels": [8, 8],
            "stride": 2,
            "pool_after": [2],
            "pool": "avg",
            "hidden": [16],
            "batch_norm": True,
        },
        (10, 49),
        12,
    ),
]
IDS = [case[0] for case in CASES]
NEURON = NeuronConfig(threshold=0.5, current_decay=0.5, voltage_decay=0.1)


def _randomize_batch_norm(model: torch.nn.Module, seed: int) -> None:
    """Running statistics and affine parameters away from the identity, so that the test can fail."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=generator) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=generator) * 0.6 - 0.3)


def _snn(model: dict, shape: tuple[int, ...], classes: int, neuron: NeuronConfig = NEURON):
    torch.manual_seed(0)
    snn = build_model(ModelConfig(**model), neuron, shape, classes)
    with torch.no_grad():
        for parameter in snn.parameters():
            if parameter.dim() > 1:
                parameter.mul_(3.0)  # more spikes than at initialisation
    _randomize_batch_norm(snn, 1)
    return snn


def _inputs(shape: tuple[int, ...], batch: int, seed: int = 2) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed))


def _direct(x: torch.Tensor) -> torch.Tensor:
    return x.unsqueeze(0).expand(TIME_STEPS, *x.shape).contiguous()


@pytest.mark.parametrize(("name", "model", "shape", "classes"), CASES, ids=IDS)
def test_ann_twin_matches_torch(tmp_path, name, model, shape, classes):
    torch.manual_seed(0)
    ann = build_ann(ModelConfig(**model), shape, classes)
    _randomize_batch_norm(ann, 1)
    path = export_ann_onnx(ann, tmp_path / f"{name}.onnx", metadata={"recipe": name})
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    ann.eval()
    for batch in (1, 5):  # the batch axis is dynamic
        x = _inputs(shape, batch)
        with torch.no_grad():
            expected = ann(x).numpy()
        got = run_onnx(path, x.numpy())["logits"]
        assert got.shape == (batch, classes)
        assert np.abs(got - expected).max() <= 1e-5
    assert ann.training is False


@pytest.mark.parametrize(("name", "model", "shape", "classes"), CASES, ids=IDS)
def test_unrolled_snn_matches_torch(tmp_path, name, model, shape, classes):
    snn = _snn(model, shape, classes)
    snn.train()
    path = export_snn_onnx(snn, TIME_STEPS, tmp_path / f"{name}.onnx", record_spikes=True)
    assert snn.training  # restored
    assert all(isinstance(p.spike_fn, SurrogateSpike) for p in snn.modules() if isinstance(p, CubaLIF))
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert [o.version for o in loaded.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    snn.eval()
    x = _direct(_inputs(shape, 6))
    with torch.no_grad():
        expected = snn(x)
    got = run_onnx(path, x.numpy())
    assert got["spike_counts"].shape == (6, classes)
    assert np.abs(got["spike_counts"] - expected.logits.numpy()).max() <= 1e-5
    for layer, spikes in expected.spikes.items():
        differing = int(np.count_nonzero(got[f"spikes_{layer}"] != spikes.numpy()))
        assert differing == 0, f"{layer}: {differing} spikes differ (threshold ties?)"
        assert spikes.sum() > 0, f"{layer} is silent: the comparison would prove nothing"


def test_snn_without_recorded_spikes_has_one_output_and_any_batch(tmp_path):
    _, model, shape, classes = CASES[0]
    snn = _snn(model, shape, classes)
    path = export_snn_onnx(snn, TIME_STEPS, tmp_path / "mlp.onnx")
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["spike_counts"]
    snn.eval()
    for batch in (1, 9):
        x = _direct(_inputs(shape, batch, seed=batch))
        with torch.no_grad():
            expected = snn(x).logits.numpy()
        np.testing.assert_array_equal(run_onnx(path, x.numpy())["spike_counts"], expected)
    with pytest.raises(ToolchainError, match=r"onnxruntime failed on inputs \(4, 2, 64\)"):
        run_onnx(path, np.zeros((4, 2, 64), dtype=np.float32))  # T is fixed by the file


def test_fixed_point_mlp_exports_exactly_with_weights_on_loihi_grid(tmp_path):
    neuron = NeuronConfig(threshold=0.5, current_decay=0.5, voltage_decay=0.1, numeric="fixed_point")
    _, model, shape, classes = CASES[0]
    snn = _snn(model, shape, classes, neuron)
    apply_numerics(snn, neuron, "direct")
    x = _direct(_inputs(shape, 7).double())
    snn.eval()
    with torch.no_grad():
        before = snn(x)
    path = export_snn_onnx(snn, TIME_STEPS, tmp_path / "fixed.onnx", record_spikes=True)
    got = run_onnx(path, x.numpy())
    assert got["spike_counts"].dtype == np.float64
    np.testing.assert_array_equal(got["spike_counts"], before.logits.numpy())
    for layer, spikes in before.spikes.items():
        np.testing.assert_array_equal(got[f"spikes_{layer}"], spikes.numpy())
        assert spikes.sum() > 0
    with torch.no_grad():  # the model's parametrizations are back in place
        np.testing.assert_array_equal(snn(x).logits.numpy(), before.logits.numpy())
    assert all(torch.nn.utils.parametrize.is_parametrized(b.synapse.module) for b in snn.synaptic_blocks())
    description = describe(path)
    assert description["metadata"]["numeric"] == "fixed_point"
    weights = [t for t in description["initializers"] if len(t["shape"]) == 2]
    assert len(weights) == 3
    assert all(t["on_loihi_grid"] for t in weights)


def test_fixed_point_conv_is_refused_naming_the_layer(tmp_path):
    neuron = NeuronConfig(numeric="fixed_point")
    _, model, shape, classes = CASES[1]
    snn = _snn(model, shape, classes, neuron)
    apply_numerics(snn, neuron, "direct")
    with pytest.raises(OnnxExportError, match=r"layer 'conv1': a fixed-point model with conv layers"):
        export_snn_onnx(snn, TIME_STEPS, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_metadata_props(tmp_path):
    _, model, shape, classes = CASES[0]
    snn = _snn(model, shape, classes)
    metadata = {
        "recipe": "digits-demo",
        "encoding": {"scheme": "direct", "time_steps": TIME_STEPS},
        "classes": [str(i) for i in range(10)],
    }
    path = export_snn_onnx(snn, TIME_STEPS, tmp_path / "m.onnx", metadata=metadata)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["recipe"] == "digits-demo"
    assert props["encoding"] == '{"scheme": "direct", "time_steps": 8}'
    assert props["time_steps"] == "8"
    assert props["numeric"] == "float"
    assert props["toolchain.graph"] == "snn_unrolled"
    assert describe(path)["metadata"]["classes"] == [str(i) for i in range(10)]


@pytest.mark.parametrize("steps", [0, -1, 2.5, True, 10**6])
def test_bad_time_steps_are_refused(tmp_path, steps):
    _, model, shape, classes = CASES[0]
    with pytest.raises(OnnxExportError, match="time_steps"):
        export_snn_onnx(_snn(model, shape, classes), steps, tmp_path / "x.onnx")


def test_wrong_model_type_is_refused(tmp_path):
    _, model, shape, classes = CASES[0]
    with pytest.raises(OnnxExportError, match="expects an AnnNetwork"):
        export_ann_onnx(_snn(model, shape, classes), tmp_path / "x.onnx")
    with pytest.raises(OnnxExportError, match="expects a SpikingNetwork"):
        export_snn_onnx(build_ann(ModelConfig(**model), shape, classes), 4, tmp_path / "x.onnx")


@pytest.fixture(scope="module")
def small_onnx() -> bytes:
    _, _, shape, classes = CASES[0]
    torch.manual_seed(0)
    ann = build_ann(ModelConfig(architecture="mlp", hidden=[4]), shape, classes)
    with tempfile.TemporaryDirectory() as folder:
        return export_ann_onnx(ann, Path(folder) / "small.onnx").read_bytes()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda data: data[: len(data) // 2], "not a valid ONNX file"),
        (lambda data: b"\x08" + bytes(range(256)) * 4, "not a valid ONNX file"),
        (lambda data: b"\x08\x07", "not an ONNX model"),
    ],
    ids=["truncated", "garbage", "no-graph"],
)
def test_corrupt_onnx_files_fail_clearly(tmp_path, small_onnx, mutate, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(mutate(small_onnx))
    with pytest.raises(OnnxFormatError, match=message) as error:
        read_onnx(path)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_size_limit_is_checked_before_reading(tmp_path, small_onnx):
    path = tmp_path / "big.onnx"
    path.write_bytes(small_onnx)
    with pytest.raises(OnnxFormatError, match=r"beyond the 100-byte limit"):
        read_onnx(path, max_bytes=100)
    assert read_onnx(path).graph.node


def test_external_data_is_never_followed(tmp_path, small_onnx):
    model = onnx.load_model_from_string(small_onnx)
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../../etc/passwd"
    path = tmp_path / "external.onnx"
    path.write_bytes(model.SerializeToString())
    described = describe(path)
    assert described["initializers"][0]["external"] is True
    assert "min" not in described["initializers"][0]


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_onnx_reader_raises_only_toolchain_errors(small_onnx, data):
    """Mutated valid files (byte flips, truncation, insertion) give a description or a ToolchainError."""
    blob = bytearray(small_onnx)
    for _ in range(data.draw(st.integers(1, 8), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]), label="kind")
        at = data.draw(st.integers(0, max(0, len(blob) - 1)), label="offset")
        if kind == "flip":
            blob[at] = data.draw(st.integers(0, 255), label="byte")
        elif kind == "truncate":
            del blob[at:]
        elif kind == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="inserted")
        else:
            del blob[at : at + data.draw(st.integers(1, 64), label="length")]
        if not blob:
            blob = bytearray(b"\x08")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.onnx"
        path.write_bytes(bytes(blob))
        try:
            described = describe(path)
        except ToolchainError as exc:
            assert str(path) in str(exc)
            assert "\n" not in str(exc)
        else:  # what was described can be printed and written as JSON
            format_description(described)
            json.dumps(described)


MODELS = Path(__file__).resolve().parents[1] / "models"


def _recipe_cases() -> list:
    from toolchain.config import load_recipe

    cases = []
    for folder in sorted(p for p in MODELS.iterdir() if (p / "recipe.toml").is_file()):
        recipe = load_recipe(folder)
        marks = (
            [pytest.mark.skip(reason="a TTFS recipe has no CUBA SNN to export")]
            if recipe.ttfs.enabled
            else []
        )
        cases.append(pytest.param(recipe, id=folder.name, marks=marks))
    return cases


def _sample_shape(recipe) -> tuple[int, ...]:
    return dataset_shape(recipe.data.dataset, recipe.data.options).sample_shape


@pytest.mark.slow
@pytest.mark.parametrize("recipe", _recipe_cases())
def test_every_recipe_exports_and_matches_torch(tmp_path, recipe):
    from toolchain.export.onnx import recipe_metadata
    from toolchain.snn.models import network_input_shape

    shape = _sample_shape(recipe)
    classes = len(dataset_shape(recipe.data.dataset, recipe.data.options).classes)
    torch.manual_seed(0)
    snn = build_model(recipe.model, recipe.neuron, network_input_shape(shape), classes)
    apply_numerics(snn, recipe.neuron, recipe.encoding.scheme)
    _randomize_batch_norm(snn, 1)
    steps = recipe.encoding.time_steps
    path = export_snn_onnx(snn, steps, tmp_path / "snn.onnx", metadata=recipe_metadata(recipe))
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    x = _inputs(shape, 3) * 4
    x_steps = x.unsqueeze(0).expand(steps, *x.shape).contiguous()
    snn.eval()
    with torch.no_grad():
        expected = snn(x_steps).logits.numpy()
    got = run_onnx(path, x_steps.numpy())
    if recipe.model.readout == "potential":  # float logits: the time-mean of the output layer's input
        np.testing.assert_allclose(got["logits"], expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_array_equal(got["spike_counts"], expected)
    ann = build_ann(recipe.model, shape, classes)
    _randomize_batch_norm(ann, 1)
    ann_path = export_ann_onnx(ann, tmp_path / "ann.onnx", metadata=recipe_metadata(recipe))
    ann.eval()
    with torch.no_grad():
        logits = ann(x).numpy()
    # float32 sums in other orders: 1e-5 of the logit (a VGG-11's reach 15, whose float32 step is 1e-6)
    np.testing.assert_allclose(run_onnx(ann_path, x.numpy())["logits"], logits, rtol=1e-5, atol=1e-5)
    assert describe(path)["metadata"]["recipe"] == recipe.name


@pytest.mark.parametrize(
    "neuron",
    [
        NeuronConfig(threshold=0.5, reset="subtract", synapse_delay=0),
        NeuronConfig(threshold=0.5, current_decay=1.0, voltage_decay=0.0),
    ],
    ids=["subtract-reset-no-delay", "no-leak"],
)
def test_neuron_variants_export(tmp_path, neuron):
    _, model, shape, classes = CASES[0]
    snn = _snn(model, shape, classes, neuron)
    path = export_snn_onnx(snn, TIME_STEPS, tmp_path / "v.onnx", record_spikes=True)
    x = _direct(_inputs(shape, 4))
    snn.eval()
    with torch.no_grad():
        expected = snn(x)
    got = run_onnx(path, x.numpy())
    for layer, spikes in expected.spikes.items():
        np.testing.assert_array_equal(got[f"spikes_{layer}"], spikes.numpy())
    assert expected.spikes["dense1"].sum() > 0
