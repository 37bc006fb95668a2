"""SPARROW model parts (see DESIGN.md section 4, MODEL_INTERFACE.md and docs/model.md).

Typical use::

    from sparrow.models import SparrowModel, load_config, train_tokenizer

    config = load_config("tiny")
    tokenizer = train_tokenizer(corpus, config.llm.template, config.llm.tokenizer_vocab_size)
    model = SparrowModel(config, tokenizer)
    batch = model.processor.collate([SparrowSample(frames, question, answer, masks=masks)])
    model.set_stage(1)                                      # optional: the paper's stage recipe
    out = model(batch)                                      # out.loss, out.losses (weighted terms)
    model.save_pretrained("runs/tiny")                      # SparrowModel.from_pretrained("runs/tiny")
"""

from __future__ import annotations

from sparrow.models.batch import PickBatch, SparrowBatch, SparrowSample, TrainingSample, collate
from sparrow.models.config import SparrowConfig, available_presets, load_config
from sparrow.models.processor import SparrowProcessor
from sparrow.models.sparrow import (
    STAGES,
    GeneratedAnswer,
    GroundingPrompts,
    SparrowModel,
    SparrowOutput,
    StagePlan,
    loss_terms,
)
from sparrow.models.tokenizer import SparrowTokenizer, train_tokenizer

__all__ = [
    "STAGES",
    "GeneratedAnswer",
    "GroundingPrompts",
    "PickBatch",
    "SparrowBatch",
    "SparrowConfig",
    "SparrowModel",
    "SparrowOutput",
    "SparrowProcessor",
    "SparrowSample",
    "SparrowTokenizer",
    "StagePlan",
    "TrainingSample",
    "available_presets",
    "collate",
    "load_config",
    "loss_terms",
    "train_tokenizer",
]
