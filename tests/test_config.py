"""Strict parsing: every bad setting is a clear error naming the key, before any work."""

from __future__ import annotations

import pytest

from kdgan.config import ARCHS, Config, ConfigError, parse_overrides
from kdgan.models import REGISTRY


def test_defaults_are_valid_and_round_trip():
    cfg = Config()
    assert Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(alpha=0.5).alpha == 0.5


def test_unknown_key_suggests_the_nearest_field():
    with pytest.raises(ConfigError, match=r"unknown key 'cls_rl'.*did you mean cls_lr"):
        Config.from_dict({"cls_rl": 0.1})


@pytest.mark.parametrize("key,value,pattern", [
    ("alpha", 1.5, r"alpha=1.5: expected a value in \[0, 1\]"),
    ("alpha", -0.1, r"alpha=-0.1"),
    ("beta", 0.0, r"beta=0.0: expected a value > 0"),
    ("gamma", -1.0, r"gamma=-1.0: expected a value > 0"),
    ("n", 0, r"n=0: expected an integer >= 1"),
    ("method", "kdgna", r"method='kdgna'.*did you mean 'kdgan'"),
    ("distill", "mse", r"distill='mse': expected one of l2, kl"),
    ("estimator", "gumbal", r"did you mean 'gumbel'"),
    ("cls_arch", "resnet", r"cls_arch='resnet'"),
    ("tau_end", 2.0, r"tau_end=2.0: expected <= tau_start"),
    ("device", "tpu", r"device='tpu'"),
    ("cls_dropout", 1.0, r"cls_dropout=1.0"),
    ("epochs", -1, r"epochs=-1"),
    ("unlabeled", -1, r"unlabeled=-1: expected an integer >= 0"),
    ("unlabeled", 49_901, r"unlabeled=49901: n \+ unlabeled = 50001 is larger than the MNIST "
                          r"training pool of 50000"),
    ("beta", float("nan"), r"beta=nan: expected a finite number"),
    ("n", 1.5, r"n=1.5: expected int"),
    ("augment", "maybe", r"augment='maybe': expected bool"),
])
def test_bad_values_name_the_key(key, value, pattern):
    with pytest.raises(ConfigError, match=pattern):
        Config.from_dict({key: value})


@pytest.mark.parametrize("overrides, message", [
    ({"tch_folds": 1}, "tch_folds=1"),
    ({"tch_folds": 101, "n": 100}, "tch_folds=101"),
    ({"tch_folds": 3, "method": "codis"}, "codis"),
    ({"tch_folds": 3, "tch_ce_weight": 0.5}, "tch_ce_weight=0.5"),
    ({"cls_pretrain_epochs": -2}, "cls_pretrain_epochs=-2: expected -1"),
    ({"cls_weight_decay": -0.1}, r"cls_weight_decay=-0.1: expected a value in \[0, 1\)"),
    ({"tch_weight_decay": -0.1}, r"tch_weight_decay=-0.1: expected a value in \[0, 1\)"),
    ({"dis_weight_decay": -0.1}, r"dis_weight_decay=-0.1: expected a value in \[0, 1\)"),
])
def test_bad_teacher_folds_passes_and_penalties_are_refused_with_the_reason(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(overrides)


@pytest.mark.parametrize("overrides, message", [
    ({"tch_arch": "text-linear"}, "tch_arch='text-linear' reads text: expected a tagged collection"),
    ({"dis_arch": "text-mlp"}, "dis_arch='text-mlp' reads text"),
    ({"dataset": "c.parquet", "cls_arch": "text-linear"}, "the classifier never sees the text"),
])
def test_a_text_player_without_text_is_refused_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(overrides)  # MNIST by default


def test_strings_from_the_command_line_are_coerced():
    cfg = Config.from_dict(parse_overrides(["alpha=0.3", "n=1000", "augment=false",
                                            "beta=1e-2", "method=nagan"]))
    assert (cfg.alpha, cfg.n, cfg.augment, cfg.beta, cfg.method) == (0.3, 1000, False, 0.01, "nagan")
    assert Config.from_dict({"beta": 2}).beta == 2.0  # an int is a fine float


def test_set_needs_key_equals_value():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["alpha"])


def test_the_architecture_names_are_the_model_registry():
    # config names the architectures without importing the models; this keeps them in step
    assert ARCHS == tuple(REGISTRY)
