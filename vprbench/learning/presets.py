"""Named hyperparameter presets of the learned methods: ``paper`` and ``cpu`` (scaled to the data).

``paper`` restates the published training setups (SeqNet, RA-L 2021; SeqMatchNet, CoRL 2021;
SeqVLAD, RA-L 2022; JIST / SeqGeM, RA-L 2023) for GPU users. ``cpu`` (the default) keeps the same
losses and mining but is sized for two CPU cores and made to keep learning on small real training
sets. Every method parameter whose default is None is filled in from the chosen preset; the resolved
values go into the result record and into the model cache key.

``cpu`` is a scale rule over three concrete presets, picked by the number of training queries
(query frames with a full window and a non-trivial positive, known when ``fit`` builds the triplet
data; :func:`scale_of`):

* ``cpu-small``: fewer than 1,000 training queries (a route of a few hundred frames). Epochs are
  cheap, so: up to 20 epochs, patience 5, batch 8 (enough optimiser steps per epoch), and no input
  projection below 4,097 dimensions (``pca_dim=4096``: a 2,048-D input is used as is — a 512-D
  projection fitted on 99 + 59 frames kept 69 % of the test descriptors' energy and cost 2-3
  points of SeqMatch Recall@1 before any training; a 49k-D sparse descriptor is still reduced,
  rank-capped to the descriptors available).
* ``cpu-medium``: 1,000 to 4,999 training queries (nordland-64x32: 1,139; the synthetic routes:
  about 1,900): up to 12 epochs, patience 4, batch 32, lr 3e-4, projection to 512 dimensions.
* ``cpu-large``: 5,000 or more (the papers' 15k-frame Nordland / Oxford training sets): up to 8
  epochs, patience 3, lr 1e-4 (one epoch is already ~15k triplets).

Every ``cpu`` scale selects by validation MRR and adapts the margin (``margin_adapt=0.25``: a
quarter of the queries keep a violating negative; ``margin_growth=2``: at most twice the base margin). A method
may adjust a scale (``PRESETS[method]["cpu-small"]``, e.g. SeqVLAD keeps its 512-D projection at
every scale: its output is K x H). The concrete presets can also be named directly
(``preset=cpu-small``); the choice is recorded (``resolved_params["preset_resolved"]``,
``training_info["n_train_queries"]``).

Hyperparameters (the same names for every learned method; a plugin exposes those it uses):

* ``out_dim``: output descriptor dimension (0 = same as the network's input dimension).
* ``pca_dim``: project the L2-normalised input descriptors onto this many principal directions
  before the learned layer (0 = no reduction; no reduction either when the input is not larger).
  The number of components is capped at the rank of the descriptors it is fitted on (never padded
  with zeros); the cap is recorded in ``training_info["pca"]`` with a warning.
* ``pca_fit``: what the projection is fitted on, all without labels: ``all`` = reference and query
  traverses of the training and validation splits plus every reference map the method was shown
  with ``observe`` (the test reference traverse, as VPR fits PCA-whitening on the map); ``train``
  = the training split's traverses only (the behaviour before).
* ``pca_center``: subtract the mean before projecting. Default off: the projection is then onto the
  top right-singular vectors of the raw unit descriptors, so with every dimension kept the
  identity-initialised model *is* raw matching; centring the patch-normalised nordland-64x32
  descriptors cost 3 points of SeqMatch Recall@1 even without any truncation (0.445 vs 0.472).
* ``filter_width``: SeqNet temporal filter width w (1 = per-frame linear map, S_1 / SeqMatchNet).
* ``train_seq_len``: training window length (0 = the run's ``--seq-len``).
* ``loss`` / ``mining``: ``single`` (centre-frame distance) or ``seqmatch`` (sequence distance).
* ``epochs``, ``batch_size`` (queries per step), ``optimizer`` (``sgd`` / ``adam``), ``lr``,
  ``momentum``, ``weight_decay``, ``lr_step`` / ``lr_gamma`` (StepLR, epochs), ``patience``
  (epochs without a strictly better validation score before stopping; 0 = never stop early).
* ``select``: the validation score that picks the kept epoch: ``mrr`` (mean reciprocal rank of the
  first positive in the top 20; 0 when none), ``recall@1`` or ``recall@5`` (the papers). Ties go
  to the higher MRR, then to the later epoch (see :mod:`vprbench.learning.selection`).
* ``margin``: triplet margin as a distance (SeqNet/SeqMatchNet use sqrt(0.1), SeqVLAD/JIST 0.1).
* ``margin_adapt``: target fraction of the mined queries that have a margin-violating negative
  (0 = off, the papers). When fewer do, that mining round uses every negative as a candidate and
  raises its margin to the smallest value that reaches the target, at most ``margin_growth`` times ``margin``.
* ``n_neg`` (hard negatives per query), ``n_neg_candidates`` (random negatives drawn per query),
  ``cache_refresh`` (queries between recomputations of the mining distance cache).
* ``init``: ``default`` (PyTorch's initialisation, as the papers) or ``identity`` (the learned
  layer starts as the identity map, so epoch 0 is raw matching; the ``cpu`` presets use it because
  with few epochs a random start loses more than training gains on small training splits).
* ``clusters`` (SeqVLAD), ``gem_p`` (SeqGeM's initial exponent): model hyperparameters.

``paper`` early stopping: SeqMatchNet trains all 50 epochs and keeps the best by validation
Recall@5 (patience 0, as the paper); SeqNet's "up to 200 epochs" is read as early stopping with
patience 10 (our decision: the paper gives only the maximum); the same for the NetVLAD layer.
SeqVLAD: 100 epochs, patience 5; JIST: 5 epochs, the best kept. ``paper`` never adapts the margin,
keeps ``pca_dim=0``, and selects by Recall@5 (ties: MRR, then the later epoch — the released code
keeps the earlier one; with its 3,000-query validation sets ties are rare).
"""

