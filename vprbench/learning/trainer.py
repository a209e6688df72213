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
  the cached distance matrix, :func:`vprbench.matching.sequence.aggregate_diagonals`), for per-frame models.
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
the lower reference index; without a validation split the last epoch is kept."""

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
from torch import nn

from vprbench.core.errors import ConfigError
from vprbench.core.progress import progress_bar
from vprbench.data.windows import window_indices
from vprbench.learning.mining import DISTANCES, TripletData, dense_rows, mine, window_frame_distances
from vprbench.learning.models import SeqNetModel, encode_frames, encode_windows
from vprbench.matching.distances import pairwise_distances


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

    ``hp`` holds the resolved hyperparameters (see :mod:`vprbench.learning.presets`); ``validate(model)``
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
