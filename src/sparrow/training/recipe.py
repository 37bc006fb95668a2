"""Training recipes: small YAML files that name a model preset, a data mixture and the stages to run.

A recipe is read in layers, each one overriding the previous:

1. the defaults of the dataclasses below (the authors' settings of PAPER.md 1.3: AdamW, betas
   (0.9, 0.95), warmup 100 steps, batch 1 per process);
2. the recipe named by ``base:`` (a bundled recipe name or a path relative to the recipe file), and
   its own ``base``, recursively;
3. the recipe file itself;
4. ``--set key=value`` overrides (dotted keys; list items by index, ``stages.1.steps=200``; values are
   parsed as YAML scalars, so ``--set optim.lr=1e-4`` is a float and ``--set model.init=null`` None).

Every stage of ``stages`` may override ``optim`` and ``train.batch_size`` for itself. Relative data
roots are resolved against the working directory when the recipe is loaded, so the copy stored in the
run folder (``recipe.yaml``) names absolute paths and resumes from anywhere.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sparrow.errors import ConfigError
from sparrow.models.config import _build as build_dataclass
from sparrow.paths import configs_dir

TaskKind = Literal[
    "referring_segmentation",
    "multi_referring_segmentation",
    "grounded_caption",
    "box_grounding",
    "tube_grounding",
]
Schedule = Literal["constant", "linear", "cosine"]
MixedPrecision = Literal["no", "fp16", "bf16"]


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that also reads ``1e-4`` as a float (YAML 1.1 needs ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.?[0-9_]*|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with :class:`_Loader` (safe; scientific notation without a dot is a float)."""
    return yaml.load(text, Loader=_Loader)


def recipes_dir() -> Path:
    """The bundled recipes folder (``sparrow/configs/recipes``)."""
    return configs_dir() / "recipes"


@dataclass
class ModelSpec:
    """The model to train.

    Attributes:
        preset: a model preset name (``tiny``) or a preset YAML path; used when ``init`` is None.
        overrides: nested keys of the preset's config to change (``{tsf: {mode: off}}``).
        init: a model folder (``save_pretrained`` layout) to start the first stage from instead.
    """

    preset: str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    init: str | None = None


@dataclass
class DatasetSpec:
    """One dataset of the training (or validation) mixture.

    Attributes:
        name: a short label (metrics, sample ids).
        format: the reader (a :mod:`sparrow.data.formats` registry name, ``toy`` for the toy task).
        root: the dataset's top folder; relative paths are relative to the working directory.
        split: the split to read.
        weight: relative sampling weight in the mixture.
        task: what the samples teach: ``referring_segmentation`` ("Can you segment {exp} in this
            video?" -> "Sure, [BOX] [SEG]."), ``multi_referring_segmentation`` (several expressions
            of a video in one question, ``options.group`` at most, default 3),
            ``grounded_caption``, ``box_grounding``, ``tube_grounding``.
        max_items: use only the first N items of the split (quick runs).
        options: reader- or task-specific settings.
    """

    name: str
    format: str = "mevis"
    root: str | None = None
    split: str = "train"
    weight: float = 1.0
    task: TaskKind = "referring_segmentation"
    max_items: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSpec:
    """The data mixture and how samples are built.

    Attributes:
        train: the training mixture.
        val: held-out datasets for the validation callback.
        epoch_size: samples per sampler epoch (default: all items of the mixture once).
        num_workers: data-loader worker processes (0 builds samples in the training process).
    """

    train: list[DatasetSpec] = field(default_factory=list)
    val: list[DatasetSpec] = field(default_factory=list)
    epoch_size: int | None = None
    num_workers: int = 0


