"""Paste generated Markdown into a document between its markers, so that a table in the docs
is the file a command wrote, never a copy edited by hand.

    python -m analysis.splice docs/RESULTS.md --demote 2 \\
        table1-passes=results/table1-passes/table.md teacher-end=results/table1-passes/teacher-end.md
    python -m analysis.splice docs/RESULTS.md --check ...   # exit 1 where the document differs

Each NAME=FILE replaces what lies between the lines `<!-- NAME:begin -->` and
`<!-- NAME:end -->` of the document with FILE's text, its headings made --demote levels deeper
(a `## ` of FILE becomes `#### ` with --demote 2) so that they sit under the document's own.
A name whose markers are not there exactly once each, begin before end, and a FILE that does
not exist, are errors before anything is written; the document is written whole (atomically).
--check writes nothing: it says which sections differ from their files and exits 1 if any do.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from kdgan.io import atomic_write


class SpliceError(ValueError):
    """A section that cannot be pasted; the message names it and what was expected."""


def demote(text: str, levels: int) -> str:
    """`text` with every Markdown heading `levels` deeper (outside fenced code)."""
    if levels <= 0:
        return text
    out, fenced = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            line = "#" * levels + line
        out.append(line)
    return "".join(out)


def _bounds(doc: str, name: str) -> tuple[int, int]:
    """Where section `name`'s text starts (after its begin line) and ends (its end line)."""
    begin, end = f"<!-- {name}:begin -->\n", f"<!-- {name}:end -->"
    found = {m: doc.count(m) for m in (begin, end)}
    if any(c != 1 for c in found.values()):
        raise SpliceError(f"section {name!r}: expected the lines {begin.strip()} and {end} once each "
                          f"in the document, found them {found[begin]} and {found[end]} times")
    i, j = doc.index(begin) + len(begin), doc.index(end)
    if j < i:
        raise SpliceError(f"section {name!r}: its end marker comes before its begin marker")
    return i, j


def splice(doc: str, sections: dict[str, str], levels: int = 0) -> str:
    """`doc` with each named section's text replaced by sections[name] (demoted)."""
    for name, text in sections.items():
        i, j = _bounds(doc, name)
        doc = doc[:i] + demote(text, levels).rstrip("\n") + "\n" + doc[j:]
    return doc


def parse_pairs(pairs: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise SpliceError(f"{pair!r}: expected NAME=FILE")
        if not Path(path).is_file():
            raise SpliceError(f"{pair!r}: no such file {path}")
        out[name] = Path(path)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.splice", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("document", type=Path)
    p.add_argument("sections", nargs="+", metavar="NAME=FILE")
    p.add_argument("--demote", type=int, default=0, help="heading levels to add (default 0)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 where it differs")
    args = p.parse_args(argv)
    try:
        if args.demote < 0:
            raise SpliceError(f"--demote {args.demote}: expected 0 or more")
        if not args.document.is_file():
            raise SpliceError(f"{args.document}: no such file")
        files = parse_pairs(args.sections)
        doc = args.document.read_text()
        texts = {name: path.read_text() for name, path in files.items()}
        new = splice(doc, texts, args.demote)
    except SpliceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        stale = [name for name, text in texts.items()
                 if splice(doc, {name: text}, args.demote) != doc]
        for name in stale:
            print(f"{args.document}: section {name!r} differs from {files[name]}; run without "
                  "--check to paste it")
        return 1 if stale else 0
    if new != doc:
        atomic_write(args.document, lambda tmp: tmp.write_text(new))
    print(f"{args.document}: pasted {', '.join(f'{n} ({files[n]})' for n in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
