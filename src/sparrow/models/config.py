"""Typed configuration of the SPARROW model and the YAML presets that fill it.

A preset is a small YAML file under ``sparrow/configs/presets/`` whose keys mirror the dataclasses
below; anything it leaves out keeps the dataclass default (the defaults are the paper's settings
where the paper gives one: TSF K = 4, 8 Lloyd iterations, 16 crops, loss weights 1 / 2 / 0.5 / 1,
2 / 5 / 2 for the proposer). Sizes of the transformers parts are given as keyword arguments of their
transformers config class (``hf:``); ``path:`` names a local Hugging Face-format folder to load the
pretrained weights from (never the hub).

Dotted overrides (``"llm.path=/models/phi3"``) are applied on top of a preset with
:func:`load_config`; values are parsed as YAML.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from sparrow.errors import ConfigError
from sparrow.paths import configs_dir

SpatialKind = Literal["clip", "siglip"]
TemporalKind = Literal["vjepa2"]
LLMKind = Literal["qwen2", "llama", "phi3"]
TSFMode = Literal["off", "train", "train+infer"]
Propagation = Literal["video", "framewise", "chain"]
KeyFrame = Literal["first", "best"]
Sam2Variant = Literal["tiny", "hiera_large"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class SpatialEncoderConfig:
    """Per-frame image encoder (``CLIPVisionModel`` / ``SiglipVisionModel``) and its V->L adapter.

    ``frames`` context frames are encoded at ``hf["image_size"]``; the patch grid of layer
    ``feature_layer`` (CLS dropped) is average-pooled to ``pooled_tokens`` (a square number) tokens
    per frame and projected to the LLM width by a 2-layer GELU MLP.
    """

    kind: SpatialKind = "clip"
    hf: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    frames: int = 16
    feature_layer: int = -2
    pooled_tokens: int = 144
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD


@dataclass
class TemporalEncoderConfig:
    """Video encoder attending across frames (V-JEPA 2 encoder) and its V->L adapter.

    ``frames`` frames at ``hf["crop_size"]`` give ``frames / tubelet_size`` temporal slots of
    ``(crop/patch)^2`` tokens; each slot is pooled to ``pooled_tokens`` tokens and projected.
    """

    kind: TemporalKind = "vjepa2"
    hf: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    frames: int = 16
    pooled_tokens: int = 64
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class LoraConfig:
    """LoRA on the LLM (peft); ``targets`` are module-name suffixes (``q_proj``, ``qkv_proj``...)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class TemplateConfig:
    """Chat template tokens (Phi-3 style); the tiny tokenizer is trained with the same strings."""

    user: str = "<|user|>"
    assistant: str = "<|assistant|>"
    end: str = "<|end|>"
    pad: str = "<|endoftext|>"
    bos: str | None = None


@dataclass
class LLMConfig:
    """Causal LM (``Qwen2ForCausalLM`` / ``LlamaForCausalLM`` / ``Phi3ForCausalLM``) and tokenizer.

    ``tokenizer`` is a local folder with ``tokenizer.json`` for pretrained LMs; the tiny preset
    trains its own byte-level BPE tokenizer of ``tokenizer_vocab_size`` entries instead.
    """

    kind: LLMKind = "qwen2"
    hf: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    tokenizer: str | None = None
    tokenizer_vocab_size: int = 1024
    template: TemplateConfig = field(default_factory=TemplateConfig)
    lora: LoraConfig | None = None


@dataclass
class Sam2Settings:
    """SAM2 (image encoder, prompt encoder, mask decoder, memory) of architecture ``variant``.

    ``frames`` frames of a training clip go to SAM2 (the paper: 8 at 1024 px). ``path`` is a local
    Hugging Face SAM2 folder (e.g. ``facebook/sam2.1-hiera-large``) to load the weights from.
    ``box_mask_prompt``: a box prompt is also given as a dense mask prompt (the box filled, through
    SAM2's mask-prompt encoder) besides its two corner tokens. SAM2 reads boxes from the corner tokens
    alone; a SAM2 trained from scratch does not learn to (``tiny``: on; see docs/model.md).
    ``pointer_dropout``: in training, the probability that a tracked clip's memory attention reads the
    spatial memory alone, without object pointers (not in SAM2: 0). From scratch, its memory attention
    otherwise puts all its weight on the pointers and ignores the spatial memory (docs/model.md).
    """

    variant: Sam2Variant = "hiera_large"
    image_size: int = 1024
    path: str | None = None
    frames: int = 8
    box_mask_prompt: bool = False
    pointer_dropout: float = 0.0


