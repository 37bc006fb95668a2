"""SPARROW over a VideoGLaMM-style base: the composed model.

Parts (all trainable ``nn.Module`` s, see :meth:`SparrowModel.parts`): spatial encoder + adapter,
temporal encoder + adapter, causal LM, the ``[SEG]`` and ``[BOX]`` L->V MLPs, SAM2 (image encoder,
prompt encoder, mask decoder, memory), the class-agnostic proposer and the filtration head.

Data flow (PAPER 1.1, DESIGN 3)::

    frames -> spatial enc. -> pool+MLP --+
           -> temporal enc. -> pool+MLP -+-> <video> tokens --+
    track crops -> spatial enc. + adapter -> mean -> K-means medoids -> <tsf> tokens --+-> LLM
    LLM hidden at [SEG] -> seg MLP -> sparse prompt ------------------------------+
    LLM hidden at [BOX] (+ question bag) -> box MLP -> query -> filtration(proposer(key frame)) -> box prompt
                                                      SAM2 mask decoder(frame features, prompts)

Switches (``config``): ``box_prompt`` (off: the proposer, the filtration head and the ``[BOX]`` MLP
are never called and answers carry no ``[BOX]``); ``tsf.mode`` (``off`` / ``train`` /
``train+infer``: whether prompts carry ``<tsf>`` tokens in training / inference); ``propagation``
(``video``: prompt the key frame and let SAM2 memory propagate; ``framewise``: the same prompts on
every frame). In training, ``video`` decodes the key frame from the prompts and tracks the later
supervised frames through SAM2's memory (``Sam2Adapter.track``, the differentiable twin of
propagation, so the memory encoder / attention are trained); ``framewise`` decodes every supervised
frame with the prompts. Box prompt off + TSF off is the VideoGLaMM-style baseline.

``forward(batch)`` is teacher-forced training only (a :class:`~sparrow.models.batch.PickBatch` of
:meth:`SparrowModel.pick_inputs` trains the pick alone: stage 3 on a cache); inference composes :meth:`encode_video`,
:meth:`tsf_tokens`, :meth:`generate`, :meth:`prompts_from_hidden` and ``sam2.propagate`` /
``sam2.decode``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sparrow.errors import ConfigError
from sparrow.models.adapters import LanguageVisionMLP, VisionLanguageAdapter
from sparrow.models.batch import PickBatch, SparrowBatch
from sparrow.models.config import SparrowConfig, load_config
from sparrow.models.filtration import FiltrationHead, FiltrationOutput, fine_crops
from sparrow.models.llm import build_causal_lm, decoder_hidden, greedy_generate, lm_width
from sparrow.models.losses import (
    bag_of_words_loss,
    box_l1_giou_loss,
    detr_losses,
    dice_loss,
    mask_bce_loss,
    proposal_ranking_loss,
    proposal_selection_loss,
)
from sparrow.models.processor import SparrowProcessor
from sparrow.models.proposer import Proposer, ProposerOutput
from sparrow.models.question_bag import QuestionBag
from sparrow.models.sam2 import (
    MaskDecoderOutput,
    Sam2Adapter,
    Sam2Features,
    sam2_hiera_large_config,
    tiny_sam2_config,
)
from sparrow.models.tokenizer import IGNORE_INDEX, SparrowTokenizer, build_tokenizer
from sparrow.models.tsf import kmeans_medoids
from sparrow.models.vision import SpatialEncoder, TemporalEncoder
from sparrow.structures.boxes import box_convert, masks_to_boxes, normalize_boxes

SAM2_VARIANTS = {"tiny": tiny_sam2_config, "hiera_large": sam2_hiera_large_config}
MASK_TERMS = ("lm_ce", "mask_bce", "mask_dice", "object_score")
SAM_TERMS = ("sam_bce", "sam_dice", "sam_object_score")  # SAM2 prompted by ground-truth boxes
BOX_TERMS = ("proposal_bce", "proposal_rank", "box_l1", "box_giou")
DET_TERMS = ("det_class", "det_l1", "det_giou")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def trains_box_branch(terms: tuple[str, ...]) -> bool:
    """True if ``terms`` include the box-branch terms (:data:`BOX_TERMS`: the filtration head's)."""
    return any(t in terms for t in BOX_TERMS)


def loss_terms(config: SparrowConfig, stage: int | None = None) -> tuple[str, ...]:
    """Loss terms :meth:`SparrowModel.forward` computes under ``config``'s switches and ``stage``.

    Without a stage: every term (the box-branch and proposer terms only with the box prompt on).
    With a stage: that stage's terms (:data:`STAGES`, plus its ``from_scratch_losses`` when
    ``config.train_from_scratch``), minus the box-branch terms if the box prompt is off.
    ``query_words`` comes with the box-branch terms when ``filtration.word_decoder`` is on.
    """
    if stage is None:
        terms = MASK_TERMS + ((*BOX_TERMS, *DET_TERMS) if config.box_prompt else ())
    else:
        plan = STAGES[stage]
        terms = plan.losses + (plan.from_scratch_losses if config.train_from_scratch else ())
        if not config.box_prompt:
            unused = BOX_TERMS + (DET_TERMS if stage > 0 else ())  # no box branch: no proposals after stage 0
            terms = tuple(t for t in terms if t not in unused)
    if config.filtration.word_decoder and trains_box_branch(terms):
        terms = (*terms, "query_words")
    return terms


@dataclass(frozen=True)
class StagePlan:
    """One stage of the training recipe (PAPER 1.3).

    Attributes:
        losses: the loss terms computed (others are neither computed nor returned).
        trainable: parts trained (the LLM through its LoRA adapters when LoRA is configured).
        from_scratch: parts also trained when ``config.train_from_scratch`` (the tiny preset has no
            pretrained weights, so its encoders and SAM2 must learn somewhere).
        from_scratch_losses: terms also computed when ``config.train_from_scratch``.
    """

    losses: tuple[str, ...]
    trainable: tuple[str, ...]
    from_scratch: tuple[str, ...]
    from_scratch_losses: tuple[str, ...] = ()


STAGES: dict[int, StagePlan] = {
    # 0: class-agnostic proposer pretraining, DETR losses only. From scratch, SAM2 also learns its
    # promptable segmentation here (ground-truth box -> masklet through its memory), which SPARROW's
    # SAM2 brings from SA-1B / SA-V.
    0: StagePlan(DET_TERMS, ("proposer",), ("sam2",), SAM_TERMS),
    # 1: TSF injection: V->L adapters, LLM (LoRA), [SEG] L->V MLP; no box branch. From scratch the
    # proposer keeps its DETR losses while SAM2's image encoder (its input) trains: frozen, its
    # proposals drift off the objects (top-16 recall 45 % -> 24 % over stages 1-2).
    1: StagePlan(MASK_TERMS, ("spatial_adapter", "temporal_adapter", "llm", "seg_projection"),
                 ("spatial_encoder", "temporal_encoder", "sam2", "proposer"), DET_TERMS),
    # 2: filtration head and the L->V MLPs, box prompt on (recipes set tsf.mode=off here). From
    # scratch the LLM and the V->L adapters also train: nothing else taught them to put the referent
    # into [BOX] / [SEG] without TSF tokens, and the proposal loss is their most direct signal.
    2: StagePlan((*MASK_TERMS, *BOX_TERMS), ("filtration", "seg_projection", "box_projection", "question_bag"),
                 ("sam2", "llm", "spatial_adapter", "temporal_adapter", "proposer"), DET_TERMS),
    # 3 (ours, not in the paper): the pick alone on the frozen model: the filtration head, the [BOX]
    # MLP and the question bag learn which proposal the expression names, with no mask decoding and
    # no gradient through the LLM, so a step costs a fraction of stage 2's and the head can see
    # every expression many times (docs/training.md, "What limits the bundled model").
    3: StagePlan(BOX_TERMS, ("filtration", "box_projection", "question_bag"), ()),
}  # fmt: skip


def build_sam2(config: SparrowConfig) -> Sam2Adapter:
    """SAM2 of the preset: from ``sam2.path`` (local folder) or fresh from ``sam2.variant``.

    Raises:
        ConfigError: the folder's image size or architecture is not ``sam2.image_size`` / ``sam2.variant``
            (a checkpoint stores the variant, so the two must agree).
    """
    settings = config.sam2
    expected = SAM2_VARIANTS[settings.variant](settings.image_size)
    if settings.path is None:
        adapter = Sam2Adapter.from_config(expected)
    else:
        adapter = Sam2Adapter.from_pretrained(settings.path)
        loaded = adapter.model.config
        found = (loaded.image_size, _hiera_shape(loaded), loaded.mask_decoder_config.hidden_size)
        wanted = (expected.image_size, _hiera_shape(expected), expected.mask_decoder_config.hidden_size)
        if found != wanted:
            raise ConfigError(
                f"the SAM2 folder (image size, Hiera stages, decoder width) = {found} does not match "
                f"sam2.variant={settings.variant!r} at {settings.image_size} px = {wanted}",
                path=settings.path,
                fix="set sam2.variant and sam2.image_size to the folder's architecture",
            )
    adapter.box_mask_prompt = settings.box_mask_prompt
    adapter.pointer_dropout = settings.pointer_dropout
    return adapter


def _hiera_shape(config: object) -> tuple[tuple[int, ...], tuple[int, ...]]:
    backbone = config.vision_config.backbone_config
    return tuple(backbone.blocks_per_stage), tuple(backbone.embed_dim_per_stage)


@dataclass
class SparrowOutput:
    """Output of :meth:`SparrowModel.forward`.

    Attributes:
        loss: the sum of :attr:`losses` (scalar).
        losses: every active term (:func:`loss_terms`), already multiplied by its weight in
            ``config.losses``; scalars.
        answer_logits: ``(n_answer, V)`` LM logits at the positions that predict answer tokens, or
            ``None`` when the LLM did not run (stage 0).
        mask_logits: ``(N, 1, S/4, S/4)`` low-res mask logits of each supervised (target, frame) pair
            (not gated by the object score; tracked through SAM2's memory with ``propagation=video``),
            or ``None`` (no mask terms / no supervised pair).
        mask_pairs: ``(N, 2)`` int64 ``([SEG] index, SAM frame index)`` of each row, or ``None``.
        object_score_logits: ``(N, 1)`` SAM2 object scores of the same rows, or ``None``.
        proposals: top-k proposals of each sample's key frame ``(B, k, ...)``, or ``None``.
        filtration: per-``[BOX]`` filtration output ``(n_box, k, ...)``, or ``None``.
    """

    loss: Tensor
    losses: dict[str, Tensor]
    answer_logits: Tensor | None = None
    mask_logits: Tensor | None = None
    mask_pairs: Tensor | None = None
    object_score_logits: Tensor | None = None
    proposals: ProposerOutput | None = None
    filtration: FiltrationOutput | None = None


@dataclass
class GeneratedAnswer:
    """Greedy answer to one prompt.

    Attributes:
        token_ids: ``(n,)`` int64 generated ids (stop token excluded).
        text: decoded text, grounding tokens kept (``"Sure, <p> x </p> [BOX] [SEG]."``).
        seg_hidden: ``(n_seg, D)`` LLM hidden states at the generated ``[SEG]`` tokens, in order.
        box_hidden: ``(n_box, D)`` ``[BOX]`` states, in order: the LLM hidden states at the generated
            ``[BOX]`` tokens, plus the question bag with ``filtration.question_bag`` (of the whole
            prompt: in a multi-turn chat the earlier turns count too).
        stopped: True if the model ended its answer (False: the token budget ran out).
    """

    token_ids: Tensor
    text: str
    seg_hidden: Tensor
    box_hidden: Tensor
    stopped: bool


@dataclass
class GroundingPrompts:
    """SAM2 prompts for ``n`` targets on one key frame.

    Attributes:
        seg_embeddings: ``(n, 1, prompt_dim)`` projected ``[SEG]`` (sparse prompt tokens).
        boxes: ``(n, 4)`` normalised ``cxcywh`` selected boxes, or ``None`` (box prompt off).
        proposals: the key frame's top-k proposals ``(1, k, ...)``, or ``None``.
        filtration: ``(n, k, ...)`` scores / refined boxes, or ``None``.
    """

    seg_embeddings: Tensor
    boxes: Tensor | None
    proposals: ProposerOutput | None
    filtration: FiltrationOutput | None


class SparrowModel(nn.Module):
    """The SPARROW model (see the module docstring).

    Args:
        config: the model config (a preset, see :func:`~sparrow.models.config.load_config`).
        tokenizer: the tokenizer; its size sets the LM vocabulary. ``None`` builds the parts only
            (e.g. on the ``meta`` device to count parameters); text methods then fail.
    """

    def __init__(self, config: SparrowConfig, tokenizer: SparrowTokenizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.spatial_encoder = SpatialEncoder(config.spatial)
        self.temporal_encoder = TemporalEncoder(config.temporal)
        self.llm = build_causal_lm(config.llm, len(tokenizer) if tokenizer is not None else None)
        width = lm_width(self.llm)
        self.spatial_adapter = VisionLanguageAdapter(
            self.spatial_encoder.hidden_size, width, config.spatial.pooled_tokens
        )
        self.temporal_adapter = VisionLanguageAdapter(
            self.temporal_encoder.hidden_size, width, config.temporal.pooled_tokens
        )
        self.sam2 = build_sam2(config)
        p = config.proposer
        self.proposer = Proposer(
            self.sam2.feature_dim,
            p.hidden_dim,
            p.num_queries,
            p.num_layers,
            p.num_heads,
            query_selection=p.query_selection,
        )
        l2v_hidden = config.l2v_hidden or width
        self.seg_projection = LanguageVisionMLP(
            width, l2v_hidden, self.sam2.prompt_dim, norm=config.seg_prompt_norm
        )
        self.box_projection = LanguageVisionMLP(width, l2v_hidden, p.hidden_dim)
        vocab = self.llm.get_input_embeddings().num_embeddings
        self.filtration = FiltrationHead(
            p.hidden_dim,
            p.hidden_dim,
            config.filtration.hidden_dim,
            refine=config.filtration.refine,
            fine_channels=self.sam2.high_res_channels if config.filtration.fine_features else (),
            vocab_size=vocab if config.filtration.word_decoder else 0,
        )
        self.question_bag = QuestionBag(vocab, width) if config.filtration.question_bag else None
        self.stage: int | None = None
        if config.dtype != "float32":
            self.to(_DTYPES[config.dtype])

    @classmethod
    def from_preset(
        cls,
        preset: str | Path,
        overrides: dict | list[str] | None = None,
        *,
        texts: Iterable[str] | None = None,
    ) -> SparrowModel:
        """A fresh model of a preset (name or YAML path) with its tokenizer.

        Parts with a ``path`` load their pretrained weights; the tokenizer is the LM's, or trained on
        ``texts`` for presets without one (``tiny``). See :func:`~sparrow.models.tokenizer.build_tokenizer`.
        """
        config = load_config(preset, overrides)
        return cls(config, build_tokenizer(config.llm, texts))

    # -- structure -------------------------------------------------------------------------------

    def parts(self) -> dict[str, nn.Module]:
        """The named trainable parts (what a training recipe freezes or trains); ``question_bag`` only
        when the model has one (``filtration.question_bag``)."""
        names = (
            "spatial_encoder",
            "spatial_adapter",
            "temporal_encoder",
            "temporal_adapter",
            "llm",
            "seg_projection",
            "box_projection",
            "sam2",
            "proposer",
            "filtration",
            "question_bag",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    @property
    def processor(self) -> SparrowProcessor:
        """Input preparation for this model's sizes and tokenizer."""
        return SparrowProcessor(self.config, self._tok())

    @property
    def width(self) -> int:
        """LLM hidden size ``D``."""
        return lm_width(self.llm)

    def _tok(self) -> SparrowTokenizer:
        if self.tokenizer is None:
            raise RuntimeError("this SparrowModel was built without a tokenizer")
        return self.tokenizer

    # -- vision -> language ----------------------------------------------------------------------

    def encode_video(self, spatial_frames: Tensor, temporal_frames: Tensor) -> Tensor:
        """Visual tokens of ``B`` clips.

        Args:
            spatial_frames: ``(B, T_s, 3, H_s, W_s)`` float (``SparrowProcessor.encoder_inputs``).
            temporal_frames: ``(B, T_t, 3, H_t, W_t)`` float.

        Returns:
            ``(B, n_video, D)``: the temporal tokens (slot-major), then the spatial tokens
            (frame-major), ``n_video = T_t / tubelet * p_t + T_s * p_s``.
        """
        b, t_s = spatial_frames.shape[:2]
        spatial = self.spatial_adapter(self.spatial_encoder(spatial_frames.flatten(0, 1)))
        spatial = spatial.reshape(b, t_s * spatial.shape[1], -1)
        grids = self.temporal_encoder(temporal_frames)  # (B, slots, g, g, C)
        temporal = self.temporal_adapter(grids.flatten(0, 1))
        temporal = temporal.reshape(b, grids.shape[1] * temporal.shape[1], -1)
        return torch.cat([temporal, spatial], dim=1)

    def crop_vectors(self, crops: Tensor) -> Tensor:
        """One LLM-width vector per crop: ``(M, 3, H_s, W_s)`` -> ``(M, D)`` (encoder, adapter, mean)."""
        return self.spatial_adapter(self.spatial_encoder(crops)).mean(dim=1)

    def tsf_tokens(self, crops: Tensor, valid: Tensor | None = None) -> Tensor:
        """TSF tokens of ``B`` tracks.

        Args:
            crops: ``(B, N, 3, H_s, W_s)`` crops along each target's track.
            valid: ``(B, N)`` bool (padding False), or ``None`` for all valid. Every row needs one.

        Returns:
            ``(B, K, D)``: the K medoid crop vectors of each track (differentiable w.r.t. the
            spatial encoder and adapter; the medoid choice itself is not).
        """
        b, n = crops.shape[:2]
        if valid is None:
            valid = torch.ones((b, n), dtype=torch.bool, device=crops.device)
        if not bool(valid.any(dim=1).all()):
            raise ValueError("every TSF row needs at least one valid crop")
        vectors = self.crop_vectors(crops[valid])  # (M, D), row-major over (B, N)
        counts = valid.sum(dim=1).tolist()
        tsf = self.config.tsf
        rows = []
        for chunk in torch.split(vectors, counts):
            rows.append(chunk[kmeans_medoids(chunk, tsf.k, tsf.iterations)])
        return torch.stack(rows)

    def embed_inputs(
        self, input_ids: Tensor, video_tokens: Tensor, tsf_tokens: Tensor | None = None
    ) -> Tensor:
        """Text embeddings ``(B, L, D)`` with the ``<video>`` and ``<tsf>`` placeholders replaced.

        Args:
            input_ids: ``(B, L)``; each row has exactly ``n_video`` ``<video>`` ids and 0 or K ``<tsf>``.
            video_tokens: ``(B, n_video, D)``.
            tsf_tokens: ``(R, K, D)`` for the ``R`` rows that hold ``<tsf>`` ids, in order, or ``None``.
        """
        ids = self._tok().ids
        embeds = self.llm.get_input_embeddings()(input_ids)
        video = input_ids == ids.video
        per_row = video.sum(dim=1)
        if bool((per_row != video_tokens.shape[1]).any()):
            raise ValueError(
                f"rows hold {per_row.tolist()} <video> ids for {video_tokens.shape[1]} visual tokens"
            )
        embeds = embeds.masked_scatter(video[..., None], video_tokens.to(embeds.dtype))
        tsf = input_ids == ids.tsf
        tsf_rows = tsf.any(dim=1)
        if bool(tsf_rows.any()):
            if self.config.tsf.mode == "off":
                raise ValueError("the input has <tsf> tokens but tsf.mode is 'off'")
            if tsf_tokens is None:
                raise ValueError("the input has <tsf> placeholders but no TSF tokens were given")
            k = tsf_tokens.shape[1]
            if bool((tsf.sum(dim=1)[tsf_rows] != k).any()) or tsf_tokens.shape[0] != int(tsf_rows.sum()):
                raise ValueError(
                    f"{int(tsf_rows.sum())} rows hold <tsf> ids but TSF tokens {tuple(tsf_tokens.shape)} were given (K = {k})"
                )
            embeds = embeds.masked_scatter(tsf[..., None], tsf_tokens.to(embeds.dtype))
        return embeds

    # -- training --------------------------------------------------------------------------------

    def set_stage(self, stage: int | None) -> None:
        """Freeze / unfreeze parts and choose the loss terms for a training stage (:data:`STAGES`).

        ``None``: every part trainable, every term (:func:`loss_terms`). Stage 2 needs the box prompt on.
        """
        if stage is not None and stage not in STAGES:
            raise ValueError(f"unknown stage {stage}; use one of {sorted(STAGES)} or None")
        if stage is not None and trains_box_branch(STAGES[stage].losses) and not self.config.box_prompt:
            raise ValueError(f"stage {stage} trains the box branch: set box_prompt=true")
        self.stage = stage
        if stage is None:
            self.requires_grad_(True)
            return
        plan = STAGES[stage]
        train = set(plan.trainable) | (set(plan.from_scratch) if self.config.train_from_scratch else set())
        self.requires_grad_(False)
        parts = self.parts()
        for name in train & parts.keys():
            part = parts[name]
            if name == "llm" and self.config.llm.lora is not None and not self.config.train_from_scratch:
                for param_name, param in part.named_parameters():
                    param.requires_grad_("lora_" in param_name)
            else:
                part.requires_grad_(True)

    def forward(self, batch: SparrowBatch | PickBatch) -> SparrowOutput:
        """Teacher-forced training step: the weighted loss terms of the stage and their sum.

        A :class:`PickBatch` (the frozen model's :meth:`pick_inputs`) gets the box terms of its rows
        only (:meth:`pick_losses`).

        Only what the active terms (:func:`loss_terms`) need is computed: the LLM for CE / masks /
        boxes, SAM2 on the supervised frames for the mask terms and on the key frames for the
        proposer and box terms, the box branch (``[BOX]`` MLP, filtration, box prompt) for the box terms.
        Masks: with ``propagation=video`` the key frame is decoded from the prompts and the other
        supervised frames are tracked through SAM2's memory (:meth:`_track_pairs`); with
        ``framewise`` every supervised frame is decoded with the prompts. ``object_score`` is SAM2's
        presence BCE (target mask non-empty) on the same frames. In training, ``box_teacher_forcing``
        replaces the filtration head's box prompt by the target's jittered ground-truth box for that
        share of the ``[SEG]`` s. The ``sam_*`` terms (stage 0 from scratch) are the same three losses
        for SAM2 prompted with the target's (jittered) ground-truth box alone, for the targets present
        on the key frame.
        """
        if isinstance(batch, PickBatch):
            return self.pick_losses(batch)
        cfg = self.config
        ids = self._tok().ids
        terms = loss_terms(cfg, self.stage)
        need_det = any(t in terms for t in DET_TERMS)
        need_box = trains_box_branch(terms)
        need_mask = "mask_bce" in terms or "mask_dice" in terms
        need_sam = any(t in terms for t in SAM_TERMS)
        seg_box = self._check_targets(batch, masks=need_mask or need_sam, boxes=need_box)
        losses: dict[str, Tensor] = {}

        hidden = answer_logits = None
        if "lm_ce" in terms or need_mask or need_box:
            hidden = self._llm_hidden(batch)
            # Cross-entropy on the answer tokens only (logits only where they are needed).
            targets = batch.labels[:, 1:]
            answer = targets != IGNORE_INDEX
            answer_logits = self.llm.get_output_embeddings()(hidden[:, :-1][answer])
            if "lm_ce" in terms:
                losses["lm_ce"] = (
                    F.cross_entropy(answer_logits.float(), targets[answer])
                    if answer.any()
                    else hidden.sum() * 0.0
                )

        b, t = batch.sam_frames.shape[:2]
        any_mask = need_mask or need_sam
        needed = batch.supervised.clone() if any_mask else torch.zeros_like(batch.supervised)
        track = any_mask and cfg.propagation == "video"
        if need_det or need_box or track:
            needed[torch.arange(b, device=needed.device), batch.key_frames] = True
        flat = needed.flatten().nonzero()[:, 0]
        row_of = torch.full((b * t,), -1, dtype=torch.long, device=flat.device)
        row_of[flat] = torch.arange(flat.numel(), device=flat.device)
        features = self.sam2.image_features(batch.sam_frames.flatten(0, 1)[flat])

        proposals = filtration = box_prompts = None
        if need_det or need_box:
            key_rows = row_of[torch.arange(b, device=flat.device) * t + batch.key_frames]
            all_proposals = self.proposer(features.image_embeddings[key_rows])
            if need_det:
                losses.update(detr_losses(all_proposals, batch.det_boxes))
            proposals = all_proposals.top_k(cfg.proposer.top_k)
        if need_box:
            per_box = _index_proposals(proposals, batch.box_sample)
            fine = self.fine_crops_of(features, key_rows[batch.box_sample], per_box)
            query = self.box_projection(self.box_states(batch, hidden))
            filtration = self.filtration(query, per_box, fine)
            valid = batch.box_valid
            if bool(valid.any()):
                losses.update(
                    _box_losses(
                        filtration.scores[valid],
                        filtration.selected_boxes[valid],
                        per_box.boxes[valid].detach(),
                        batch.boxes[valid],
                    )
                )
            else:
                losses.update(dict.fromkeys(BOX_TERMS, filtration.scores.sum() * 0.0))
            if "query_words" in terms:
                words = self._question_words(batch)[batch.box_sample]
                losses["query_words"] = bag_of_words_loss(
                    self.filtration.decode_words(filtration.query), words
                )
            if seg_box is not None:
                box_prompts = filtration.selected_boxes.detach()[seg_box]
                if self.training and cfg.box_teacher_forcing > 0:
                    forced = torch.rand(seg_box.shape[0], device=seg_box.device) < cfg.box_teacher_forcing
                    forced &= batch.box_valid[seg_box]
                    truth = _jitter_boxes(batch.boxes[seg_box])
                    box_prompts = torch.where(forced[:, None], truth, box_prompts)

        pairs = mask_logits = scores = None
        if need_mask:
            seg_prompts = self.seg_projection(hidden[batch.input_ids == ids.seg])
            decoded = self._supervised_masks(
                batch, features, row_of, None, seg_prompts, box_prompts, track=track
            )
            zero = hidden.sum() * 0.0 + seg_prompts.sum() * 0.0
            losses.update(_mask_losses(decoded, batch, ("mask_bce", "mask_dice", "object_score"), zero))
            if decoded is not None:
                pairs, mask_logits, scores = decoded
        if need_sam:  # targets on the key frame, prompted with their box there
            truth, usable = _key_frame_boxes(batch)
            decoded = self._supervised_masks(
                batch,
                features,
                row_of,
                usable,
                None,
                _jitter_boxes(truth) if self.training else truth,
                track=track,
            )
            zero = features.image_embeddings.sum() * 0.0
            losses.update(_mask_losses(decoded, batch, SAM_TERMS, zero))

        weighted = {name: getattr(cfg.losses, name) * losses[name] for name in terms}
        return SparrowOutput(
            loss=sum(weighted.values()),
            losses=weighted,
            answer_logits=answer_logits,
            mask_logits=mask_logits,
            mask_pairs=pairs,
            object_score_logits=scores,
            proposals=proposals,
            filtration=filtration,
        )

    def _llm_hidden(self, batch: SparrowBatch) -> Tensor:
        """``(B, L, D)`` the LLM's last hidden states of a teacher-forced batch (with ``<tsf>`` tokens
        for the samples prepared with them, unless TSF is off)."""
        video_tokens = self.encode_video(batch.spatial_frames, batch.temporal_frames)
        tsf_tokens = None
        if self.config.tsf.mode != "off" and batch.tsf_crops is not None:
            rows = batch.tsf_valid.any(dim=1)  # samples prepared with TSF
            tsf_tokens = self.tsf_tokens(batch.tsf_crops[rows], batch.tsf_valid[rows])
        embeds = self.embed_inputs(batch.input_ids, video_tokens, tsf_tokens)
        hidden, _ = decoder_hidden(self.llm, embeds, batch.attention_mask)
        return hidden

    @torch.no_grad()
    def pick_inputs(self, batch: SparrowBatch) -> PickBatch:
        """What the pick reads of a teacher-forced batch, for its ``[BOX]`` rows with a target on the
        key frame (``box_valid``): the LLM's ``[BOX]`` states, the question's words, the key frame's
        top-k proposals and their fine-map crops, the target boxes. Everything here is frozen in
        stage 3, so it can be computed once and trained on for many epochs (:meth:`pick_losses`)."""
        b = batch.size
        features = self.sam2.image_features(batch.sam_frames[torch.arange(b), batch.key_frames])
        proposals = self.propose(features)
        hidden = self._llm_hidden(batch)
        valid = batch.box_valid
        rows = batch.box_sample[valid]
        per_row = _index_proposals(proposals, rows)
        question = self.question_tokens(batch)[rows]
        order = question.to(torch.int8).argsort(dim=1, descending=True, stable=True)  # words first
        width = int(question.sum(dim=1).max()) if len(rows) else 0
        word_mask = torch.gather(question, 1, order)[:, :width]
        words = torch.gather(batch.input_ids[rows], 1, order)[:, :width] * word_mask
        return PickBatch(
            states=hidden[batch.input_ids == self._tok().ids.box][valid],
            words=words,
            word_mask=word_mask,
            features=per_row.features,
            boxes=per_row.boxes,
            logits=per_row.logits,
            fine=self.fine_crops_of(features, rows, per_row),
            targets=batch.boxes[valid],
        )

    def score_pick(self, batch: PickBatch) -> FiltrationOutput:
        """The filtration output ``(R, K, ...)`` of the rows of ``batch``: their ``[BOX]`` states (with
        the question bag, as :meth:`box_states`) through the ``[BOX]`` MLP, scored against their
        proposals."""
        states = batch.states
        if self.question_bag is not None:
            states = self.with_question_bag(states, self.question_bag(batch.words, batch.word_mask))
        proposals = ProposerOutput(boxes=batch.boxes, logits=batch.logits, features=batch.features)
        return self.filtration(self.box_projection(states), proposals, batch.fine)

    def pick_losses(self, batch: PickBatch) -> SparrowOutput:
        """The stage's box terms (and ``query_words``) on the rows of ``batch``, weighted as in
        :meth:`forward`; only ``filtration`` is set among the outputs.

        Raises:
            ValueError: the stage has terms a :class:`PickBatch` cannot give (only stage 3's can).
        """
        terms = loss_terms(self.config, self.stage)
        other = sorted(set(terms) - {*BOX_TERMS, "query_words"})
        if other:
            raise ValueError(
                f"a PickBatch holds the pick's inputs only, stage {self.stage} also trains {other}: "
                "train on a pick cache at stage 3"
            )
        filtration = self.score_pick(batch)
        losses = _box_losses(filtration.scores, filtration.selected_boxes, batch.boxes, batch.targets)
        if "query_words" in terms:
            bags = self._word_bags(batch.words, batch.word_mask)
            losses["query_words"] = bag_of_words_loss(self.filtration.decode_words(filtration.query), bags)
        weighted = {name: getattr(self.config.losses, name) * losses[name] for name in terms}
        return SparrowOutput(loss=sum(weighted.values()), losses=weighted, filtration=filtration)

    def box_states(self, batch: SparrowBatch, hidden: Tensor) -> Tensor:
        """``(n_box, D)`` the ``[BOX]`` states of a teacher-forced batch, in order, from the LLM's last
        hidden states ``hidden`` ``(B, L, D)``: the states at the ``[BOX]`` tokens, plus their
        sample's question bag with ``filtration.question_bag`` (the bag alone with
        ``filtration.box_state`` off; what :meth:`generate` returns as ``box_hidden``)."""
        states = hidden[batch.input_ids == self._tok().ids.box]
        if self.question_bag is None:
            return states
        bags = self.question_bag(batch.input_ids, self.question_tokens(batch))
        return self.with_question_bag(states, bags[batch.box_sample])

    def with_question_bag(self, states: Tensor, bags: Tensor) -> Tensor:
        """``[BOX]`` states ``(n, D)`` with their question bags ``(n, D)`` added, or the bags alone
        (in ``states``' dtype) with ``filtration.box_state`` off."""
        bags = bags.to(states.dtype)
        return states + bags if self.config.filtration.box_state else bags

    def question_tokens(self, batch: SparrowBatch) -> Tensor:
        """``(B, L)`` bool: the positions of each sample's question words, the prompt's tokens (label
        ignored, not padding) other than the special ones (chat, grounding, ``<video>`` / ``<tsf>``);
        the template's newline stays."""
        prompt = (batch.labels == IGNORE_INDEX) & batch.attention_mask.bool()
        return prompt & ~self._special_tokens(batch.input_ids)

    def _special_tokens(self, ids: Tensor) -> Tensor:
        """``ids``-shaped bool: the tokenizer's special ids (chat, grounding, ``<video>`` / ``<tsf>``)."""
        special = torch.tensor(
            [i for i in vars(self._tok().ids).values() if i is not None], device=ids.device
        )
        return torch.isin(ids, special)

    def _question_words(self, batch: SparrowBatch) -> Tensor:
        """``(B, V)`` bool bag of each sample's question tokens (:meth:`question_tokens`); the
        template's newline is a word common to every bag."""
        return self._word_bags(batch.input_ids, self.question_tokens(batch))

    def _word_bags(self, ids: Tensor, words: Tensor) -> Tensor:
        """``(B, V)`` bool: which vocabulary ids occur in each row of ``ids`` ``(B, L)`` at the
        positions ``words`` ``(B, L)`` bool marks."""
        rows, cols = words.nonzero(as_tuple=True)
        vocab = self.filtration.word_decoder.out_features
        bags = torch.zeros(ids.shape[0], vocab, dtype=torch.bool, device=ids.device)
        bags[rows, ids[rows, cols]] = True
        return bags

    def _supervised_masks(
        self,
        batch: SparrowBatch,
        features: Sam2Features,
        row_of: Tensor,
        use: Tensor | None,
        seg_prompts: Tensor | None,
        box_prompts: Tensor | None,
        *,
        track: bool,
    ) -> tuple[Tensor, Tensor, Tensor] | None:
        """SAM2's masks of the ``[SEG]`` targets selected by ``use`` ``(n_seg,)`` bool (``None``: all) on their supervised
        frames: ``(pairs (N, 2) ([SEG] j, SAM frame), mask logits (N, 1, S/4, S/4), object scores
        (N, 1))``, or ``None`` when no pair is supervised.

        Prompts: ``seg_prompts`` ``(n_seg, prompt_dim)`` and / or ``box_prompts`` ``(n_seg, 4)`` normalised
        ``cxcywh`` (rows of unselected targets are ignored). ``track``: tracked from the key frame
        through SAM2's memory (:meth:`_track_pairs`), else every frame decoded with the prompts.
        """
        supervised = batch.supervised[batch.seg_sample]
        pairs = (supervised if use is None else supervised & use[:, None]).nonzero()
        if not pairs.shape[0]:
            return None
        if track:
            mask_logits, scores = self._track_pairs(batch, features, row_of, pairs, seg_prompts, box_prompts)
            return pairs, mask_logits, scores
        j = pairs[:, 0]
        frames = features.select(row_of[batch.seg_sample[j] * batch.sam_frames.shape[1] + pairs[:, 1]])
        boxes = None if box_prompts is None else box_prompts[j]
        seg = None if seg_prompts is None else seg_prompts[j][:, None]
        if self.config.propagation == "chain":
            return pairs, *self._chain_pairs(batch, frames, pairs, boxes, seg)
        decoded = self.sam2.decode(frames, boxes=boxes, seg_embeddings=seg)
        return pairs, decoded.mask_logits, decoded.object_score_logits

    def _chain_pairs(
        self,
        batch: SparrowBatch,
        frames: Sam2Features,
        pairs: Tensor,
        boxes: Tensor | None,
        seg: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Teacher-forced ``chain`` decoding of the supervised pairs ``pairs`` ``(N, 2)`` (``[SEG] j``,
        SAM frame) on their ``frames`` (``N`` rows): mask logits ``(N, 1, S/4, S/4)``, object scores ``(N, 1)``.

        Each pair gets the prompts :meth:`propagate` would give it had every earlier frame of its
        direction been segmented exactly: the nearest frame between it and its sample's key frame
        (the key frame included; supervised frames only) where the target's ground-truth mask is not
        empty lends its box, widened by :data:`CHAIN_MARGIN` per side (jittered in training), and with
        ``config.chain_mask_prompt`` its mask on SAM2's mask-prompt grid. The key frame, and frames
        with no such earlier frame, are decoded like the key frame: ``boxes`` ``(N, 4)`` / ``None``.
        ``seg``: ``(N, 1, prompt_dim)`` or ``None``, every pair.
        """
        key_frames = batch.key_frames.tolist()
        samples = batch.seg_sample.tolist()
        supervised = batch.supervised.tolist()
        filled = batch.seg_masks.flatten(2).any(dim=2).tolist()  # (n_seg, T_sam)
        sources: list[int] = []
        for j, f in pairs.tolist():
            b = samples[j]
            key = key_frames[b]
            step = 1 if f > key else -1
            earlier = range(f - step, key - step, -step) if f != key else range(0)
            sources.append(next((g for g in earlier if (g == key or supervised[b][g]) and filled[j][g]), -1))
        source = torch.tensor(sources, device=pairs.device)
        follow = source >= 0
        keyed = ~follow
        n = pairs.shape[0]
        mask_logits = frames.image_embeddings.new_zeros(n, 1, *frames.high_res_features[0].shape[-2:])
        scores = frames.image_embeddings.new_zeros(n, 1)
        if bool(keyed.any()):
            out = self.sam2.decode(
                frames.select(keyed),
                boxes=None if boxes is None else boxes[keyed],
                seg_embeddings=None if seg is None else seg[keyed],
            )
            mask_logits[keyed], scores[keyed] = out.mask_logits, out.object_score_logits
        if bool(follow.any()):
            previous = batch.seg_masks[pairs[follow, 0], source[follow]]  # (n, S, S) bool
            chain_boxes = _widen_boxes(_mask_boxes(previous).to(frames.image_embeddings.dtype))
            if self.training:
                chain_boxes = _jitter_boxes(chain_boxes)
            prompts = None
            if self.config.chain_mask_prompt:
                side = mask_logits.shape[-1]
                grid = F.interpolate(previous[:, None].float(), size=(side, side), mode="area")
                prompts = (grid >= 0.5).to(mask_logits.dtype)
            out = self.sam2.decode(
                frames.select(follow),
                boxes=chain_boxes,
                seg_embeddings=None if seg is None else seg[follow],
                mask_prompts=prompts,
            )
            mask_logits[follow], scores[follow] = out.mask_logits, out.object_score_logits
        return mask_logits, scores

    def _track_pairs(
        self,
        batch: SparrowBatch,
        features: Sam2Features,
        row_of: Tensor,
        pairs: Tensor,
        seg_prompts: Tensor | None,
        box_prompts: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Mask logits ``(N, 1, S/4, S/4)`` and object scores ``(N, 1)`` of the supervised pairs
        ``pairs`` ``(N, 2)`` (``[SEG] j``, SAM frame), through SAM2's memory (:meth:`Sam2Adapter.track`).

        Each ``[SEG]`` of ``pairs`` is tracked from its sample's key frame, prompted with its ``[SEG]``
        embedding ``seg_prompts[j]`` and / or box ``box_prompts[j]``, forward over the later supervised
        frames and, as SAM2 propagates, backward over the earlier ones (a second clip from the key
        frame). Frames are visited in order; the memory's temporal offsets count supervised frames.
        Clips of equal length are tracked together. ``row_of`` maps ``sample * T + frame`` to a row of
        ``features``.
        """
        t = batch.sam_frames.shape[1]
        supervised = batch.supervised.tolist()
        key_frames = batch.key_frames.tolist()
        samples = batch.seg_sample.tolist()
        clips: dict[int, list[tuple[int, int, list[int]]]] = {}  # length -> [(j, sample, frames)]
        for j in sorted(set(pairs[:, 0].tolist())):
            b = samples[j]
            key = key_frames[b]
            after = [key, *(f for f in range(key + 1, t) if supervised[b][f])]
            before = [key, *(f for f in range(key - 1, -1, -1) if supervised[b][f])]
            for clip in (after, before) if len(before) > 1 else (after,):
                clips.setdefault(len(clip), []).append((j, b, clip))
        tracked: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        for group in clips.values():
            rows = row_of[
                torch.tensor([b * t + f for _, b, clip in group for f in clip], device=row_of.device)
            ]
            index = torch.tensor([j for j, _, _ in group], device=row_of.device)
            out = self.sam2.track(
                features.select(rows),
                boxes=None if box_prompts is None else box_prompts[index],
                seg_embeddings=None if seg_prompts is None else seg_prompts[index][:, None],
            )
            for i, (j, _, clip) in enumerate(group):
                for position, f in enumerate(clip):  # the key frame: from the first clip
                    tracked.setdefault(
                        (j, f), (out.mask_logits[i, position], out.object_score_logits[i, position])
                    )
        rows = [tracked[(j, f)] for j, f in pairs.tolist()]
        return torch.stack([r[0] for r in rows]), torch.stack([r[1] for r in rows])

    def _check_targets(self, batch: SparrowBatch, *, masks: bool, boxes: bool) -> Tensor | None:
        """Validate the grounding tokens against the targets before any compute; when both branches
        run, return the ``[BOX]`` index of each ``[SEG]`` (its box prompt)."""
        ids = self._tok().ids
        n_seg = int((batch.input_ids == ids.seg).sum())
        if masks and n_seg != batch.seg_masks.shape[0]:
            raise ValueError(
                f"the batch has {n_seg} [SEG] tokens but {batch.seg_masks.shape[0]} target masklets"
            )
        if not boxes:
            return None
        n_box = int((batch.input_ids == ids.box).sum())
        if n_box != batch.boxes.shape[0]:
            raise ValueError(f"the batch has {n_box} [BOX] tokens but {batch.boxes.shape[0]} box targets")
        return _seg_box_pairs(batch.input_ids, ids.box, ids.seg) if masks else None

    # -- inference pieces ------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Sequence[int] | Tensor,
        video_tokens: Tensor,
        tsf_tokens: Tensor | None = None,
        *,
        max_new_tokens: int = 64,
    ) -> GeneratedAnswer:
        """Greedy answer to one prompt.

        Args:
            prompt_ids: ``(L,)`` ids from ``processor.prompt_ids``.
            video_tokens: ``(1, n_video, D)`` from :meth:`encode_video`.
            tsf_tokens: ``(1, K, D)`` from :meth:`tsf_tokens` when the prompt has ``<tsf>`` ids.
            max_new_tokens: token budget.
        """
        tok = self._tok()
        device = video_tokens.device
        ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=device)[None]
        embeds = self.embed_inputs(ids, video_tokens, tsf_tokens)
        out = greedy_generate(
            self.llm, embeds, max_new_tokens=max_new_tokens, stop_ids={tok.ids.end, tok.ids.pad}
        )
        box_hidden = out.hidden[out.token_ids == tok.ids.box]
        if self.question_bag is not None:
            # the bag of the training example this answer makes: its unlabelled tokens are the
            # prompt's and the tail's, so the words (and the template's newlines) count as in training
            unlabelled = torch.cat([ids, ids.new_tensor([tok.tail_ids()])], dim=1)
            bag = self.question_bag(unlabelled, ~self._special_tokens(unlabelled))
            box_hidden = self.with_question_bag(box_hidden, bag.expand(box_hidden.shape[0], -1))
        return GeneratedAnswer(
            token_ids=out.token_ids,
            text=tok.decode(out.token_ids.tolist()),
            seg_hidden=out.hidden[out.token_ids == tok.ids.seg],
            box_hidden=box_hidden,
            stopped=out.stopped,
        )

    def propose(self, key_features: Sam2Features) -> ProposerOutput:
        """Top-k class-agnostic proposals of key frames: features of ``N`` frames -> ``(N, k, ...)``."""
        return self.proposer(key_features.image_embeddings).top_k(self.config.proposer.top_k)

    def fine_crops_of(self, features: Sam2Features, rows: Tensor, proposals: ProposerOutput) -> Tensor | None:
        """The filtration head's fine input: crops ``(n, k, F)`` of ``features``' high-res maps at
        ``rows`` in the ``n`` rows of ``proposals`` (``None`` with ``filtration.fine_features`` off)."""
        if self.filtration.fine_proj is None:
            return None
        return fine_crops([f[rows] for f in features.high_res_features], proposals.boxes)

    def select_boxes(
        self, box_hidden: Tensor, key_features: Sam2Features
    ) -> tuple[FiltrationOutput, ProposerOutput]:
        """Boxes for ``n`` ``[BOX]`` queries on one key frame: proposer, then filtration head.

        Args:
            box_hidden: ``(n, D)`` LLM hidden states of the ``[BOX]`` tokens.
            key_features: SAM2 features of exactly ONE key frame.

        Returns:
            The filtration output ``(n, k, ...)`` (``selected_boxes``: ``(n, 4)`` normalised ``cxcywh``)
            and the key frame's top-k proposals ``(1, k, ...)``.
        """
        if len(key_features) != 1:
            raise ValueError("select_boxes needs the SAM2 features of exactly one key frame")
        proposals = self.propose(key_features)
        index = torch.zeros(box_hidden.shape[0], dtype=torch.long, device=box_hidden.device)
        per_box = _index_proposals(proposals, index)
        query = self.box_projection(box_hidden)
        return self.filtration(query, per_box, self.fine_crops_of(key_features, index, per_box)), proposals

    def prompts_from_hidden(
        self, seg_hidden: Tensor, box_hidden: Tensor | None, key_features: Sam2Features | None
    ) -> GroundingPrompts:
        """SAM2 prompts for ``n`` targets from LLM hidden states.

        Args:
            seg_hidden: ``(n, D)`` hidden states of the ``[SEG]`` tokens.
            box_hidden: ``(n, D)`` hidden states of the ``[BOX]`` paired with each ``[SEG]`` (row ``i``
                with ``[SEG]`` ``i``), or ``None``.
            key_features: SAM2 features of the ONE key frame (needed when the box prompt is on).

        With the box prompt off (or ``box_hidden`` None) only the ``[SEG]`` prompt is made and the
        proposer / filtration head are not called.
        """
        seg = self.seg_projection(seg_hidden)[:, None]
        if not self.config.box_prompt or box_hidden is None:
            return GroundingPrompts(seg_embeddings=seg, boxes=None, proposals=None, filtration=None)
        if key_features is None:
            raise ValueError("the box prompt needs the SAM2 features of exactly one key frame")
        if box_hidden.shape[0] != seg_hidden.shape[0]:
            raise ValueError(f"{box_hidden.shape[0]} [BOX] states for {seg_hidden.shape[0]} [SEG] states")
        filtration, proposals = self.select_boxes(box_hidden, key_features)
        return GroundingPrompts(
            seg_embeddings=seg, boxes=filtration.selected_boxes, proposals=proposals, filtration=filtration
        )

    @torch.inference_mode()
    def propagate(
        self,
        pixel_values: Tensor | Sequence[Tensor],
        key_frame: int,
        *,
        box: Tensor | None,
        seg_embedding: Tensor,
        features: Callable[[int], Sam2Features] | None = None,
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Masks of ONE target on every frame, as ``config.propagation`` says.

        ``video``: prompt the key frame and let SAM2's memory track (``Sam2Adapter.propagate``).
        ``framewise``: decode every frame on its own with the same prompts (no memory).
        ``chain``: decode every frame on its own with the ``[SEG]`` and a box that follows the target:
        the key frame's box there, then on each frame the box of the previous frame's mask, widened
        by :data:`CHAIN_MARGIN` of its size on every side (while the target is absent -- object
        score <= 0 or an empty mask -- the last box is kept); with ``config.chain_mask_prompt`` the
        previous frame's mask also enters as SAM2's dense mask prompt (kept likewise). Each direction
        starts again from the key frame's mask.

        Args:
            pixel_values: ``(T, 3, S, S)`` SAM2 inputs, or a sequence of ``(3, S, S)`` (streamed).
            key_frame: the prompted frame.
            box: ``(1, 4)`` normalised ``cxcywh`` or ``None``; seg_embedding: ``(1, 1, prompt_dim)``.
            features: ``framewise`` / ``chain``: the SAM2 features of frame ``t`` (e.g. a cache
                several targets share, so each frame is encoded once); ``None`` encodes
                ``pixel_values[t]``. ``video`` encodes inside SAM2's session and refuses it.

        Yields:
            ``(t, mask_logits (1, 1, S/4, S/4), object_score_logit (1, 1))``: the key frame, then
            ``key+1 .. T-1``, then ``key-1 .. 0``.
        """
        if self.config.propagation == "video":
            if features is not None:
                raise ValueError("video propagation encodes the frames in SAM2's session: pass no features")
            yield from self.sam2.propagate(pixel_values, key_frame, box=box, seg_embedding=seg_embedding)
            return

        def encode(t: int) -> Sam2Features:
            return self.sam2.image_features(pixel_values[t][None]) if features is None else features(t)

        n = len(pixel_values)
        follow = self.config.propagation == "chain"
        with_mask = follow and self.config.chain_mask_prompt
        start: tuple[Tensor | None, Tensor | None] = (box, None)  # where each direction starts
        for i, order in enumerate(([key_frame], range(key_frame + 1, n), range(key_frame - 1, -1, -1))):
            current, mask = start
            for t in order:
                out = self.sam2.decode(
                    encode(t), boxes=current, seg_embeddings=seg_embedding, mask_prompts=mask
                )
                yield t, out.mask_logits, out.object_score_logits
                if follow:
                    current, mask = _follow(out, current, mask, with_mask=with_mask)
            if i == 0:
                start = (current, mask)

    # -- checkpoints -----------------------------------------------------------------------------

    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``config.json``, ``model.safetensors`` and the tokenizer to ``folder`` atomically."""
        from sparrow.models.checkpoint import save_checkpoint

        return save_checkpoint(self, folder)

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, overrides: dict | list[str] | None = None, fresh: Sequence[str] = ()
    ) -> SparrowModel:
        """Load a folder written by :meth:`save_pretrained` (strict but for the parts ``fresh``;
        see :mod:`.checkpoint`)."""
        from sparrow.models.checkpoint import load_checkpoint

        return load_checkpoint(folder, overrides, fresh)


CHAIN_MARGIN = 0.25
"""How much ``chain`` propagation widens the previous mask's box on each side, as a share of its size."""


def _widen_boxes(xyxy: Tensor) -> Tensor:
    """Normalised ``xyxy`` boxes ``(N, 4)`` widened by :data:`CHAIN_MARGIN` of their size on every side
    and clipped to the image -> ``(N, 4)`` normalised ``cxcywh``."""
    size = (xyxy[:, 2:] - xyxy[:, :2]).repeat(1, 2)
    widened = xyxy + CHAIN_MARGIN * size * xyxy.new_tensor([-1.0, -1.0, 1.0, 1.0])
    return box_convert(widened.clamp(0.0, 1.0), "xyxy", "cxcywh")


def _follow(
    out: MaskDecoderOutput, box: Tensor | None, mask: Tensor | None, *, with_mask: bool
) -> tuple[Tensor | None, Tensor | None]:
    """The ``chain`` prompts after a decoded frame: the box of its mask (low-res logits > 0) widened
    by :func:`_widen_boxes` as ``(1, 4)`` normalised ``cxcywh``, and with ``with_mask`` that mask as a
    ``(1, 1, S/4, S/4)`` float mask prompt (else ``None``); ``box`` and ``mask`` unchanged where the
    target is absent (object score <= 0 or empty mask)."""
    region = out.mask_logits[:, 0] > 0  # (1, S/4, S/4)
    if float(out.object_score_logits.reshape(())) <= 0 or not bool(region.any()):
        return box, mask
    dtype = out.mask_logits.dtype
    return _widen_boxes(_mask_boxes(region).to(dtype)), (region[:, None].to(dtype) if with_mask else None)


def _seg_box_pairs(input_ids: Tensor, box_id: int, seg_id: int) -> Tensor:
    """For each ``[SEG]`` (reading order), the index (reading order) of its ``[BOX]``: the last
    ``[BOX]`` after the previous ``[SEG]`` of the row -> ``(n_seg,)`` int64.

    Raises:
        ValueError: a ``[SEG]`` has no such ``[BOX]``.
    """
    pairs: list[int] = []
    n_box = 0
    for row in input_ids.tolist():
        last = None
        for token in row:
            if token == box_id:
                last = n_box
                n_box += 1
            elif token == seg_id:
                if last is None:
                    raise ValueError(
                        "box_prompt is on but a [SEG] has no [BOX] before it (format answers with "
                        "SparrowProcessor.format_answer)"
                    )
                pairs.append(last)
                last = None
    return torch.tensor(pairs, dtype=torch.long, device=input_ids.device)


def _mask_losses(
    decoded: tuple[Tensor, Tensor, Tensor] | None,
    batch: SparrowBatch,
    names: tuple[str, str, str],
    zero: Tensor,
) -> dict[str, Tensor]:
    """BCE, Dice and object-score BCE (named ``names``) of ``decoded`` = ``(pairs, mask logits,
    object scores)`` from :meth:`SparrowModel._supervised_masks` against ``batch.seg_masks``
    (``zero`` for every term when nothing was decoded)."""
    if decoded is None:
        return dict.fromkeys(names, zero)
    pairs, mask_logits, scores = decoded
    size = tuple(batch.seg_masks.shape[-2:])
    logits = Sam2Adapter.upsample_logits(mask_logits, size)[:, 0]
    target = batch.seg_masks[pairs[:, 0], pairs[:, 1]].to(logits.dtype)
    present = target.flatten(1).any(dim=1, keepdim=True).to(scores.dtype)
    bce, dice, objectness = names
    return {
        bce: mask_bce_loss(logits, target),
        dice: dice_loss(logits, target),
        objectness: F.binary_cross_entropy_with_logits(scores, present),
    }


def _key_frame_boxes(batch: SparrowBatch) -> tuple[Tensor, Tensor]:
    """Each ``[SEG]`` target's box on its sample's key frame, from its mask: normalised ``cxcywh``
    ``(n_seg, 4)`` and ``(n_seg,)`` bool, False where the mask is empty there."""
    key_masks = batch.seg_masks[torch.arange(batch.seg_masks.shape[0]), batch.key_frames[batch.seg_sample]]
    return box_convert(_mask_boxes(key_masks), "xyxy", "cxcywh"), key_masks.flatten(1).any(dim=1)


def _mask_boxes(masks: Tensor) -> Tensor:
    """Tight boxes of bool masks ``(N, H, W)`` as normalised ``xyxy`` ``(N, 4)`` float32 on their device
    (``masks_to_boxes``' pixel-extent convention; empty masks give zeros)."""
    return normalize_boxes(masks_to_boxes(masks), tuple(masks.shape[-2:]))


def _jitter_boxes(boxes: Tensor, noise: float = 0.1) -> Tensor:
    """Training jitter of normalised ``cxcywh`` boxes ``(N, 4)``, as SAM trains its box prompts: centres
    move by ``noise`` x the box size (Gaussian), sizes scale by ``exp(noise * N(0, 1))``; the result is
    clipped to the frame. Uses the global torch RNG (saved in training checkpoints)."""
    centre, size = boxes[:, :2], boxes[:, 2:]
    centre = centre + noise * size * torch.randn_like(centre)
    size = size * torch.exp(noise * torch.randn_like(size))
    xyxy = torch.cat([centre - size / 2, centre + size / 2], dim=1).clamp(0.0, 1.0)
    return box_convert(xyxy, "xyxy", "cxcywh")


def _box_losses(scores: Tensor, selected_boxes: Tensor, boxes: Tensor, targets: Tensor) -> dict[str, Tensor]:
    """The box terms (:data:`BOX_TERMS`, unweighted) of ``n`` ``[BOX]`` rows from the filtration
    head's ``scores`` ``(n, K)`` and ``selected_boxes`` ``(n, 4)``, the rows' proposal boxes
    ``(n, K, 4)`` and targets ``(n, 4)`` (normalised ``cxcywh``)."""
    return {
        "proposal_bce": proposal_selection_loss(scores, boxes, targets),
        "proposal_rank": proposal_ranking_loss(scores, boxes, targets),
        **box_l1_giou_loss(selected_boxes, targets),
    }


def _index_proposals(proposals: ProposerOutput, index: Tensor) -> ProposerOutput:
    """Rows ``index`` of ``proposals`` (one image's proposals per ``[BOX]`` query)."""
    return ProposerOutput(
        boxes=proposals.boxes[index], logits=proposals.logits[index], features=proposals.features[index]
    )
