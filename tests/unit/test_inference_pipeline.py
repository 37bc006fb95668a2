"""GroundingPipeline / GroundingSession with a randomly initialised tiny model (plumbing only: shapes,
resolutions, orders, caching and the options' mechanics -- never accuracy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from models_toys import clip, tiny

from sparrow.errors import CheckpointError, ConfigError
from sparrow.inference import GroundingOptions, GroundingPipeline, resolve_device
from sparrow.inference import tracking as tracking_module
from sparrow.inference.answer import question_for
from sparrow.inference.model_path import resolve_model_path
from sparrow.structures import masks_to_boxes

TEMPLATE = GroundingOptions(answer="template")


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture(scope="module")
def odd_clip() -> np.ndarray:
    frames, _ = clip(frames=6, size=131)
    return np.ascontiguousarray(frames[:, :97])  # 97 x 131


def test_result_is_at_the_original_resolution(model, odd_clip) -> None:
    result = GroundingPipeline(model, TEMPLATE)(odd_clip, "the red square")
    assert result.size == (97, 131)
    assert result.frame_indices.tolist() == list(range(6))
    assert result.raw_text == "Sure, [BOX] [SEG]." and len(result.phrases) == 1
    phrase = result.phrases[0]
    assert phrase.text == "the red square"
    masks = phrase.masklet.masks()
    assert masks.shape == (6, 97, 131) and masks.dtype == bool
    np.testing.assert_allclose(phrase.masklet.boxes, masks_to_boxes(masks))
    present = phrase.masklet.presence
    assert ((phrase.masklet.scores > 0.5) | ~present).all()  # present frames have object score > 0
    assert result.meta["key_frame"] == 0 and result.meta["template_answer"]
    assert set(result.meta["timings"]) >= {"answer_s", "key_frame_s", "track_s"}


def test_masks_equal_upsampled_logits_of_the_model(model, odd_clip) -> None:
    """The streamed, RLE-encoded masks are exactly SAM2's logits upsampled to (H, W) and thresholded."""
    pipe = GroundingPipeline(model, TEMPLATE)
    with pipe.session(odd_clip) as session:
        answer = session.answer("the red square")
        result = session.ground("the red square")
    pixels = model.processor.sam_inputs(odd_clip)
    with torch.inference_mode():
        key = model.sam2.image_features(pixels[:1])
        prompt = tracking_module.prompts_on(model, answer.targets, key)[0]
        expected = {}
        for t, logits, score in model.propagate(pixels, 0, box=prompt.box, seg_embedding=prompt.seg):
            up = F.interpolate(logits, size=(97, 131), mode="bilinear", align_corners=False)[0, 0] > 0
            expected[t] = up.numpy() & (float(score) > 0)
    got = result.phrases[0].masklet.masks()
    for t in range(6):
        np.testing.assert_array_equal(got[t], expected[t])


def test_stream_yields_frames_as_tracked_and_matches_the_call(model, odd_clip) -> None:
    pipe = GroundingPipeline(model, TEMPLATE)
    stream = pipe.stream(odd_clip, "the red square")
    assert stream.phrases == ["the red square"] and stream.text == "Sure."
    order = [f.frame_index for f in stream]
    assert order == list(range(6))
    streamed = stream.result()
    called = pipe(odd_clip, "the red square")
    assert streamed.phrases[0].masklet.rles == called.phrases[0].masklet.rles


def scripted_confidences(monkeypatch, values: list[float]) -> None:
    """Make the key-frame candidates' confidences ``values`` (in candidate order)."""
    real = tracking_module.prompts_on
    script = iter(values)

    def scripted(m, targets, features):
        return [tracking_module.TargetPrompt(p.seg, p.box, next(script)) for p in real(m, targets, features)]

    monkeypatch.setattr(tracking_module, "prompts_on", scripted)