@dataclass
class ProposerConfig:
    """Class-agnostic DETR-style proposer over the key frame's SAM2 image embedding.

    The ``top_k`` proposals of highest objectness go to the filtration head (paper: 300 -> 100).
    ``query_selection``: the queries' anchors come from the best per-cell proposals of the image
    embedding (two-stage Deformable DETR) instead of being learned (``sparrow.models.proposer``).
    """

    hidden_dim: int = 256
    num_queries: int = 300
    num_layers: int = 6
    num_heads: int = 8
    top_k: int = 100
    query_selection: bool = False


@dataclass
class FiltrationConfig:
    """Filtration head scoring each proposal against the projected ``[BOX]`` query.

    ``fine_features``: also describe each proposal by RoI crops of the key frame's two fine SAM2
    feature maps (:mod:`sparrow.models.filtration`); off = the paper's head, which reads the
    proposer's decoder features, box and objectness only.

    ``word_decoder``: the head also decodes the bag of the question's words from its query, trained
    by the ``query_words`` loss term (not in the paper; off in every preset).

    ``question_bag``: the ``[BOX]`` state that makes the query is the LLM's hidden state plus a
    bag-of-words encoding of the question (:class:`~sparrow.models.question_bag.QuestionBag`, zero
    at the start, trained with the box branch in stages 2 and 3): a path for the words around an LLM that
    loses them (not in the paper; off in every preset).

    ``box_state``: the LLM's ``[BOX]`` hidden state is part of the query (the paper's head). Off
    (needs ``question_bag``): the query is the question bag alone, so the LLM's ``[BOX]`` token only
    says where a box is asked for (not in the paper; an experiment, docs/training.md).
    """

    hidden_dim: int = 256
    refine: bool = True
    fine_features: bool = False
    word_decoder: bool = False
    question_bag: bool = False
    box_state: bool = True


@dataclass
class TSFConfig:
    """Target-specific tracked features: ``k`` medoid tokens from up to ``max_crops`` track crops."""

    mode: TSFMode = "train"
    k: int = 4
    iterations: int = 8
    max_crops: int = 16


@dataclass
class LossWeights:
    """Weight of every loss term in the total (``0`` keeps the term in the dict, out of the sum).

    ``object_score``: BCE of SAM2's object score against "the target's mask is non-empty" on every
    supervised frame (SAM2 trains its occlusion head this way; the score gates masks and memory in
    propagation). Not in the paper, which fine-tunes a pretrained SAM2; 0.5 like the Dice term.

    ``sam_bce`` / ``sam_dice`` / ``sam_object_score``: the same three terms for SAM2 prompted with the
    (jittered) ground-truth box alone, tracked through its memory: the promptable-segmentation
    pretraining that stands in for SAM2's SA-1B / SA-V weights in stage 0 of from-scratch training.

    ``proposal_rank``: listwise cross-entropy of the filtration scores over a frame's proposals
    (:func:`~sparrow.models.losses.proposal_ranking_loss`). Not in the paper (weight 0: logged,
    not trained); the per-proposal BCE alone lets a from-scratch head learn an object prior instead of
    the referent.

    ``query_words``: with ``filtration.word_decoder``, the bag-of-words reconstruction of the
    question from the filtration head's query (:func:`~sparrow.models.losses.bag_of_words_loss`),
    computed with the box terms. Not in the paper; it trains the LLM to carry the expression into
    ``[BOX]``, which a pretrained LLM brings.
    """

    lm_ce: float = 1.0
    mask_bce: float = 2.0
    mask_dice: float = 0.5
    object_score: float = 0.5
    proposal_bce: float = 1.0
    proposal_rank: float = 0.0
    box_l1: float = 1.0
    box_giou: float = 1.0
    query_words: float = 1.0
    det_class: float = 2.0
    det_l1: float = 5.0
    det_giou: float = 2.0
    sam_bce: float = 2.0
    sam_dice: float = 0.5
    sam_object_score: float = 0.5


