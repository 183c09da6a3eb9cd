"""Search spaces: the shipped ones are valid; every bad file is an error before Ray starts."""

from __future__ import annotations

import sys

import pytest

from kdgan import spaces
from kdgan import tune as tune_mod

GOOD = """
fixed: {n: 100}
search:
  alpha: {uniform: [0.0, 1.0]}
  beta: {loguniform: [1.0e-3, 1.0e+3]}
"""


def test_shipped_spaces_are_valid_and_search_the_papers_ranges():
    names = spaces.available()
    assert "mnist" in names
    for name in names:
        space = spaces.load(name)
        assert space.search["alpha"] == spaces.Dist("uniform", (0.0, 1.0))
        assert space.search["beta"] == spaces.Dist("loguniform", (1e-3, 1e3))
        assert space.search["gamma"] == spaces.Dist("loguniform", (1e-4, 1e2))


@pytest.mark.parametrize("text,pattern", [
    ("fixed: [1, 2", r"malformed YAML"),
    ("- just a list", r"expected a mapping"),
    ("fixed: {n: 100}\nsearch: {}", r"section 'search' is empty"),
    ("search: {alpah: {uniform: [0, 1]}}", r"search.alpah: unknown key 'alpah' \(did you mean alpha\?\)"),
    ("fixed: {lr: 1}\nsearch: {alpha: {uniform: [0, 1]}}", r"fixed: unknown key 'lr'"),
    ("search: {alpha: {uniform: [0.5, 0.1]}}", r"low=0.5 must be below high=0.1"),
    ("search: {alpha: {uniform: [0, 2]}}", r"search.alpha: alpha=2.0: expected a value in \[0, 1\]"),
    ("search: {beta: {loguniform: [0, 10]}}", r"loguniform needs low > 0"),
    ("search: {gamma: {loguniform: [-1, 10]}}", r"loguniform needs low > 0"),
    ("search: {beta: {loguniform: [1.0e-3, 1.0e3]}}", r"write 1.0e\+3"),
    ("search: {beta: {normal: [0, 1]}}", r"unknown distribution 'normal'"),
    ("search: {beta: {uniform: 3}}", r"uniform takes a list"),
    ("search: {n: {randint: [10, 20.5]}}", r"randint takes integers"),
    ("search: {method: {choice: [kdgan, kdgam]}}", r"method='kdgam'.*did you mean 'kdgan'"),
    ("fixed: {alpha: 0.5}\nsearch: {alpha: {uniform: [0, 1]}}", r"both fixed and searched"),
    ("serch: {alpha: {uniform: [0, 1]}}", r"unknown section"),
    ("search: {alpha: {uniform: [0, 1]}}\nsmoke: {epochs: -1}", r"smoke: epochs=-1"),
])
def test_bad_space_files(tmp_path, text, pattern):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(spaces.SpaceError, match=pattern):
        spaces.load(str(path))


def test_space_by_name_or_path(tmp_path):
    (tmp_path / "mine.yaml").write_text(GOOD)
    assert spaces.load("mine", directory=tmp_path).search["alpha"].kind == "uniform"
    assert spaces.load(str(tmp_path / "mine.yaml")).fixed == {"n": 100}
    with pytest.raises(spaces.SpaceError, match=r"no such space \(did you mean 'mine'\?\)"):
        spaces.load("mien", directory=tmp_path)


def test_cli_rejects_bad_input_before_ray_starts(tmp_path, capsys, monkeypatch):
    def no_ray(*a, **k):
        raise AssertionError("Ray must not start on bad input")

    monkeypatch.setattr(tune_mod, "run_search", no_ray)
    (tmp_path / "bad.yaml").write_text("search: {beta: {loguniform: [0, 1]}}")
    (tmp_path / "good.yaml").write_text(GOOD)
    cases = [
        (["--space", str(tmp_path / "bad.yaml")], "loguniform needs low > 0"),
        (["--space", "nope"], "no such space"),
        (["--space", str(tmp_path / "good.yaml"), "--set", "alpha=0.2"], "cannot be fixed"),
        (["--space", str(tmp_path / "good.yaml"), "--set", "gamma=-1"], "gamma=-1.0"),
        (["--space", str(tmp_path / "good.yaml"), "--num-samples", "0"], "--num-samples=0"),
        ([], "--space is required"),
    ]
    for argv, message in cases:
        assert tune_mod.main(argv) == 2
        assert message in capsys.readouterr().err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_list_spaces(capsys):
    assert tune_mod.main(["--list-spaces"]) == 0
    assert "mnist" in capsys.readouterr().out
