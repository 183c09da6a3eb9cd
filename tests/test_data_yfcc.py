"""kdgan.data.yfcc: the YFCC100M dump's lines of both releases, and the two label sets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdgan.data import yfcc
from kdgan.data.tags import read
from kdgan.data.types import DataError


def _yfcc_line(columns: int, pid: str, title: str, desc: str, user_tags: str, video: str = "0") -> str:
    f = ["x"] * columns
    c = yfcc.YFCC_COLUMNS[columns]
    f[c["id"]], f[c["title"]], f[c["description"]], f[c["tags"]], f[c["video"]] = (
        pid, title, desc, user_tags, video)
    return "\t".join(f)


def test_yfcc_lines_of_both_releases_are_parsed_and_decoded():
    for columns in (25, 23):
        rec = yfcc.parse_yfcc_line(_yfcc_line(columns, "42", "Sunset+at+the+Beach",
                                               "a%20nice%2C+day", "beach,sunset,New+York"))
        assert rec == {"id": "42", "text": "Sunset at the Beach a nice, day",
                       "tags": ["beach", "new york", "sunset"]}
    assert yfcc.parse_yfcc_line(_yfcc_line(25, "1", "t", "d", "a", video="1")) is None
    assert yfcc.parse_yfcc_line("too\tfew\tfields") is None


def test_build_yfcc_makes_both_label_sets(tmp_path):
    rng = np.random.default_rng(0)
    vocab = [f"t{i}" for i in range(30)]
    lines, ids = [], []
    for i in range(400):
        chosen = rng.choice(vocab, size=3, replace=False, p=np.linspace(2, 1, 30) / np.linspace(2, 1, 30).sum())
        lines.append(_yfcc_line(25, str(1000 + i), f"photo+{i}", "", ",".join(chosen)))
        ids.append(1000 + i)
    lines.append(_yfcc_line(25, "5", "no features", "", "t1"))  # no feature row: skipped
    (tmp_path / "dump").write_text("\n".join(lines) + "\n")
    np.savez(tmp_path / "feats.npz", ids=np.array(ids), features=rng.random((400, 6)).astype(np.float32))
    out = yfcc.build_yfcc(tmp_path / "dump", tmp_path / "feats.npz", tmp_path / "out", num_labels=10,
                          n_train=200, n_test=50, seed=1, min_count=5)
    popular, random = read(out["popular"]), read(out["random"])
    counts = pd.Series([t for line in lines[:-1] for t in line.split("\t")[10].split(",")]).value_counts()
    assert set(popular.labels) == set(counts.index[:10])  # the 10 most frequent tags
    assert len(random.labels) == 10 and set(random.labels) != set(popular.labels)
    for c in (popular, random):
        assert len(c) == 250 and (c.split == "test").sum() == 50
        assert all(set(t) <= set(c.labels) and t for t in c.tags)
    with pytest.raises(DataError, match="need n_train"):
        yfcc.build_yfcc(tmp_path / "dump", tmp_path / "feats.npz", tmp_path / "o2", num_labels=10,
                        n_train=1000, n_test=50, min_count=5)
