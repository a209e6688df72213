"""Named hyperparameter presets of the learned methods: ``paper`` and ``cpu``.

``paper`` restates the published training setups (SeqNet, RA-L 2021; SeqMatchNet, CoRL 2021) for
GPU users; ``cpu`` (the default) keeps the same losses and mining but trains for fewer epochs on a
PCA-reduced input, so that training on the built-in synthetic dataset takes well under two minutes on
two cores. Every method parameter whose default is None is filled in from the chosen preset; the
resolved values go into the result record and into the model cache key.

Hyperparameters (the same names for every learned method):

* ``out_dim``: output descriptor dimension (0 = same as the network's input dimension).
* ``pca_dim``: reduce the L2-normalised input descriptors to this many PCA dimensions, fitted on
  the training split, before the learned layer (0 = no reduction).
* ``filter_width``: SeqNet temporal filter width w (1 = per-frame linear map, S_1 / SeqMatchNet).
* ``train_seq_len``: training window length (0 = the run's ``--seq-len``).
* ``loss`` / ``mining``: ``single`` (centre-frame distance) or ``seqmatch`` (sequence distance).
* ``epochs``, ``batch_size`` (queries per step), ``optimizer`` (``sgd`` / ``adam``), ``lr``,
  ``momentum``, ``weight_decay``, ``lr_step`` / ``lr_gamma`` (StepLR, epochs), ``patience``
  (epochs without a better validation Recall@5 before stopping; 0 = never stop early).
* ``margin``: triplet margin as a distance (the papers use sqrt(0.1)).
* ``n_neg`` (hard negatives per query), ``n_neg_candidates`` (random negatives drawn per query),
  ``cache_refresh`` (queries between recomputations of the mining distance cache).
* ``init``: ``default`` (PyTorch's initialisation, as the papers) or ``identity`` (the learned
  layer starts as the identity map, so epoch 0 is raw matching; the ``cpu`` preset uses it because
  with few epochs a random start loses more than training gains on small training splits).

``paper`` early stopping: SeqMatchNet trains all 50 epochs and keeps the best by validation
Recall@5 (patience 0, as the paper); SeqNet's "up to 200 epochs" is read as early stopping with
patience 10 (our decision: the paper gives only the maximum); the same for the NetVLAD layer.

``cpu`` preset decisions: Adam (lr 1e-4), 8 epochs, patience 3, batch 32, identity init, input PCA to
512 dimensions only when the input is larger (4096-D NetVLAD -> 512; the 256-D synthetic data is not
reduced: its spectrum was flat, and PCA to 128 cost 7 points of Recall@1).
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ConfigError, unknown_name

PRESET_NAMES: tuple[str, ...] = ("cpu", "paper")

#: Type of each hyperparameter (CLI strings and None-defaults are converted to it).
HYPERPARAMETERS: dict[str, type] = {
    "out_dim": int,
    "pca_dim": int,
    "filter_width": int,
    "train_seq_len": int,
    "loss": str,
    "mining": str,
    "epochs": int,
    "batch_size": int,
    "optimizer": str,
    "lr": float,
    "momentum": float,
    "weight_decay": float,
    "lr_step": int,
    "lr_gamma": float,
    "patience": int,
    "margin": float,
    "n_neg": int,
    "n_neg_candidates": int,
    "cache_refresh": int,
    "init": str,
}

CHOICES: dict[str, tuple[str, ...]] = {
    "loss": ("single", "seqmatch"),
    "mining": ("single", "seqmatch"),
    "optimizer": ("sgd", "adam"),
    "init": ("default", "identity"),
}

HELP: dict[str, str] = {
    "out_dim": "output descriptor dimension (0 = input dimension)",
    "pca_dim": "PCA-reduce the input descriptors to this dimension before the learned layer (0 = off)",
    "filter_width": "SeqNet temporal filter width w",
    "train_seq_len": "training window length in frames (0 = the run's seq_len)",
    "loss": "triplet loss distance: single (centre frame) or seqmatch (sequence distance)",
    "mining": "distance used to mine positives/negatives: single or seqmatch",
    "epochs": "maximum training epochs",
    "batch_size": "queries (triplets) per optimiser step",
    "optimizer": "sgd (momentum, weight decay) or adam",
    "lr": "learning rate",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "lr_step": "StepLR step size (epochs)",
    "lr_gamma": "StepLR decay factor",
    "patience": "early stopping: epochs without better validation Recall@5 (0 = off)",
    "margin": "triplet margin (distance units; the papers use sqrt(0.1))",
    "n_neg": "hard negatives per query",
    "n_neg_candidates": "random negative candidates per query",
    "cache_refresh": "queries between mining-cache refreshes",
    "init": "initial learned layer: default (PyTorch's, as the papers) or identity (starts from the raw descriptors)",
}

_PAPER_SGD = dict(init="default", optimizer="sgd", momentum=0.9, weight_decay=1e-3, margin=math.sqrt(0.1), n_neg=10, n_neg_candidates=1000, cache_refresh=1000)
# cpu: same losses and mining; fewer epochs, PCA-reduced input, Adam so that few epochs suffice.
_CPU_COMMON = dict(
    init="identity", optimizer="adam", momentum=0.9, weight_decay=0.0, margin=math.sqrt(0.1), n_neg=10, n_neg_candidates=1000,
    cache_refresh=1000, pca_dim=512, out_dim=0, batch_size=32, lr_step=5, lr_gamma=0.5, patience=3,
)

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # SeqNet paper, Oxford setup (L = 5, w = 3); Nordland: filter_width=5, train_seq_len=10, --seq-len 5.
    "seqnet": {
        "paper": dict(_PAPER_SGD, out_dim=4096, pca_dim=0, filter_width=3, train_seq_len=0, loss="single", mining="single",
                      epochs=200, batch_size=16, lr=1e-4, lr_step=50, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=3, train_seq_len=0, loss="single", mining="single", epochs=8, lr=1e-4),
    },
    # S_1: SeqNet with w = 1 trained on single frames, evaluated with SeqMatch over its outputs.
    "seqnet-s1": {
        "paper": dict(_PAPER_SGD, out_dim=4096, pca_dim=0, filter_width=1, train_seq_len=1, loss="single", mining="single",
                      epochs=200, batch_size=16, lr=1e-4, lr_step=50, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=1, loss="single", mining="single", epochs=8, lr=1e-4),
    },
    # SeqMatchNet paper: SGD lr 1e-3, momentum 0.9, wd 1e-3, StepLR(5, 0.5), 50 epochs, batch 16, L = 5, 4096-D.
    "seqmatchnet": {
        "paper": dict(_PAPER_SGD, out_dim=4096, pca_dim=0, filter_width=1, train_seq_len=0, loss="seqmatch", mining="seqmatch",
                      epochs=50, batch_size=16, lr=1e-3, lr_step=5, lr_gamma=0.5, patience=0),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=0, loss="seqmatch", mining="seqmatch", epochs=8, lr=1e-4),
    },
    # NetVLAD layer on frozen backbone feature maps (images), single-image triplets (Arandjelovic et al.:
    # SGD lr 1e-4 momentum 0.9 wd 1e-3, StepLR(5, 0.5), 30 epochs, 4 queries per batch, margin sqrt(0.1)).
    "netvlad-trained": {
        "paper": dict(_PAPER_SGD, out_dim=0, pca_dim=0, filter_width=1, train_seq_len=1, loss="single", mining="single",
                      epochs=30, batch_size=4, lr=1e-4, lr_step=5, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=1, loss="single", mining="single", epochs=5, batch_size=16, lr=1e-4),
    },
}


def preset_names(method: str) -> tuple[str, ...]:
    """The presets defined for ``method``."""
    if method not in PRESETS:
        raise unknown_name("learned method with presets", method, PRESETS)
    return tuple(PRESETS[method])


def resolve(method: str, preset: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Hyperparameters of ``method`` under ``preset``, with non-None ``overrides`` applied (typed, checked).

    Raises :class:`ConfigError` for an unknown method, preset, hyperparameter or value.
    """
    if method not in PRESETS:
        raise unknown_name("learned method with presets", method, PRESETS)
    if preset not in PRESETS[method]:
        raise unknown_name(f"preset of method {method!r}", preset, PRESETS[method])
    out = dict(PRESETS[method][preset])
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in HYPERPARAMETERS:
            raise unknown_name(f"hyperparameter of method {method!r}", key, HYPERPARAMETERS)
        out[key] = coerce(method, key, value)
    check(method, out)
    return {k: out[k] for k in sorted(out)}