from __future__ import annotations

import math
from typing import Any

from vprbench.core.errors import ConfigError, unknown_name
from vprbench.core.params import Param

#: Preset names a learned method accepts; ``cpu`` resolves to one of the ``cpu-*`` by the scale rule.
PRESET_NAMES: tuple[str, ...] = ("cpu", "cpu-small", "cpu-medium", "cpu-large", "paper")
SCALES: tuple[str, ...] = ("small", "medium", "large")
#: Training queries at which ``cpu`` switches from small to medium and from medium to large.
SCALE_BOUNDS: tuple[int, int] = (1000, 5000)
SELECT_METRICS: tuple[str, ...] = ("mrr", "recall@1", "recall@5")

#: Every hyperparameter: type, range or choices, help. None (the default) means "from the preset".
HYPERPARAMETERS: dict[str, Param] = {
    "out_dim": Param(None, "output descriptor dimension (0 = input dimension)", type=int, lo=0),
    "pca_dim": Param(None, "project the input descriptors onto this many principal directions before the learned layer (0 = off)",
                     type=int, lo=0),
    "pca_fit": Param(None, "fit the input projection on: all (train + val traverses + observed maps, no labels) or train",
                     ("all", "train"), type=str),
    "pca_center": Param(None, "subtract the mean before the input projection", type=bool),
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
    "patience": Param(None, "early stopping: epochs without a better validation score (0 = off)", type=int, lo=0),
    "select": Param(None, "validation score that picks the kept epoch: mrr, recall@1 or recall@5", SELECT_METRICS, type=str),
    "margin": Param(None, "triplet margin (distance units; SeqNet/SeqMatchNet use sqrt(0.1))", type=float, lo=0.0, lo_open=True),
    "margin_adapt": Param(None, "target fraction of mined queries with a violating negative; below it the margin grows (0 = off)",
                          type=float, lo=0.0, hi=1.0),
    "margin_growth": Param(None, "largest adapted margin as a multiple of margin (1 = never grows)", type=float, lo=1.0),
    "n_neg": Param(None, "hard negatives per query", type=int, lo=1),
    "n_neg_candidates": Param(None, "random negative candidates per query", type=int, lo=1),
    "cache_refresh": Param(None, "queries between mining-cache refreshes", type=int, lo=1),
    "init": Param(None, "initial learned layer: default (PyTorch's, as the papers) or identity (starts from the raw descriptors)",
                  ("default", "identity"), type=str),
    "clusters": Param(None, "SeqVLAD clusters K (paper: 64)", type=int, lo=1),
    "gem_p": Param(None, "SeqGeM initial exponent p (learned; JIST: 3)", type=float, lo=0.0, lo_open=True),
}
#: Hyperparameters of one model family only; a plugin lists the ones it uses (``learned_params(model=...)``).
MODEL_HYPERPARAMETERS: tuple[str, ...] = ("clusters", "gem_p")

