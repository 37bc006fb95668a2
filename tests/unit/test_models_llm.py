"""Tokenizer (special tokens, chat template, storage), LM construction, LoRA and greedy decoding."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from models_toys import CORPUS, tokenizer
from tokenizers import Tokenizer, models

from sparrow.errors import CheckpointError
from sparrow.models import SparrowTokenizer, load_config
from sparrow.models.llm import build_causal_lm, decoder_hidden, greedy_generate
from sparrow.models.tokenizer import GROUNDING_TOKENS, IGNORE_INDEX, build_tokenizer

CONFIG = load_config("tiny")
TOK = tokenizer(CONFIG)


def test_special_tokens_are_single_ids() -> None:
    for token in (*GROUNDING_TOKENS, "<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"):
        assert len(TOK.encode(token)) == 1
    ids = TOK.encode("Sure, <p> the red square </p> [BOX] [SEG].")
    assert ids.count(TOK.ids.seg) == ids.count(TOK.ids.box) == ids.count(TOK.ids.p_open) == 1
    ids = [v for k, v in vars(TOK.ids).items() if k != "bos"]
    assert len(set(ids)) == 10 and TOK.ids.bos is None  # all distinct; tiny has no BOS
    assert TOK.ids.pad == 0


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from([*GROUNDING_TOKENS, " the", " red", "square", ".", ",", " x", "Ü", "\n"]), max_size=12
    )
)
def test_decode_inverts_encode(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert TOK.decode(TOK.encode(text)) == text


def test_prompt_and_example_layout() -> None:
    prompt = TOK.prompt_ids("Where is it?", n_video=5, n_tsf=4)
    assert prompt[0] == TOK.ids.user and prompt.count(TOK.ids.video) == 5 and prompt.count(TOK.ids.tsf) == 4
    assert prompt[-2:] == [TOK.ids.assistant, *TOK.encode("\n")]
    first_tsf = prompt.index(TOK.ids.tsf)
    assert TOK.decode(prompt[prompt.index(TOK.ids.video) + 5 : first_tsf]) == "\nWhere is it?"
    ex = TOK.example("Where is it?", "Sure, [SEG].", n_video=5, n_tsf=0)
    assert len(ex.input_ids) == len(ex.labels)
    labelled = [i for i, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != IGNORE_INDEX]
    assert labelled == [*TOK.encode("Sure, [SEG]."), TOK.ids.end]
    assert ex.labels[: len(TOK.prompt_ids("Where is it?", n_video=5))] == [IGNORE_INDEX] * len(
        TOK.prompt_ids("Where is it?", n_video=5)
    )


def test_save_load_round_trip_and_autotokenizer(tmp_path) -> None:
    TOK.save(tmp_path)
    again = SparrowTokenizer.load(tmp_path, CONFIG.llm.template)
    assert again.ids == TOK.ids and len(again) == len(TOK)
    assert again.encode(CORPUS[5]) == TOK.encode(CORPUS[5])
    meta = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert meta["eos_token"] == "<|end|>" and "[SEG]" in meta["additional_special_tokens"]
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.convert_tokens_to_ids("[SEG]") == TOK.ids.seg


def test_tokenizer_errors(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is missing"):
        SparrowTokenizer.load(tmp_path, CONFIG.llm.template)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read the tokenizer"):
        SparrowTokenizer.load(tmp_path, CONFIG.llm.template)
    Tokenizer(models.BPE()).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(CheckpointError, match="lacks a special token"):
        SparrowTokenizer.load(tmp_path, CONFIG.llm.template)


def test_pretrained_lm_tokenizer_gets_the_grounding_tokens(tmp_path) -> None:
    base = Tokenizer(models.WordLevel({"<unk>": 0, "hello": 1}, unk_token="<unk>"))
    base.add_special_tokens(["<|user|>", "<|assistant|>", "<|end|>", "<|endoftext|>"])
    base.save(str(tmp_path / "tokenizer.json"))
    tok = SparrowTokenizer.from_pretrained_lm(tmp_path, CONFIG.llm.template)
    assert len(tok) == 2 + 4 + len(GROUNDING_TOKENS)
    assert tok.ids.seg >= 6
    via_config = build_tokenizer(load_config("tiny", [f"llm.tokenizer={tmp_path}"]).llm)
    assert via_config.ids == tok.ids


def test_build_tokenizer_trains_when_there_is_no_pretrained_one() -> None:
    trained = build_tokenizer(CONFIG.llm, CORPUS * 4)
    assert len(trained) <= CONFIG.llm.tokenizer_vocab_size and trained.ids.pad == 0
    with pytest.raises(ValueError, match="pass the training texts"):
        build_tokenizer(CONFIG.llm)


def test_lm_vocabulary_follows_the_tokenizer() -> None:
    lm = build_causal_lm(CONFIG.llm, len(TOK))
    assert lm.get_input_embeddings().num_embeddings == len(TOK)
    assert lm.get_output_embeddings().weight is lm.get_input_embeddings().weight  # tied in tiny
    bigger = build_causal_lm(load_config("tiny", ["llm.hf.vocab_size=500"]).llm, len(TOK))
    assert bigger.get_input_embeddings().num_embeddings == 500


def test_lora_injects_adapters_on_the_targets() -> None:
    config = load_config("tiny", ["llm.lora={r: 4, alpha: 8, dropout: 0.0, targets: [q_proj, v_proj]}"]).llm
    lm = build_causal_lm(config, len(TOK))
    names = [n for n, _ in lm.named_parameters() if "lora_" in n]
    layers = CONFIG.llm.hf["num_hidden_layers"]
    assert len(names) == 2 * 2 * layers  # A and B on q and v of every layer
    assert all(".q_proj." in n or ".v_proj." in n for n in names)


def test_greedy_generate_matches_full_recomputation() -> None:
    torch.manual_seed(0)
    lm = build_causal_lm(CONFIG.llm, len(TOK)).eval()
    prompt = torch.randn(1, 7, lm.config.hidden_size)
    out = greedy_generate(lm, prompt, max_new_tokens=6, stop_ids=set())
    assert out.token_ids.shape == (6,) and out.hidden.shape == (6, lm.config.hidden_size) and not out.stopped
    # Without a cache: re-run the whole sequence and take argmax at the last position each time.
    embed = lm.get_input_embeddings()
    seq = prompt
    for i in range(6):
        hidden, _ = decoder_hidden(lm, seq)
        token = int(lm.get_output_embeddings()(hidden[:, -1]).argmax())
        assert token == int(out.token_ids[i])
        seq = torch.cat([seq, embed(torch.tensor([[token]]))], dim=1)
    hidden, _ = decoder_hidden(lm, seq)
    torch.testing.assert_close(out.hidden, hidden[0, 7:], atol=1e-4, rtol=1e-4)
    tokens = out.token_ids.tolist()
    first = tokens.index(tokens[-1])  # generation stops at the first occurrence of a stop id
    stop = greedy_generate(lm, prompt, max_new_tokens=6, stop_ids={tokens[-1]})
    assert stop.stopped and stop.token_ids.tolist() == tokens[:first]
    with pytest.raises(ValueError, match="batch size 1"):
        greedy_generate(lm, prompt.expand(2, -1, -1), max_new_tokens=1, stop_ids=set())
