"""Image tag recommendation with privileged text (paper Section 4.2) on the command line:
make a tagged collection (synthetic, or the paper's two from the YFCC100M dump) and show
what one holds.

    python -m kdgan.tags synth --out synthetic.parquet
    python -m kdgan.tags build-yfcc --metadata yfcc100m_dataset --features feats.npz --out DIR
    python -m kdgan.tags info synthetic.parquet

The collection format, its reader, writer and loader are kdgan.data.tags; the generator and
its exact posterior kdgan.data.synthetic; the YFCC100M builder kdgan.data.yfcc; the KNN
baseline kdgan.knn. Their names are re-exported here.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

from kdgan.config import ConfigError
from kdgan.data import tags as tag_files
from kdgan.data.synthetic import synthesize, synthetic_posterior
from kdgan.data.tags import (
    FORMAT, MAX_TOKENS, MAX_VOCAB, PAD, UNK, Collection, build_vocab, encode, load, pool_rows,
    read, relevant, tokenize, write,
)
from kdgan.data.types import DataError
from kdgan.data.yfcc import YFCC_COLUMNS, build_yfcc, parse_yfcc_line
from kdgan.knn import knn_scores


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kdgan.tags",
                                description=f"{__doc__}\n{tag_files.__doc__}",
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


__all__ = [
    "FORMAT", "MAX_TOKENS", "MAX_VOCAB", "PAD", "UNK", "YFCC_COLUMNS", "Collection",
    "build_vocab", "build_yfcc", "encode", "knn_scores", "load", "main", "parse_yfcc_line",
    "pool_rows", "read", "relevant", "synthesize", "synthetic_posterior", "tokenize", "write",
]


if __name__ == "__main__":
    sys.exit(main())
