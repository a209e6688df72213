"""The one training engine shared by the learned methods (SeqNet, S_1, SeqMatchNet, SeqVLAD, SeqGeM, the NetVLAD layer).

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
  For models that output one descriptor per window (SeqNet w > 1, SeqVLAD, SeqGeM) both are that
  descriptor's Euclidean distance.
* Loss (:func:`triplet_loss`): mean over the (query, negative) pairs of
  ``max(d(q, p) - d(q, n) + margin, 0)``; ``d`` is the ``"single"`` or ``"seqmatch"`` distance.
* Mining that keeps training (``margin_adapt`` > 0, the ``cpu`` presets): when fewer than that
  fraction of a round's queries have a violating negative, the round uses every negative as a
  candidate and the smallest margin (<= ``margin_growth`` x ``margin``) that reaches the fraction,
  for mining and loss alike (:func:`vprbench.learning.mining.adapt_margin`). The history records per epoch the
  fraction of training queries trained, the mean margin used, how many rounds adapted, and the
  seconds spent mining (cache refresh, distances, selection) within the epoch's seconds.
* SGD (momentum, weight decay) or Adam, StepLR per epoch, validation after each epoch
  (:mod:`vprbench.learning.selection`: Recall@1/5/10 and MRR in the history; the kept epoch
  maximises the ``select`` score, ties to the higher MRR, then to the later epoch), early stopping
  after ``patience`` epochs without strict improvement. The untrained model is validated too
  ("epoch 0"), so training never ends worse on validation than its start, and a model that ends
  no better than epoch 0 is flagged ``untrained``.
* Determinism and threads: torch seeded and in deterministic mode, numpy draws from
  ``default_rng([seed, .])``, one thread-pool size for torch *and* numpy's BLAS (threadpoolctl; the
  mining distances are numpy matrix products): half the cores, at least 1, ``$VPRBENCH_TORCH_THREADS``
  overrides both. Measured on 2 shared cores (3 epochs of seqmatchnet cpu-medium on nordland-64x32,
  median of 3): at load ~6, BLAS at 1 thread 6.1 s vs 7.1 s at its default 2 (its idle threads spin
  against torch's); at load ~2.5, 4.1 s vs 3.9 s. One rule that does not degrade under contention.

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
from vprbench.learning.mining import DISTANCES, TripletData, adapt_margin, dense_rows, mine, negative_gaps, window_frame_distances
from vprbench.learning.models import WindowModel
from vprbench.learning.selection import improves, selection_key
from vprbench.matching.distances import pairwise_distances


def resolve_device(requested: str) -> torch.device:
    """The torch device for ``requested`` (``cpu``, ``cuda``, ``cuda:N``); ConfigError when CUDA (or GPU N) is not
    available — never a silent fall-back to the CPU, whose results the record would attribute to the GPU."""
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "no GPU is visible"
            raise ConfigError(f"--device {requested}: CUDA is not available ({why}; torch {torch.__version__}); use --device cpu")
        index = int(requested.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ConfigError(f"--device {requested}: only {torch.cuda.device_count()} GPU(s) are visible (cuda:0.."
                              f"cuda:{torch.cuda.device_count() - 1})")
        return torch.device(requested)
    if requested != "cpu":
        raise ConfigError(f"device must be 'cpu' or 'cuda[:N]', got {requested!r}")
    return torch.device("cpu")


def training_threads() -> int:
    """CPU threads for training: ``$VPRBENCH_TORCH_THREADS`` or half the usable cores (1..8)."""
    # half the cores (1 on a 2-core machine): with other processes on the cores, OpenMP threads
    # that wait for each other made epochs up to 10x slower
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(os.environ.get("VPRBENCH_TORCH_THREADS", 0)) or max(1, min(cores // 2, 8))


@contextmanager
def deterministic(seed: int, threads: int | None = None) -> Iterator[None]:
    """Seed torch, enable deterministic algorithms, set torch's and the BLAS thread pools to ``threads``; restore afterwards."""
    from threadpoolctl import threadpool_limits

    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_threads = torch.get_num_threads()
    threads = threads or training_threads()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
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
    """Outcome of :func:`train_triplet`: kept weights, per-epoch history, whether training helped on validation.

    ``untrained``: True if the kept epoch is no better than epoch 0 on validation (or no optimiser
    step was made), False if better, None without validation (unknown).
    """

    state: dict[str, torch.Tensor]
    best_epoch: int
    best_val: dict[str, float] | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    untrained: bool | None = None
    epoch0_val: dict[str, float] | None = None

    @property
    def best_val_recall5(self) -> float | None:
        return None if self.best_val is None else self.best_val.get("recall@5")


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