@pytest.mark.parametrize(
    ("candidates", "confidences", "key", "order"),
    [
        (5, [0.1, 0.2, 0.9, 0.3, 0.4], 4, [4, 5, 6, 7, 8, 3, 2, 1, 0]),  # candidates 0, 2, 4, 6, 8
        (3, [0.0, 0.0, 0.9], 8, [8, 7, 6, 5, 4, 3, 2, 1, 0]),  # candidates 0, 4, 8
        (3, [0.5, 0.5, 0.5], 0, list(range(9))),  # ties: the earliest
    ],
)
def test_best_key_frame_tracks_forward_then_backward(
    model, monkeypatch, candidates, confidences, key, order
) -> None:
    frames, _ = clip(frames=9, size=48)
    scripted_confidences(monkeypatch, confidences)
    options = TEMPLATE.replace(key_frame="best", key_frame_candidates=candidates)
    stream = GroundingPipeline(model, options).stream(frames, "the red square")
    assert stream.key_frame == key
    assert [f.frame_index for f in stream] == order
    assert stream.result().phrases[0].masklet.frame_indices.tolist() == list(range(9))


def test_key_frame_defaults_to_the_models_saved_setting(model, monkeypatch) -> None:
    """``GroundingOptions.key_frame=None`` takes the model's ``key_frame``; an explicit option wins."""
    frames, _ = clip(frames=9, size=48)
    monkeypatch.setattr(model, "config", model.config.replace({"key_frame": "best"}))
    scripted_confidences(monkeypatch, [0.1, 0.9, 0.2] * 2)  # candidates 0, 4, 8
    options = TEMPLATE.replace(key_frame_candidates=3)
    assert options.key_frame is None
    saved = GroundingPipeline(model, options)
    assert saved.options.key_frame == "best" and saved.options.propagation == model.config.propagation
    stream = saved.stream(frames, "the red square")
    assert stream.key_frame == 4 and stream.meta["options"]["key_frame"] == "best"
    assert GroundingPipeline(model, options.replace(key_frame="first")).stream(frames, "x").key_frame == 0


def test_one_frame_and_grey_videos(model) -> None:
    frames, _ = clip(frames=3, size=40)
    pipe = GroundingPipeline(model, TEMPLATE)
    one = pipe(frames[:1], "the red square")
    assert one.frame_indices.tolist() == [0] and one.phrases[0].masklet.masks().shape == (1, 40, 40)
    grey = frames.mean(axis=-1).astype(np.uint8)
    as_rgb = np.repeat(grey[..., None], 3, axis=-1)
    assert (
        pipe(grey, "the red square").phrases[0].masklet.rles
        == pipe(as_rgb, "the red square").phrases[0].masklet.rles
    )


def test_session_reuses_the_video_features(model, monkeypatch) -> None:
    frames, _ = clip(frames=4, size=48)
    calls = []
    real = model.encode_video
    monkeypatch.setattr(model, "encode_video", lambda *a: calls.append(1) or real(*a))
    with GroundingPipeline(model, TEMPLATE).session(frames) as session:
        a = session.ground("the red square")
        b = session.ground("the blue square")
        chat = session.chat("Where is the red square?")
        assert len(session.history) == 1 and session.history[0].question == "Where is the red square?"
    assert len(calls) == 1
    assert a.phrases[0].text == "the red square" and b.phrases[0].text == "the blue square"
    assert chat.phrases[0].text == "Where is the red square?"


def test_template_answers_of_phrase_answer_models_name_the_referent() -> None:
    frames, _ = clip(frames=3, size=32)
    result = GroundingPipeline(tiny(["phrase_answer=true"]), TEMPLATE)(frames, "the red square.")
    assert result.raw_text == "Sure, <p> the red square </p> [BOX] [SEG]."
    assert result.phrases[0].text == "the red square" and len(result.phrases) == 1


def test_generated_answers_and_the_template_fallback(model) -> None:
    frames, _ = clip(frames=3, size=32)
    generated = GroundingPipeline(model, GroundingOptions(max_new_tokens=6))(frames, "the red square")
    assert not generated.meta["template_answer"]
    if not generated.phrases:  # random weights rarely write [SEG]: nothing tracked, said so
        assert "nothing was tracked" in " ".join(generated.meta["warnings"])
        assert generated.meta["key_frame"] is None
    fallback = GroundingPipeline(model, GroundingOptions(max_new_tokens=6, fallback_template=True))
    result = fallback(frames, "the red square")
    assert len(result.phrases) >= 1