def coerce(method: str, key: str, value: Any) -> Any:
    """``value`` converted to the hyperparameter's type (ConfigError if it cannot be)."""
    typ = HYPERPARAMETERS[key]
    try:
        if typ is int:
            f = float(value)
            if f != int(f):
                raise ValueError(value)
            value = int(f)
        elif typ is float:
            value = float(value)
        else:
            value = str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"method {method!r}: hyperparameter {key!r} expects a {typ.__name__}, got {value!r}") from None
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be one of {list(CHOICES[key])}, got {value!r}")
    return value


def check(method: str, hp: dict[str, Any]) -> None:
    """Range checks of resolved hyperparameters."""
    positive = ("filter_width", "epochs", "batch_size", "n_neg", "n_neg_candidates", "cache_refresh", "lr_step")
    for key in positive:
        if hp[key] < 1:
            raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be >= 1, got {hp[key]}")
    for key in ("out_dim", "pca_dim", "train_seq_len", "patience"):
        if hp[key] < 0:
            raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be >= 0, got {hp[key]}")
    for key in ("lr", "margin"):
        if not hp[key] > 0:
            raise ConfigError(f"method {method!r}: hyperparameter {key!r} must be > 0, got {hp[key]}")
    if hp["train_seq_len"] and hp["filter_width"] > hp["train_seq_len"]:
        raise ConfigError(
            f"method {method!r}: filter_width ({hp['filter_width']}) must not exceed train_seq_len ({hp['train_seq_len']})"
        )
