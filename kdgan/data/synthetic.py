"""A synthetic tagged collection in which the text knows what the image features blur, and
the generator's exact posterior: the ideal scorer on it (benchmarks.table2, distill_room).

    python -m kdgan.tags synth --out synthetic.parquet
"""

from __future__ import annotations

import itertools

import numpy as np

from kdgan.data.tags import Collection


def synthesize(n_train: int = 3000, n_val: int = 1000, n_test: int = 1000,
               num_labels: int = 40, dim: int = 64, seed: int = 0, keep: float = 0.5,
               mention: float = 0.8, noise: float = 1.0, sibling: float = 0.85) -> Collection:
    """A tagged collection in which the privileged text carries what the image lacks.

    Each image shows 1-3 concepts (label popularity falls off like 1/rank). Its features
    are the sum of its concepts' embeddings plus Gaussian noise (std `noise`); concepts come
    in sibling pairs whose embeddings share a `sibling` fraction, so features alone confuse
    siblings. Like user tags, an image's tags are an incomplete record: each concept is kept
    with probability `keep` (at least one is). Its text names each of its concepts with
    probability `mention`, among filler words that carry nothing. A teacher that reads the
    text can thus tell siblings apart and find the concepts the tags left out.
    """
    rng = np.random.default_rng(seed)
    emb, popularity = _concepts(rng, num_labels, dim, sibling)
    labels = [f"tag{j:02d}" for j in range(num_labels)]
    fillers = [f"word{j:03d}" for j in range(300)]
    n = n_train + n_val + n_test
    feats = np.zeros((n, dim), np.float32)
    texts, tags = [], []
    for i in range(n):
        count = int(rng.integers(1, 4))
        concepts = rng.choice(num_labels, size=count, replace=False, p=popularity)
        feats[i] = emb[concepts].sum(axis=0) + noise * rng.standard_normal(dim)
        kept = [c for c in concepts if rng.random() < keep] or [concepts[rng.integers(count)]]
        tags.append(sorted(labels[c] for c in kept))
        words = [labels[c] for c in concepts if rng.random() < mention]
        words += list(rng.choice(fillers, size=int(rng.integers(2, 8))))
        rng.shuffle(words)
        texts.append(" ".join(words))
    split = np.array(["train"] * n_train + ["val"] * n_val + ["test"] * n_test, dtype=object)
    return Collection([f"syn{i:06d}" for i in range(n)], split, feats, texts, tags, labels)


def _concepts(rng: np.random.Generator, num_labels: int, dim: int,
              sibling: float) -> tuple[np.ndarray, np.ndarray]:
    """The generator's concept embeddings (K, dim) and popularity (K,): the first draws of
    `synthesize`'s random stream, so that `synthetic_posterior` can rebuild them."""
    if num_labels % 2:
        raise ValueError(f"num_labels={num_labels}: expected an even number (sibling pairs)")
    pair = rng.standard_normal((num_labels // 2, dim))
    own = rng.standard_normal((num_labels, dim))
    emb = np.sqrt(sibling) * np.repeat(pair, 2, axis=0) + np.sqrt(1 - sibling) * own
    emb /= np.sqrt(dim) / 3.0  # each concept's embedding has norm about 3
    popularity = 1.0 / np.arange(1, num_labels + 1)
    return emb, popularity / popularity.sum()


def synthetic_posterior(c: Collection, rows: np.ndarray, use_text: bool = False,
                        n_train: int = 3000, n_val: int = 1000, n_test: int = 1000,
                        num_labels: int = 40, dim: int = 64, seed: int = 0, keep: float = 0.5,
                        mention: float = 0.8, noise: float = 1.0, sibling: float = 0.85,
                        chunk: int = 256) -> np.ndarray:
    """P(label is among the image's tags | its features [and text]) for the given rows of a
    collection made by `synthesize` with these settings, computed exactly from the generator.

    The ideal scorer for those inputs: ranking labels by it maximises the expected P@k of
    any scorer that sees the same inputs (for MAP and MRR it is a reference, not a proven
    bound); the image-only posterior is the classifier's ideal, the one with text the
    teacher's. Enumerates the concept sets of 1-3 concepts: prior (count uniform, concepts
    drawn without replacement by popularity, as numpy's `choice`), Gaussian likelihood of
    the features, the text's mentions (each concept named with probability `mention`, no
    other label word), then each concept's chance of being kept as a tag. (n_train, n_val,
    n_test only check that the collection is the one these settings make.)
    """
    n = n_train + n_val + n_test
    if len(c) != n or c.features.shape[1] != dim or c.labels != [f"tag{j:02d}" for j in range(num_labels)]:
        raise ValueError(f"the collection ({len(c)} images, {c.features.shape[1]}-d, {len(c.labels)} "
                         f"labels) is not one synthesize makes with n={n}, dim={dim}, "
                         f"num_labels={num_labels}")
    emb, popularity = _concepts(np.random.default_rng(seed), num_labels, dim, sibling)
    sets, log_prior, tagged = [], [], []
    for size in (1, 2, 3):
        combos = np.array(list(itertools.combinations(range(num_labels), size)))
        prob = np.zeros(len(combos))
        for order in itertools.permutations(range(size)):  # sequential draws, renormalised
            drawn = popularity[combos[:, order]]
            before = np.cumsum(drawn, axis=1) - drawn
            prob += np.prod(drawn / (1.0 - before), axis=1)
        sets.append(combos)
        log_prior.append(np.log(prob / 3.0))
        t = np.zeros((len(combos), num_labels))
        # kept with probability keep; if none was kept, one of the set at random
        np.put_along_axis(t, combos, keep + (1 - keep) ** size / size, axis=1)
        tagged.append(t)
    log_prior, tagged = np.concatenate(log_prior), np.concatenate(tagged)
    member = tagged > 0  # (S, K): which concepts each set holds
    size = member.sum(axis=1)
    means = member.astype(np.float64) @ emb  # (S, dim)
    x = c.features[rows].astype(np.float64)
    if use_text:
        index = {t: j for j, t in enumerate(c.labels)}
        named = np.zeros((len(rows), num_labels), bool)
        for r, row in enumerate(rows):
            for word in c.text[row].split():
                if word in index:
                    named[r, index[word]] = True
    out = np.zeros((len(rows), num_labels))
    for lo in range(0, len(rows), chunk):
        xb = x[lo: lo + chunk]
        logp = log_prior + (xb @ means.T - 0.5 * (means ** 2).sum(axis=1)) / noise ** 2
        if use_text:
            nb = named[lo: lo + chunk].astype(np.float64)
            hits = nb @ member.T  # named concepts in the set
            outside = nb.sum(axis=1, keepdims=True) - hits  # named but not in the set: impossible
            logp = logp + hits * np.log(mention) + (size - hits) * np.log1p(-mention)
            logp = np.where(outside > 0, -np.inf, logp)
        logp -= logp.max(axis=1, keepdims=True)
        post = np.exp(logp)
        out[lo: lo + chunk] = (post / post.sum(axis=1, keepdims=True)) @ tagged
    return out