def test_framewise_propagation_and_self_tsf(model) -> None:
    frames, _ = clip(frames=4, size=48)
    framewise = GroundingPipeline(tiny(), TEMPLATE.replace(propagation="framewise"))
    assert framewise.model.config.propagation == "framewise"
    assert len(framewise(frames, "the red square").phrases[0].masklet) == 4
    result = GroundingPipeline(model, TEMPLATE.replace(self_tsf=True))(frames, "the red square")
    assert "self_tsf_first_pass" in result.meta
    assert result.meta["tsf_tokens"] == bool(
        GroundingPipeline(model, TEMPLATE)(frames, "the red square").phrases[0].masklet.presence.any()
    )
    track = np.tile(np.array([[2, 2, 30, 30]], np.float32), (4, 1))
    with GroundingPipeline(model, TEMPLATE).session(frames) as session:
        assert session.ground("the red square", tsf_track=track).meta["tsf_tokens"]
        track[1:3] = np.nan  # unknown boxes reuse the previous one
        assert session.ground("the red square", tsf_track=track).meta["tsf_tokens"]
        with pytest.raises(ConfigError, match="one xyxy box per frame"):
            session.ground("the red square", tsf_track=track[:2])


@pytest.mark.parametrize("mode", ["chain", "framewise"])
def test_targets_tracked_together_share_each_frames_encoding(mode, monkeypatch) -> None:
    """``framewise`` / ``chain``: several targets encode each frame once, with the masks each target
    gets when tracked alone; ``video`` refuses shared features (SAM2's session encodes)."""
    model = tiny([f"propagation={mode}"]).eval()
    frames, _ = clip(frames=5, size=48)
    pixels = model.processor.sam_inputs(frames)
    with torch.inference_mode(), GroundingPipeline(model, TEMPLATE).session(frames) as session:
        answer = session.answer("the red square")
        key = model.sam2.image_features(pixels[2:3])
        prompt = tracking_module.prompts_on(model, answer.targets, key)[0]
        boxes = [prompt.box, torch.tensor([[0.7, 0.3, 0.2, 0.2]]), None]
        prompts = [tracking_module.TargetPrompt(prompt.seg, b, 0.5) for b in boxes]
        targets = answer.targets * len(prompts)
        alone = [
            [
                (t, lg.clone(), sc.clone())
                for t, lg, sc in model.propagate(pixels, 2, box=b, seg_embedding=prompt.seg)
            ]
            for b in boxes
        ]
        calls = []
        real = model.sam2.image_features
        monkeypatch.setattr(model.sam2, "image_features", lambda x: calls.append(len(x)) or real(x))
        together = list(
            tracking_module.propagate(
                model, pixels, 2, prompts, targets, key, (48, 48), TEMPLATE.for_model(model.config)
            )
        )
    assert len(calls) == 5 and set(calls) == {1}  # each frame once, for all three targets
    assert [f.frame_index for f in together] == [2, 3, 4, 1, 0]
    for i, run in enumerate(alone):
        for frame, (t, logits, score) in zip(together, run, strict=True):
            expected = tracking_module.to_original(logits, score, (48, 48), 0.0)
            assert frame.frame_index == t and frame.targets[i].rle == expected.rle
    video = tiny(["propagation=video"])
    with pytest.raises(ValueError, match="pass no features"):
        next(video.propagate(pixels, 0, box=None, seg_embedding=prompt.seg, features=lambda t: key))
    with pytest.raises(ValueError, match="keep at least one frame"):
        tracking_module.SharedFeatures(model, pixels, keep=0)


def test_reprompting_restarts_the_memory_where_the_target_is_found(model, monkeypatch) -> None:
    """The first run loses the target on frames 2-4; with patience 2 it is looked for on frame 3 (not
    found) and frame 4 (found): the memory restarts there and tracks 4, 5, 6."""
    frames, _ = clip(frames=7, size=32)
    side = model.sam2.image_size // 4
    runs = []

    def fake_propagate(pixels, key, *, box, seg_embedding):
        order = pixels.order
        runs.append(list(order))
        for i, t in enumerate(order):
            lost = order.start == 0 and order.step == 1 and 2 <= t <= 4
            yield i, torch.full((1, 1, side, side), 5.0), torch.tensor([[-3.0 if lost else 3.0]])

    checked = []

    def candidate(self, frame):
        checked.append(frame.shape)
        return None if len(checked) < 2 else tracking_module.TargetPrompt(torch.zeros(1, 1, 1), None, 1.0)

    monkeypatch.setattr(model, "propagate", fake_propagate)
    monkeypatch.setattr(tracking_module._Reprompter, "candidate", candidate)
    options = TEMPLATE.replace(reprompt=True, reprompt_patience=2, reprompt_every=1)
    result = GroundingPipeline(model, options)(frames, "the red square")
    assert result.meta["reprompted_frames"] == [[4]]
    assert result.phrases[0].masklet.presence.tolist() == [True, True, False, False, True, True, True]
    assert runs == [list(range(7)), [4, 5, 6], [0]]  # forward, restart at 4, backward from the key
    assert len(checked) == 2


