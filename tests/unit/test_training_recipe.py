"""Training recipes: layering (base, file, --set), validation errors, resume compatibility."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sparrow.errors import ConfigError
from sparrow.models import load_config
from sparrow.training.recipe import (
    apply_set,
    check_resumable,
    dump_recipe,
    find_recipe,
    load_recipe,
    load_resumed_recipe,
    recipe_from_dict,
    recipes_dir,
)

MINIMAL = {
    "task": "toy",
    "data": {"train": [{"name": "a", "format": "toy", "options": {"size": 8}}]},
    "stages": [{"stage": 1, "steps": 5}],
}


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_bundled_recipes_load() -> None:
    names = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
    assert "toy" in names and "synref_tiny" in names
    for name in names:
        recipe = load_recipe(name)
        assert recipe.stages


@pytest.mark.parametrize(
    "path",
    [
        *sorted((Path(__file__).parents[2] / "experiments" / "recipes").glob("*.yaml")),
        recipes_dir() / "synref_tiny.yaml",
    ],
    ids=lambda p: p.stem,
)
def test_sparrow_recipes_load_and_their_model_overrides_are_valid(path: Path) -> None:
    """The bundled model's recipe and those docs/training.md reproduces its measurements with stay
    in step with the code: the recipe-wide model overrides and every stage's, applied in order."""
    recipe = load_recipe(path)
    assert recipe.task == "sparrow" and recipe.stages
    config = load_config(recipe.model.preset, recipe.model.overrides)  # unknown keys: ConfigError
    for stage in recipe.stages:
        config = config.replace(stage.model)


def test_defaults_are_the_papers() -> None:
    recipe = recipe_from_dict(MINIMAL)
    assert recipe.optim.lr == 3e-4
    assert recipe.optim.betas == (0.9, 0.95)
    assert recipe.optim.warmup_steps == 100
    assert recipe.train.batch_size == 1


def test_set_overrides_parse_yaml_scalars(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "r.yaml", {**MINIMAL, "stages": [{"stage": 0, "steps": 5}, {"stage": 1, "steps": 6}]}
    )
    recipe = load_recipe(
        path,
        [
            "optim.lr=1e-4",
            "stages.1.steps=50",
            "model.init=null",
            "train.deterministic=false",
            "optim.betas=[0.8, 0.9]",
            "stages.0.optim.lr=0.5",
        ],
    )
    assert recipe.optim.lr == pytest.approx(1e-4)
    assert recipe.stages[1].steps == 50
    assert recipe.model.init is None
    assert recipe.train.deterministic is False
    assert recipe.optim.betas == (0.8, 0.9)
    assert recipe.stage_optim(0).lr == 0.5
    assert recipe.stage_optim(1).lr == pytest.approx(1e-4)


def test_apply_set_creates_sections_and_checks_indices() -> None:
    data: dict = {"stages": [{"steps": 1}]}
    apply_set(data, "logging.every=3")
    assert data["logging"] == {"every": 3}
    for bad in ("stages.4.steps=1", "stages.x.steps=1", "novalue", "=3", "logging.every.sub=1"):
        with pytest.raises(ConfigError):
            apply_set(data, bad)


