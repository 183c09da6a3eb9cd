"""kdgan.textnet: the players that read image features and text."""

from __future__ import annotations

import pytest
import torch

from kdgan.data import TextInput, TextShape
from kdgan.models import build, num_parameters


def test_text_linear_adds_the_image_score_and_the_votes_of_the_words():
    shape = TextShape(features=5, vocab=12, length=4)
    net = build("text-linear", shape, 3, 0.0)
    assert num_parameters(net) == (5 + 1) * 3 + 12 * 3
    # before training the words vote nothing: the scores are the image part alone
    x = TextInput(torch.randn(2, 5), torch.tensor([[3, 7, 7, 0], [0, 0, 0, 0]]), 12)
    torch.testing.assert_close(net(x), net.image(x.features))
    torch.nn.init.normal_(net.words.weight)
    with torch.no_grad():
        net.words.weight[0] = 0.0  # padding
    e = net.words.weight
    expected = net.image(x.features) + torch.stack([e[3] + 2 * e[7], torch.zeros(3)])
    torch.testing.assert_close(net(x), expected)  # a repeated word votes twice, padding never
    with pytest.raises(ValueError, match="TextShape"):
        build("text-linear", (1, 8, 8), 3, 0.0)
