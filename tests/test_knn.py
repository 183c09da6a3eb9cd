"""kdgan.knn: neighbour voting."""

from __future__ import annotations

import pytest
import torch

from kdgan.knn import knn_scores


def test_knn_votes_of_the_nearest_images():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    train_tags = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 1]], dtype=torch.float32)
    s = knn_scores(train_x, train_tags, torch.tensor([[1.0, 0.05]]), k=2)
    assert s[0].argmax() == 0 and s[0, 1] > s[0, 2]
    assert torch.allclose(s[0].round(), torch.tensor([2.0, 1.0, 0.0]))
    with pytest.raises(ValueError, match="k=4"):
        knn_scores(train_x, train_tags, train_x, k=4)
