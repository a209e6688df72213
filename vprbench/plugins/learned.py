"""Base class of the learned methods built on the shared training engine (:mod:`vprbench.learning`).

torch and the engine are imported on first use (``fit`` / ``rank``), so that discovering these
plugins (``vprbench list``) stays fast.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.params import Param
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse
from vprbench.data.windows import traverse_windows
from vprbench.plugins.api import Method, Ranking, RunContext

if TYPE_CHECKING:
    from vprbench.learning.models import SeqNetModel


def method_code_hash(cls: type) -> str:
    """Hash of a method class's plugin file and the vprbench modules it may run (for model cache keys)."""
    import inspect
    from pathlib import Path

    from vprbench.core.codehash import code_hash

    path = getattr(cls, "source_path", None) or inspect.getsourcefile(cls)
    return code_hash(Path(path)) if path else "unknown"


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
        from vprbench.learning.presets import HYPERPARAMETERS, resolve

        overrides = {k: v for k, v in self.params.items() if k in HYPERPARAMETERS and v is not None}
        self.resolved_params: dict[str, Any] = {"preset": self.params["preset"], **resolve(self.info.name, self.params["preset"], overrides)}
        self.model: SeqNetModel | None = None
        self.training_info: dict[str, Any] = {}
        self._device: Any = "cpu"

    # -- cache ------------------------------------------------------------------------------
    def cache_parts(self, train: SplitData, val: SplitData | None, ctx: RunContext, train_seq_len: int) -> dict[str, Any]:
        """Everything the trained model depends on (its cache key is a hash of this)."""
        from vprbench import __version__

        return {
            "method": self.info.name, "hyperparameters": self.resolved_params, "seed": ctx.seed,
            "train_seq_len": train_seq_len, "seq_len": ctx.seq_len, "boundary": ctx.boundary,
            "train": train.fingerprint, "val": val.fingerprint if val is not None else "none", "vprbench": __version__,
            "train_dataset": train.dataset, "train_split": train.split,
            "device": ctx.device.split(":")[0],  # GPU and CPU training are not bit-identical
            "code": method_code_hash(type(self)),  # an edited plugin or training engine never serves an old model
        }

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        from vprbench.learning.checkpoints import load_or_train
        from vprbench.learning.mining import TripletData
        from vprbench.learning.models import SeqNetModel, build_model
        from vprbench.learning.trainer import deterministic, resolve_device, train_triplet

        hp = self.resolved_params
        train_seq_len = hp["train_seq_len"] or ctx.seq_len
        if hp["filter_width"] > train_seq_len:
            raise ConfigError(f"method {self.info.name!r}: filter_width {hp['filter_width']} exceeds the training sequence length {train_seq_len}")
        self._device = resolve_device(ctx.device)
        data = TripletData.from_split(train, train_seq_len)
        parts = self.cache_parts(train, val, ctx, train_seq_len)

        def train_model() -> tuple[dict, dict]:
            with ctx.timings("train"), deterministic(ctx.seed):
                model = SeqNetModel(train.reference.dim, hp["out_dim"], hp["filter_width"], hp["pca_dim"], hp["init"])
                model.fit_pca(np.concatenate([data.r, data.q]), seed=ctx.seed)
                validate = None
                if val is not None:
                    validate = lambda m: self._recall5(m, val, ctx)  # noqa: E731
                result = train_triplet(model, data, hp, ctx.seed, self._device, validate, ctx.progress, desc=f"training {self.info.name}")
            training = {"best_epoch": result.best_epoch, "best_val_recall5": result.best_val_recall5,
                        "epochs_run": len(result.history), "history": result.history, "train_seconds": result.seconds}
            return result.state, {"model": model.config(), "training": training}

        state, config, info = load_or_train(ctx.cache_dir, self.info.name, parts, train_model)
        model = build_model(config.get("model", {}))
        if model.in_dim != train.reference.dim:
            raise DataError(
                f"cached model {info.get('checkpoint')!r} expects D={model.in_dim} input descriptors but the training split has "
                f"D={train.reference.dim}; delete the file to retrain"
            )
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"checkpoint {info.get('checkpoint')!r} does not match its model config ({str(e).splitlines()[0]}); "
                            "delete it to retrain") from None
        self.model = model.to(self._device).eval()
        self.training_info = {"train_seq_len": train_seq_len, "device": str(self._device), "train_dataset": train.dataset,
                              **info, **config.get("training", {})}

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
        from vprbench.learning.mining import safe_starts
        from vprbench.learning.models import encode_frames, encode_windows

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

    def encode(self, traverse: Traverse, ctx: RunContext) -> np.ndarray:
        """Per-frame outputs [n, D_out] of the trained per-frame model (S_1, SeqMatchNet) for a traverse."""
        from vprbench.learning.models import encode_frames

        model = self._require_model()
        if not model.per_frame:
            raise ConfigError(f"method {self.info.name!r} with filter width {model.filter_width} outputs one descriptor per window, "
                              "not per frame: it cannot be a frontend")
        if traverse.dim != model.in_dim:
            raise DataError(f"method {self.info.name!r}: its model was trained on D={model.in_dim} descriptors but traverse "
                            f"{traverse.name!r} has D={traverse.dim}; expected equal dimensions")
        with ctx.timings("encode"):
            return encode_frames(model, traverse.descriptors, self._device)

    def _topk(self, e: dict[str, np.ndarray], ctx: RunContext, k: int) -> tuple[np.ndarray, np.ndarray]:
        from vprbench.matching.sequence import sequence_topk

        with ctx.timings("match"):
            return sequence_topk(e["q"], e["r"], e["q_starts"], e["r_starts"], e["L"], k, memory_mb=ctx.memory_mb, r_valid=e["r_valid"], progress=ctx.progress)

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        from vprbench.matching.topk import mask_queries

        e = self.embed(split, ctx)
        idx, dist = self._topk(e, ctx, ctx.top_k)
        return Ranking(*mask_queries(idx, dist, e["q_valid"]))

    def _recall5(self, model: SeqNetModel, val: SplitData, ctx: RunContext) -> float:
        from vprbench.metrics.recall import recall_at_n

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
    """Method params of a learned method: ``preset`` plus every hyperparameter (none = from the preset)."""
    from vprbench.learning.presets import HYPERPARAMETERS, PRESET_NAMES

    params: dict[str, Param] = {"preset": Param("cpu", "hyperparameter preset: cpu (fast, default) or paper (published setup, GPU)", PRESET_NAMES)}
    for name, spec in HYPERPARAMETERS.items():
        if name not in fixed:
            params[name] = dataclasses.replace(spec, help=spec.help + " (none: from the preset)")
    params.update(extra or {})
    return params
