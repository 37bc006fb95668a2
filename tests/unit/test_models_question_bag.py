import torch

from sparrow.models.question_bag import QuestionBag


def test_the_bag_starts_at_zero_and_averages_the_marked_words_only() -> None:
    torch.manual_seed(0)
    bag = QuestionBag(vocab_size=10, width=8)
    ids = torch.tensor([[1, 2, 3, 0], [4, 4, 5, 0], [6, 7, 8, 9]])
    words = torch.tensor([[True, True, False, False], [True, True, True, False], [False] * 4])
    assert not bag(ids, words).any()  # zero map: a model given a bag starts as it was

    torch.nn.init.normal_(bag.out.weight)
    torch.nn.init.normal_(bag.out.bias)
    out = bag(ids, words)
    table = bag.embedding.weight
    torch.testing.assert_close(out[0], bag.out(table[[1, 2]].mean(dim=0)))
    torch.testing.assert_close(out[1], bag.out(table[[4, 4, 5]].mean(dim=0)))  # a repeated word counts twice
    torch.testing.assert_close(out[2], bag.out.bias)  # no words: the bias alone
    ids[0, 2] = 9  # an unmarked position does not matter
    torch.testing.assert_close(bag(ids, words)[0], out[0])