_PAPER_COMMON = dict(pca_dim=0, pca_fit="train", pca_center=False, select="recall@5", margin_adapt=0.0, margin_growth=1.0)
_PAPER_SGD = dict(_PAPER_COMMON, init="default", optimizer="sgd", momentum=0.9, weight_decay=1e-3, margin=math.sqrt(0.1), n_neg=10,
                  n_neg_candidates=1000, cache_refresh=1000)
# cpu: same losses and mining; Adam so that few epochs suffice; identity init; scaled by SCALE_PRESETS.
_CPU_COMMON = dict(
    init="identity", optimizer="adam", momentum=0.9, weight_decay=0.0, margin=math.sqrt(0.1), n_neg=10, n_neg_candidates=1000,
    cache_refresh=1000, pca_dim=512, pca_fit="all", pca_center=False, out_dim=0, batch_size=32, lr=3e-4, lr_step=5, lr_gamma=0.5,
    patience=4, epochs=12, select="mrr", margin_adapt=0.25, margin_growth=2.0,
)
#: What each cpu scale changes (over the method's ``cpu`` entry); see the module docstring.
SCALE_PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(pca_dim=4096, epochs=20, patience=5, batch_size=8, lr=3e-4),
    "medium": dict(),
    "large": dict(epochs=8, patience=3, lr=1e-4),
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # SeqNet paper, Oxford setup (L = 5, w = 3); Nordland: filter_width=5, train_seq_len=10, --seq-len 5.
    "seqnet": {
        "paper": dict(_PAPER_SGD, out_dim=4096, filter_width=3, train_seq_len=0, loss="single", mining="single",
                      epochs=200, batch_size=16, lr=1e-4, lr_step=50, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=3, train_seq_len=0, loss="single", mining="single"),
    },
    # S_1: SeqNet with w = 1 trained on single frames, evaluated with SeqMatch over its outputs.
    "seqnet-s1": {
        "paper": dict(_PAPER_SGD, out_dim=4096, filter_width=1, train_seq_len=1, loss="single", mining="single",
                      epochs=200, batch_size=16, lr=1e-4, lr_step=50, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=1, loss="single", mining="single"),
    },
    # SeqMatchNet paper: SGD lr 1e-3, momentum 0.9, wd 1e-3, StepLR(5, 0.5), 50 epochs, batch 16, L = 5, 4096-D.
    "seqmatchnet": {
        "paper": dict(_PAPER_SGD, out_dim=4096, filter_width=1, train_seq_len=0, loss="seqmatch", mining="seqmatch",
                      epochs=50, batch_size=16, lr=1e-3, lr_step=5, lr_gamma=0.5, patience=0),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=0, loss="seqmatch", mining="seqmatch"),
    },
    # SeqVLAD (vandal-vpr/vg-transformers): Adam lr 1e-5, no weight decay, triplet margin 0.1, 5 negatives
    # (their README's runs; 10 is the parser default) from 1,000 cached database sequences, 1,000 queries
    # per cache, batch 4, up to 100 epochs with patience 5 on validation Recall@5, 64 clusters, L = 5.
    # The window descriptor has one distance, so loss and mining are "single" (the same for L' = 1).
    "seqvlad": {
        "paper": dict(_PAPER_COMMON, init="default", optimizer="adam", momentum=0.9, weight_decay=0.0, margin=0.1, n_neg=5,
                      n_neg_candidates=1000, cache_refresh=1000, out_dim=0, filter_width=1, train_seq_len=0, loss="single",
                      mining="single", epochs=100, batch_size=4, lr=1e-5, lr_step=1000, lr_gamma=1.0, patience=5, clusters=64),
        # cpu: 8 clusters (a window has only L "local features"; 4-16 clusters gave the same synthetic Recall@1
        # within 0.02) on the shared 512-D projection (a 128-D one cut synth-seasons Recall@1 from 0.58 to 0.10)
        "cpu": dict(_CPU_COMMON, init="default", margin=0.1, filter_width=1, train_seq_len=0, loss="single",
                    mining="single", clusters=8),
        # K x H outputs: the projection stays at 512 dimensions at every scale
        "cpu-small": dict(pca_dim=512),
    },
    # JIST (gmberton/JIST, SeqGeM aggregation): Adam lr 1e-5, triplet margin 0.1, 5 negatives from 3,000
    # cached database sequences, 1,000 queries per cache, batch 4, 5 epochs (each 10 x 1,000 queries; here
    # an epoch is one pass over the training queries), best by validation Recall@5, 512-D frame
    # descriptors, p initialised to 3. JIST's image-level CosPlace loss has no counterpart on descriptors.
    "seqgem": {
        "paper": dict(_PAPER_COMMON, init="default", optimizer="adam", momentum=0.9, weight_decay=0.0, margin=0.1, n_neg=5,
                      n_neg_candidates=3000, cache_refresh=1000, out_dim=512, filter_width=1, train_seq_len=0, loss="single",
                      mining="single", epochs=5, batch_size=4, lr=1e-5, lr_step=1000, lr_gamma=1.0, patience=0, gem_p=3.0),
        "cpu": dict(_CPU_COMMON, margin=0.1, filter_width=1, train_seq_len=0, loss="single", mining="single", gem_p=3.0),
    },
    # NetVLAD layer on frozen backbone feature maps (images), single-image triplets (Arandjelovic et al.:
    # SGD lr 1e-4 momentum 0.9 wd 1e-3, StepLR(5, 0.5), 30 epochs, 4 queries per batch, margin sqrt(0.1)).
    # Its plugin validates by Recall@5 only, and its cpu preset keeps its earlier settings.
    "netvlad-trained": {
        "paper": dict(_PAPER_SGD, out_dim=0, filter_width=1, train_seq_len=1, loss="single", mining="single",
                      epochs=30, batch_size=4, lr=1e-4, lr_step=5, lr_gamma=0.5, patience=10),
        "cpu": dict(_CPU_COMMON, filter_width=1, train_seq_len=1, loss="single", mining="single", epochs=5, batch_size=16, lr=1e-4,
                    patience=3, select="recall@5", margin_adapt=0.0),
    },
}
#: Methods whose ``cpu`` preset follows the scale rule (netvlad-trained keeps one ``cpu`` preset).
SCALED: frozenset[str] = frozenset({"seqnet", "seqnet-s1", "seqmatchnet", "seqvlad", "seqgem"})


