"""The causal LM: construction (sizes or local folder), vocabulary, LoRA, and greedy decoding.

The LM is driven with ``inputs_embeds`` (visual and TSF tokens are spliced into the text
embeddings); hidden states are the decoder's last hidden state (after the final norm), the same
tensor in training (:meth:`SparrowModel.forward`) and in :func:`greedy_generate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from sparrow.models.config import LLMConfig, LoraConfig
from sparrow.models.pretrained import build_hf_model

_LM_CLASSES = {
    "qwen2": (Qwen2ForCausalLM, Qwen2Config),
    "llama": (LlamaForCausalLM, LlamaConfig),
    "phi3": (Phi3ForCausalLM, Phi3Config),
}


def build_causal_lm(config: LLMConfig, vocab_size: int | None) -> PreTrainedModel:
    """The LM of ``config`` with at least ``vocab_size`` embedding rows, LoRA injected if configured.

    Args:
        config: the ``llm`` section.
        vocab_size: the tokenizer's size, or ``None`` to keep ``hf["vocab_size"]``.
    """
    model_cls, config_cls = _LM_CLASSES[config.kind]
    fixed = {}
    if vocab_size is not None and config.path is None:
        fixed["vocab_size"] = max(int(config.hf.get("vocab_size", 0)), vocab_size)
    lm = build_hf_model(model_cls, config_cls, config.hf, config.path, "llm", fixed)
    if vocab_size is not None and lm.get_input_embeddings().num_embeddings < vocab_size:
        lm.resize_token_embeddings(vocab_size, mean_resizing=False)
    if config.lora is not None:
        apply_lora(lm, config.lora)
    return lm


def apply_lora(lm: nn.Module, lora: LoraConfig) -> None:
    """Inject LoRA adapters (peft) into the modules whose names end with ``lora.targets``."""
    from peft import LoraConfig as PeftLoraConfig  # imported lazily: peft takes seconds to import
    from peft import inject_adapter_in_model

    peft_config = PeftLoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.targets)
    )
    inject_adapter_in_model(peft_config, lm)


def lm_width(lm: PreTrainedModel) -> int:
    """Hidden size ``D`` of the LM."""
    return int(lm.get_input_embeddings().embedding_dim)


def decoder_hidden(
    lm: PreTrainedModel,
    inputs_embeds: Tensor,
    attention_mask: Tensor | None = None,
    cache: object | None = None,
    use_cache: bool = False,
) -> tuple[Tensor, object]:
    """Run the decoder stack: ``(B, L, D)`` embeddings -> ``(B, L, D)`` last hidden states + KV cache.

    The cache keyword is ``cache`` in recent transformers 5 releases and ``past_key_values`` before;
    the decoder's signature says which (no deprecation warning either way).
    """
    decoder = lm.get_decoder()
    key = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
    extra = {} if cache is None else {key: cache}
    out = decoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=use_cache, **extra)
    return out.last_hidden_state, getattr(out, key)


@dataclass
class GenerationOutput:
    """Greedy continuation of one prompt.

    Attributes:
        token_ids: generated ids ``(n,)`` int64, the stop token excluded.
        hidden: last hidden state of each generated token ``(n, D)`` float (row ``i`` is the state
            at token ``i``'s own position, i.e. after the model has read it).
        stopped: True when a stop token ended generation (False: ``max_new_tokens`` reached).
    """

    token_ids: Tensor
    hidden: Tensor
    stopped: bool


@torch.no_grad()
def greedy_generate(
    lm: PreTrainedModel,
    prompt_embeds: Tensor,
    *,
    max_new_tokens: int,
    stop_ids: Collection[int],
) -> GenerationOutput:
    """Greedy decoding with a KV cache for ONE prompt.

    Args:
        lm: the causal LM.
        prompt_embeds: ``(1, L, D)`` input embeddings of the prompt (visual tokens spliced in).
        max_new_tokens: upper bound on generated tokens.
        stop_ids: ids that end generation (not included in the output).
    """
    if prompt_embeds.shape[0] != 1:
        raise ValueError("greedy_generate takes one prompt (batch size 1)")
    embed = lm.get_input_embeddings()
    head = lm.get_output_embeddings()
    hidden, cache = decoder_hidden(lm, prompt_embeds, use_cache=True)
    last = hidden[:, -1]
    ids: list[int] = []
    states: list[Tensor] = []
    stopped = False
    for _ in range(max_new_tokens):
        token = int(head(last).argmax(dim=-1).item())
        if token in stop_ids:
            stopped = True
            break
        ids.append(token)
        step = embed(torch.tensor([[token]], device=prompt_embeds.device))
        hidden, cache = decoder_hidden(lm, step, cache=cache, use_cache=True)
        last = hidden[:, -1]
        states.append(last[0])
    width = prompt_embeds.shape[-1]
    hidden_out = torch.stack(states) if states else prompt_embeds.new_zeros((0, width))
    return GenerationOutput(
        token_ids=torch.tensor(ids, dtype=torch.long, device=prompt_embeds.device),
        hidden=hidden_out,
        stopped=stopped,
    )
