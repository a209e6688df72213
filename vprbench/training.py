"""The one training engine shared by the learned methods (SeqNet, S_1, SeqMatchNet, ...).

Triplet margin training on windows of the training split, as in the released SeqNet/SeqMatchNet
code (itself derived from the NetVLAD PyTorch training):

* Training windows use the ``"drop"`` boundary policy (a frame whose centred window would cross a
  segment bound is neither a training query nor a reference), whatever the test-time policy is.
* A training query is a query frame with a window and at least one *non-trivial* positive
  (``SplitData.training_positives()``) that has a window.
* Mining (:func:`mine`): the positive is the non-trivial positive closest under the mining
  distance; negatives are the ``n_neg`` hardest margin-violating references among
  ``n_neg_candidates`` random references outside the negative radius plus the query's negatives
  from its previous round; a query without a violating negative is skipped. The mining distances
  come from embeddings of the whole split recomputed every ``cache_refresh`` queries.
* Mining distance (pluggable): ``"single"`` = distance of the centre frames' outputs,
  ``"seqmatch"`` = mean of the L aligned frame distances (the L x L identity convolution over
  the cached distance matrix, :func:`vprbench.kernels.aggregate_diagonals`), for per-frame models.
  For models that output one descriptor per window (SeqNet, w > 1) both are that descriptor's
  Euclidean distance.
* Loss (:func:`triplet_loss`): mean over the (query, negative) pairs of
  ``max(d(q, p) - d(q, n) + margin, 0)``; ``d`` is the ``"single"`` or ``"seqmatch"`` distance.
* SGD (momentum, weight decay) or Adam, StepLR per epoch, validation Recall@5 after each epoch,
  the best epoch's weights kept, early stopping after ``patience`` epochs without improvement.
  The untrained model is validated too ("epoch 0"), so a run whose training only overfits keeps
  its initial weights (and says so: ``best_epoch`` 0).
* Determinism: torch seeded and in deterministic mode, numpy draws from ``default_rng([seed, .])``,
  a fixed number of CPU threads (half the cores, ``$VPRBENCH_TORCH_THREADS`` overrides).

Decisions where the sources are silent (documented, configurable through the presets): the 1,000
candidates are drawn without replacement among the negatives of the query; ties in mining go to
the lower reference index; without a validation split the last epoch is kept.
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .dataset import SplitData
from .method import Method, Param, Ranking, RunContext
from .errors import ConfigError, DataError
from .groundtruth import GroundTruth
from .kernels import l2_normalise, pairwise_distances, topk_smallest
from .progress import progress_bar
from .windows import check_seq_len, traverse_windows, window_indices

DISTANCES: tuple[str, ...] = ("single", "seqmatch")
#: Initialisations of the learned layer: PyTorch's default (the papers) or the identity map.
INITS: tuple[str, ...] = ("default", "identity")


# ----------------------------------------------------------------------------------------- model
class SeqNetModel(nn.Module):
    """SeqNet-style network over descriptor windows (Garg & Milford, RA-L 2021).

    Input [B, L, D_in] (float32) -> L2-normalise each frame -> optional fixed PCA to ``pca_dim``
    (mean and components fitted on the training split, then L2-normalised) -> 1-D temporal
    convolution (kernel ``filter_width``, stride 1, no padding, bias) -> output.

    * ``filter_width == 1`` (per-frame, S_1 / SeqMatchNet): output [B, L, D_out], each frame L2-normalised.
    * ``filter_width > 1`` (S_L): mean over the L - w + 1 temporal positions, L2-normalised: [B, 1, D_out].
    """

    def __init__(self, in_dim: int, out_dim: int = 0, filter_width: int = 1, pca_dim: int = 0, init: str = "default") -> None:
        super().__init__()
        if init not in INITS:
            raise ConfigError(f"model init must be one of {INITS}, got {init!r}")
        self.in_dim, self.filter_width = int(in_dim), int(filter_width)
        self.pca_dim = int(pca_dim) if pca_dim and pca_dim < in_dim else 0
        hidden = self.pca_dim or self.in_dim
        self.out_dim = int(out_dim) or hidden
        self.register_buffer("pca_mean", torch.zeros(self.in_dim))
        self.register_buffer("pca_components", torch.zeros(self.in_dim, self.pca_dim))
        self.conv = nn.Conv1d(hidden, self.out_dim, kernel_size=self.filter_width, stride=1, padding=0, bias=True)
        if init == "identity":
            # start from the untrained descriptors: every tap maps input to output (1/w each, zero bias),
            # so the initial model is raw matching (w = 1) or mean smoothing over the window (w > 1)
            with torch.no_grad():
                eye = torch.eye(self.out_dim, hidden) / self.filter_width
                self.conv.weight.copy_(eye[:, :, None].expand(-1, -1, self.filter_width))
                self.conv.bias.zero_()

    @property
    def per_frame(self) -> bool:
        """True when the model outputs one descriptor per frame (w = 1)."""
        return self.filter_width == 1

    def config(self) -> dict[str, Any]:
        return {"arch": "seqnet", "in_dim": self.in_dim, "out_dim": self.out_dim, "filter_width": self.filter_width, "pca_dim": self.pca_dim}

    def fit_pca(self, x: np.ndarray, max_rows: int = 20000, seed: int = 0) -> None:
        """Fit the fixed input PCA on descriptors ``x`` [N, D_in] (L2-normalised first)."""
        if not self.pca_dim:
            return
        x = l2_normalise(x).astype(np.float64)
        if len(x) > max_rows:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))]
        mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        comps = vt[: self.pca_dim].T
        # fix the sign of each component so the result does not depend on the LAPACK build
        signs = np.sign(comps[np.abs(comps).argmax(0), np.arange(comps.shape[1])])
        comps = comps * np.where(signs == 0, 1.0, signs)
        if comps.shape[1] < self.pca_dim:
            comps = np.pad(comps, ((0, 0), (0, self.pca_dim - comps.shape[1])))
        self.pca_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.pca_components.copy_(torch.from_numpy(comps.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise DataError(f"model input dimension mismatch: the model was trained on D={self.in_dim}, got D={x.shape[-1]}")
        x = F.normalize(x, dim=-1)
        if self.pca_dim:
            x = F.normalize((x - self.pca_mean) @ self.pca_components, dim=-1)
        # the convolution as one matrix product over unfolded windows (much faster than conv1d's
        # backward on CPU): [B, L - w + 1, H * w] @ [H * w, D_out], same weights as self.conv
        w = self.filter_width
        cols = x.unfold(1, w, 1).reshape(x.shape[0], x.shape[1] - w + 1, -1)
        y = F.linear(cols, self.conv.weight.reshape(self.out_dim, -1), self.conv.bias)  # [B, L - w + 1, D_out]
        if self.per_frame:
            return F.normalize(y, dim=-1)
        return F.normalize(y.mean(1), dim=-1)[:, None, :]


def build_model(config: dict[str, Any]) -> SeqNetModel:
    """Rebuild a model from its :meth:`SeqNetModel.config` (e.g. from a checkpoint)."""
    if config.get("arch") != "seqnet":
        raise DataError(f"unknown model architecture {config.get('arch')!r} in model config; expected 'seqnet'")
    try:
        return SeqNetModel(int(config["in_dim"]), int(config["out_dim"]), int(config["filter_width"]), int(config["pca_dim"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"model config is incomplete or malformed ({e!r}); expected in_dim, out_dim, filter_width, pca_dim") from None


# ------------------------------------------------------------------------------ torch utilities
def resolve_device(requested: str) -> torch.device:
    """``cuda`` only if requested and available (falls back to CPU with a warning); else CPU."""
    if requested.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device(requested)
        warnings.warn(f"device {requested!r} requested but CUDA is not available; training on the CPU", stacklevel=2)
        return torch.device("cpu")
    if requested != "cpu":
        raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {requested!r}")
    return torch.device("cpu")


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch, enable deterministic algorithms and set the CPU thread count; restore afterwards."""
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    if threads is None:
        # half the cores (1 on a 2-core machine): with other processes on the cores, OpenMP threads
        # that wait for each other made epochs up to 10x slower; $VPRBENCH_TORCH_THREADS overrides
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        threads = int(os.environ.get("VPRBENCH_TORCH_THREADS", 0)) or max(1, min(cores // 2, 8))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


@torch.no_grad()
def encode_frames(model: SeqNetModel, x: np.ndarray, device: torch.device, batch: int = 4096) -> np.ndarray:
    """Per-frame outputs [N, D_out] of a per-frame model for descriptors ``x`` [N, D_in]."""
    model.eval()
    out = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch])).to(device)[:, None, :])[:, 0].cpu() for i in range(0, len(x), batch)]
    return torch.cat(out).numpy().astype(np.float32)


