"""SPARROW model parts (see DESIGN.md section 4, MODEL_INTERFACE.md and docs/model.md).

Typical use::

    from sparrow.models import SparrowModel, load_config, train_tokenizer

    config = load_config("tiny")
    tokenizer = train_tokenizer(corpus, config.llm.template, config.llm.tokenizer_vocab_size)
    model = SparrowModel(config, tokenizer)
    sample = model.processor.training_sample(frames, question, answer, masks)
    out = model(collate([sample], tokenizer.ids.pad))      # out.loss, out.losses
    model.save_pretrained("runs/tiny")                      # SparrowModel.from_pretrained("runs/tiny")
"""

from __future__ import annotations

from sparrow.models.batch import Batch, TrainingSample, collate
from sparrow.models.config import SparrowConfig, available_presets, load_config
from sparrow.models.processor import SparrowProcessor
from sparrow.models.sparrow import GeneratedAnswer, GroundingPrompts, SparrowModel, SparrowOutput, loss_terms
from sparrow.models.tokenizer import SparrowTokenizer, train_tokenizer

__all__ = [
    "Batch",
    "GeneratedAnswer",
    "GroundingPrompts",
    "SparrowConfig",
    "SparrowModel",
    "SparrowOutput",
    "SparrowProcessor",
    "SparrowTokenizer",
    "TrainingSample",
    "available_presets",
    "collate",
    "load_config",
    "loss_terms",
    "train_tokenizer",
]