def _mining_distances(model: nn.Module, data: TripletData, rows: np.ndarray, kind: str, device: torch.device,
                      cache: dict[str, np.ndarray]) -> np.ndarray:
    """[len(rows), Nr] mining distances of training queries ``rows`` (query frames); inf where no window."""
    L = data.seq_len
    if model.per_frame:
        d = window_frame_distances(cache["q"], cache["r"], data.q_starts[rows], data.r_starts, L, kind)
    else:
        d = pairwise_distances(cache["q"][rows], cache["r"])
    d[:, ~data.r_valid] = np.inf
    return d


def _learned_inputs(model: nn.Module, data: TripletData, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, Callable]:
    """Per-frame inputs of the trained part and the function that applies it to windows [B, L, .].

    A :class:`WindowModel`'s input stage is fixed during training, so the frames are projected once
    here and only :meth:`WindowModel.layer` runs per batch (the projection of every frame of every
    triplet was most of an epoch's arithmetic); other models (the NetVLAD layer) take raw inputs.
    """
    xq = torch.from_numpy(np.ascontiguousarray(data.q))
    xr = torch.from_numpy(np.ascontiguousarray(data.r))
    if not isinstance(model, WindowModel):
        return xq.to(device), xr.to(device), model
    with torch.no_grad():
        zq = torch.cat([model.project(xq[i : i + 4096, None].to(device))[:, 0] for i in range(0, len(xq), 4096)])
        zr = torch.cat([model.project(xr[i : i + 4096, None].to(device))[:, 0] for i in range(0, len(xr), 4096)])
    return zq, zr, model.layer