@torch.no_grad()
def encode_windows(model: SeqNetModel, x: np.ndarray, starts: np.ndarray, seq_len: int, device: torch.device, batch: int = 1024) -> np.ndarray:
    """One output per window [n, D_out] (window models) for windows of ``x`` [N, D_in] starting at ``starts`` [n]."""
    model.eval()
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    out = []
    for i in range(0, len(starts), batch):
        idx = torch.from_numpy(window_indices(starts[i : i + batch], seq_len))
        out.append(model(xt[idx].to(device))[:, 0].cpu())
    if not out:
        return np.zeros((0, model.out_dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def output_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Distance between model outputs ``a`` [..., L', D] and ``b`` (broadcastable) -> [...].

    ``"seqmatch"``: mean over the L' aligned positions of the Euclidean frame distances;
    ``"single"``: Euclidean distance of the centre position (L' // 2). Equal when L' = 1.
    """
    if kind == "seqmatch":
        return torch.linalg.vector_norm(a - b, dim=-1).mean(-1)
    if kind == "single":
        c = a.shape[-2] // 2
        return torch.linalg.vector_norm(a[..., c, :] - b[..., c, :], dim=-1)
    raise ConfigError(f"distance must be one of {DISTANCES}, got {kind!r}")


def triplet_loss(d_pos: torch.Tensor, d_neg: torch.Tensor, margin: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over valid (query, negative) pairs of ``max(d_pos - d_neg + margin, 0)``.

    ``d_pos`` [B], ``d_neg`` [B, N], ``mask`` [B, N] bool (False = padding).
    """
    hinge = torch.clamp(d_pos[:, None] - d_neg + margin, min=0.0)
    if mask is None:
        return hinge.mean()
    mask = mask.to(hinge.dtype)
    return (hinge * mask).sum() / mask.sum().clamp(min=1.0)


# ---------------------------------------------------------------------------------------- mining
def window_frame_distances(eq: np.ndarray, er: np.ndarray, q_starts: np.ndarray, r_starts: np.ndarray, seq_len: int, kind: str) -> np.ndarray:
    """Mining distances [nq, nr] between query windows and reference windows over per-frame outputs.

    ``"seqmatch"``: ``out[i, j] = (1/L) sum_k d(eq[q_starts[i] + k], er[r_starts[j] + k])``, the same value
    as :func:`vprbench.kernels.sequence_distances` (identity convolution of the frame distance matrix),
    computed only for the requested query windows; ``"single"``: the centre term only.
    """
    r_sq = np.einsum("ij,ij->i", er, er)
    if kind == "single":
        c = seq_len // 2
        return pairwise_distances(eq[q_starts + c], er[r_starts + c] if len(r_starts) else er[:0])
    if kind != "seqmatch":
        raise ConfigError(f"mining distance must be one of {DISTANCES}, got {kind!r}")
    out = None
    for k in range(seq_len):
        dk = pairwise_distances(eq[q_starts + k], er, r_sq)[:, r_starts + k]
        out = dk if out is None else out + dk
    out /= seq_len
    return out


def dense_rows(gt: GroundTruth, rows: np.ndarray) -> np.ndarray:
    """[len(rows), n_ref] bool positives of the given queries."""
    counts = gt.counts[rows]
    starts = gt.indptr[rows]
    if counts.sum() == 0:
        return np.zeros((len(rows), gt.n_ref), bool)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    cols = gt.indices[np.repeat(starts, counts) + offs]
    m = np.zeros((len(rows), gt.n_ref), bool)
    m[np.repeat(np.arange(len(rows)), counts), cols] = True
    return m


def mine(
    dist: np.ndarray,
    positives: np.ndarray,
    non_negatives: np.ndarray,
    rng: np.random.Generator,
    n_neg: int = 10,
    n_candidates: int = 1000,
    margin: float = 0.1**0.5,
    neg_cache: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positive and hard negatives for a block of queries (vectorised).

    Args:
        dist: [nq, nr] mining distances (inf = reference without a window, never chosen).
        positives: [nq, nr] bool non-trivial positives.
        non_negatives: [nq, nr] bool references within the negative radius (never negatives).
        rng: draws the ``n_candidates`` random negatives of each query (without replacement).
        n_neg: hard negatives to keep per query.
        margin: triplet margin; a negative violates it if ``d(q, n) < d(q, p) + margin``.
        neg_cache: [nq, n_neg] int64 negatives of the previous round (-1 = none), added to the candidates.

    Returns:
        pos [nq] int64 (-1: no positive) and neg [nq, n_neg] int64, hardest first (-1 = padding).
        A query whose ``neg[:, 0]`` is -1 has no violating negative and is skipped.
    """
    nq, nr = dist.shape
    d_pos_all = np.where(positives, dist, np.inf)
    pos = np.argmin(d_pos_all, axis=1) if nr else np.zeros(nq, np.int64)
    d_pos = d_pos_all[np.arange(nq), pos] if nr else np.full(nq, np.inf)
    pos = np.where(np.isfinite(d_pos), pos, -1).astype(np.int64)

    keys = rng.random((nq, nr))
    keys[non_negatives | ~np.isfinite(dist)] = np.inf
    c = min(n_candidates, nr)
    cand = np.argpartition(keys, c - 1, axis=1)[:, :c] if c < nr else np.broadcast_to(np.arange(nr), (nq, nr)).copy()
    cand = np.where(np.isfinite(np.take_along_axis(keys, cand, axis=1)), cand, -1)
    if neg_cache is not None and neg_cache.size:
        cand = np.concatenate([cand, neg_cache], axis=1)
    cand = np.sort(cand, axis=1)
    dup = np.zeros_like(cand, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    cand[dup] = -1
    d_neg = np.where(cand >= 0, np.take_along_axis(dist, np.maximum(cand, 0), axis=1), np.inf)
    d_neg = np.where(d_neg < d_pos[:, None] + margin, d_neg, np.inf)
    idx, val = topk_smallest(d_neg, min(n_neg, d_neg.shape[1]))
    neg = np.where(np.isfinite(val), np.take_along_axis(cand, idx, axis=1), -1)
    if neg.shape[1] < n_neg:
        neg = np.pad(neg, ((0, 0), (0, n_neg - neg.shape[1])), constant_values=-1)
    neg[pos < 0] = -1
    return pos, neg.astype(np.int64)


# ------------------------------------------------------------------------------------ train data
@dataclass
class TripletData:
    """Training windows of one split (``"drop"`` policy), frame-indexed.

    Attributes:
        q, r: [Nq, D], [Nr, D] per-frame descriptors.
        q_starts, r_starts: [Nq], [Nr] window starts; r_valid: [Nr] bool reference has a window.
        train_queries: query frames that are training queries (window + non-trivial positive with a window).
        positives, non_negatives: ground truths (non-trivial radius, negative radius).
    """

    q: np.ndarray
    r: np.ndarray
    q_starts: np.ndarray
    r_starts: np.ndarray
    r_valid: np.ndarray
    train_queries: np.ndarray
    positives: GroundTruth
    non_negatives: GroundTruth
    seq_len: int

    @classmethod
    def from_split(cls, split: SplitData, seq_len: int, features: tuple[np.ndarray, np.ndarray] | None = None) -> TripletData:
        """Build from a training split; DataError for unusable data (see module doc).

        ``features``: per-frame model inputs (query [Nq, ...], reference [Nr, ...]) to use instead of
        the traverses' descriptors (e.g. cached backbone feature maps).
        """
        what = f"training split {split.split!r} of dataset {split.dataset!r}"
        if features is None:
            for t in (split.reference, split.query):
                if t.descriptors is None:
                    raise DataError(f"{what}: traverse {t.name!r} has no per-frame descriptors; learned methods train on descriptors")
            if split.reference.dim != split.query.dim:
                raise DataError(f"{what}: reference D={split.reference.dim} but query D={split.query.dim}; expected equal dimensions")
            features = (split.query.descriptors, split.reference.descriptors)
        pos_r = split.nontrivial_radius or split.radius
        neg_r = split.negative_radius or split.radius
        if neg_r < pos_r or (split.negative_radius is not None and not neg_r > pos_r):
            raise DataError(
                f"{what}: negative radius ({neg_r}) must be larger than the non-trivial positive radius ({pos_r}); "
                "check the dataset's negative_radius / nontrivial_radius"
            )
        check_seq_len(seq_len, split.query.segment_bounds, what=f"{what}, query traverse")
        check_seq_len(seq_len, split.reference.segment_bounds, what=f"{what}, reference traverse")
        q_starts, q_valid = traverse_windows(split.query, seq_len, "drop")
        r_starts, r_valid = traverse_windows(split.reference, seq_len, "drop")
        q_starts = safe_starts(q_starts, len(split.query), seq_len)  # frames without a window: any in-range start
        r_starts = safe_starts(r_starts, len(split.reference), seq_len)
        positives = split.training_positives()
        # a query trains only if one of its positives has a window
        rows = np.repeat(np.arange(positives.n_query), positives.counts)
        has = np.zeros(positives.n_query, bool)
        np.logical_or.at(has, rows, r_valid[positives.indices])
        train_queries = np.flatnonzero(q_valid & has)
        if train_queries.size == 0:
            raise DataError(
                f"{what}: no query frame has a non-trivial positive (a reference within {pos_r} "
                f"{split.reference.position_unit}) with a full {seq_len}-frame window; cannot train. "
                "Check the split, the radii and --seq-len"
            )
        return cls(
            q=features[0], r=features[1], q_starts=q_starts, r_starts=r_starts,
            r_valid=r_valid, train_queries=train_queries, positives=positives,
            non_negatives=split.training_non_negatives(), seq_len=seq_len,
        )


# --------------------------------------------------------------------------------------- trainer
@dataclass
class TrainResult:
    """Outcome of :func:`train_triplet`: best weights and per-epoch history."""

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_val_recall5: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def make_optimizer(model: nn.Module, hp: dict[str, Any]) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    """SGD (momentum, weight decay) or Adam, with StepLR(lr_step, lr_gamma) stepped per epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    if hp["optimizer"] == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
    elif hp["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=hp["lr"], weight_decay=hp["weight_decay"])
    else:
        raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {hp['optimizer']!r}")
    return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=hp["lr_step"], gamma=hp["lr_gamma"])


def _mining_distances(model: SeqNetModel, data: TripletData, rows: np.ndarray, kind: str, device: torch.device,
                      cache: dict[str, np.ndarray]) -> np.ndarray:
    """[len(rows), Nr] mining distances of training queries ``rows`` (query frames); inf where no window."""
    L = data.seq_len
    if model.per_frame:
        d = window_frame_distances(cache["q"], cache["r"], data.q_starts[rows], data.r_starts, L, kind)
    else:
        d = pairwise_distances(cache["q"][rows], cache["r"])
    d[:, ~data.r_valid] = np.inf
    return d


def _refresh_cache(model: SeqNetModel, data: TripletData, device: torch.device) -> dict[str, np.ndarray]:
    if model.per_frame:
        return {"q": encode_frames(model, data.q, device), "r": encode_frames(model, data.r, device)}
    L = data.seq_len
    eq = encode_windows(model, data.q, data.q_starts, L, device)
    er = encode_windows(model, data.r, data.r_starts, L, device)
    return {"q": eq, "r": er}


def train_triplet(
    model: SeqNetModel,
    data: TripletData,
    hp: dict[str, Any],
    seed: int,
    device: torch.device,
    validate: Callable[[SeqNetModel], float] | None = None,
    progress: bool = False,
    desc: str = "training",
) -> TrainResult:
    """Train ``model`` in place with triplet margin loss and hard-negative mining; return the best weights.

    ``hp`` holds the resolved hyperparameters (see :mod:`vprbench.presets`); ``validate(model)``
    returns the validation Recall@5 (higher is better), called after every epoch.
    """
    t0 = time.perf_counter()
    L = data.seq_len
    rng = np.random.default_rng([seed, 7919])
    model.to(device)
    opt, sched = make_optimizer(model, hp)
    n_neg = hp["n_neg"]
    neg_cache = np.full((len(data.q), n_neg), -1, dtype=np.int64)
    xq_all = torch.from_numpy(np.ascontiguousarray(data.q))
    xr_all = torch.from_numpy(np.ascontiguousarray(data.r))
    best_state, best_epoch, best_val, stale = copy.deepcopy(model.state_dict()), 0, None, 0
    history: list[dict[str, Any]] = []
    if validate is not None:  # epoch 0: the untrained model, so training never ends worse on val than its start
        best_val = float(validate(model))
        history.append({"epoch": 0, "loss": None, "queries_trained": 0, "queries_skipped": 0, "lr": None, "val_recall5": best_val, "seconds": 0.0})
    bar = progress_bar(range(1, hp["epochs"] + 1), enabled=progress, desc=desc)
    for epoch in bar:
        te = time.perf_counter()
        order = data.train_queries[rng.permutation(data.train_queries.size)]
        total_loss, n_steps, n_trained, n_skipped = 0.0, 0, 0, 0
        for c0 in range(0, order.size, hp["cache_refresh"]):
            rows = order[c0 : c0 + hp["cache_refresh"]]
            cache = _refresh_cache(model, data, device)
            dist = _mining_distances(model, data, rows, hp["mining"], device, cache)
            pos, neg = mine(
                dist, dense_rows(data.positives, rows), dense_rows(data.non_negatives, rows), rng,
                n_neg=n_neg, n_candidates=hp["n_neg_candidates"], margin=hp["margin"], neg_cache=neg_cache[rows],
            )
            ok = (pos >= 0) & (neg[:, 0] >= 0)
            neg_cache[rows[ok]] = neg[ok]
            n_skipped += int((~ok).sum())
            tq, tp, tn = rows[ok], pos[ok], neg[ok]
            n_trained += tq.size
            model.train()
            for b0 in range(0, tq.size, hp["batch_size"]):
                bq, bp, bn = tq[b0 : b0 + hp["batch_size"]], tp[b0 : b0 + hp["batch_size"]], tn[b0 : b0 + hp["batch_size"]]
                mask = bn >= 0
                wq = torch.from_numpy(window_indices(data.q_starts[bq], L))
                wp = torch.from_numpy(window_indices(data.r_starts[bp], L))
                wn = torch.from_numpy(window_indices(data.r_starts[np.maximum(bn, 0)].reshape(-1), L))
                x = torch.cat([xq_all[wq], xr_all[wp], xr_all[wn]]).to(device)
                out = model(x)  # [B + B + B*N, L', D']
                b = bq.size
                oq, op, on = out[:b], out[b : 2 * b], out[2 * b :].reshape(b, n_neg, *out.shape[1:])
                d_pos = output_distance(oq, op, hp["loss"])
                d_neg = output_distance(oq[:, None], on, hp["loss"])
                loss = triplet_loss(d_pos, d_neg, hp["margin"], torch.from_numpy(mask).to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += float(loss.detach())
                n_steps += 1
        lr = opt.param_groups[0]["lr"]
        with warnings.catch_warnings():  # an epoch where every query was skipped made no optimiser step
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
        val = float(validate(model)) if validate is not None else None
        rec = {"epoch": epoch, "loss": total_loss / max(n_steps, 1), "queries_trained": n_trained, "queries_skipped": n_skipped,
               "lr": lr, "val_recall5": val, "seconds": time.perf_counter() - te}
        history.append(rec)
        if val is None or best_val is None or val > best_val:
            best_val, best_epoch, stale = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if progress:
            bar.set_postfix(loss=f"{rec['loss']:.4f}", val_r5="-" if val is None else f"{val:.3f}")
        if hp["patience"] and stale >= hp["patience"]:
            break
    model.load_state_dict(best_state)
    return TrainResult({k: v.detach().cpu() for k, v in best_state.items()}, best_epoch, best_val, history, time.perf_counter() - t0)


# ------------------------------------------------------------------------- method base class
def split_identity(split: SplitData | None) -> str:
    """Content hash of a split as training sees it (descriptors, positions, segments, radii)."""
    if split is None:
        return "none"
    import hashlib

    h = hashlib.sha256()
    for t in (split.reference, split.query):
        t.update_hash(h)
    if split.explicit_ground_truth is not None:  # validation recall (best epoch) depends on it
        h.update(split.explicit_ground_truth.indptr.tobytes() + split.explicit_ground_truth.indices.tobytes())
    h.update(repr((split.dataset, split.split, split.radius, split.nontrivial_radius, split.negative_radius)).encode())
    return h.hexdigest()[:20]


def safe_starts(starts: np.ndarray, n: int, seq_len: int) -> np.ndarray:
    """Window starts clipped into 0..n-L (frames without a valid window get some in-range window)."""
    return np.clip(starts, 0, max(n - seq_len, 0))


class TrainedSeqNetMethod(Method):
    """Base of the learned methods built on :class:`SeqNetModel` and :func:`train_triplet`.

    Subclasses set ``info`` (with :func:`learned_params`) and may override :meth:`evaluate_mode`.
    After construction ``self.resolved_params`` holds every hyperparameter resolved from the
    preset (recorded by the runner and part of the cache key); after :meth:`fit`,
    ``self.training_info`` holds the cache key, whether the model came from the cache, the best
    epoch, validation Recall@5 per epoch and the training time.
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from .presets import HYPERPARAMETERS, resolve

        overrides = {k: v for k, v in self.params.items() if k in HYPERPARAMETERS and v is not None and v != "preset"}
        self.resolved_params: dict[str, Any] = {"preset": self.params["preset"], **resolve(self.info.name, self.params["preset"], overrides)}
        self.model: SeqNetModel | None = None
        self.training_info: dict[str, Any] = {}
        self._device = torch.device("cpu")

    # -- cache ------------------------------------------------------------------------------
    def cache_parts(self, train: SplitData, val: SplitData | None, ctx: RunContext, train_seq_len: int) -> dict[str, Any]:
        """Everything the trained model depends on (its cache key is a hash of this)."""
        from . import __version__

        return {
            "method": self.info.name, "hyperparameters": self.resolved_params, "seed": ctx.seed,
            "train_seq_len": train_seq_len, "seq_len": ctx.seq_len, "boundary": ctx.boundary,
            "train": split_identity(train), "val": split_identity(val), "vprbench": __version__,
            "train_dataset": train.dataset, "train_split": train.split,
            "device": torch.device(ctx.device).type,  # GPU and CPU training are not bit-identical
        }

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        from .checkpoints import cache_key, load_checkpoint, model_path, save_checkpoint

        hp = self.resolved_params
        train_seq_len = hp["train_seq_len"] or ctx.seq_len
        if hp["filter_width"] > train_seq_len:
            raise ConfigError(f"method {self.info.name!r}: filter_width {hp['filter_width']} exceeds the training sequence length {train_seq_len}")
        self._device = resolve_device(ctx.device)
        data = TripletData.from_split(train, train_seq_len)
        parts = self.cache_parts(train, val, ctx, train_seq_len)
        key = cache_key(parts)
        path = model_path(ctx.cache_dir, self.info.name, key) if ctx.cache_dir is not None else None
        self.training_info = {"cache_key": key, "train_seq_len": train_seq_len, "device": str(self._device), "train_dataset": train.dataset}
        if path is not None and path.is_file():
            state, config = load_checkpoint(path)
            model = build_model(config.get("model", {}))
            if model.in_dim != train.reference.dim:
                raise DataError(
                    f"cached model {str(path)!r} expects D={model.in_dim} input descriptors but the training split has "
                    f"D={train.reference.dim}; delete the file to retrain"
                )
            try:
                model.load_state_dict(state)
            except RuntimeError as e:
                raise DataError(f"checkpoint {str(path)!r} does not match its model config ({str(e).splitlines()[0]}); delete it to retrain") from None
            self.model = model.to(self._device).eval()
            self.training_info.update(cache_hit=True, checkpoint=str(path), **config.get("training", {}))
            return
        with ctx.timings("train"), deterministic(ctx.seed):
            model = SeqNetModel(train.reference.dim, hp["out_dim"], hp["filter_width"], hp["pca_dim"], hp["init"])
            model.fit_pca(np.concatenate([data.r, data.q]), seed=ctx.seed)
            validate = None
            if val is not None:
                validate = lambda m: self._recall5(m, val, ctx)  # noqa: E731
            result = train_triplet(model, data, hp, ctx.seed, self._device, validate, ctx.progress, desc=f"training {self.info.name}")
        self.model = model.eval()
        training = {"best_epoch": result.best_epoch, "best_val_recall5": result.best_val_recall5,
                    "epochs_run": len(result.history), "history": result.history, "train_seconds": result.seconds}
        self.training_info.update(cache_hit=False, **training)
        if path is not None:
            save_checkpoint(path, result.state, {"model": model.config(), "cache_parts": parts, "training": training})
            self.training_info["checkpoint"] = str(path)

    # -- inference -----------------------------------------------------------------------------
    def _require_model(self) -> SeqNetModel:
        if self.model is None:
            raise ConfigError(f"method {self.info.name!r} has no trained model: call fit(train, val, ctx) before rank()")
        return self.model

    def embed(self, split: SplitData, ctx: RunContext, model: SeqNetModel | None = None) -> dict[str, np.ndarray]:
        """Outputs of the model on a split under the run's seq_len and boundary policy.

        Returns ``q``, ``r`` (per-frame outputs for per-frame models, per-window outputs otherwise),
        ``q_starts``, ``r_starts`` (window starts into ``q``/``r``; identity for window models), ``r_valid``
        and ``L`` (the sequence length to aggregate over: ``ctx.seq_len`` or 1).
        """
        model = model or self._require_model()
        for t in (split.query, split.reference):
            if t.dim != model.in_dim:
                raise DataError(
                    f"method {self.info.name!r}: its model was trained on D={model.in_dim} descriptors but traverse "
                    f"{t.name!r} of dataset {split.dataset!r} has D={t.dim}; expected equal dimensions"
                )
        L = ctx.seq_len
        q_starts, q_valid = traverse_windows(split.query, L, ctx.boundary)
        r_starts, r_valid = traverse_windows(split.reference, L, ctx.boundary)
        q_starts = safe_starts(q_starts, len(split.query), L)
        r_starts = safe_starts(r_starts, len(split.reference), L)
        with ctx.timings("encode"):
            if model.per_frame:
                return {"q": encode_frames(model, split.query.descriptors, self._device),
                        "r": encode_frames(model, split.reference.descriptors, self._device),
                        "q_starts": q_starts, "r_starts": r_starts, "r_valid": r_valid, "q_valid": q_valid, "L": L}
            eq = encode_windows(model, split.query.descriptors, q_starts, L, self._device)
            er = encode_windows(model, split.reference.descriptors, r_starts, L, self._device)
        return {"q": eq, "r": er, "q_starts": np.arange(len(eq)), "r_starts": np.arange(len(er)), "r_valid": r_valid, "q_valid": q_valid, "L": 1}

    def _topk(self, e: dict[str, np.ndarray], ctx: RunContext, k: int) -> tuple[np.ndarray, np.ndarray]:
        from .kernels import sequence_topk

        with ctx.timings("match"):
            return sequence_topk(e["q"], e["r"], e["q_starts"], e["r_starts"], e["L"], k, memory_mb=ctx.memory_mb, r_valid=e["r_valid"], progress=ctx.progress)

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        from .kernels import mask_queries

        e = self.embed(split, ctx)
        idx, dist = self._topk(e, ctx, ctx.top_k)
        return Ranking(*mask_queries(idx, dist, e["q_valid"]))

    def _recall5(self, model: SeqNetModel, val: SplitData, ctx: RunContext) -> float:
        from .metrics import recall_at_n

        quiet = RunContext(seed=ctx.seed, seq_len=ctx.seq_len, boundary=ctx.boundary, top_k=5, device=ctx.device, memory_mb=ctx.memory_mb)
        e = self.embed(val, quiet, model)
        idx, _ = self._topk(e, quiet, 5)
        gt = val.ground_truth
        return float(recall_at_n(gt.hits(idx), (5,), mask=gt.has_positive & e["q_valid"])[5])

    def score_candidates(self, split: SplitData, ctx: RunContext, candidates: np.ndarray) -> np.ndarray:
        """Distances [nq, K] of query q to the reference windows ``candidates[q]`` (-1 / no window: inf).

        The same distance :meth:`rank` sorts by (used to re-rank another method's shortlist).
        """
        e = self.embed(split, ctx)
        cand = np.asarray(candidates, dtype=np.int64)
        ok = (cand >= 0) & e["r_valid"][np.maximum(cand, 0)] & e["q_valid"][:, None]
        c = np.maximum(cand, 0)
        q, r, L = e["q"], e["r"], e["L"]
        r_sq = np.einsum("ij,ij->i", r, r)
        out = np.zeros(cand.shape, np.float32)
        # blocks of queries so that the gathered candidates [rows, K, D] stay within the memory budget
        rows = max(1, int(ctx.memory_mb * 2**20 // (4 * 2 * max(cand.shape[1], 1) * q.shape[1])))
        with ctx.timings("match"):
            for b0 in range(0, len(cand), rows):
                sl = slice(b0, b0 + rows)
                for k in range(L):
                    qi = e["q_starts"][sl] + k
                    ri = e["r_starts"][c[sl]] + k
                    d2 = np.einsum("qd,qd->q", q[qi], q[qi])[:, None] + r_sq[ri] - 2.0 * np.einsum("qd,qkd->qk", q[qi], r[ri])
                    out[sl] += np.sqrt(np.maximum(d2, 0.0)).astype(np.float32)
            out /= L
        return np.where(ok, out, np.inf).astype(np.float32)


def learned_params(extra: dict[str, Param] | None = None, fixed: tuple[str, ...] = ()) -> dict[str, Param]:
    """Method params of a learned method: ``preset`` plus every hyperparameter (None = from the preset)."""
    from .presets import CHOICES, HELP, HYPERPARAMETERS, PRESET_NAMES

    params: dict[str, Param] = {"preset": Param("cpu", "hyperparameter preset: cpu (fast, default) or paper (published setup, GPU)", PRESET_NAMES)}
    for name in HYPERPARAMETERS:
        if name in fixed:
            continue
        if name in CHOICES:  # string parameters need a string default for CLI coercion
            params[name] = Param("preset", HELP[name] + " ('preset': from the preset)", ("preset", *CHOICES[name]))
        else:
            params[name] = Param(None, HELP[name] + " (None: from the preset)")
    params.update(extra or {})
    return params
