"""Ranking metrics of tag recommendation (paper Section 4.2, Table 2).

Every label is ranked by the model's score for an image, highest first (ties keep the lower
label index first). With R the image's relevant labels (its tags), rank(r) in 1..K:

    P@k  = |top-k ∩ R| / k
    R@k  = |top-k ∩ R| / |R|
    F@k  = 2 P@k R@k / (P@k + R@k)          (0 when top-k holds no tag)
    AP   = (1/|R|) sum_{r in R} P@rank(r)   (precision at each relevant label's rank)
    RR   = 1 / min_{r in R} rank(r)

each averaged over the images (MAP, MRR). An image without tags has no defined AP or RR;
such rows are an error. P@1 is the top-1 accuracy for single-label data.

The names import without torch (analysis reads them to lay out its tables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# What paper Table 2 reports, in its order; P@1 is the validation metric runs select on.
RANKING = ("p@3", "p@5", "f@3", "f@5", "map", "mrr")
METRICS = ("p@1", *RANKING)


def ranking_metrics(scores: torch.Tensor, relevant: torch.Tensor,
                    ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """Mean P@k and F@k for each k, MAP and MRR over the rows.

    scores (N, K) any real scores; relevant (N, K) boolean (or 0/1) tags of each image.
    """
    sums = ranking_sums(scores, relevant, ks)
    n = sums.pop("count")
    return {k: v / n for k, v in sums.items()}


def ranking_sums(scores: torch.Tensor, relevant: torch.Tensor,
                 ks: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """Per-metric sums over the rows and their count, to average over several batches."""
    import torch

    if scores.shape != relevant.shape or scores.ndim != 2:
        raise ValueError(f"scores {tuple(scores.shape)} and relevant {tuple(relevant.shape)}: "
                         "expected the same (N, K) shape")
    rel = relevant.bool()
    n_rel = rel.sum(dim=1)  # (N,)
    if (n_rel == 0).any():
        raise ValueError(f"{int((n_rel == 0).sum())} rows have no relevant label")
    k_all = scores.shape[1]
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # (N, K)
    hits = rel.gather(1, order).float()  # (N, K): 1 where the label at rank i+1 is relevant
    cum = hits.cumsum(dim=1)
    ranks = torch.arange(1, k_all + 1, device=scores.device, dtype=torch.float32)
    out: dict[str, float] = {"count": float(len(scores))}
    for k in ks:
        kk = min(k, k_all)
        p = cum[:, kk - 1] / k
        r = cum[:, kk - 1] / n_rel
        f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp_min(1e-12), torch.zeros_like(p))
        out[f"p@{k}"] = float(p.sum())
        if k > 1:
            out[f"f@{k}"] = float(f.sum())
    ap = (hits * cum / ranks).sum(dim=1) / n_rel
    first = hits.argmax(dim=1).float() + 1  # rank of the first relevant label
    out["map"] = float(ap.sum())
    out["mrr"] = float((1.0 / first).sum())
    return out
