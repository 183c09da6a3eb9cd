"""The one typed configuration of a kdgan run.

Every setting of a run lives in `Config`, with its default and a one-line docstring. Nothing
else in the package holds a default. `Config.from_dict` is strict: an unknown key is an error
that suggests the nearest field, a value of the wrong type or outside its range is an error
that names the key and what was expected, and all of it happens before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

METHODS = ("kdgan", "nagan", "kdgan-wo-gm", "supervised", "mimic", "distn", "noisy", "codis",
           "teacher")
# The names of kdgan.models.REGISTRY, in its order (a test checks they agree): validating a
# config needs no torch and no model module.
ARCHS = ("mlp", "lenet", "linear", "mlp-small", "cifar-cnn", "resnet110", "resnet20", "text-mlp",
         "text-linear")
DISTILL_LOSSES = ("l2", "kl")
ESTIMATORS = ("gumbel", "straight-through", "reinforce")
ADV_LOSSES = ("nonsaturating", "saturating")
DIS_TARGETS = ("exact", "sampled")
POPULATION_BACKENDS = ("auto", "loop", "vmap")
MNIST_POOL = 50_000  # mnist.pkl.gz: 50k training pool, 10k validation, 10k test


# Defaults per kind of dataset for the fields a mapping leaves out (`Config.from_dict`).
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # Paper Section 4.1: a LeNet-style classifier (~0.5M parameters) and a ResNet teacher
    # (~1.7M: ResNet-110); per-pixel mean subtraction (in the loader) and mirroring.
    "cifar10": {"n": 5000, "val_size": 5000, "cls_arch": "cifar-cnn", "tch_arch": "resnet110",
                "dis_arch": "cifar-cnn", "aug_rotation": 0.0, "aug_zoom": 0.0,
                "aug_shift": 0.0, "aug_flip": True},
    # Paper Section 4.2: C an MLP over image features; T and D read features and text.
    "tags": {"n": 2000, "val_size": 2000, "cls_arch": "mlp", "tch_arch": "text-mlp",
             "dis_arch": "text-mlp", "augment": False, "pretrain_epochs": 20},
}


def dataset_kind(dataset: str) -> str:
    """'mnist'; 'cifar10' (the name, or a directory holding CIFAR-10 python batches); 'tags'
    (a .parquet tagged image collection, kdgan.tags); else 'arrays' (.npz or IDX files)."""
    if dataset in ("mnist", "cifar10"):
        return dataset
    path = Path(dataset).expanduser()
    if path.suffix == ".parquet":
        return "tags"
    if path.is_dir() and (path / "data_batch_1").exists():
        return "cifar10"
    return "arrays"


class ConfigError(ValueError):
    """A setting is unknown, malformed or out of range. The message names the key."""


@dataclass
class Config:
    """All settings of one run. Per-player fields carry the prefixes cls_, tch_ and dis_."""

    # --- data -------------------------------------------------------------------------
    dataset: str = "mnist"
    """'mnist'; 'cifar10' or a directory of CIFAR-10 python batches (kdgan.cifar); a .parquet
    tagged image collection (kdgan.tags); a .npz file; a directory of MNIST IDX files."""
    n: int = 100
    """Number of labelled training examples, drawn with `seed` from the training pool."""
    unlabeled: int = 0
    """Unlabelled examples, drawn with `seed` from the training pool outside the n labelled
    ones, that the label-free terms also see (a transfer set, Hinton et al. 2015): each game
    or loss step of a method with more than one player adds batch_size of them to its
    minibatch for the distillation and adversarial terms; cross-entropy terms, pretraining
    and D's steps see the labelled examples only. 0: the paper's setting."""
    val_size: int = 10000
    """Validation examples held out of the training pool when a dataset has no own split."""
    seed: int = 0
    """Seed of the training subset, the initialisations and every random draw of the run."""
    population: int = 1
    """Members trained together as one run (kdgan.population): seeds seed, seed + 1, ...,
    seed + population - 1, each exactly the single run of its seed. A search gives every
    trial the same seeds, so trials are compared seed by seed."""
    population_backend: str = "auto"
    """How a population trains: 'loop' (one member after another, each step; exact and the
    fastest on a CPU), 'vmap' (one vectorised model per player, torch.func; for GPUs) or
    'auto' (vmap on CUDA where the config allows it, else loop)."""

    # --- method and players -----------------------------------------------------------
    method: str = "kdgan"
    """kdgan; nagan (C and D only); kdgan-wo-gm (score-function gradient); supervised (C
    alone); the distillation baselines mimic, distn, noisy, codis; teacher (T alone).
    See kdgan.methods."""
    cls_arch: str = "mlp"
    """Classifier (student) architecture, a name in kdgan.models.REGISTRY."""
    tch_arch: str = "lenet"
    """Teacher architecture, a name in kdgan.models.REGISTRY."""
    dis_arch: str = "lenet"
    """Discriminator architecture (K per-class scores s(x)), a name in kdgan.models.REGISTRY."""
    cls_dropout: float = 0.5
    """Dropout probability of the classifier's hidden layers."""
    tch_dropout: float = 0.5
    """Dropout probability of the teacher."""
    tch_folds: int = 0
    """Out-of-fold teacher (beyond the paper): k >= 2 teachers, each trained on the labels of
    all but one of k folds of the n training examples; on a training example the teacher's
    output (C's distillation target, D's fake labels from T, T's own game updates) is that
    of the member that never saw its label, elsewhere the members' mean. A teacher that
    memorised its training labels passes on nothing else; this one cannot. 0: one teacher."""
    dis_dropout: float = 0.5
    """Dropout probability of the discriminator."""
    cls_weight_decay: float = 0.0
    """L2 penalty on the classifier's weights (Adam's weight_decay), in pretraining and the game."""
    tch_weight_decay: float = 0.0
    """L2 penalty on the teacher's weights, in pretraining and the game: a teacher that cannot
    fit its training labels exactly passes on more than those labels (docs/RESULTS.md)."""
    dis_weight_decay: float = 0.0
    """L2 penalty on the discriminator's weights, in pretraining and the game."""

    # --- optimisation -----------------------------------------------------------------
    batch_size: int = 32
    """Minibatch size of every step, pretraining and game."""
    pretrain_lr: float = 1e-3
    """Adam learning rate of supervised pretraining (classifier and teacher) and of D's."""
    pretrain_epochs: int = 200
    """Passes over the n training examples when pretraining the classifier and the teacher."""
    cls_pretrain_epochs: int = -1
    """Passes of the classifier's pretraining when it differs from the teacher's (-1: as
    pretrain_epochs; 0: the game starts from an untrained classifier)."""
    dis_pretrain_epochs: int = 10
    """Passes over the training examples when pretraining D against the pretrained C and T."""
    cls_lr: float = 3e-4
    """Adam learning rate of the classifier in the game (and in `supervised`'s epochs)."""
    tch_lr: float = 1e-4
    """Adam learning rate of the teacher in the game."""
    dis_lr: float = 1e-4
    """Adam learning rate of the discriminator in the game."""
    cls_steps: int = 8
    """k_C: classifier minibatch steps per game epoch (Algorithm 1, line 9)."""
    tch_steps: int = 2
    """k_T: teacher minibatch steps per game epoch (Algorithm 1, line 6)."""
    dis_steps: int = 4
    """k_D: discriminator minibatch steps per game epoch (Algorithm 1, line 3)."""
    epochs: int = 30
    """Game epochs after pretraining (Algorithm 1, line 2): the most a run plays."""
    patience: int = 0
    """Game epochs without a new best validation accuracy after which a run stops (early
    stopping; epoch 0, after pretraining, counts as an epoch with a validation accuracy);
    0 = never: the run plays all its `epochs`."""
    lr_plateau: int = 0
    """Game epochs without a new best validation accuracy after which every player's game
    learning rate is multiplied by `lr_factor`, and again after each further `lr_plateau`
    epochs without one (the rule of Keras' and torch's ReduceLROnPlateau, read from the
    history alone, so a resumed run has the same rates; epoch 0 counts, as for `patience`);
    0 = constant learning rates."""
    lr_factor: float = 0.5
    """The factor of each `lr_plateau` reduction, in (0, 1)."""
    lr_cuts: int = 0
    """With `lr_plateau`: the most reductions a run takes; the plateau that would cut its
    rates once more ends the run instead (a run whose validation accuracy creeps up by an
    image now and then at a tiny rate stops, where `patience` alone would let it go on);
    0 = no limit."""

    # --- the game ---------------------------------------------------------------------
    alpha: float = 0.2
    """Weight of the classifier's adversarial term; the teacher's gets 1 - alpha (Eq. 3)."""
    beta: float = 1.0
    """Weight of the classifier's distillation loss L_DS^c (Eq. 3). Must be > 0."""
    gamma: float = 0.1
    """Weight of the teacher's distillation loss L_DS^t (Eq. 3). Must be > 0."""
    distill: str = "kl"
    """Distillation loss: 'l2' on logits (Ba & Caruana 2014) or 'kl' at `distill_temperature`."""
    distill_temperature: float = 4.0
    """Softmax temperature of the 'kl' distillation loss (Hinton et al. 2015)."""
    cls_ce_weight: float = 0.0
    """Weight of a hard-label cross-entropy added to the classifier's game loss (0 = paper)."""
    tch_ce_weight: float = 0.0
    """Weight of a hard-label cross-entropy added to the teacher's game loss (0 = paper)."""
    estimator: str = "gumbel"
    """Gradient of the adversarial terms: 'gumbel' (pathwise, concrete samples),
    'straight-through' (hard samples, relaxed gradient) or 'reinforce' (score function)."""
    reinforce_baseline: bool = True
    """Subtract the batch-mean reward from the score-function gradient (variance reduction)."""
    tau_start: float = 1.0
    """Gumbel-softmax temperature at the first game step."""
    tau_end: float = 0.1
    """Gumbel-softmax temperature at the last game step (exponential decay in between)."""
    adv_loss: str = "nonsaturating"
    """Generator side of the adversarial terms: 'saturating' log(1 - D) as in Eq. 3, or
    'nonsaturating' -log D (same fixed point, stronger gradients when D wins)."""
    dis_target: str = "exact"
    """D's fake term: 'exact' expectation over all K labels under alpha p_c + (1-alpha) p_t,
    or 'sampled' from the concrete distributions as written in Algorithm 1."""

    # --- the baselines (kdgan.methods) --------------------------------------------------
    distn_p: float = 0.7
    """DISTN: weight p of the soft (teacher) term; the hard-label term gets 1 - p."""
    distn_temperature: float = 3.0
    """DISTN: softmax temperature of the soft term (Hinton et al. 2015)."""
    noisy_sigma: float = 0.1
    """NOISY: standard deviation of the multiplicative noise on the teacher's logits."""
    noisy_rate: float = 1.0
    """NOISY: probability that a minibatch's teacher logits are perturbed."""
    codis_weight: float = 1.0
    """CODIS: weight psi of each network's distillation from the other's predictions."""

    # --- data augmentation ------------------------------------------------------------
    augment: bool = True
    """Random affine augmentation of image batches on the run's device (all methods)."""
    aug_rotation: float = 15.0
    """Largest rotation in degrees."""
    aug_shift: float = 0.1
    """Largest translation as a fraction of the image side."""
    aug_zoom: float = 0.1
    """Largest relative zoom in or out."""
    aug_flip: bool = False
    """Mirror each image left-right with probability 1/2 (the paper's CIFAR-10 augmentation)."""

    # --- running ----------------------------------------------------------------------
    device: str = "auto"
    """'auto' (cuda when available), 'cpu', 'cuda' or 'cuda:N'."""
    eval_batch_size: int = 2000
    """Batch size of evaluation passes over the validation and test sets."""
    eval_teacher: bool = False
    """Evaluate the teacher on validation and test after pretraining and after the epoch the
    run ends at, its last or an early stop (history columns val/tch_acc and test/tch_acc; a
    LeNet over 20,000 images: about 9 s each on 2 CPU cores)."""
    pretrain_cache: str = ""
    """Directory of pretrained players shared between runs ('' = no sharing)."""
    threads: int = 0
    """torch CPU threads (0 = torch's default)."""
    log_grad_variance: bool = False
    """Log the variance over each epoch's steps of the gradients of the classifier's
    adversarial and distillation terms (paper Figure 7). Two extra backward passes per
    classifier step when on; nothing when off."""

    # ---------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Build a config from a mapping, coercing strings (as given on a command line).

        Keys the mapping leaves out take the dataset's defaults (`DATASET_DEFAULTS`, e.g.
        the CIFAR-10 networks and mirroring), then the field defaults."""
        known = {f.name: f for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(unknown_key_message(key, list(known)))
        dataset = str(values.get("dataset", cls.dataset))
        values = {**DATASET_DEFAULTS.get(dataset_kind(dataset), {}), **values}
        kwargs = {k: _coerce(k, v, _field_type(cls, k)) for k, v in values.items()}
        return cls(**kwargs)

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed, validated like a new config."""
        return Config.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    # Ranges. Each check names the key, the value, and what was expected.
    def validate(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            expected = _field_type(type(self), f.name)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
                setattr(self, f.name, value)
            if not _is_instance(value, expected):
                raise ConfigError(f"{f.name}={value!r}: expected {expected.__name__}")
            if expected is float and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r}: expected a finite number")
        _choice("method", self.method, METHODS)
        _choice("distill", self.distill, DISTILL_LOSSES)
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("adv_loss", self.adv_loss, ADV_LOSSES)
        _choice("dis_target", self.dis_target, DIS_TARGETS)
        _choice("population_backend", self.population_backend, POPULATION_BACKENDS)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha={self.alpha}: expected a value in [0, 1]")
        for key in ("distn_p", "noisy_rate"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key}={getattr(self, key)}: expected a value in [0, 1]")
        for key in ("beta", "gamma", "distill_temperature", "tau_start", "tau_end",
                    "distn_temperature", "noisy_sigma", "codis_weight",
                    "pretrain_lr", "cls_lr", "tch_lr", "dis_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)}: expected a value > 0")
        if self.dataset == "mnist" and self.n > MNIST_POOL:
            raise ConfigError(f"n={self.n}: larger than the MNIST training pool of {MNIST_POOL} "
                              "images (the other 10,000 are the validation split)")
        if self.dataset == "mnist" and self.n + self.unlabeled > MNIST_POOL:
            raise ConfigError(f"unlabeled={self.unlabeled}: n + unlabeled = {self.n + self.unlabeled}"
                              f" is larger than the MNIST training pool of {MNIST_POOL} images")
        if self.tau_end > self.tau_start:
            raise ConfigError(f"tau_end={self.tau_end}: expected <= tau_start={self.tau_start}"
                              " (the temperature is annealed downwards)")
        for key in ("n", "batch_size", "eval_batch_size", "population"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}={getattr(self, key)}: expected an integer >= 1")
        for key in ("unlabeled", "val_size", "pretrain_epochs", "dis_pretrain_epochs", "epochs",
                    "patience", "lr_plateau", "lr_cuts", "cls_steps", "tch_steps", "dis_steps",
                    "threads"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)}: expected an integer >= 0")
        if not 0.0 < self.lr_factor < 1.0:
            raise ConfigError(f"lr_factor={self.lr_factor}: expected a value in (0, 1) (the "
                              "factor of each lr_plateau reduction)")
        if self.lr_cuts and not self.lr_plateau:
            raise ConfigError(f"lr_cuts={self.lr_cuts} with lr_plateau=0: expected lr_plateau > 0 "
                              "(lr_cuts limits the plateau rule's reductions)")
        if self.cls_pretrain_epochs < -1:
            raise ConfigError(f"cls_pretrain_epochs={self.cls_pretrain_epochs}: expected -1 (as "
                              "pretrain_epochs) or an integer >= 0")
        for key in ("cls_ce_weight", "tch_ce_weight", "aug_rotation", "aug_shift", "aug_zoom"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}={getattr(self, key)}: expected a value >= 0")
        if self.tch_folds == 1 or self.tch_folds < 0 or self.tch_folds > self.n:
            raise ConfigError(f"tch_folds={self.tch_folds}: expected 0 (one teacher) or 2 to "
                              f"n = {self.n}")
        if self.tch_folds and (self.method == "codis" or self.tch_ce_weight > 0):
            raise ConfigError(f"tch_folds={self.tch_folds} with method={self.method!r} and "
                              f"tch_ce_weight={self.tch_ce_weight}: expected a teacher whose game "
                              "loss has no label term (not codis, tch_ce_weight=0); a label term "
                              "would show each member the labels of its own fold")
        for key in ("cls_dropout", "tch_dropout", "dis_dropout",
                    "cls_weight_decay", "tch_weight_decay", "dis_weight_decay"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(f"{key}={getattr(self, key)}: expected a value in [0, 1)")
        if self.aug_zoom >= 1.0 or self.aug_shift >= 1.0:
            raise ConfigError("aug_zoom and aug_shift: expected fractions below 1")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
        for key in ("cls_arch", "tch_arch", "dis_arch"):
            _choice(key, getattr(self, key), ARCHS)
        # the text players read image features and text: T and D on a tagged collection only
        if self.cls_arch.startswith("text-"):
            raise ConfigError(f"cls_arch={self.cls_arch!r}: the classifier never sees the text; "
                              "expected an architecture over the image alone (e.g. mlp)")
        for key in ("tch_arch", "dis_arch"):
            if getattr(self, key).startswith("text-") and dataset_kind(self.dataset) != "tags":
                raise ConfigError(f"{key}={getattr(self, key)!r} reads text: expected a tagged "
                                  f"collection (.parquet) as dataset, not {self.dataset!r}")


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        hint = difflib.get_close_matches(value, allowed, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{key}={value!r}: expected one of {', '.join(allowed)}{extra}")


def unknown_key_message(key: str, known: list[str]) -> str:
    hint = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    extra = f" (did you mean {hint[0]}?)" if hint else ""
    return f"unknown key {key!r}{extra}; known keys: {', '.join(known)}"


@functools.cache
def _type_hints(cls: type) -> dict[str, type]:
    return typing.get_type_hints(cls)


def _field_type(cls: type, name: str) -> type:
    return _type_hints(cls)[name]


def _is_instance(value: Any, expected: type) -> bool:
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, float)
    return isinstance(value, expected)


def _coerce(key: str, value: Any, expected: type) -> Any:
    """Turn a command-line string into the field's type; other values pass unchanged."""
    if not isinstance(value, str) or expected is str:
        return value
    text = value.strip()
    try:
        if expected is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if expected is int:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if expected is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}={value!r}: expected {expected.__name__}") from None
    return value


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """Parse `key=value` strings from `--set`; a pair without '=' is an error."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        out[key.strip()] = value
    return out


__all__ = ["ARCHS", "Config", "ConfigError", "METHODS", "parse_overrides"]
