"""Loading a stage's model: re-initialised parts (``reinit``) start as new ones do."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparrow.errors import ConfigError
from sparrow.models.filtration import FiltrationHead
from sparrow.models.question_bag import QuestionBag
from sparrow.training.stages import reset_parts


class Pick(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.filtration = FiltrationHead(16, 16, 16)
        self.question_bag = QuestionBag(30, 16)
        self.attention = nn.MultiheadAttention(16, 2)
        self.other = nn.Linear(4, 4)
        self.missing = None


def _trained() -> Pick:
    model = Pick()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # every weight moved away from its start, zero layers included
    return model


def test_reset_parts_start_as_new_modules_with_their_special_starts() -> None:
    model = _trained()
    other = model.other.weight.clone()
    rng = torch.get_rng_state()
    reset_parts(model, ["filtration", "question_bag"], seed=5)
    assert torch.equal(torch.get_rng_state(), rng)  # the global stream is untouched
    assert torch.equal(model.other.weight, other)
    last = model.filtration.refine_head.layers[-1]
    assert not last.weight.any() and not last.bias.any()  # refinement starts at zero
    assert not model.question_bag.out.weight.any()  # the bag's map starts at zero
    assert model.question_bag.embedding.weight.std().item() == pytest.approx(1.0, abs=0.15)  # N(0, 1)
    reset_parts(model, ["attention"], seed=5)  # packed projections get torch's own start
    assert not model.attention.in_proj_bias.any() and not model.attention.out_proj.bias.any()
    fresh = Pick().filtration.score_head.layers[0].weight
    assert model.filtration.score_head.layers[0].weight.abs().max() <= fresh.abs().max() * 1.5
    again = _trained()
    reset_parts(again, ["filtration", "question_bag"], seed=5)  # seeded: the same start
    for part in ("filtration", "question_bag"):
        a, b = getattr(model, part).state_dict(), getattr(again, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["nothing", "missing"])
def test_reset_parts_names_what_the_model_lacks(name: str) -> None:
    with pytest.raises(ConfigError, match=f"reinit names '{name}'"):
        reset_parts(Pick(), [name], seed=0)