@torch.no_grad()
def _refresh_cache(model: nn.Module, apply: Callable, zq: torch.Tensor, zr: torch.Tensor, data: TripletData) -> dict[str, np.ndarray]:
    """Outputs of the current model for every training frame (per-frame models) or window (window models)."""
    model.eval()

    def run(z: torch.Tensor, starts: np.ndarray) -> np.ndarray:
        if model.per_frame:
            out = [apply(z[i : i + 4096, None])[:, 0] for i in range(0, len(z), 4096)]
        else:
            batch = max(1, min(1024, int(64 * 2**20 // (4 * max(int(getattr(model, "out_dim", 1)), 1)))))
            out = [apply(z[torch.from_numpy(window_indices(starts[i : i + batch], data.seq_len))])[:, 0] for i in range(0, len(starts), batch)]
        return torch.cat(out).cpu().numpy().astype(np.float32)

    return {"q": run(zq, data.q_starts), "r": run(zr, data.r_starts)}


def _scores(value: float | dict[str, float]) -> dict[str, float]:
    """A validation result as scores (a bare number is a Recall@5, as the NetVLAD layer's validation returns)."""
    if isinstance(value, dict):
        return {k: float(v) for k, v in value.items()}
    return {"recall@5": float(value)}


def train_triplet(
    model: nn.Module,
    data: TripletData,
    hp: dict[str, Any],
    seed: int,
    device: torch.device,
    validate: Callable[[nn.Module], float | dict[str, float]] | None = None,
    progress: bool = False,
    desc: str = "training",
) -> TrainResult:
    """Train ``model`` in place with triplet margin loss and hard-negative mining; return the kept weights.

    ``hp`` holds the resolved hyperparameters (see :mod:`vprbench.learning.presets`);
    ``validate(model)`` returns validation scores (:func:`vprbench.learning.selection.validation_scores`;
    higher is better; a bare number counts as Recall@5), called before training and after every epoch.
    """
    t0 = time.perf_counter()
    L = data.seq_len
    rng = np.random.default_rng([seed, 7919])
    model.to(device)
    opt, sched = make_optimizer(model, hp)
    n_neg = hp["n_neg"]
    select = hp.get("select", "recall@5")
    target = float(hp.get("margin_adapt") or 0.0)
    neg_cache = np.full((len(data.q), n_neg), -1, dtype=np.int64)
    xq_all, xr_all, apply = _learned_inputs(model, data, device)
    best_state, best_epoch, stale = copy.deepcopy(model.state_dict()), 0, 0
    best_key: tuple[float, float] | None = None
    best_val = epoch0 = None
    history: list[dict[str, Any]] = []
    total_steps = 0

    def val_record(scores: dict[str, float] | None) -> dict[str, float | None]:
        return {f"val_{k.replace('@', '')}": v for k, v in (scores or {}).items()}

    if validate is not None:  # epoch 0: the untrained model, so training never ends worse on val than its start
        epoch0 = best_val = _scores(validate(model))
        best_key = selection_key(epoch0, select)
        history.append({"epoch": 0, "loss": None, "queries_trained": 0, "queries_skipped": 0, "trained_fraction": 0.0,
                        "margin": None, "hard_rounds": 0, "lr": None, **val_record(epoch0), "seconds": 0.0, "mining_seconds": 0.0})
    bar = progress_bar(range(1, hp["epochs"] + 1), enabled=progress, desc=desc)
    for epoch in bar:
        te = time.perf_counter()
        order = data.train_queries[rng.permutation(data.train_queries.size)]
        total_loss, n_steps, n_trained, n_skipped, margin_sum, hard_rounds, mining_s = 0.0, 0, 0, 0, 0.0, 0, 0.0
        for c0 in range(0, order.size, hp["cache_refresh"]):
            rows = order[c0 : c0 + hp["cache_refresh"]]
            tm = time.perf_counter()
            cache = _refresh_cache(model, apply, xq_all, xr_all, data)
            dist = _mining_distances(model, data, rows, hp["mining"], device, cache)
            positives, non_negatives = dense_rows(data.positives, rows), dense_rows(data.non_negatives, rows)
            margin = hp["margin"]
            pos, neg = mine(dist, positives, non_negatives, rng, n_neg=n_neg, n_candidates=hp["n_neg_candidates"],
                            margin=margin, neg_cache=neg_cache[rows])
            has_pos = pos >= 0
            if target > 0 and ((neg[:, 0] >= 0) & has_pos).sum() < target * has_pos.sum():
                # mine harder: every negative is a candidate, and the margin grows until enough queries violate it
                margin = adapt_margin(negative_gaps(dist, positives, non_negatives), margin, target, margin * hp.get("margin_growth", 1.0))
                pos, neg = mine(dist, positives, non_negatives, rng, n_neg=n_neg, n_candidates=dist.shape[1],
                                margin=margin, neg_cache=neg_cache[rows])
                hard_rounds += 1
            ok = (pos >= 0) & (neg[:, 0] >= 0)
            mining_s += time.perf_counter() - tm
            neg_cache[rows[ok]] = neg[ok]
            n_skipped += int((~ok).sum())
            tq, tp, tn = rows[ok], pos[ok], neg[ok]
            n_trained += tq.size
            margin_sum += margin * tq.size
            model.train()
            for b0 in range(0, tq.size, hp["batch_size"]):
                bq, bp, bn = tq[b0 : b0 + hp["batch_size"]], tp[b0 : b0 + hp["batch_size"]], tn[b0 : b0 + hp["batch_size"]]
                mask = bn >= 0
                wq = torch.from_numpy(window_indices(data.q_starts[bq], L))
                wp = torch.from_numpy(window_indices(data.r_starts[bp], L))
                wn = torch.from_numpy(window_indices(data.r_starts[np.maximum(bn, 0)].reshape(-1), L))
                x = torch.cat([xq_all[wq], xr_all[wp], xr_all[wn]])
                out = apply(x)  # [B + B + B*N, L', D']
                b = bq.size
                oq, op, on = out[:b], out[b : 2 * b], out[2 * b :].reshape(b, n_neg, *out.shape[1:])
                d_pos = output_distance(oq, op, hp["loss"])
                d_neg = output_distance(oq[:, None], on, hp["loss"])
                loss = triplet_loss(d_pos, d_neg, margin, torch.from_numpy(mask).to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += float(loss.detach())
                n_steps += 1
        total_steps += n_steps
        lr = opt.param_groups[0]["lr"]
        with warnings.catch_warnings():  # an epoch where every query was skipped made no optimiser step
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
        scores = _scores(validate(model)) if validate is not None else None
        rec = {"epoch": epoch, "loss": total_loss / max(n_steps, 1), "queries_trained": n_trained, "queries_skipped": n_skipped,
               "trained_fraction": n_trained / max(order.size, 1), "margin": margin_sum / n_trained if n_trained else None,
               "hard_rounds": hard_rounds, "lr": lr, **val_record(scores), "seconds": time.perf_counter() - te, "mining_seconds": mining_s}
        history.append(rec)
        if scores is None or best_key is None:
            best_val, best_epoch = scores, epoch
            best_state = copy.deepcopy(model.state_dict())
        else:
            key = selection_key(scores, select)
            stale = 0 if improves(key, best_key) else stale + 1
            if key >= best_key:  # ties go to the later epoch
                best_key, best_val, best_epoch = key, scores, epoch
                best_state = copy.deepcopy(model.state_dict())
        if progress:
            bar.set_postfix(loss=f"{rec['loss']:.4f}", val="-" if scores is None else f"{scores.get(select, float('nan')):.3f}")
        if hp["patience"] and stale >= hp["patience"]:
            break
    model.load_state_dict(best_state)
    if total_steps == 0:
        untrained: bool | None = True
    elif epoch0 is not None:
        untrained = not improves(selection_key(best_val, select), selection_key(epoch0, select))
    else:
        untrained = None
    return TrainResult({k: v.detach().cpu() for k, v in best_state.items()}, best_epoch, best_val, history,
                       time.perf_counter() - t0, untrained, epoch0)