def test_empty_prompt_and_bad_options() -> None:
    with pytest.raises(ConfigError, match="prompt is empty"):
        question_for("   ", "Can you segment {phrase} in this video?")
    assert question_for("Is it red?", "{phrase}") == ("Is it red?", "Is it red?")
    assert question_for(" the  red circle. ", "Can you segment {phrase}?") == (
        "Can you segment the red circle?",
        "the red circle",
    )
    for bad in (
        {"answer": "guess"},
        {"key_frame": "last"},
        {"propagation": "memory"},
        {"key_frame_candidates": 0},
        {"question_template": "no slot"},
    ):
        with pytest.raises(ConfigError):
            GroundingOptions(**bad)  # type: ignore[arg-type]


def test_model_folder_errors(model, tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(CheckpointError, match="sparrow train"):
        GroundingPipeline.from_pretrained(tmp_path / "missing")
    monkeypatch.setattr("sparrow.inference.model_path.bundled_model_dir", lambda: tmp_path / "not-installed")
    with pytest.raises(CheckpointError, match="no trained bundled model"):
        resolve_model_path("default")
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        GroundingPipeline.from_pretrained(folder)


def test_device_and_dtype(model) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
    with pytest.raises(ConfigError):
        GroundingPipeline(model, dtype="float8")
    frames, _ = clip(frames=2, size=32)
    half = GroundingPipeline(tiny(), TEMPLATE, device="cpu", dtype="bfloat16")
    result = half(frames, "the red square")
    assert result.meta["dtype"] == "bfloat16" and result.phrases[0].masklet.size == (32, 32)


def test_mask_writers_stream_the_union_of_phrases(tmp_path: Path) -> None:
    from sparrow.data.formats import mevis_results_writer
    from sparrow.inference.outputs import add_expression_masks, write_phrase_pngs
    from sparrow.io import read_gray_png
    from sparrow.structures import GroundedPhrase, GroundingResult, Masklet

    a = np.zeros((3, 5, 7), bool)
    b = np.zeros((3, 5, 7), bool)
    a[0, 1, 1] = b[0, 2, 3] = b[2, 4, 6] = True
    phrases = tuple(GroundedPhrase(n, Masklet.from_masks(m)) for n, m in (("a", a), ("b", b)))
    result = GroundingResult(text="a b", phrases=phrases, size=(5, 7), frame_indices=np.arange(3))
    assert write_phrase_pngs(tmp_path / "png", result) == 6
    assert (read_gray_png(tmp_path / "png" / "1" / "00002.png") > 0).tolist() == b[2].tolist()
    with mevis_results_writer(tmp_path / "mevis") as writer:
        add_expression_masks(writer, "v", "0", result, ["f0", "f1", "f2"])
    union = np.stack([read_gray_png(tmp_path / "mevis" / "v" / "0" / f"f{t}.png") > 0 for t in range(3)])
    np.testing.assert_array_equal(union, a | b)


def test_self_tsf_turns_tsf_on_for_a_model_saved_with_tsf_off() -> None:
    """Stage 2 saves ``tsf.mode="off"``; ``self_tsf`` still gives its prompts TSF tokens."""
    frames, _ = clip(frames=4, size=48)
    off = tiny()
    off.config = off.config.replace({"tsf": {"mode": "off"}})
    plain = GroundingPipeline(off, TEMPLATE)
    assert plain.model.config.tsf.mode == "off"
    assert "self_tsf_first_pass" not in plain(frames, "the red square").meta
    pipe = GroundingPipeline(off, TEMPLATE.replace(self_tsf=True))
    assert pipe.model.config.tsf.mode == "train"
    assert "self_tsf_first_pass" in pipe(frames, "the red square").meta
