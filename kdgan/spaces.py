"""Search spaces: one YAML file per task in `search_spaces/`, validated before Ray starts.

A space file has three sections:

    fixed:          # any kdgan.config.Config field, held constant in every trial
      dataset: mnist
      n: 100
    search:         # the searched fields and their distributions
      alpha: {uniform: [0.0, 1.0]}
      beta:  {loguniform: [1.0e-3, 1.0e+3]}   # YAML needs the sign: 1.0e3 is a string
      gamma: {loguniform: [1.0e-4, 1.0e+2]}
      n:     {choice: [100, 1000]}
      batch_size: {randint: [16, 65]}     # integer in [16, 65)
    smoke:          # under --smoke: overrides of `fixed` over the shared tiny budget SMOKE
      cls_steps: 1

Distributions: uniform [low, high], loguniform [low, high] (low > 0), randint [low, high)
and choice [values...]. Every value a distribution can produce is checked against the
config's own ranges (alpha in [0, 1], beta > 0, ...) here, so that no trial fails on it.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kdgan.config import Config, ConfigError, unknown_key_message

# The repository's search_spaces/ (kdgan is installed from a clone, editable).
SPACES_DIR = Path(__file__).resolve().parent.parent / "search_spaces"
KINDS = ("uniform", "loguniform", "randint", "choice")
SECTIONS = ("fixed", "search", "smoke", "description")
# The tiny budget of every --smoke (kdgan.train, the benchmarks, and every space under its own
# `smoke` section): each phase runs, briefly.
SMOKE: dict[str, Any] = {"pretrain_epochs": 2, "dis_pretrain_epochs": 1, "epochs": 2}


class SpaceError(ValueError):
    """A search space file is malformed; the message names the file and the entry."""


@dataclass(frozen=True)
class Dist:
    kind: str
    args: tuple

    def extremes(self) -> list[Any]:
        """The values whose validity bounds every value this distribution can produce."""
        if self.kind == "choice":
            return list(self.args)
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)


@dataclass
class Space:
    name: str
    path: Path
    fixed: dict[str, Any]
    search: dict[str, Dist]
    smoke: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def fixed_config(self, smoke: bool = False, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The constant part of every trial's config."""
        out = dict(self.fixed)
        if smoke:
            out.update(self.smoke)
        out.update(overrides or {})
        return out


def available(directory: Path = SPACES_DIR) -> dict[str, Path]:
    """Space names in `directory` and their files."""
    if not directory.is_dir():
        return {}
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def resolve(name_or_path: str, directory: Path = SPACES_DIR) -> Path:
    """`--space` takes a name from search_spaces/ or a path to a YAML file."""
    spaces = available(directory)
    if name_or_path in spaces:
        return spaces[name_or_path]
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    hint = difflib.get_close_matches(name_or_path, list(spaces), n=1)
    extra = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise SpaceError(f"--space {name_or_path!r}: no such space{extra}; available: "
                     f"{', '.join(spaces) or 'none'}, or give a path to a YAML file")


def load(name_or_path: str, directory: Path = SPACES_DIR) -> Space:
    path = resolve(name_or_path, directory)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: malformed YAML: {e}") from None
    return parse(raw, path)


def parse(raw: Any, path: Path) -> Space:
    """Validate a space's YAML content; every error names the file and the entry."""
    if not isinstance(raw, dict):
        raise SpaceError(f"{path}: expected a mapping with sections {', '.join(SECTIONS[:3])}")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise SpaceError(f"{path}: unknown section(s) {sorted(unknown)}; expected {SECTIONS}")
    fixed = raw.get("fixed") or {}
    search_raw = raw.get("search") or {}
    smoke = raw.get("smoke") or {}
    for section, value in (("fixed", fixed), ("search", search_raw), ("smoke", smoke)):
        if not isinstance(value, dict):
            raise SpaceError(f"{path}: section {section!r} must be a mapping")
    if not search_raw:
        raise SpaceError(f"{path}: section 'search' is empty: nothing to search")
    search = {key: _parse_dist(path, key, spec) for key, spec in search_raw.items()}
    overlap = set(search) & set(fixed)
    if overlap:
        raise SpaceError(f"{path}: {sorted(overlap)} both fixed and searched")
    space = Space(path.stem, path, fixed, search, {**SMOKE, **smoke}, str(raw.get("description", "")))
    check_against_config(space)
    return space


def _parse_dist(path: Path, key: str, spec: Any) -> Dist:
    where = f"{path}: search.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise SpaceError(f"{where}: expected one of {{uniform: [low, high]}}, "
                         "{loguniform: [low, high]}, {randint: [low, high]}, {choice: [...]}")
    (kind, args), = spec.items()
    if kind not in KINDS:
        hint = difflib.get_close_matches(str(kind), KINDS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise SpaceError(f"{where}: unknown distribution {kind!r}{extra}; expected {KINDS}")
    if isinstance(args, list) and any(isinstance(a, str) for a in args) and kind != "choice":
        raise SpaceError(f"{where}: {kind} takes [low, high] numbers, got {args!r} (YAML reads "
                         "1.0e3 as a string: write 1.0e+3)")
    if not isinstance(args, list) or not args:
        raise SpaceError(f"{where}: {kind} takes a list, got {args!r}")
    if kind == "choice":
        return Dist(kind, tuple(args))
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                  for a in args):
        raise SpaceError(f"{where}: {kind} takes [low, high] numbers, got {args!r}")
    low, high = args
    if not all(math.isfinite(a) for a in args):
        raise SpaceError(f"{where}: bounds must be finite, got {args!r}")
    if low >= high:
        raise SpaceError(f"{where}: low={low} must be below high={high}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0 (a log scale over non-positive "
                         f"values), got low={low}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise SpaceError(f"{where}: randint takes integers [low, high), got {args!r}")
    if kind in ("uniform", "loguniform"):
        args = [float(low), float(high)]
    return Dist(kind, tuple(args))


def check_against_config(space: Space) -> None:
    """Every fixed field is a Config field with a valid value, and so is every value at the
    extremes of each searched distribution (with the smoke overrides as well)."""
    known = list(Config().to_dict())
    for section, keys in (("search", space.search), ("fixed", space.fixed), ("smoke", space.smoke)):
        for key in keys:
            if key not in known:
                where = f"search.{key}" if section == "search" else section
                raise SpaceError(f"{space.path}: {where}: {unknown_key_message(key, known)}")
    for smoke in (False, True):
        base = space.fixed_config(smoke=smoke)
        low = {k: d.extremes()[0] for k, d in space.search.items()}
        try:
            Config.from_dict(base | low)
        except ConfigError as e:
            raise SpaceError(f"{space.path}: {'smoke' if smoke else 'fixed'}: {e}") from None
        for key, dist in space.search.items():
            for value in dist.extremes():
                try:
                    Config.from_dict(base | low | {key: value})
                except ConfigError as e:
                    raise SpaceError(f"{space.path}: search.{key}: {e}") from None