@dataclass
class CheckpointConfig:
    """Keys (``fnmatch`` patterns) a checkpoint may lack or carry beyond the model's own."""

    allow_missing: list[str] = field(default_factory=list)
    allow_unexpected: list[str] = field(default_factory=list)


@dataclass
class SparrowConfig:
    """The whole model. ``box_prompt`` / ``tsf.mode`` / ``propagation`` are the paper's switches
    (``propagation: chain`` is ours: :meth:`SparrowModel.propagate
    <sparrow.models.sparrow.SparrowModel.propagate>`; it trains teacher-forced, each supervised frame
    prompted from the ground truth of the frame before it). ``chain_mask_prompt``: ``chain`` also
    gives SAM2 the previous frame's mask as its dense mask prompt (MaskTrack style; ours).
    ``key_frame``: the frame inference prompts, ``first`` (frame 0, the paper) or ``best`` (the most
    confident of a few frames sampled uniformly; ours: :func:`sparrow.inference.tracking.choose_key_frame`;
    ``GroundingOptions.key_frame`` overrides it). Training samples take their key frame likewise: SAM2
    frame 0, or with ``best`` a frame drawn where the targets are visible
    (:func:`sparrow.training.samples.key_frame_with_targets`).
    ``phrase_answer``: the model names each referent before grounding it, "Sure, <p> {phrase} </p>
    [BOX] [SEG]." instead of "Sure, [BOX] [SEG]." (ours: the grounding tokens' states then follow the
    words they ground; :meth:`SparrowProcessor.format_answer
    <sparrow.models.processor.SparrowProcessor.format_answer>` writes it for training and for the
    template answer).

    ``l2v_hidden``: hidden width of the L->V MLPs (``None``: the LLM width). ``train_from_scratch``:
    no part has pretrained weights, so training stages also train the encoders and SAM2 (tiny); stage
    0 then also pretrains SAM2's box -> masklet segmentation (the ``sam_*`` loss terms).
    ``seg_prompt_norm``: layer-normalise the projected ``[SEG]`` (the paper's L->V MLP has none; from
    scratch, an unnormalised ``[SEG]`` token grows until it swamps SAM2's box tokens and object score).
    ``box_teacher_forcing``: probability that a training ``[SEG]`` is prompted to SAM2 with its
    target's jittered ground-truth box instead of the filtration head's choice (stage 2; the paper's
    pretrained SAM2 needs none, a from-scratch SAM2 otherwise learns to ignore boxes that early
    filtration picks at random).
    """

    preset: str = "custom"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    spatial: SpatialEncoderConfig = field(default_factory=SpatialEncoderConfig)
    temporal: TemporalEncoderConfig = field(default_factory=TemporalEncoderConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    sam2: Sam2Settings = field(default_factory=Sam2Settings)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    filtration: FiltrationConfig = field(default_factory=FiltrationConfig)
    tsf: TSFConfig = field(default_factory=TSFConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    box_prompt: bool = True
    propagation: Propagation = "video"
    key_frame: KeyFrame = "first"
    phrase_answer: bool = False
    chain_mask_prompt: bool = False
    l2v_hidden: int | None = None
    train_from_scratch: bool = False
    seg_prompt_norm: bool = False
    box_teacher_forcing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (JSON / YAML serialisable; tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None) -> SparrowConfig:
        """Build and validate from a nested dict; unknown keys or bad values raise ConfigError."""
        config = _build(cls, data, "", source)
        config.validate(source)
        return config

    def replace(self, overrides: dict[str, Any] | list[str]) -> SparrowConfig:
        """A copy with nested overrides (a dict, or ``"a.b=value"`` strings) applied."""
        data = self.to_dict()
        _merge(data, _parse_overrides(overrides) if isinstance(overrides, list) else overrides, "")
        return SparrowConfig.from_dict(data)

    def validate(self, source: str | Path | None = None) -> None:
        """Cross-field checks: square token counts, TSF sizes, frame counts, the filtration query."""

        def bad(message: str, fix: str) -> None:
            raise ConfigError(message, path=source, fix=fix)

        for name, tokens in (
            ("spatial", self.spatial.pooled_tokens),
            ("temporal", self.temporal.pooled_tokens),
        ):
            side = round(tokens**0.5)
            if tokens < 1 or side * side != tokens:
                bad(f"{name}.pooled_tokens={tokens} is not a square number", "use 1, 4, 16, 64, 144, ...")
        if self.tsf.k < 1 or self.tsf.iterations < 0 or self.tsf.max_crops < 1:
            bad("tsf.k, tsf.max_crops must be >= 1 and tsf.iterations >= 0", "use the paper's 4 / 8 / 16")
        tubelet = int(self.temporal.hf.get("tubelet_size", 2))
        if self.temporal.frames % tubelet:
            bad(
                f"temporal.frames={self.temporal.frames} is not a multiple of tubelet_size={tubelet}",
                "choose a frame count divisible by the tubelet size",
            )
        for name, frames in (("spatial", self.spatial.frames), ("sam2", self.sam2.frames)):
            if frames < 1:
                bad(f"{name}.frames must be >= 1", "use a positive frame count")
        for name, value in (
            ("box_teacher_forcing", self.box_teacher_forcing),
            ("sam2.pointer_dropout", self.sam2.pointer_dropout),
        ):
            if not 0.0 <= value <= 1.0:
                bad(f"{name}={value} is not a probability", "use a value in [0, 1]")
        if not (self.filtration.box_state or self.filtration.question_bag):
            bad(
                "filtration.box_state=false leaves the filtration head no query",
                "turn filtration.question_bag on, or box_state back on",
            )


def preset_path(name: str) -> Path:
    """The YAML file of the named preset (``tiny``, ``base``) shipped with the package."""
    return configs_dir() / "presets" / f"{name}.yaml"


def available_presets() -> list[str]:
    """Names of the presets shipped with the package."""
    return sorted(p.stem for p in (configs_dir() / "presets").glob("*.yaml"))


def load_config(preset: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> SparrowConfig:
    """Load a preset by name (``"tiny"``) or YAML path, then apply overrides.

    Raises:
        ConfigError: unknown preset, unreadable YAML, unknown keys or invalid values.
    """
    path = Path(preset)
    if path.suffix not in (".yaml", ".yml"):
        path = preset_path(str(preset))
        if not path.is_file():
            raise ConfigError(
                f"unknown model preset {preset!r}",
                path=path,
                fix=f"use one of {available_presets()} or a path to a YAML file",
            )
    if not path.is_file():
        raise ConfigError("preset file not found", path=path, fix="check the path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path, fix="fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise ConfigError("a preset must be a YAML mapping", path=path, fix="write key: value pairs")
    data.setdefault("preset", path.stem)
    if overrides:
        _merge(data, _parse_overrides(overrides) if isinstance(overrides, list) else overrides, "")
    return SparrowConfig.from_dict(data, source=path)


def _parse_overrides(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key.sub=value", fix="e.g. tsf.mode=off")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def _merge(base: dict[str, Any], update: dict[str, Any], where: str) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "hf":
            _merge(base[key], value, f"{where}{key}.")
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = copy.deepcopy(value)


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, where: str, source: str | Path | None) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {data!r}", path=source)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[where + k for k in unknown]}",
            path=source,
            fix=f"valid keys under {where or 'the top level'}: {sorted(names)}",
        )
    kwargs = {key: _coerce(hints[key], value, f"{where}{key}", source) for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str, source: str | Path | None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(inner[0], value, where, source)
        for candidate in inner:
            if _matches(candidate, value):
                return _coerce(candidate, value, where, source)
        raise ConfigError(f"{where}={value!r} has the wrong type (expected {hint})", path=source)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, f"{where}.", source)
    if origin is Literal:
        if value is False and "off" in args:  # YAML 1.1 reads a bare `off` as false
            value = "off"
        if value not in args:
            raise ConfigError(
                f"{where}={value!r} is not one of {list(args)}", path=source, fix="pick a listed value"
            )
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{where}={value!r} must be a list of {len(args)} numbers", path=source)
        return tuple(_coerce(a, v, where, source) for a, v in zip(args, value, strict=True))
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}={value!r} must be a list", path=source)
        return [_coerce(args[0], v, where, source) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}={value!r} must be a mapping", path=source)
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where}={value!r} must be of type {hint.__name__}", path=source)
    return value


def _matches(hint: Any, value: Any) -> bool:
    if dataclasses.is_dataclass(hint) or typing.get_origin(hint) is dict:
        return isinstance(value, dict)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True
