"""Tagged image collections (paper Section 4.2, image tag recommendation with privileged
text): the on-disk format, its reader and writer, and the loader into `Data`.

The on-disk format: one Parquet file per label set, a row per image.

    image_id  string                  unique per row
    split     string                  'train', 'test', and optionally 'val'
    features  fixed_size_list<float>  the image's features (the paper: VGG fc7, d = 4096)
    text      string                  title and description (may be empty)
    tags      list<string>            the image's tags, each in the label set, at least one

    schema metadata  kdgan.format = "kdgan-tags/1"
                     kdgan.labels = JSON list of the label set (its order = label index)

The classifier sees `features` only; the teacher and the discriminator see `features` and
`text` (a `TextInput`: tokens of the text, a vocabulary built from the training pool).
Labels: an image's label distribution p_u(y|x) is uniform over its tags; the metrics rank
all labels by score against the tags (kdgan.metrics). Without 'val' rows the validation
split is the last `val_size` training rows.

Collections come from kdgan.data.yfcc (the paper's, from the YFCC100M dump) or
kdgan.data.synthetic; `python -m kdgan.tags` makes and inspects them.
"""

from __future__ import annotations

import collections
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdgan.config import Config, ConfigError
from kdgan.data.types import Data, DataError, Split, TextInput, draw_subsets

FORMAT = "kdgan-tags/1"
MAX_TOKENS = 48      # tokens kept per text (the rest is cut)
MAX_VOCAB = 20_000   # words kept, most frequent in the training pool first
PAD, UNK = 0, 1


@dataclass
class Collection:
    """A tagged image collection as read from (or written to) its Parquet file."""

    image_id: list[str]
    split: np.ndarray           # (N,) str
    features: np.ndarray        # (N, d) float32
    text: list[str]
    tags: list[list[str]]
    labels: list[str]           # the label set, in label-index order

    def __len__(self) -> int:
        return len(self.image_id)

    def label_matrix(self) -> np.ndarray:
        """(N, K) 0/1 float32: which labels each image carries."""
        index = {t: i for i, t in enumerate(self.labels)}
        m = np.zeros((len(self), len(self.labels)), np.float32)
        for row, tags in enumerate(self.tags):
            m[row, [index[t] for t in tags]] = 1.0
        return m


# ----------------------------------------------------------------------------------------
# Reading and writing


def write(path: Path, c: Collection) -> Path:
    """Write a collection in the format above (checked first, so a bad one never lands)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _validate(c, str(path))
    d = c.features.shape[1]
    table = pa.table({
        "image_id": pa.array([str(i) for i in c.image_id], pa.string()),
        "split": pa.array([str(s) for s in c.split], pa.string()),
        "features": pa.FixedSizeListArray.from_arrays(
            pa.array(c.features.astype(np.float32).reshape(-1)), d),
        "text": pa.array(c.text, pa.string()),
        "tags": pa.array(c.tags, pa.list_(pa.string())),
    })
    table = table.replace_schema_metadata({"kdgan.format": FORMAT,
                                           "kdgan.labels": json.dumps(c.labels)})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def read(path: Path | str) -> Collection:
    """Read and check a collection; every problem is a DataError naming the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    meta = table.schema.metadata or {}
    if meta.get(b"kdgan.format", b"").decode() != FORMAT:
        raise DataError(f"{path}: schema metadata kdgan.format is "
                        f"{meta.get(b'kdgan.format', b'missing')!r}; expected {FORMAT!r} "
                        "(see kdgan.tags for the format)")
    try:
        labels = json.loads(meta[b"kdgan.labels"])
    except (KeyError, ValueError):
        raise DataError(f"{path}: schema metadata kdgan.labels must be a JSON list of labels") from None
    missing = [c for c in ("image_id", "split", "features", "text", "tags") if c not in table.column_names]
    if missing:
        raise DataError(f"{path}: missing columns {missing}; has {table.column_names}")
    feats = table.column("features").combine_chunks()
    if not pa.types.is_fixed_size_list(feats.type) and not pa.types.is_list(feats.type):
        raise DataError(f"{path}: column features has type {feats.type}; expected a list of floats")
    lengths = set(feats.value_lengths().to_pylist()) if pa.types.is_list(feats.type) else {feats.type.list_size}
    if len(lengths) != 1:
        raise DataError(f"{path}: rows of features differ in length: {sorted(lengths)[:5]}")
    d = lengths.pop()
    values = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    c = Collection(
        image_id=table.column("image_id").to_pylist(),
        split=np.asarray(table.column("split").to_pylist(), dtype=object),
        features=values.reshape(len(table), d),
        text=[t or "" for t in table.column("text").to_pylist()],
        tags=[list(t or []) for t in table.column("tags").to_pylist()],
        labels=[str(x) for x in labels],
    )
    _validate(c, str(path))
    return c