@dataclass
class OptimSpec:
    """AdamW and its learning-rate schedule (linear warmup, then ``schedule`` down to ``min_lr_ratio``)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 100
    schedule: Schedule = "linear"
    min_lr_ratio: float = 0.0
    max_grad_norm: float | None = 1.0


@dataclass
class TrainSpec:
    """How steps run.

    Attributes:
        batch_size: samples per process per micro-step.
        grad_accum: micro-steps per optimizer step.
        mixed_precision: ``no`` / ``fp16`` / ``bf16`` (accelerate autocast; fp16 adds a grad scaler).
        distributed: ``ddp`` or ``fsdp`` (full sharding) when several processes run.
        deterministic: ``torch.use_deterministic_algorithms`` (bitwise-repeatable runs on CPU).
        find_unused_parameters: DDP option, for stages whose trainable parts a batch may not reach.
        cpu: train on the CPU even when a GPU is present.
    """

    batch_size: int = 1
    grad_accum: int = 1
    mixed_precision: MixedPrecision = "no"
    distributed: Literal["ddp", "fsdp"] = "ddp"
    deterministic: bool = True
    find_unused_parameters: bool = True
    cpu: bool = False


@dataclass
class StageSpec:
    """One stage of the recipe (PAPER.md 1.3): 0 proposer, 1 TSF injection, 2 filtration; and ours,
    3 matching (the filtration head alone on the frozen model).

    ``optim`` / ``batch_size`` override the recipe-wide values for this stage only. ``model``
    overrides keys of the model's config from this stage on (they are saved with the stage's model):
    ``{tsf: {mode: "off"}}`` in stage 2 is the paper's "TSF off" for the filtration stage.

    ``reinit`` names parts of the model (``filtration``, ``box_projection``, ...) that start this
    stage afresh, initialised as a new model's (seeded by the recipe's seed and the stage index);
    their weights need not be in the folder the stage starts from. ``cache`` (stage 3 only) trains
    on a cache of the frozen model's pick inputs, taken once at the stage's start
    (:mod:`.pick_cache`): a step then costs the pick's layers alone, not the encoders, LLM and SAM2.
    """

    stage: Literal[0, 1, 2, 3]
    steps: int
    optim: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None
    model: dict[str, Any] = field(default_factory=dict)
    reinit: list[str] = field(default_factory=list)
    cache: bool = False


@dataclass
class CheckpointSpec:
    """Write a checkpoint every ``every`` steps (and at the end of each stage); keep the last ``keep_last``."""

    every: int = 500
    keep_last: int = 2


@dataclass
class LoggingSpec:
    """Metrics: one JSONL record every ``every`` steps; ``sample_ids`` adds what each rank trained on."""

    every: int = 1
    progress: bool = True
    tensorboard: bool = False
    sample_ids: bool = False


@dataclass
class ValidationSpec:
    """Held-out evaluation every ``every`` steps (0: only at the end of each stage; -1: never)."""

    every: int = 0
    max_items: int | None = None


@dataclass
class DebugSpec:
    """Fault injection, to check that a killed run resumes exactly.

    ``kill_at_step``: SIGKILL this process right after optimizer step N of recipe stage
    ``kill_in_stage`` (an index into ``stages``) -- or, with ``kill_during_checkpoint``, while the
    checkpoint of step N is half-written (after its files, before the rename that publishes it).
    """

    kill_at_step: int | None = None
    kill_in_stage: int = 0
    kill_during_checkpoint: bool = False


@dataclass
class Recipe:
    """A whole training run. ``task`` picks the model/data pair (``sparrow``, or ``toy`` for smoke runs)."""

    task: Literal["sparrow", "toy"] = "sparrow"
    seed: int = 0
    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataSpec = field(default_factory=DataSpec)
    optim: OptimSpec = field(default_factory=OptimSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    stages: list[StageSpec] = field(default_factory=list)
    checkpoint: CheckpointSpec = field(default_factory=CheckpointSpec)
    logging: LoggingSpec = field(default_factory=LoggingSpec)
    validation: ValidationSpec = field(default_factory=ValidationSpec)
    debug: DebugSpec = field(default_factory=DebugSpec)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML-serialisable; tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def stage_optim(self, index: int) -> OptimSpec:
        """The optimizer settings of ``stages[index]`` (recipe-wide values plus the stage's own)."""
        data = self.to_dict()["optim"]
        data.update(self.stages[index].optim)
        return build_dataclass(OptimSpec, data, f"stages.{index}.optim.", None)

    def stage_batch_size(self, index: int) -> int:
        return self.stages[index].batch_size or self.train.batch_size

    def stage_model_overrides(self, index: int) -> dict[str, Any]:
        """The config overrides the model of ``stages[index]`` is loaded with: ``model.overrides``
        when the first stage starts from ``model.init`` (a fresh ``init/`` is built with them), then
        the stage's own ``model``."""
        overrides: dict[str, Any] = {}
        if index == 0 and self.model.init:
            merge(overrides, self.model.overrides)
        merge(overrides, self.stages[index].model)
        return overrides


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def find_recipe(name: str | Path) -> Path:
    """A recipe path: an existing file, or the name of a bundled recipe (``synref_tiny``)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = recipes_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    if bundled.is_file() and len(path.parts) == 1:
        return bundled
    available = sorted(p.stem for p in recipes_dir().glob("*.yaml"))
    raise ConfigError("recipe not found", path=path, fix=f"give a YAML file or a bundled recipe: {available}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the recipe: {exc}", path=path, fix="fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError("a recipe must be a YAML mapping", path=path, fix="write key: value pairs")
    return data


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The recipe at ``path`` merged over its ``base`` chain."""
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError("recipe bases form a cycle", path=path, fix="remove one of the base: keys")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = path.parent / base if (path.parent / base).is_file() else find_recipe(base)
    merged = _layers(base_path, (*seen, resolved))
    merge(merged, data)
    return merged


def merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    """Deep-merge ``update`` into ``base`` in place: mappings merge key by key, anything else replaces."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def apply_set(data: dict[str, Any], assignment: str) -> None:
    """Apply one ``--set a.b.c=value`` to nested ``data`` in place (list items by index).

    Raises:
        ConfigError: not of the form ``key=value``, or an index into a list is out of range.
    """
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(
            f"--set {assignment!r} is not of the form key.sub=value", fix="e.g. --set optim.lr=1e-4"
        )
    try:
        value = parse_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {assignment!r}: the value is not valid YAML ({exc})", fix="quote the value"
        ) from exc
    parts = key.strip().split(".")
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"--set {assignment!r}: {'.'.join(parts[:i]) or 'value'} has {len(node)} items, no item {part!r}",
                    fix="index list items from 0 (stages.0.steps=10)",
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(
                f"--set {assignment!r}: {'.'.join(parts[:i])} is a value, not a section",
                fix="set the whole value, or a key of a section",
            )


def recipe_from_dict(data: dict[str, Any], *, source: str | Path | None = None) -> Recipe:
    """Build and check a :class:`Recipe` from a nested dict (unknown keys or bad values raise)."""
    recipe = build_dataclass(Recipe, data, "", source)
    check_recipe(recipe, source)
    return recipe


def load_recipe(name: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file (or bundled name), its ``base`` chain and ``--set`` overrides.

    Raises:
        ConfigError: missing file, bad YAML, unknown keys, wrong types or inconsistent values.
    """
    path = find_recipe(name)
    data = _layers(path)
    for assignment in overrides:
        apply_set(data, assignment)
    recipe = recipe_from_dict(data, source=path)
    for spec in (*recipe.data.train, *recipe.data.val):
        if spec.root is not None:
            spec.root = str(Path(spec.root).expanduser().resolve())
    if recipe.model.init is not None:
        recipe.model.init = str(Path(recipe.model.init).expanduser().resolve())
    return recipe


def check_recipe(recipe: Recipe, source: str | Path | None = None) -> None:
    """Cross-field checks of a recipe."""

    def bad(message: str, fix: str) -> None:
        raise ConfigError(message, path=source, fix=fix)

    if not recipe.stages:
        bad("the recipe lists no stages", "add e.g. stages: [{stage: 1, steps: 100}]")
    for i, stage in enumerate(recipe.stages):
        if stage.steps < 1:
            bad(f"stages.{i}.steps must be >= 1, got {stage.steps}", "give each stage a positive step budget")
        if stage.batch_size is not None and stage.batch_size < 1:
            bad(f"stages.{i}.batch_size must be >= 1", "use a positive batch size")
        if stage.cache and stage.stage != 3:
            bad(
                f"stages.{i}: cache is for stage 3 (the pick on the frozen model), not stage {stage.stage}",
                "remove cache, or make the stage a stage 3",
            )
        if any(not isinstance(name, str) or not name for name in stage.reinit):
            bad(f"stages.{i}.reinit must list part names, got {stage.reinit}", "e.g. reinit: [filtration]")
        try:
            opt = recipe.stage_optim(i)
        except ConfigError as exc:
            bad(exc.message, exc.fix or "use the keys of the optim section")
        if opt.lr <= 0 or opt.warmup_steps < 0 or not 0.0 <= opt.min_lr_ratio <= 1.0:
            bad(
                f"stages.{i}: lr must be > 0, warmup_steps >= 0, min_lr_ratio in [0, 1]",
                "fix the optim values",
            )
    if not recipe.data.train:
        bad("data.train names no dataset", "list at least one dataset under data.train")
    names = [d.name for d in recipe.data.train]
    if len(set(names)) != len(names):
        bad(f"data.train names repeat: {names}", "give every dataset a distinct name")
    if sum(d.weight for d in recipe.data.train) <= 0 or any(d.weight < 0 for d in recipe.data.train):
        bad("data.train weights must be >= 0 with a positive sum", "fix the weight values")
    if recipe.train.batch_size < 1 or recipe.train.grad_accum < 1:
        bad("train.batch_size and train.grad_accum must be >= 1", "use positive values")
    if recipe.checkpoint.every < 1 or recipe.checkpoint.keep_last < 1:
        bad("checkpoint.every and checkpoint.keep_last must be >= 1", "use positive values")
    if recipe.logging.every < 1:
        bad("logging.every must be >= 1", "use a positive value")
    if not 0 <= recipe.debug.kill_in_stage < len(recipe.stages):
        bad("debug.kill_in_stage is not an index into stages", f"use 0..{len(recipe.stages) - 1}")


def dump_recipe(recipe: Recipe) -> str:
    """The recipe as YAML text (what the run folder's ``recipe.yaml`` holds)."""
    return yaml.safe_dump(recipe.to_dict(), sort_keys=False)


# Sections that do not shape the loss curve: a resumed run may change them (``--set`` with ``--resume``).
RESUME_FREE = ("logging", "debug", "validation", "checkpoint", "data.num_workers")


def stored_recipe(run_dir: str | Path) -> Recipe | None:
    """The recipe a run folder was started with (its ``recipe.yaml``), or None if there is none."""
    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        return None
    return recipe_from_dict(_read_yaml(path), source=path)


def load_resumed_recipe(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """The stored recipe of ``run_dir`` with ``--set`` overrides (for ``--resume`` without a recipe)."""
    path = Path(run_dir) / "recipe.yaml"
    if not path.is_file():
        raise ConfigError(
            "there is no run to resume here (no recipe.yaml)",
            path=run_dir,
            fix="check the folder, or start a new run",
        )
    data = _read_yaml(path)
    for assignment in overrides:
        apply_set(data, assignment)
    return recipe_from_dict(data, source=path)


def _without(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for key in keys:
        *parents, last = key.split(".")
        node = data
        for part in parents:
            node = node.get(part, {})
        node.pop(last, None)
    return data


def _differences(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{where}{key}.")
        return out
    return [] if a == b else [where.rstrip(".")]


def check_resumable(stored: Recipe, recipe: Recipe, path: str | Path) -> None:
    """Raise unless ``recipe`` continues ``stored`` exactly (only :data:`RESUME_FREE` may differ)."""
    diff = _differences(_without(stored.to_dict(), RESUME_FREE), _without(recipe.to_dict(), RESUME_FREE))
    if diff:
        raise ConfigError(
            f"the recipe differs from the one the run was started with, at {diff[:6]}",
            path=path,
            fix=f"resume without a recipe (sparrow train --resume DIR), or start a new run with --out; only {list(RESUME_FREE)} may change",
        )
