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

from vprbench.core.errors import ConfigError, unknown_name
from vprbench.core.params import Param

PRESET_NAMES: tuple[str, ...] = ("cpu", "paper")

#: Every hyperparameter: type, range or choices, help. None (the default) means "from the preset".
HYPERPARAMETERS: dict[str, Param] = {
    "out_dim": Param(None, "output descriptor dimension (0 = input dimension)", type=int, lo=0),
    "pca_dim": Param(None, "PCA-reduce the input descriptors to this dimension before the learned layer (0 = off)", type=int, lo=0),
    "filter_width": Param(None, "SeqNet temporal filter width w (frames)", type=int, lo=1),
    "train_seq_len": Param(None, "training window length in frames (0 = the run's seq_len)", type=int, lo=0),
    "loss": Param(None, "triplet loss distance: single (centre frame) or seqmatch (sequence distance)", ("single", "seqmatch"), type=str),
    "mining": Param(None, "distance used to mine positives/negatives: single or seqmatch", ("single", "seqmatch"), type=str),
    "epochs": Param(None, "maximum training epochs", type=int, lo=1),
    "batch_size": Param(None, "queries (triplets) per optimiser step", type=int, lo=1),
    "optimizer": Param(None, "sgd (momentum, weight decay) or adam", ("sgd", "adam"), type=str),
    "lr": Param(None, "learning rate", type=float, lo=0.0, lo_open=True),
    "momentum": Param(None, "SGD momentum", type=float, lo=0.0, hi=1.0, hi_open=True),
    "weight_decay": Param(None, "weight decay", type=float, lo=0.0),
    "lr_step": Param(None, "StepLR step size (epochs)", type=int, lo=1),
    "lr_gamma": Param(None, "StepLR decay factor", type=float, lo=0.0, lo_open=True, hi=1.0),
    "patience": Param(None, "early stopping: epochs without better validation Recall@5 (0 = off)", type=int, lo=0),
    "margin": Param(None, "triplet margin (distance units; the papers use sqrt(0.1))", type=float, lo=0.0, lo_open=True),
    "n_neg": Param(None, "hard negatives per query", type=int, lo=1),
    "n_neg_candidates": Param(None, "random negative candidates per query", type=int, lo=1),
    "cache_refresh": Param(None, "queries between mining-cache refreshes", type=int, lo=1),
    "init": Param(None, "initial learned layer: default (PyTorch's, as the papers) or identity (starts from the raw descriptors)",
                  ("default", "identity"), type=str),
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
        if key not in HYPERPARAMETERS:
            raise unknown_name(f"hyperparameter of method {method!r}", key, HYPERPARAMETERS)
        value = HYPERPARAMETERS[key].coerce(value, key, f"method {method!r}")
        if value is not None:
            out[key] = value
    check(method, out)
    return {k: out[k] for k in sorted(out)}


def check(method: str, hp: dict[str, Any]) -> None:
    """Checks across resolved hyperparameters."""
    if hp["train_seq_len"] and hp["filter_width"] > hp["train_seq_len"]:
        raise ConfigError(
            f"method {method!r}: filter_width ({hp['filter_width']}) must not exceed train_seq_len ({hp['train_seq_len']})"
        )
