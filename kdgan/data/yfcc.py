"""The paper's two tagged collections from the YFCC100M metadata dump: its tab-separated lines
plus a user-supplied feature array, written in the format of kdgan.data.tags.

    python -m kdgan.tags build-yfcc --metadata yfcc100m_dataset --features feats.npz --out DIR
"""

from __future__ import annotations

import bz2
import collections
import gzip
import urllib.parse
from pathlib import Path

import numpy as np

from kdgan.data.tags import Collection, write
from kdgan.data.types import DataError

# Columns of the dump's lines: the Multimedia Commons release has 25 (line number, photo id,
# hash, ...), the original Webscope release 23 (photo id first). Text fields are URL-encoded.
YFCC_COLUMNS = {25: {"id": 1, "title": 8, "description": 9, "tags": 10, "video": 24},
                23: {"id": 0, "title": 6, "description": 7, "tags": 8, "video": 22}}


def parse_yfcc_line(line: str) -> dict | None:
    """One metadata line -> {'id', 'text', 'tags'} (None for a video or a malformed line)."""
    fields = line.rstrip("\n").split("\t")
    cols = YFCC_COLUMNS.get(len(fields))
    if cols is None:
        return None
    if fields[cols["video"]].strip() == "1":
        return None
    text = " ".join(urllib.parse.unquote_plus(fields[cols[k]]) for k in ("title", "description"))
    tags = [urllib.parse.unquote_plus(t).strip().lower() for t in fields[cols["tags"]].split(",")]
    return {"id": fields[cols["id"]].strip(), "text": text.strip(),
            "tags": sorted({t for t in tags if t})}


def build_yfcc(metadata: Path, features: Path, out: Path, num_labels: int = 200,
               n_train: int = 20_000, n_test: int = 2_000, seed: int = 0,
               min_count: int = 50) -> dict[str, Path]:
    """The paper's two label sets from the YFCC100M dump and an image feature file.

    metadata: the dump (tab-separated lines, plain or .bz2/.gz); features: an .npz with
    `ids` (photo ids, as in the dump) and `features` (N, d). Only photos with features,
    text (a title or a description) and at least one tag of the label set are kept.
    'popular': the `num_labels` most frequent tags; 'random': `num_labels` tags drawn with
    `seed` among those used at least `min_count` times. Each set gets its own sample of
    n_train + n_test images (drawn with `seed`). Writes OUT/yfcc-popular.parquet and
    OUT/yfcc-random.parquet.
    """
    try:
        with np.load(features, allow_pickle=False) as z:
            ids, feats = z["ids"], z["features"]
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{features}: expected an .npz with arrays 'ids' and 'features' "
                        f"(no pickle): {e}") from None
    if feats.ndim != 2 or len(ids) != len(feats):
        raise DataError(f"{features}: features {feats.shape} and ids {ids.shape} do not match")
    row_of = {str(i): r for r, i in enumerate(ids.tolist())}
    photos = []
    for line in _open_text(metadata):
        rec = parse_yfcc_line(line)
        if rec and rec["id"] in row_of and rec["text"] and rec["tags"]:
            photos.append(rec)
    if not photos:
        raise DataError(f"{metadata}: no photo with text and tags matches an id in {features}")
    counts = collections.Counter(t for p in photos for t in p["tags"])
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    frequent = sorted(t for t in ranked if counts[t] >= min_count)
    rng = np.random.default_rng(seed)
    if len(frequent) < num_labels:
        raise DataError(f"{metadata}: only {len(frequent)} tags are used >= {min_count} times; "
                        f"lower min_count or num_labels={num_labels}")
    label_sets = {"popular": ranked[:num_labels],
                  "random": sorted(rng.choice(frequent, num_labels, replace=False).tolist())}
    written = {}
    for name, labels in label_sets.items():
        keep = set(labels)
        rows = [p for p in photos if keep & set(p["tags"])]
        if len(rows) < n_train + n_test:
            raise DataError(f"{metadata}: label set {name!r} covers {len(rows)} photos; "
                            f"need n_train + n_test = {n_train + n_test}")
        pick = rng.permutation(len(rows))[: n_train + n_test]
        chosen = [rows[i] for i in pick]
        c = Collection(
            image_id=[p["id"] for p in chosen],
            split=np.array(["train"] * n_train + ["test"] * n_test, dtype=object),
            features=np.stack([feats[row_of[p["id"]]] for p in chosen]).astype(np.float32),
            text=[p["text"] for p in chosen],
            tags=[sorted(keep & set(p["tags"])) for p in chosen],
            labels=labels)
        written[name] = write(out / f"yfcc-{name}.parquet", c)
    return written


def _open_text(path: Path):  # noqa: ANN202 (a text file object)
    path = Path(path)
    if path.suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")
