"""KNN: the paper's simplest tag recommendation baseline (neighbour voting, Li, Snoek &
Worring 2009), a scorer over image features with no training."""

from __future__ import annotations

import torch


def knn_scores(train_x: torch.Tensor, train_tags: torch.Tensor, query_x: torch.Tensor,
               k: int, batch: int = 1024) -> torch.Tensor:
    """Score of label j for a query = the number of its k nearest training images (cosine
    similarity of features) tagged j, plus 1e-3 x j's training frequency to break ties.

    train_x (M, d), train_tags (M, K) 0/1, query_x (N, d) -> (N, K)."""
    if not 1 <= k <= len(train_x):
        raise ValueError(f"k={k}: expected between 1 and {len(train_x)} training images")
    a = torch.nn.functional.normalize(train_x.float(), dim=1)
    prior = train_tags.float().mean(dim=0) * 1e-3
    out = []
    for lo in range(0, len(query_x), batch):
        q = torch.nn.functional.normalize(query_x[lo: lo + batch].float(), dim=1)
        nearest = (q @ a.T).topk(k, dim=1).indices  # (b, k)
        out.append(train_tags.float()[nearest].sum(dim=1) + prior)
    return torch.cat(out)
