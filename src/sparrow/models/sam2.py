"""SAM2 as SPARROW's pixel encoder, prompt decoder and video propagator (over transformers 5.x).

One :class:`transformers.Sam2VideoModel` holds the only copy of the SAM2 weights. Three paths read it:

- the **train path** (:meth:`Sam2Adapter.image_features` + :meth:`Sam2Adapter.decode`) runs the image
  encoder, the prompt encoder and the mask decoder directly, so gradients reach the projected
  ``[SEG]`` embedding (given as extra sparse prompt tokens), the box prompt and the decoder weights;
- the **memory training path** (:meth:`Sam2Adapter.track`) prompts frame 0 of a clip like
  :meth:`~Sam2Adapter.decode`, then runs SAM2's memory encoder, memory attention and object pointers
  over the later frames by calling those transformers submodules directly (outside
  ``inference_mode``): the same math as the propagation path's forward pass, differentiable;
- the **propagation path** (:meth:`Sam2Adapter.propagate`) decodes the key frame through the train
  path, writes that prediction into a :class:`transformers.Sam2VideoInferenceSession` as the
  conditioning frame, and lets ``Sam2VideoModel.forward`` (SAM2 memory attention + memory encoder)
  track the object forward and then backward from the key frame, one streamed frame at a time.

Coordinates: frames are resized (no padding) to a square ``S x S`` (``S = image_size``); boxes are
normalised ``cxcywh`` in ``[0, 1]`` of the frame, which is the same for the square and the original
frame. Mask logits are low resolution, ``(S/4, S/4)``.

Two deliberate departures from stock ``transformers`` behaviour, both documented where they happen:
single-mask prompts always use SAM2's single-mask output token (``dynamic_multimask_via_stability``
off, so training and inference decode the key frame identically), and the sine positional
encodings of the FPN neck are cached per shape (identical values, about 1.5 ms/frame saved on CPU).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import Tensor, nn
from transformers import (
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VideoConfig,
    Sam2VideoInferenceSession,
    Sam2VideoModel,
    Sam2VisionConfig,
)

from sparrow.errors import CheckpointError, ConfigError
from sparrow.structures.boxes import box_convert

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# SAM2's placeholder logit for "object absent" (the video model writes it into every pixel).
NO_OBJECT_LOGIT = -1024.0

_OBJ_ID = 0  # the single object tracked by one propagate() call


# --------------------------------------------------------------------------------------------------
# configs


def _check_image_size(image_size: int) -> None:
    # The Hiera patch embedding has stride 4 and its first window size is 8, and three query-pooling
    # stages follow: every level is an integer grid only when S is a multiple of 32.
    if image_size < 64 or image_size % 32:
        raise ConfigError(
            f"SAM2 image_size must be a multiple of 32 and at least 64, got {image_size}",
            fix="set the preset's sam2 image size to e.g. 128, 256, 512 or 1024",
        )


def _video_config(
    image_size: int,
    backbone: Sam2HieraDetConfig,
    hidden: int,
    decoder: dict,
    **video_kwargs: object,
) -> Sam2VideoConfig:
    """Assemble a :class:`Sam2VideoConfig` whose every image-size-dependent field agrees with ``S``."""
    _check_image_size(image_size)
    s = image_size
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=list(reversed(backbone.embed_dim_per_stage)),
        backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
        fpn_hidden_size=hidden,
    )
    return Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=hidden, image_size=s).to_dict(),
        mask_decoder_config=Sam2MaskDecoderConfig(hidden_size=hidden, **decoder).to_dict(),
        image_size=s,
        memory_attention_hidden_size=hidden,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=hidden,
        mask_downsampler_embed_dim=hidden,
        memory_fuser_embed_dim=hidden,
        **video_kwargs,
    )


def tiny_sam2_config(image_size: int = 128) -> Sam2VideoConfig:
    """A small SAM2 (about 1.2 M parameters) for the ``tiny`` preset, fast on one CPU core.

    Hiera with one block per stage (widths 16-32-64-128; the last stage attends globally on the
    ``S/16`` grid), FPN / decoder / memory width 128 (a multiple of 64 above the 64-channel memory,
    as SAM2's object-pointer split requires), memory features of 64 channels, one memory-attention
    layer, one memory-fuser block, and a mask downsampler that patchifies by 4 twice (stride 16 in
    two steps instead of SAM2's four). The memory bank keeps SAM2's 7 frames and 16 object pointers.
    Tracked frames are decoded with the single-mask token, the one the prompted frames train (trained
    from scratch, the tiny model has no use for SAM2's three ambiguity tokens).
    """
    backbone = Sam2HieraDetConfig(
        hidden_size=16,
        num_attention_heads=1,
        image_size=[image_size, image_size],
        blocks_per_stage=[1, 1, 1, 1],
        embed_dim_per_stage=[16, 32, 64, 128],
        num_attention_heads_per_stage=[1, 1, 2, 4],
        window_size_per_stage=[8, 8, 8, 4],
        global_attention_blocks=[],
        window_positional_embedding_background_size=[4, 4],
    )
    return _video_config(
        image_size,
        backbone,
        hidden=128,
        decoder={"mlp_dim": 256, "num_attention_heads": 4, "iou_head_hidden_dim": 128},
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=256,
        memory_encoder_output_channels=64,
        mask_downsampler_kernel_size=4,
        mask_downsampler_stride=4,
        mask_downsampler_padding=0,
        memory_fuser_num_layers=1,
        memory_fuser_intermediate_dim=256,
        multimask_output_for_tracking=False,
    )


def sam2_hiera_large_config(image_size: int = 1024) -> Sam2VideoConfig:
    """SAM2.1 Hiera-L as published (224.4 M parameters at 1024 px).

    Hiera-L trunk (width 144, stages 2-6-36-4, global attention in blocks 23, 33, 43, windows
    8-4-16-8), FPN width 256, SAM2.1 memory (7 frames, 4 RoPE memory-attention layers, 64-channel
    memory, temporal encoding of object pointers, occlusion embedding): the remaining fields are the
    transformers defaults, which are SAM2.1's.
    """
    backbone = Sam2HieraDetConfig(
        hidden_size=144,
        num_attention_heads=2,
        image_size=[image_size, image_size],
        blocks_per_stage=[2, 6, 36, 4],
        embed_dim_per_stage=[144, 288, 576, 1152],
        num_attention_heads_per_stage=[2, 4, 8, 16],
        window_size_per_stage=[8, 4, 16, 8],
        global_attention_blocks=[23, 33, 43],
        window_positional_embedding_background_size=[7, 7],
    )
    return _video_config(
        image_size,
        backbone,
        hidden=256,
        decoder={},
        enable_temporal_pos_encoding_for_object_pointers=True,
        enable_occlusion_spatial_embedding=True,
    )


def as_video_config(config: Sam2Config | Sam2VideoConfig) -> Sam2VideoConfig:
    """A private copy of ``config`` as a :class:`Sam2VideoConfig` (an image-only ``Sam2Config`` gets
    SAM2.1's default memory modules)."""
    if isinstance(config, Sam2VideoConfig):
        return copy.deepcopy(config)
    if isinstance(config, Sam2Config):
        image_size = config.prompt_encoder_config.image_size
        return Sam2VideoConfig(
            vision_config=config.vision_config.to_dict(),
            prompt_encoder_config=config.prompt_encoder_config.to_dict(),
            mask_decoder_config=config.mask_decoder_config.to_dict(),
            image_size=image_size,
            memory_attention_rope_feat_sizes=[image_size // 16, image_size // 16],
        )
    raise TypeError(f"expected a Sam2VideoConfig or Sam2Config, got {type(config).__name__}")


# --------------------------------------------------------------------------------------------------
# outputs


@dataclass
class Sam2Features:
    """SAM2 image-encoder output for ``N`` images of ``S x S`` (float, the model's dtype).

    Attributes:
        image_embeddings: ``(N, C, S/16, S/16)``, the top FPN level as the encoder gives it (without
            SAM2's "no memory" embedding, which :meth:`Sam2Adapter.decode` adds). The proposer reads
            these.
        high_res_features: ``[(N, C/8, S/4, S/4), (N, C/4, S/8, S/8)]``, the two finer FPN levels
            already projected by the mask decoder's ``conv_s0`` / ``conv_s1`` (transformers layout).
    """

    image_embeddings: Tensor
    high_res_features: list[Tensor]

    def __len__(self) -> int:
        return self.image_embeddings.shape[0]

    def select(self, index: Tensor | slice | int) -> Sam2Features:
        """The features of a subset of the images (``index`` over the leading dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return Sam2Features(self.image_embeddings[index], [f[index] for f in self.high_res_features])


@dataclass
class MaskDecoderOutput:
    """SAM2 mask-decoder output for ``N`` prompts (single-mask token).

    Attributes:
        mask_logits: ``(N, 1, S/4, S/4)`` float, low-resolution mask logits (not gated by the
            object score).
        iou_scores: ``(N, 1)``, predicted IoU of the mask.
        object_score_logits: ``(N, 1)``, ``> 0`` means "object present".
        mask_tokens: ``(N, prompt_dim)``, the decoder's output token of the mask (SAM2 projects it
            into the object pointer of its memory).
    """

    mask_logits: Tensor
    iou_scores: Tensor
    object_score_logits: Tensor
    mask_tokens: Tensor


@dataclass
class TrackOutput:
    """:meth:`Sam2Adapter.track` output for ``N`` objects over a clip of ``T`` frames (frame 0 prompted).

    Attributes:
        mask_logits: ``(N, T, 1, S/4, S/4)`` float, low-resolution mask logits, not gated by the object
            score (what the mask losses read).
        iou_scores: ``(N, T, 1)``, predicted IoU of each mask.
        object_score_logits: ``(N, T, 1)``, ``> 0`` means "object present".
    """

    mask_logits: Tensor
    iou_scores: Tensor
    object_score_logits: Tensor

    def gated_logits(self) -> Tensor:
        """``mask_logits`` with :data:`NO_OBJECT_LOGIT` wherever the object score is ``<= 0``: what
        :meth:`Sam2Adapter.propagate` yields for the same frames."""
        present = self.object_score_logits[..., None, None] > 0
        return torch.where(present, self.mask_logits, NO_OBJECT_LOGIT)


@dataclass
class _Memory:
    """One frame of the memory bank (transformers' flat layout, ``N`` objects).

    Attributes:
        features: ``(HW, N, mem_dim)`` memory-encoder output (``HW`` of the ``S/16`` grid).
        position: ``(HW, N, mem_dim)`` its sine position encoding (no temporal encoding yet).
        pointer: ``(N, C)`` object pointer.
    """

    features: Tensor
    position: Tensor
    pointer: Tensor


# --------------------------------------------------------------------------------------------------
# the adapter


class _ShapeCachedSinePositionEmbedding(nn.Module):
    """Wraps the FPN neck's parameter-free sine position encoding and caches it per input shape.

    transformers recomputes it for every level of every frame (its own cache holds one shape);
    the values depend only on the shape, device and dtype. Tensors made under inference mode are
    cached apart from the others, since autograd cannot use them.
    """

    def __init__(self, inner: nn.Module, max_entries: int = 16) -> None:
        super().__init__()
        self.inner = inner
        self.max_entries = max_entries
        self._cache: dict[tuple, Tensor] = {}

    def forward(
        self, shape: torch.Size, device: torch.device, dtype: torch.dtype, mask: Tensor | None = None
    ) -> Tensor:
        if mask is not None:
            return self.inner(shape, device, dtype, mask)
        key = (tuple(shape), str(device), dtype, torch.is_inference_mode_enabled())
        cached = self._cache.get(key)
        if cached is None:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            cached = self.inner(shape, device, dtype)
            self._cache[key] = cached
        return cached


def box_masks(xyxy: Tensor, side: int) -> Tensor:
    """Normalised ``xyxy`` boxes ``(N, 4)`` filled on a ``side x side`` grid -> ``(N, 1, side, side)``
    float (1 inside: the cells whose centre lies in the box, 0 outside), same dtype as ``xyxy``."""
    centres = (torch.arange(side, device=xyxy.device, dtype=xyxy.dtype) + 0.5) / side
    inside_x = (centres[None] >= xyxy[:, 0:1]) & (centres[None] <= xyxy[:, 2:3])
    inside_y = (centres[None] >= xyxy[:, 1:2]) & (centres[None] <= xyxy[:, 3:4])
    return (inside_y[:, :, None] & inside_x[:, None, :]).to(xyxy.dtype)[:, None]


class Sam2Adapter(nn.Module):
    """SAM2 for SPARROW: image features, box + ``[SEG]`` prompt decoding, memory propagation.

    Attributes:
        model: the :class:`transformers.Sam2VideoModel`, the only copy of the SAM2 weights.
        image_size: ``S``, the side of the square SAM2 input.
        prompt_dim: width of a sparse prompt token (= the mask decoder's hidden size).
        feature_dim: ``C``, channels of :attr:`Sam2Features.image_embeddings`.
        high_res_channels: channels of :attr:`Sam2Features.high_res_features`, finest first (the
            widths of the mask decoder's ``conv_s0`` / ``conv_s1``).
        box_mask_prompt: box prompts also enter as a dense mask prompt: the box filled on SAM2's
            mask-prompt grid (``S/4 x S/4``) through its mask-prompt encoder, in place of the
            "no mask" embedding. Off: SAM2's own box prompt (corner tokens only).
        pointer_dropout: in training, the probability that a :meth:`track` call's memory attention
            reads the spatial memory alone, without object pointers (inference always reads both).
    """

    def __init__(self, model: Sam2VideoModel) -> None:
        super().__init__()
        self.model = model
        self.box_mask_prompt = False  # set by the model config (``sam2.box_mask_prompt``)
        self.pointer_dropout = 0.0  # set by the model config (``sam2.pointer_dropout``)
        self.image_size = int(model.config.image_size)
        self.prompt_dim = int(model.config.mask_decoder_config.hidden_size)
        self.feature_dim = int(model.config.vision_config.fpn_hidden_size)
        decoder = model.mask_decoder
        self.high_res_channels = (int(decoder.conv_s0.out_channels), int(decoder.conv_s1.out_channels))
        # Decode single-mask prompts with the single-mask token in train and eval alike (stock SAM2
        # falls back to a multimask token at eval time when token 0 is "unstable"; that token is never
        # trained on [SEG] prompts). Tracking frames use the multimask output and are unaffected.
        model.mask_decoder.dynamic_multimask_via_stability = False
        model.config.mask_decoder_config.dynamic_multimask_via_stability = False
        neck = model.vision_encoder.neck
        if not isinstance(neck.position_encoding, _ShapeCachedSinePositionEmbedding):
            neck.position_encoding = _ShapeCachedSinePositionEmbedding(neck.position_encoding)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(cls, sam2_config: Sam2VideoConfig | Sam2Config) -> Sam2Adapter:
        """Randomly initialised SAM2 of ``sam2_config`` (copied; works under ``torch.device("meta")``).

        The prompt encoder's random Fourier positional embedding is set to the image's, as in SAM2
        (one shared embedding; transformers draws the two copies independently, and pretrained
        checkpoints carry them equal).
        """
        model = Sam2VideoModel(as_video_config(sam2_config))
        with torch.no_grad():
            model.prompt_encoder.shared_embedding.positional_embedding.copy_(
                model.shared_image_embedding.positional_embedding
            )
        return cls(model)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> Sam2Adapter:
        """SAM2 weights from a LOCAL Hugging Face-format folder (``config.json`` + ``*.safetensors``).

        Never touches the network and never unpickles: only safetensors files are read.

        Raises:
            CheckpointError: the folder, its ``config.json`` or its safetensors weights are missing,
                or the weights do not load.
        """
        path = Path(folder)
        fix = "point to a folder holding a SAM2 config.json and model.safetensors (e.g. facebook/sam2.1-hiera-large)"
        if not path.is_dir():
            raise CheckpointError("SAM2 weights folder not found", path=path, fix=fix)
        if not (path / "config.json").is_file():
            raise CheckpointError("no config.json in the SAM2 weights folder", path=path, fix=fix)
        if not any(path.glob("*.safetensors")):
            raise CheckpointError(
                "no *.safetensors file in the SAM2 weights folder (pickled .pt/.bin files are not loaded)",
                path=path,
                fix="convert the checkpoint to safetensors (transformers save_pretrained does it)",
            )
        try:
            model = Sam2VideoModel.from_pretrained(
                path, local_files_only=True, use_safetensors=True, dtype=torch.float32
            )
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(f"cannot load SAM2 weights: {exc}", path=path, fix=fix) from exc
        return cls(model)

    # -- preprocessing -------------------------------------------------------------------------

    def preprocess(self, frames: Tensor | np.ndarray) -> Tensor:
        """RGB frames -> SAM2 input.

        Args:
            frames: ``(T, H, W, 3)`` uint8 RGB (torch or numpy), any ``H, W``.

        Returns:
            ``(T, 3, S, S)`` float32 on the model's device: bilinear resize (antialiased when
            shrinking, no padding), scaled to ``[0, 1]``, normalised with the ImageNet mean / std.
        """
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {tuple(x.shape)} {x.dtype}")
        x = x.to(self.pixel_mean.device).permute(0, 3, 1, 2).float().div_(255.0)
        s = self.image_size
        if x.shape[-2:] != (s, s):
            shrink = x.shape[-2] > s or x.shape[-1] > s
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.pixel_mean) / self.pixel_std

    # -- train path ----------------------------------------------------------------------------

    def _encode(self, pixel_values: Tensor) -> tuple[Sam2Features, list[Tensor], list[Tensor]]:
        """Image encoder; returns our features plus transformers' flat ``(HW, N, C)`` maps and
        positional encodings (what an inference session caches)."""
        out = self.model.get_image_features(pixel_values.to(self.pixel_mean.dtype))
        flat, pos = list(out.fpn_hidden_states), list(out.fpn_position_encoding)
        n = pixel_values.shape[0]
        maps = [
            f.permute(1, 2, 0).reshape(n, f.shape[-1], *size)
            for f, size in zip(flat, self.model.backbone_feature_sizes, strict=True)
        ]
        return Sam2Features(image_embeddings=maps[-1], high_res_features=maps[:-1]), flat, pos

    def image_features(self, pixel_values: Tensor) -> Sam2Features:
        """SAM2 image encoder on ``(N, 3, S, S)`` preprocessed frames; differentiable."""
        if pixel_values.ndim != 4 or pixel_values.shape[1:] != (3, self.image_size, self.image_size):
            raise ValueError(
                f"pixel_values must be (N, 3, {self.image_size}, {self.image_size}), got {tuple(pixel_values.shape)}"
            )
        return self._encode(pixel_values)[0]

    def decode(
        self,
        features: Sam2Features,
        *,
        boxes: Tensor | None = None,
        seg_embeddings: Tensor | None = None,
        mask_prompts: Tensor | None = None,
    ) -> MaskDecoderOutput:
        """SAM2 prompt encoder + mask decoder on single frames (single-mask output).

        Args:
            features: :class:`Sam2Features` of ``N`` frames.
            boxes: ``(N, 4)`` normalised ``cxcywh`` box prompt, or ``None``.
            seg_embeddings: ``(N, k, prompt_dim)`` extra sparse prompt tokens (the projected
                ``[SEG]``), appended after the box tokens, or ``None``.
            mask_prompts: ``(N, 1, S/4, S/4)`` float dense mask prompt in ``[0, 1]`` on SAM2's
                mask-prompt grid (e.g. the target's mask on the previous frame), through SAM2's
                mask-prompt encoder; it takes the place of the filled box of :attr:`box_mask_prompt`
                (or of the "no mask" embedding). ``None``: no mask prompt.

        With no prompt at all, SAM2's "not a point" token is the only prompt.
        Differentiable w.r.t. ``features``, ``boxes``, ``seg_embeddings`` and the decoder weights.
        """
        image = features.image_embeddings
        sparse, dense = self._prompt_embeddings(image, boxes, seg_embeddings)
        if mask_prompts is not None:
            side = 4 * image.shape[-1]
            if mask_prompts.shape != (image.shape[0], 1, side, side):
                raise ValueError(
                    f"mask_prompts must be (N, 1, {side}, {side}) with N = {image.shape[0]}, "
                    f"got {tuple(mask_prompts.shape)}"
                )
            dense = self.model.prompt_encoder.mask_embed(mask_prompts.to(image.dtype))
        return self._run_decoder(
            image + self.model.no_memory_embedding.view(1, -1, 1, 1),
            features.high_res_features,
            sparse,
            dense,
            multimask=False,
        )

    def _prompt_embeddings(
        self, image: Tensor, boxes: Tensor | None, seg_embeddings: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """Sparse ``(N, 1, k, prompt_dim)`` and dense ``(N, prompt_dim, S/16, S/16)`` prompt embeddings of
        a box and / or ``[SEG]`` tokens (neither: SAM2's "not a point" token), for ``image`` ``(N, C, h, w)``."""
        model = self.model
        n = image.shape[0]
        dtype = image.dtype
        sparse: list[Tensor] = []
        dense = None
        if boxes is not None:
            if boxes.shape != (n, 4):
                raise ValueError(f"boxes must be (N, 4) = ({n}, 4), got {tuple(boxes.shape)}")
            xyxy = box_convert(boxes.to(dtype), "cxcywh", "xyxy")
            box_tokens, dense = model.prompt_encoder(
                input_points=None,
                input_labels=None,
                input_boxes=xyxy[:, None, :] * self.image_size,
                input_masks=box_masks(xyxy, 4 * image.shape[-1]) if self.box_mask_prompt else None,
            )
            sparse.append(box_tokens)
        if seg_embeddings is not None:
            if (
                seg_embeddings.ndim != 3
                or seg_embeddings.shape[0] != n
                or seg_embeddings.shape[2] != self.prompt_dim
            ):
                raise ValueError(
                    f"seg_embeddings must be (N, k, {self.prompt_dim}) with N = {n}, got {tuple(seg_embeddings.shape)}"
                )
            sparse.append(seg_embeddings.to(dtype)[:, None])
        if not sparse:
            points = image.new_zeros(n, 1, 1, 2)
            labels = -torch.ones(n, 1, 1, dtype=torch.int32, device=image.device)
            empty, dense = model.prompt_encoder(
                input_points=points, input_labels=labels, input_boxes=None, input_masks=None
            )
            sparse.append(empty)
        if dense is None:
            _, dense = model.prompt_encoder(
                input_points=None, input_labels=None, input_boxes=None, input_masks=None
            )
        return torch.cat(sparse, dim=2), dense.expand(n, -1, -1, -1)

    def _run_decoder(
        self,
        image: Tensor,
        high_res_features: list[Tensor],
        sparse: Tensor,
        dense: Tensor,
        *,
        multimask: bool,
    ) -> MaskDecoderOutput:
        """SAM2's mask decoder on ``image`` ``(N, C, S/16, S/16)`` (already carrying the no-memory
        embedding or the memory conditioning). ``multimask``: SAM2's three multimask tokens, of which
        the one of highest predicted IoU is returned (as transformers' video model selects it)."""
        model = self.model
        n = image.shape[0]
        positional = model.get_image_wide_positional_embeddings().to(image.dtype).expand(n, -1, -1, -1)
        masks, iou, tokens, object_logits = model.mask_decoder(
            image_embeddings=image,
            image_positional_embeddings=positional,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=high_res_features,
        )
        # (N, point_batch=1, masks, ...) -> (N, ...) of the chosen mask
        best = iou[:, 0].argmax(dim=1) if multimask else torch.zeros(n, dtype=torch.long, device=image.device)
        rows = torch.arange(n, device=image.device)
        return MaskDecoderOutput(
            mask_logits=masks[rows, 0, best][:, None],
            iou_scores=iou[rows, 0, best][:, None],
            object_score_logits=object_logits[:, 0],
            mask_tokens=tokens[rows, 0, best],
        )

    @staticmethod
    def upsample_logits(mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
        """Bilinear resize of mask logits ``(N, 1, h, w)`` -> ``(N, 1, H, W)`` (``size = (H, W)``)."""
        return F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)

    # -- memory: shared by the training path (track) and propagation -----------------------------

    def _gate(self, out: MaskDecoderOutput) -> tuple[Tensor, Tensor, Tensor]:
        """SAM2's hard object gate: ``(low-res logits (N, 1, S/4, S/4), high-res logits (N, 1, S, S),
        object pointer (N, C))``, the logits :data:`NO_OBJECT_LOGIT` and the pointer SAM2's
        "no object" pointer where the object score is ``<= 0``."""
        model = self.model
        present = out.object_score_logits > 0  # (N, 1)
        low_res = torch.where(present[:, :, None, None], out.mask_logits, NO_OBJECT_LOGIT)
        high_res = F.interpolate(
            low_res, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        pointer = model.object_pointer_proj(out.mask_tokens)
        pointer = torch.where(present, pointer, model.no_object_pointer.to(pointer.dtype))
        return low_res, high_res, pointer

    def _encode_memory(self, image: Tensor, out: MaskDecoderOutput, *, prompted: bool) -> _Memory:
        """Memory of one frame of ``N`` objects: the raw top FPN level ``image`` ``(N, C, S/16, S/16)``
        fused with the frame's gated mask by the memory encoder (SAM2 / transformers math: the mask of
        a prompted frame is binarised in eval mode, otherwise a sigmoid; ``sigmoid_scale / bias``; the
        occlusion embedding where the object is absent; memory features rounded to bfloat16 as
        transformers stores them, with a straight-through gradient)."""
        model = self.model
        config = model.config
        _, high_res, pointer = self._gate(out)
        if prompted and not self.training:
            mask = (high_res > 0).to(high_res.dtype)
        else:
            mask = torch.sigmoid(high_res)
        mask = mask * config.sigmoid_scale_for_mem_enc + config.sigmoid_bias_for_mem_enc
        features, position = model.memory_encoder(image, mask)
        occlusion = model.occlusion_spatial_embedding_parameter
        if occlusion is not None:
            absent = (out.object_score_logits <= 0).to(features.dtype)  # (N, 1)
            features = features + absent[:, :, None, None] * occlusion.view(1, -1, 1, 1)
        features = features + (features.to(torch.bfloat16).to(features.dtype) - features).detach()
        return _Memory(
            features=features.flatten(2).permute(2, 0, 1),
            position=position.to(features.dtype).flatten(2).permute(2, 0, 1),
            pointer=pointer,
        )

    def _condition_on_memory(
        self, image: Tensor, bank: list[_Memory], index: int, max_memory: int, *, pointers: bool = True
    ) -> Tensor:
        """Memory attention of frame ``index`` of a tracked clip (frame 0 prompted) on its memory bank.

        ``image``: raw top FPN level ``(N, C, h, w)``; ``bank[j]``: memory of clip frame ``j < index``.
        The bank read is SAM2's: the prompted frame (temporal slot of offset 0), the ``max_memory``
        most recent tracked frames (slot ``offset - 1``), and object pointers of the prompted frame and
        of up to ``max_object_pointers_in_encoder - 1`` recent tracked frames with their temporal
        encodings (none with ``pointers=False``). Returns the conditioned ``(N, C, h, w)`` the mask
        decoder reads.
        """
        model = self.model
        n, c, h, w = image.shape
        temporal = model.memory_temporal_positional_encoding  # (num_maskmem, 1, 1, mem_dim)
        memories = [bank[0].features]
        positions = [bank[0].position + temporal[-1]]
        for offset in range(min(max_memory, model.num_maskmem - 1), 0, -1):  # oldest first
            if index - offset >= 1:
                memories.append(bank[index - offset].features)
                positions.append(bank[index - offset].position + temporal[offset - 1])
        num_pointer_tokens = 0
        if pointers:
            max_pointers = model.config.max_object_pointers_in_encoder
            offsets, tokens = [index], [bank[0].pointer]
            for offset in range(1, min(max_pointers, index)):
                offsets.append(offset)
                tokens.append(bank[index - offset].pointer)
            pointer_tokens, pointer_positions = model._process_object_pointers(
                offsets, tokens, max_pointers, n, c, image.device
            )
            memories.append(pointer_tokens)
            positions.append(pointer_positions)
            num_pointer_tokens = pointer_tokens.shape[0]
        top_position = model.vision_encoder.neck.position_encoding(image.shape, image.device, image.dtype)
        conditioned = model.memory_attention(
            current_vision_features=image.flatten(2).permute(2, 0, 1),
            current_vision_position_embeddings=top_position.to(image.dtype).flatten(2).permute(2, 0, 1),
            memory=torch.cat(memories, dim=0),
            memory_posision_embeddings=torch.cat(positions, dim=0),  # (sic) transformers' keyword
            num_object_pointer_tokens=num_pointer_tokens,
        )  # (1, N, HW, C)
        return conditioned[0].transpose(1, 2).reshape(n, c, h, w)

    def _multimask_for_tracking(self) -> bool:
        """Whether SAM2 decodes tracked (unprompted) frames with its multimask tokens (transformers'
        ``_use_multimask`` for a frame without points)."""
        config = self.model.config
        return bool(
            config.multimask_output_in_sam
            and config.multimask_output_for_tracking
            and config.multimask_min_pt_num <= 0 <= config.multimask_max_pt_num
        )

    def track(
        self,
        frames: Sam2Features | Tensor,
        *,
        boxes: Tensor | None = None,
        seg_embeddings: Tensor | None = None,
        max_memory: int | None = None,
    ) -> TrackOutput:
        """Differentiable SAM2 video tracking of ``N`` objects: the memory training path.

        Frame 0 of each clip is decoded from the prompts exactly as :meth:`decode` does; its gated mask
        and features are written into memory by the memory encoder. Every later frame is conditioned
        by memory attention on that memory bank (the prompted frame + the ``max_memory`` most recent
        frames, temporal position encodings, object pointers) and decoded WITHOUT prompts, then
        encoded into memory in turn. The math is :meth:`propagate`'s forward pass (in eval mode the two
        agree to float rounding); in train mode gradients reach the image encoder, prompt encoder, mask
        decoder, memory encoder, memory attention, object-pointer projection and the memory embeddings.
        Masks of prompted frames are binarised for memory only in eval mode (SAM2 trains on sigmoids).
        In training, with probability :attr:`pointer_dropout` the whole call reads no object pointers.
        Frame indices inside the clip are its temporal positions (offset 1 = the previous clip frame).

        Args:
            frames: the clips in processing order, object-major: :class:`Sam2Features` of ``N * T``
                frames, or ``(N * T, 3, S, S)`` preprocessed pixels (rows ``n*T .. n*T + T - 1`` are
                object ``n``'s clip; repeat the rows of a clip shared by several objects). Backward
                tracking is tracking over the reversed clip.
            boxes: ``(N, 4)`` normalised ``cxcywh`` box prompts of frame 0, or ``None``.
            seg_embeddings: ``(N, k, prompt_dim)`` projected ``[SEG]`` tokens for frame 0, or ``None``.
                With neither prompt, ``N = 1`` and frame 0 gets SAM2's "not a point" prompt.
            max_memory: tracked frames kept in the memory bank besides the prompted frame, in
                ``[0, num_maskmem - 1]`` (default and SAM2's: ``num_maskmem - 1`` = 6).

        Returns:
            :class:`TrackOutput` of ``(N, T, ...)``; frame 0's rows equal :meth:`decode` on that frame.
        """
        n = next((x.shape[0] for x in (boxes, seg_embeddings) if x is not None), 1)
        features = frames if isinstance(frames, Sam2Features) else self.image_features(frames)
        if len(features) < n or len(features) % n:
            raise ValueError(f"frames must hold N * T frames for N = {n} objects, got {len(features)}")
        window = self.model.num_maskmem - 1
        if max_memory is None:
            max_memory = window
        if not 0 <= max_memory <= window:
            raise ValueError(f"max_memory must be in [0, {window}], got {max_memory}")
        length = len(features) // n
        starts = torch.arange(n, device=features.image_embeddings.device) * length
        multimask = self._multimask_for_tracking()
        # Draw only when dropping is possible: with the setting off, training consumes no random numbers.
        pointers = not (
            self.training and self.pointer_dropout > 0 and float(torch.rand(())) < self.pointer_dropout
        )
        outputs: list[MaskDecoderOutput] = []
        bank: list[_Memory] = []
        for index in range(length):
            frame = features.select(starts + index)
            if index == 0:
                out = self.decode(frame, boxes=boxes, seg_embeddings=seg_embeddings)
            else:
                conditioned = self._condition_on_memory(
                    frame.image_embeddings, bank, index, max_memory, pointers=pointers
                )
                sparse, dense = self._prompt_embeddings(conditioned, None, None)
                out = self._run_decoder(
                    conditioned, frame.high_res_features, sparse, dense, multimask=multimask
                )
            outputs.append(out)
            if index + 1 < length:
                bank.append(self._encode_memory(frame.image_embeddings, out, prompted=index == 0))
        return TrackOutput(
            mask_logits=torch.stack([o.mask_logits for o in outputs], dim=1),
            iou_scores=torch.stack([o.iou_scores for o in outputs], dim=1),
            object_score_logits=torch.stack([o.object_score_logits for o in outputs], dim=1),
        )

    # -- propagation ---------------------------------------------------------------------------

    def _condition_session(
        self,
        session: Sam2VideoInferenceSession,
        frame: Tensor,
        key_frame: int,
        box: Tensor | None,
        seg_embedding: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Decode the key frame with the train path and store it as the session's conditioning frame
        (mask, object pointer and memory). Returns the gated mask logits and the object score."""
        model = self.model
        features, flat, pos = self._encode(frame[None])
        session.cache.cache_vision_features(key_frame, {"vision_feats": flat, "vision_pos_embeds": pos})
        out = self.decode(features, boxes=box, seg_embeddings=seg_embedding)
        low_res, high_res, pointer = self._gate(out)
        score = out.object_score_logits[:, :, None]  # the session's (batch, object, 1) layout
        obj_idx = session.obj_id_to_idx(_OBJ_ID)
        session.store_output(
            obj_idx,
            key_frame,
            output_value={
                "pred_masks": low_res,
                "object_pointer": pointer[:, None],
                "high_res_masks": high_res,
                "object_score_logits": score,
            },
            is_conditioning_frame=True,
        )
        # Memory of the key frame, exactly as transformers encodes a prompted frame (binarised mask).
        model._batch_encode_memories(
            inference_session=session,
            frame_idx=key_frame,
            objects_needing_memory_encoding=[obj_idx],
            high_res_masks_for_memory=[high_res],
            object_score_logits_for_memory=[score],
            is_mask_from_pts_per_obj=[True],
        )
        return low_res, out.object_score_logits

    def _memory_window(self) -> int:
        """How many tracked frames back SAM2 reads: its memory frames and its object pointers."""
        return max(self.model.num_maskmem, self.model.config.max_object_pointers_in_encoder)

    def _track(
        self,
        session: Sam2VideoInferenceSession,
        frames: Tensor | Sequence[Tensor],
        order: range,
        reverse: bool,
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Track through ``order`` (frames after / before the key frame), streaming one frame at a
        time; outputs older than the memory window are dropped, so memory stays bounded."""
        obj_idx = session.obj_id_to_idx(_OBJ_ID)
        outputs = session.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"]
        window = self._memory_window()
        step = -1 if reverse else 1
        device = self.pixel_mean.device
        for t in order:
            result = self.model(
                session, frame_idx=t, frame=frames[t].to(device, self.pixel_mean.dtype), reverse=reverse
            )
            session.processed_frames.pop(t, None)
            outputs.pop(t - step * window, None)
            yield (
                t,
                result.pred_masks.reshape(1, 1, *result.pred_masks.shape[-2:]),
                result.object_score_logits.reshape(1, 1),
            )

    @torch.inference_mode()
    def propagate(
        self,
        pixel_values: Tensor | Sequence[Tensor],
        key_frame: int,
        *,
        box: Tensor | None,
        seg_embedding: Tensor | None,
    ) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Prompt the key frame, then track the object through every frame with SAM2's memory.

        Args:
            pixel_values: ``(T, 3, S, S)`` preprocessed frames, or any sequence of ``(3, S, S)``
                tensors supporting ``len`` and indexing (frames are read one at a time, so a lazy
                sequence streams the video).
            key_frame: index in ``[0, T)`` of the prompted frame.
            box: ``(1, 4)`` normalised ``cxcywh`` box prompt, or ``None``.
            seg_embedding: ``(1, k, prompt_dim)`` projected ``[SEG]`` tokens, or ``None``.

        Yields:
            ``(t, mask_logits (1, 1, S/4, S/4), object_score_logit (1, 1))`` for every frame: the key
            frame first, then ``key+1 .. T-1`` (forward), then ``key-1 .. 0`` (backward). Where the
            object score is ``<= 0`` the mask logits are :data:`NO_OBJECT_LOGIT` everywhere, as in
            SAM2. The key frame's logits are the train path's (:meth:`decode`) on that frame. The
            backward pass starts again from the key frame's memory alone (forward outputs are
            dropped), so both directions are symmetric. Runs in eval mode (restored afterwards).
        """
        num_frames = len(pixel_values)
        if not 0 <= key_frame < num_frames:
            raise ValueError(f"key_frame {key_frame} outside [0, {num_frames})")
        was_training = self.training
        self.eval()
        try:
            device = self.pixel_mean.device
            session = Sam2VideoInferenceSession(
                inference_device=device,
                inference_state_device=device,
                video_storage_device=device,
                dtype=self.model.no_memory_embedding.dtype,  # a torch.dtype: the default string breaks .to()
            )
            key = pixel_values[key_frame].to(device, self.pixel_mean.dtype)
            logits, score = self._condition_session(
                session,
                key,
                key_frame,
                None if box is None else box.to(device),
                None if seg_embedding is None else seg_embedding.to(device),
            )
            yield key_frame, logits, score
            yield from self._track(session, pixel_values, range(key_frame + 1, num_frames), reverse=False)
            obj_idx = session.obj_id_to_idx(_OBJ_ID)
            session.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"].clear()
            session.frames_tracked_per_obj[obj_idx].clear()
            yield from self._track(session, pixel_values, range(key_frame - 1, -1, -1), reverse=True)
        finally:
            self.train(was_training)
