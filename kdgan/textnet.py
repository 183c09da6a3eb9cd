"""The teacher and discriminator of tag recommendation: image features and text together.

The paper (Section 4.2, Appendix C) scores tags with an MLP over image features for C and,
for T and D, over image and text features, the text encoded from word embeddings. Here the
text encoder is the mean of word embeddings learned in training (an embedding bag; the
authors' code used 10-d mean word embeddings), and the two feature vectors meet as
[u, v, u * v] (the element-wise product the paper uses, beside each vector alone, so that
an image with an empty text still has a score).
"""

from __future__ import annotations

import torch
from torch import nn

from kdgan.data.types import TextInput, TextShape


class TextImageNet(nn.Module):
    """scores(x) = W2 dropout(relu(W1 [u, v, u*v])), u = relu(A features), v = relu(B
    mean_embed(tokens)); K outputs (T's logits or D's per-tag scores s(x))."""

    def __init__(self, in_shape: TextShape, num_classes: int, dropout: float = 0.5,
                 embed_dim: int = 64, hidden: int = 256) -> None:
        super().__init__()
        if not isinstance(in_shape, TextShape):
            raise ValueError(f"text-mlp needs image features and text (a TextShape); got {in_shape} "
                             "(use it with a kdgan.tags collection)")
        self.image = nn.Sequential(nn.Linear(in_shape.features, hidden), nn.ReLU())
        self.embed = nn.EmbeddingBag(in_shape.vocab, embed_dim, mode="mean", padding_idx=0)
        self.text = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x: TextInput) -> torch.Tensor:  # features (B, d), tokens (B, L) -> (B, K)
        u = self.image(x.features)
        v = self.text(self.embed(x.tokens))  # an all-padding text embeds to zeros
        return self.head(torch.cat([u, v, u * v], dim=-1))


class TextImageLinear(nn.Module):
    """scores(x) = A features + sum_w E[w] + b: a linear scorer over the image features and
    the bag of the text's words, each word a learned K-d embedding (its vote for each tag).

    The smallest teacher that reads the text: with `tch_weight_decay` it cannot memorise the
    tags of its training images as an MLP does (docs/RESULTS.md). Dropout, when asked for,
    falls on the image features (the words have none to drop: a word absent is a word unsaid).
    """

    def __init__(self, in_shape: TextShape, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(in_shape, TextShape):
            raise ValueError(f"text-linear needs image features and text (a TextShape); got {in_shape} "
                             "(use it with a kdgan.tags collection)")
        self.image = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_shape.features, num_classes))
        self.words = nn.EmbeddingBag(in_shape.vocab, num_classes, mode="sum", padding_idx=0)
        nn.init.zeros_(self.words.weight)  # no word votes before training (N(0, 1) would)

    def forward(self, x: TextInput) -> torch.Tensor:  # features (B, d), tokens (B, L) -> (B, K)
        return self.image(x.features) + self.words(x.tokens)
