"""Recipes parse into typed dataclasses; every bad key, type or value is named in the error."""

from pathlib import Path

import pytest

from toolchain.config import (
    DistillConfig,
    EncodingConfig,
    NeuronConfig,
    Recipe,
    TrainConfig,
    dump_recipe,
    load_recipe,
    parse_recipe,
    with_overrides,
)
from toolchain.errors import RecipeError

MODELS = Path(__file__).resolve().parents[1] / "models"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(text)
    return path


def test_every_recipe_in_models_loads():
    recipes = sorted(MODELS.glob("*/recipe.toml"))
    assert recipes, "models/ has no recipe"
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.name == path.parent.name


def test_defaults_and_folder_name(tmp_path):
    recipe = load_recipe(_write(tmp_path, '[data]\ndataset = "digits"\n'))
    assert recipe.name == tmp_path.name
    assert recipe.encoding.time_steps == 8
    assert recipe.neuron.current_decay == 1.0


def test_resolved_recipe_round_trips():
    recipe = load_recipe(MODELS / "digits-demo")
    again = parse_recipe(__import__("tomllib").loads(dump_recipe(recipe)), "again")
    assert again == recipe


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[neuron]\ntreshold = 1.0\n", r"\[neuron\]\.treshold: unknown key; expected one of: .*threshold"),
        ("[train]\nepochs = 'ten'\n", r"\[train\]\.epochs: expected an integer, got 'ten' \(str\)"),
        ("[train]\nepochs = 2.5\n", r"\[train\]\.epochs: expected an integer"),
        (
            "[encoding]\ntime_steps = -4\n",
            r"\[encoding\]\.time_steps: expected a number in \[1, 100000\], got -4",
        ),
        (
            "[neuron]\nvoltage_decay = 1.5\n",
            r"\[neuron\]\.voltage_decay: expected a number in \[0, 1\], got 1\.5",
        ),
        ("[neuron]\nthreshold = nan\n", r"\[neuron\]\.threshold: expected a finite number"),
        ("[model]\nhidden = [64, 0]\n", r"\[model\]\.hidden: expected a number in \[1, inf\)"),
        ("[model]\nhidden = 64\n", r"\[model\]\.hidden: expected a list"),
        ("[encoding]\nscheme = 'morse'\n", r"\[encoding\]\.scheme: expected one of 'direct', 'rate'"),
        ("[data]\ndataset = 'imagenet'\n", r"\[data\]\.dataset: unknown dataset 'imagenet'"),
        (
            "[export]\nformats = ['netx', 'pdf']\n",
            r"\[export\]\.formats: expected one of 'netx', 'nir', 'onnx', got 'pdf'",
        ),
        ("bogus = 1\n", r"bogus: unknown key"),
        ("train = 3\n", r"train: expected a table"),
    ],
)
def test_invalid_recipes_name_the_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_unknown_dataset_option_is_named(tmp_path):
    path = _write(tmp_path, '[data]\ndataset = "digits"\n[data.options]\nshuffle = true\n')
    with pytest.raises(RecipeError, match=r"\[data\.options\]\.shuffle: unknown key"):
        load_recipe(path)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(_write(tmp_path, "[train\nepochs = 3\n"))


def test_overrides_are_validated():
    recipe = load_recipe(MODELS / "digits-demo")
    assert with_overrides(recipe, **{"train.epochs": 3}).train.epochs == 3
    assert with_overrides(recipe, **{"train.epochs": None}).train.epochs == recipe.train.epochs
    with pytest.raises(RecipeError, match=r"\[train\]\.epochs: expected a number in \[1, inf\)"):
        with_overrides(recipe, **{"train.epochs": 0})


def test_recipe_is_a_dataclass_with_types():
    assert Recipe.__dataclass_fields__["encoding"].type == "EncodingConfig"


def test_docs_list_every_recipe_key():
    import dataclasses

    text = (MODELS.parent / "docs" / "recipes.md").read_text()
    for f in dataclasses.fields(Recipe):
        if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
            for sub in dataclasses.fields(f.default_factory):
                key = f"[{f.name}].{sub.name}" if sub.name != "options" else f"[{f.name}.options]"
                assert f"`{key}`" in text, f"docs/recipes.md does not document {key}"
        else:
            assert f"`{f.name}`" in text


def test_set_assignments_are_toml_values_and_validated():
    from toolchain.config import parse_assignments

    parsed = parse_assignments(["neuron.numeric=fixed_point", "model.hidden=[256, 64]", "train.epochs=3"])
    assert parsed == {"neuron.numeric": "fixed_point", "model.hidden": [256, 64], "train.epochs": 3}
    recipe = with_overrides(load_recipe(MODELS / "digits-demo"), **parsed)
    assert (recipe.neuron.numeric, recipe.model.hidden, recipe.train.epochs) == ("fixed_point", [256, 64], 3)
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        parse_assignments(["epochs"])
    with pytest.raises(RecipeError, match=r"\[neuron\]\.numeric: expected one of 'float', 'fixed_point'"):
        with_overrides(recipe, **parse_assignments(["neuron.numeric=double"]))


@pytest.mark.parametrize("name", ["x\x00y", "two\nlines", "", "   ", "n" * 201])
def test_a_recipe_name_is_printable_text(name):
    with pytest.raises(RecipeError, match="name: expected 1 to 200 printable characters"):
        parse_recipe({"name": name})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: EncodingConfig(scheme="bogus", time_steps=8), "EncodingConfig.scheme: expected one of"),
        (lambda: EncodingConfig(time_steps=-3), r"EncodingConfig.time_steps: expected a number in \[1, "),
        (
            lambda: NeuronConfig(voltage_decay=2.0),
            r"NeuronConfig.voltage_decay: expected a number in \[0, 1\]",
        ),
        (lambda: TrainConfig(epochs="ten"), "TrainConfig.epochs.*expected an integer"),
        (lambda: Recipe(name="r", encoding={"scheme": "rate"}), "Recipe.encoding: expected a EncodingConfig"),
        (lambda: DistillConfig(teacher="onnx"), "needs teacher_path"),
    ],
)
def test_configs_built_in_python_are_validated_on_construction(build, message):
    with pytest.raises(ValueError, match=message):
        build()