def scale_of(n_train_queries: int) -> str:
    """The data scale of a training set with ``n_train_queries`` training queries (see the module doc)."""
    small, large = SCALE_BOUNDS
    return "small" if n_train_queries < small else "medium" if n_train_queries < large else "large"


def preset_names(method: str) -> tuple[str, ...]:
    """The presets defined for ``method``."""
    if method not in PRESETS:
        raise unknown_name("learned method with presets", method, PRESETS)
    return PRESET_NAMES if method in SCALED else tuple(k for k in PRESETS[method] if not k.startswith("cpu-"))


def concrete_preset(method: str, preset: str, n_train_queries: int | None = None) -> str:
    """The preset actually used: ``cpu`` becomes ``cpu-<scale>`` (``cpu-medium`` while the size is unknown)."""
    if preset == "cpu" and method in SCALED:
        return f"cpu-{scale_of(n_train_queries) if n_train_queries is not None else 'medium'}"
    return preset


def resolve(method: str, preset: str, overrides: dict[str, Any] | None = None, n_train_queries: int | None = None) -> dict[str, Any]:
    """Hyperparameters of ``method`` under ``preset``, with non-None ``overrides`` applied (typed, checked).

    ``n_train_queries`` picks the scale of ``cpu`` (:func:`scale_of`); without it ``cpu`` resolves
    like ``cpu-medium`` (a placeholder until ``fit`` knows the training set). Raises
    :class:`ConfigError` for an unknown method, preset, hyperparameter or value.
    """
    if method not in PRESETS:
        raise unknown_name("learned method with presets", method, PRESETS)
    names = preset_names(method)
    if preset not in names:
        raise unknown_name(f"preset of method {method!r}", preset, names)
    concrete = concrete_preset(method, preset, n_train_queries)
    if concrete.startswith("cpu-"):
        out = {**PRESETS[method]["cpu"], **SCALE_PRESETS[concrete.removeprefix("cpu-")], **PRESETS[method].get(concrete, {})}
    else:
        out = dict(PRESETS[method][concrete])
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
    if hp.get("train_seq_len") and hp.get("filter_width", 1) > hp["train_seq_len"]:
        raise ConfigError(
            f"method {method!r}: filter_width ({hp['filter_width']}) must not exceed train_seq_len ({hp['train_seq_len']})"
        )
