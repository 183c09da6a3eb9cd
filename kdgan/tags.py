"""Image tag recommendation with privileged text (paper Section 4.2): the collection format,
its loader, a builder from the YFCC100M metadata dump, a synthetic collection, and KNN.

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

    python -m kdgan.tags synth --out synthetic.parquet
    python -m kdgan.tags build-yfcc --metadata yfcc100m_dataset --features feats.npz --out DIR
    python -m kdgan.tags info synthetic.parquet
"""

from __future__ import annotations

import argparse
import collections
import functools
import itertools
import json
import re
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdgan.config import Config, ConfigError
from kdgan.data import Data, DataError, Split, TextInput, draw_subsets

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


# ----------------------------------------------------------------------------------------
# KNN: the paper's simplest baseline (neighbour voting, Li, Snoek & Worring 2009)


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


# ----------------------------------------------------------------------------------------
# A synthetic collection where the text knows what the image features blur


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


# ----------------------------------------------------------------------------------------
# YFCC100M: the metadata dump's tab-separated lines plus a user-supplied feature array

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
        import bz2
        return bz2.open(path, "rt", encoding="utf-8", errors="replace")
    if path.suffix == ".gz":
        import gzip
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


# ----------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdgan.tags", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("synth", help="write the synthetic tagged collection")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--n-train", type=int, default=3000)
    s.add_argument("--labels", type=int, default=40)
    b = sub.add_parser("build-yfcc", help="the paper's two label sets from the YFCC100M dump")
    b.add_argument("--metadata", type=Path, required=True)
    b.add_argument("--features", type=Path, required=True)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--labels", type=int, default=200)
    b.add_argument("--n-train", type=int, default=20_000)
    b.add_argument("--n-test", type=int, default=2_000)
    b.add_argument("--min-count", type=int, default=50)
    b.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("info", help="counts of a collection")
    i.add_argument("path", type=Path)
    args = p.parse_args(argv)
    try:
        if args.command == "synth":
            c = synthesize(n_train=args.n_train, num_labels=args.labels, seed=args.seed)
            print(f"wrote {write(args.out, c)}: {len(c)} images, {len(c.labels)} labels")
        elif args.command == "build-yfcc":
            for name, path in build_yfcc(args.metadata, args.features, args.out, args.labels,
                                         args.n_train, args.n_test, args.seed,
                                         args.min_count).items():
                print(f"{name}: {path}")
        else:
            c = read(args.path)
            splits = collections.Counter(c.split.tolist())
            per_image = np.mean([len(t) for t in c.tags])
            print(f"{args.path}: {dict(splits)}; {len(c.labels)} labels; features d="
                  f"{c.features.shape[1]}; {per_image:.2f} tags per image")
    except (DataError, ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