def test_base_chain_merges_deeply(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", {**MINIMAL, "optim": {"lr": 0.1, "warmup_steps": 3}})
    child = _write(tmp_path / "child.yaml", {"base": "base.yaml", "optim": {"lr": 0.2}})
    recipe = load_recipe(child)
    assert recipe.optim.lr == 0.2 and recipe.optim.warmup_steps == 3
    assert recipe.task == "toy"
    _write(tmp_path / "loop.yaml", {"base": "loop.yaml"})
    with pytest.raises(ConfigError, match="cycle"):
        load_recipe(tmp_path / "loop.yaml")


def test_relative_roots_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = {**MINIMAL, "data": {"train": [{"name": "a", "format": "mevis", "root": "data/x"}]}}
    recipe = load_recipe(_write(tmp_path / "r.yaml", data))
    assert recipe.data.train[0].root == str(tmp_path / "data" / "x")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optimm": {}}, "unknown key"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"stages": []}, "no stages"),
        ({"stages": [{"stage": 4, "steps": 5}]}, "stages.stage"),
        ({"stages": [{"stage": 1, "steps": 0}]}, "steps must be >= 1"),
        ({"stages": [{"stage": 1, "steps": 5, "optim": {"lrr": 1}}]}, "unknown key"),
        ({"data": {"train": []}}, "names no dataset"),
        ({"data": {"train": [{"name": "a"}, {"name": "a"}]}}, "repeat"),
        ({"data": {"train": [{"name": "a", "weight": 0}]}}, "weights"),
        ({"checkpoint": {"every": 0}}, "checkpoint.every"),
        ({"debug": {"kill_in_stage": 2}}, "kill_in_stage"),
        ({"stages": [{"stage": 2, "steps": 5, "cache": True}]}, "cache is for stage 3"),
        ({"stages": [{"stage": 3, "steps": 5, "reinit": [""]}]}, "reinit must list part names"),
    ],
)
def test_invalid_recipes_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    path = _write(tmp_path / "bad.yaml", {**MINIMAL, **change})
    with pytest.raises(ConfigError, match=message) as info:
        load_recipe(path)
    assert "bad.yaml" in str(info.value)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="recipe not found"):
        find_recipe(tmp_path / "nope.yaml")
    (tmp_path / "broken.yaml").write_text("stages: [\n")
    with pytest.raises(ConfigError, match="YAML"):
        load_recipe(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_recipe(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="no run to resume"):
        load_resumed_recipe(tmp_path)


def test_resume_compatibility() -> None:
    stored = recipe_from_dict(MINIMAL)
    same = recipe_from_dict(
        {**MINIMAL, "logging": {"every": 7}, "debug": {"kill_at_step": 3}, "checkpoint": {"keep_last": 9}}
    )
    check_resumable(stored, same, "recipe.yaml")
    other = recipe_from_dict({**MINIMAL, "optim": {"lr": 1.0}})
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        check_resumable(stored, other, "recipe.yaml")


def test_dump_round_trips(tmp_path: Path) -> None:
    recipe = load_recipe("toy")
    again = recipe_from_dict(yaml.safe_load(dump_recipe(recipe)))
    assert again == recipe


def test_ablation_arms_train_the_papers_three_stages() -> None:
    """`make ablation` turns the bundled recipe into each arm's with --set: every arm trains stages 0-2
    at the same reduced budget (not the bundled recipe's extra `chain` and matching stages) with the
    paper's filtration head, the switches per arm."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[2] / "experiments"))
    try:
        from synref_ablation import ARMS, recipe_overrides
    finally:
        sys.path.pop(0)
    steps = None
    for arm in ARMS:
        recipe = load_recipe("synref_tiny", recipe_overrides(arm))
        configs = [load_config(recipe.model.preset, recipe.model.overrides)]
        for stage in recipe.stages:
            configs.append(configs[-1].replace(stage.model))
        config = configs[-1]
        kinds = [s.stage for s in recipe.stages]
        assert kinds == ([0, 1, 2] if config.box_prompt else [0, 1, 1]), arm.name
        assert config.propagation == "video", arm.name
        assert config.sam2.image_size == 128, arm.name  # the preset's size: an arm stays under 30 min
        head = config.filtration  # the paper's filtration head
        assert not (head.fine_features or head.question_bag), arm.name
        assert config.box_prompt == (arm.name in ("box", "full", "full_tsf_infer")), arm.name
        tsf_trained = configs[2].tsf.mode != "off"  # in stage 1 (TSF injection)
        assert tsf_trained == (arm.name in ("tsf", "full", "full_tsf_infer")), arm.name
        assert config.tsf.mode == "off", arm.name  # the last stage trains without TSF in every arm
        budget = [s.steps for s in recipe.stages]
        assert steps is None or budget == steps
        steps = budget
    assert steps == [1000, 500, 1000]
