"""kdgan.data.synthetic: what the generator's text and tags hold, and its exact posterior."""

from __future__ import annotations

import numpy as np
import pytest

from kdgan.data import synthetic
from kdgan.data.tags import tokenize


def test_synthetic_text_names_what_the_tags_leave_out():
    c = synthetic.synthesize(n_train=2000, n_val=10, n_test=10, num_labels=10, dim=8, seed=0)
    words = [set(tokenize(t)) for t in c.text]
    tagged = np.mean([len(t) for t in c.tags])
    mentioned = np.mean([len(w & set(c.labels)) for w in words])
    assert mentioned > tagged  # the text names more concepts than the tags keep
    extra = np.mean([bool((w & set(c.labels)) - set(t)) for w, t in zip(words, c.tags)])
    assert extra > 0.3  # a third of the images have a concept in the text but not in the tags


SMALL_GEN = dict(n_train=3000, n_val=0, n_test=0, num_labels=6, dim=8, seed=3)


@pytest.mark.parametrize("use_text", [False, True])
def test_the_generators_posterior_is_calibrated(use_text):
    # the expected number of images tagged with each label, summed from the posterior, matches
    # the count the generator drew (a wrong prior, likelihood or keep rule shifts it)
    c = synthetic.synthesize(**SMALL_GEN)
    rows = np.arange(len(c))
    post = synthetic.synthetic_posterior(c, rows, use_text=use_text, **SMALL_GEN)
    assert post.shape == (len(c), 6) and np.all((post >= 0) & (post <= 1))
    drawn = c.label_matrix().sum(axis=0)
    expected, spread = post.sum(axis=0), np.sqrt((post * (1 - post)).sum(axis=0))
    assert np.all(np.abs(expected - drawn) < 4 * spread + 1), (expected, drawn)


def test_without_noise_the_posterior_knows_each_images_concepts():
    gen = {**SMALL_GEN, "n_train": 300, "noise": 1e-3}
    c = synthetic.synthesize(**gen)
    post = synthetic.synthetic_posterior(c, np.arange(len(c)), **gen)
    for row, image_tags in zip(post, c.label_matrix()):
        support = row > 1e-6
        size = int(support.sum())
        assert 1 <= size <= 3 and np.all(image_tags[~support] == 0)  # the tags are among them
        assert np.allclose(row[support], 0.5 + 0.5 ** size / size)  # keep, or the one kept
    with pytest.raises(ValueError, match="dim=9"):
        synthetic.synthetic_posterior(c, np.arange(3), **{**gen, "dim": 9})