def _validate(c: Collection, source: str) -> None:
    n = len(c.image_id)
    if not (len(c.split) == len(c.features) == len(c.text) == len(c.tags) == n):
        raise DataError(f"{source}: columns differ in length")
    if c.features.ndim != 2 or c.features.shape[1] < 1:
        raise DataError(f"{source}: features has shape {c.features.shape}; expected (N, d)")
    if not np.all(np.isfinite(c.features)):
        raise DataError(f"{source}: features contain NaN or inf values")
    if len(set(c.labels)) != len(c.labels) or len(c.labels) < 2:
        raise DataError(f"{source}: the label set must hold >= 2 distinct labels")
    bad_split = sorted(set(c.split) - {"train", "val", "test"})
    if bad_split:
        raise DataError(f"{source}: split values {bad_split}; expected 'train', 'val' or 'test'")
    for s in ("train", "test"):
        if not np.any(c.split == s):
            raise DataError(f"{source}: no rows with split {s!r}")
    known = set(c.labels)
    for row, tags in enumerate(c.tags):
        if not tags:
            raise DataError(f"{source}: image {c.image_id[row]!r} (row {row}) has no tags; "
                            "every image needs at least one tag of the label set")
        unknown = [t for t in tags if t not in known]
        if unknown:
            raise DataError(f"{source}: image {c.image_id[row]!r} (row {row}) has tags "
                            f"{unknown[:3]} outside the label set")
    if len(set(c.image_id)) != n:
        raise DataError(f"{source}: image_id values are not unique")


# ----------------------------------------------------------------------------------------
# Text


def tokenize(text: str) -> list[str]:
    """Lower-case words of letters and digits."""
    return re.findall(r"[a-z0-9]+", text.lower())


def build_vocab(texts: list[str], max_size: int = MAX_VOCAB) -> dict[str, int]:
    """Word -> id from 2 on, the most frequent first (ties alphabetical); 0 pads, 1 is unknown."""
    counts = collections.Counter(w for t in texts for w in tokenize(t))
    words = sorted(counts, key=lambda w: (-counts[w], w))[:max_size]
    return {w: i + 2 for i, w in enumerate(words)}


def encode(texts: list[str], vocab: dict[str, int], length: int = MAX_TOKENS) -> np.ndarray:
    """(N, length) int64 token ids, padded with 0, unknown words 1."""
    out = np.zeros((len(texts), length), np.int64)
    for row, t in enumerate(texts):
        ids = [vocab.get(w, UNK) for w in tokenize(t)][:length]
        out[row, :len(ids)] = ids
    return out


# ----------------------------------------------------------------------------------------
# Into kdgan's Data


@dataclass
class _Prepared:
    """What loading does that the seed and n do not change: splits, tokens, labels."""

    collection: Collection
    pool: np.ndarray     # rows of the training pool
    val: np.ndarray
    test: np.ndarray
    tokens: np.ndarray   # (N, MAX_TOKENS) for every row, vocabulary from the pool
    dist: np.ndarray     # (N, K) label distributions, uniform over each image's tags
    vocab_size: int


@functools.lru_cache(maxsize=2)
def _prepare(path: Path, val_size: int, _stamp: int) -> _Prepared:
    """Read, split, tokenise once per process, file version and val_size (the trials of a
    search that reuse a worker process share it). Callers must not modify the arrays."""
    c = read(path)
    pool = np.flatnonzero(c.split == "train")
    val = np.flatnonzero(c.split == "val")
    if len(val) == 0:
        if not 1 <= val_size < len(pool):
            raise ConfigError(f"val_size={val_size}: expected between 1 and {len(pool) - 1} "
                              f"for {path}, which has no 'val' rows")
        pool, val = pool[:-val_size], pool[-val_size:]
    vocab = build_vocab([c.text[i] for i in pool])
    hot = c.label_matrix()
    return _Prepared(c, pool, val, np.flatnonzero(c.split == "test"), encode(c.text, vocab),
                     hot / hot.sum(axis=1, keepdims=True), len(vocab) + 2)


def load(cfg: Config) -> Data:
    """The collection at `cfg.dataset` as Data: features for C, features and text for T and
    D, label distributions uniform over each image's tags; n training images drawn with the
    seed from the training pool."""
    path = Path(cfg.dataset).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: no such file; make a tagged image collection with `python -m "
                        "kdgan.tags build-yfcc ...` (YFCC100M) or `python -m kdgan.tags synth "
                        f"--out {cfg.dataset}` (synthetic)")
    p = _prepare(path, cfg.val_size, path.stat().st_mtime_ns)
    take, untagged = draw_subsets(len(p.pool), cfg.n, cfg.unlabeled, cfg.seed, str(path))

    def split(rows: np.ndarray) -> Split:
        x = torch.from_numpy(np.ascontiguousarray(p.collection.features[rows]))
        xp = TextInput(x, torch.from_numpy(p.tokens[rows]), p.vocab_size)
        return Split(x, torch.from_numpy(p.dist[rows]), xp)

    extra = None
    if cfg.unlabeled:  # their text is there, their tags are not (all-zero label rows)
        extra = split(p.pool[untagged])
        extra.y = torch.zeros_like(extra.y)
    return Data(split(p.pool[take]), split(p.val), split(p.test), len(p.collection.labels), take,
                len(p.pool), str(path), extra)


def pool_rows(cfg: Config) -> np.ndarray:
    """The collection's rows that make up the training pool of `cfg` (Data.train_indices
    and the unlabelled subset are positions in it)."""
    path = Path(cfg.dataset).expanduser()
    return _prepare(path, cfg.val_size, path.stat().st_mtime_ns).pool


def relevant(split: Split) -> torch.Tensor:
    """(N, K) boolean tags of a multi-label split."""
    return split.y > 0
