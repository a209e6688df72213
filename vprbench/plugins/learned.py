"""Base class of the learned methods built on the shared training engine (:mod:`vprbench.learning`).

torch and the engine are imported on first use (``fit`` / ``rank``), so that discovering these
plugins (``vprbench list``) stays fast.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.hashing import ContentHash
from vprbench.core.params import Param
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse, dense_descriptors
from vprbench.data.windows import traverse_windows
from vprbench.plugins.api import Method, Ranking, RunContext

if TYPE_CHECKING:
    from vprbench.learning.mining import TripletData
    from vprbench.learning.models import WindowModel

log = logging.getLogger("vprbench")

#: Validation energy below which the input projection is reported as not generalising.
PCA_WARN_ENERGY = 0.5


def method_code_hash(cls: type) -> str:
    """Hash of a method class's plugin file and the code it may run (for model cache keys)."""
    from vprbench.core.codehash import class_code_hash

    return class_code_hash(cls)


#: Training-query counts by (training split, window length): planning resolves ``preset=cpu`` from them.
_TRAIN_QUERIES: dict[tuple, int] = {}


def _count_key(train: SplitData, train_seq_len: int) -> tuple:
    return (train.dataset, train.split, train.fingerprint, train_seq_len, train.radius, train.nontrivial_radius, train.negative_radius)


def _count_train_queries(train: SplitData, train_seq_len: int) -> int:
    """Training queries (with a non-trivial positive and a window) of ``train``, as :meth:`fit` counts them."""
    key = _count_key(train, train_seq_len)
    if key not in _TRAIN_QUERIES:
        from vprbench.learning.mining import TripletData

        if len(_TRAIN_QUERIES) > 32:
            _TRAIN_QUERIES.clear()
        _TRAIN_QUERIES[key] = int(TripletData.from_split(train, train_seq_len).train_queries.size)
    return _TRAIN_QUERIES[key]


class TrainedSeqNetMethod(Method):
    """Base of the learned methods built on the window models and :func:`train_triplet`.

    Subclasses set ``info`` (with :func:`learned_params`) and may override :meth:`make_model` (the
    network; default :class:`~vprbench.learning.models.SeqNetModel`) and :meth:`init_model`
    (data-dependent initialisation, e.g. SeqVLAD's k-means). After construction
    ``self.resolved_params`` holds every hyperparameter resolved from the preset; :meth:`fit`
    re-resolves ``preset=cpu`` by the size of the training set (``preset_resolved``) — that is what
    the runner records and what the cache key covers. After :meth:`fit`, ``self.training_info``
    holds the cache key, whether the model came from the cache, the kept epoch, the validation
    scores per epoch (``history``), whether training beat its initialisation on validation
    (``untrained``), the input projection (``pca``) and the training time.

    Optional hook :meth:`observe`: called with the evaluation split before :meth:`fit`, it lets the
    input projection see that split's reference map (descriptors only, no labels).
    """

    #: The built-in learned method whose hyperparameter presets this class uses (None: its own name);
    #: a plugin subclass with a new name sets it, e.g. ``preset_table = "seqnet"``.
    preset_table: ClassVar[str | None] = None

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.resolved_params: dict[str, Any] = self._resolve(None)
        self.model: WindowModel | None = None
        self.training_info: dict[str, Any] = {}
        self._device: Any = "cpu"
        self._observed: list[tuple[str, np.ndarray]] = []

    def _resolve(self, n_train_queries: int | None) -> dict[str, Any]:
        from vprbench.learning.presets import HYPERPARAMETERS, PRESETS, concrete_preset, resolve

        table = self.preset_table or self.info.name
        if table not in PRESETS:
            raise ConfigError(
                f"method {self.info.name!r} has no hyperparameter presets of its own"
                + (f" (preset_table {self.preset_table!r} is not a built-in learned method)" if self.preset_table else "")
                + f": set the class attribute preset_table to one of {sorted(PRESETS)} to use that method's presets"
            )
        overrides = {k: v for k, v in self.params.items() if k in HYPERPARAMETERS and v is not None}
        preset = self.params["preset"]
        return {"preset": preset, "preset_resolved": concrete_preset(table, preset, n_train_queries),
                **resolve(table, preset, overrides, n_train_queries)}

    # -- hooks -------------------------------------------------------------------------------
    def observe(self, split: SplitData) -> None:
        """Let the input projection (``pca_fit=all``) see ``split``'s reference map: descriptors only, no positions or labels.

        Call before :meth:`fit`; the observed maps are part of the model's cache key.
        """
        if self.model is not None:
            raise ConfigError(f"method {self.info.name!r}: observe(split) must come before fit(), the model is trained already")
        if split.reference.descriptors is not None:
            what = f"{split.dataset}/{split.split} reference {split.reference.name!r}"
            self._observed.append((what, dense_descriptors(split.reference.descriptors, what)))

    def prepare(self, train: SplitData | None, ctx: RunContext) -> None:
        """Resolve ``preset=cpu`` by the training set's size and check the filter fits the training windows."""
        train_seq_len = self._train_seq_len(ctx)
        if train is not None:
            try:
                n = _count_train_queries(train, train_seq_len)
            except DataError:
                return  # fit raises it again, as this job's failure
            self.resolved_params = self._resolve(n)

    def _train_seq_len(self, ctx: RunContext) -> int:
        """The training windows' length (``train_seq_len`` or the run's L); ConfigError if the filter is longer."""
        train_seq_len = self.resolved_params["train_seq_len"] or ctx.seq_len
        if self.resolved_params.get("filter_width", 1) > train_seq_len:
            raise ConfigError(f"method {self.info.name!r}: filter_width {self.resolved_params['filter_width']} exceeds the "
                              f"training sequence length {train_seq_len} (--seq-len or train_seq_len); expected at most L")
        return train_seq_len

    def make_model(self, in_dim: int, hp: dict[str, Any], pca_dim: int) -> WindowModel:
        """The untrained network for ``in_dim``-D inputs projected to ``pca_dim`` (0: none)."""
        from vprbench.learning.models import SeqNetModel

        return SeqNetModel(in_dim, hp["out_dim"], hp["filter_width"], pca_dim, hp["init"])

    def init_model(self, model: WindowModel, data: TripletData, seed: int) -> None:
        """Data-dependent initialisation after the input projection is set (default: none)."""

    # -- cache ------------------------------------------------------------------------------
    def cache_parts(self, train: SplitData, val: SplitData | None, ctx: RunContext, train_seq_len: int) -> dict[str, Any]:
        """Everything the trained model depends on (its cache key is a hash of this)."""
        from vprbench import __version__

        parts = {
            "method": self.info.name, "hyperparameters": self.resolved_params, "seed": ctx.seed,
            "train_seq_len": train_seq_len, "seq_len": ctx.seq_len, "boundary": ctx.boundary,
            "train": train.fingerprint, "val": val.fingerprint if val is not None else "none", "vprbench": __version__,
            "train_dataset": train.dataset, "train_split": train.split,
            "device": ctx.device.split(":")[0],  # GPU and CPU training are not bit-identical
            "code": method_code_hash(type(self)),  # an edited plugin or training engine never serves an old model
        }
        if self._observed and self.resolved_params.get("pca_fit") == "all" and self.resolved_params.get("pca_dim"):
            parts["observed_maps"] = ContentHash(*(x for _, x in self._observed)).hexdigest(20)
        return parts

    def _pca_inputs(self, train: SplitData, val: SplitData | None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
        """Unlabelled descriptors the input projection is fitted on, and (train, val) rows for the held-out estimate."""
        tr = np.concatenate([dense_descriptors(t.descriptors, f"training traverse {t.name!r}") for t in (train.reference, train.query)])
        va = None
        if val is not None and val.reference.descriptors is not None and val.query.descriptors is not None:
            va = np.concatenate([dense_descriptors(t.descriptors, f"validation traverse {t.name!r}") for t in (val.reference, val.query)])
        held = (tr, va) if va is not None else None
        if self.resolved_params.get("pca_fit", "train") == "train":
            return tr, held
        for what, x in self._observed:
            if x.shape[1] != tr.shape[1]:
                raise DataError(f"method {self.info.name!r}: observed map {what} has D={x.shape[1]} descriptors, the training "
                                f"split D={tr.shape[1]}; expected equal dimensions")
        return np.concatenate([tr, *([va] if va is not None else []), *(x for _, x in self._observed)]), held

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        from vprbench.learning.checkpoints import load_or_train
        from vprbench.learning.mining import TripletData
        from vprbench.learning.models import build_model, fit_input_pca
        from vprbench.learning.trainer import deterministic, resolve_device, train_triplet, training_threads

        train_seq_len = self._train_seq_len(ctx)
        self._device = resolve_device(ctx.device)
        data = TripletData.from_split(train, train_seq_len)
        _TRAIN_QUERIES[_count_key(train, train_seq_len)] = int(data.train_queries.size)
        self.resolved_params = self._resolve(int(data.train_queries.size))
        hp = self.resolved_params
        parts = self.cache_parts(train, val, ctx, train_seq_len)
        in_dim = train.reference.dim

        def train_model() -> tuple[dict, dict]:
            with ctx.timings("train"), deterministic(ctx.seed):
                pca = None
                if hp["pca_dim"] and hp["pca_dim"] < in_dim:
                    fit_rows, held = self._pca_inputs(train, val)
                    pca = fit_input_pca(fit_rows, hp["pca_dim"], hp.get("pca_center", False), seed=ctx.seed, held_out=held)
                model = self.make_model(in_dim, hp, pca.components.shape[1] if pca is not None else 0)
                if pca is not None:
                    model.set_pca(pca)
                self.init_model(model, data, ctx.seed)
                validate = None
                if val is not None:
                    validate = lambda m: self._validation_scores(m, val, ctx)  # noqa: E731
                result = train_triplet(model, data, hp, ctx.seed, self._device, validate, ctx.progress, desc=f"training {self.info.name}")
            training = {"best_epoch": result.best_epoch, "best_val": result.best_val, "best_val_recall5": result.best_val_recall5,
                        "epoch0_val": result.epoch0_val, "untrained": result.untrained, "select": hp.get("select", "recall@5"),
                        "epochs_run": len(result.history) - (val is not None), "history": result.history,
                        "train_seconds": result.seconds, "threads": training_threads(),
                        "pca": pca.report if pca is not None else {"dim": 0}}
            return result.state, {"model": model.config(), "training": training}

        state, config, info = load_or_train(ctx.cache_dir, self.info.name, parts, train_model)
        model = build_model(config.get("model", {}))
        if model.in_dim != in_dim:
            raise DataError(
                f"cached model {info.get('checkpoint')!r} expects D={model.in_dim} input descriptors but the training split has "
                f"D={in_dim}; delete the file to retrain"
            )
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise DataError(f"checkpoint {info.get('checkpoint')!r} does not match its model config ({str(e).splitlines()[0]}); "
                            "delete it to retrain") from None
        self.model = model.to(self._device).eval()
        self.training_info = {"train_seq_len": train_seq_len, "device": str(self._device), "train_dataset": train.dataset,
                              "n_train_queries": int(data.train_queries.size), "preset_resolved": hp["preset_resolved"],
                              **info, **config.get("training", {})}
        self._report(train)

    def _report(self, train: SplitData) -> None:
        """Warn (the "vprbench" logger: the run output) about training that did not help or a projection that loses data."""
        t, name = self.training_info, self.info.name
        pca = t.get("pca") or {}
        if pca.get("capped"):
            log.warning("%s: the input projection keeps %d of the %d requested dimensions (the %d descriptors it is fitted on "
                        "span no more); set pca_dim=0 to use the %d-D input as is", name, pca["dim"], pca["requested"],
                        pca["fit_rows"], train.reference.dim)
        if pca.get("held_out_energy") is not None and pca["held_out_energy"] < PCA_WARN_ENERGY:
            log.warning("%s: the input projection does not generalise: fitted on the training split it keeps %.0f%% of the "
                        "validation descriptors' energy; consider pca_dim=0, pca_fit=all with observe(), or more data",
                        name, 100 * pca["held_out_energy"])
        if t.get("untrained"):
            select = t.get("select", "recall@5")
            e0, best = t.get("epoch0_val") or {}, t.get("best_val") or {}
            if e0:
                kept = t.get("best_epoch", 0)
                what = ("the kept model is its untrained initialisation" if kept == 0 else
                        f"validation cannot tell the kept epoch {kept} from the untrained model")
                def score(v: dict) -> float:  # NaN is stored as null in records and checkpoints
                    x = v.get(select)
                    return float("nan") if x is None else float(x)

                log.warning("%s: training did not beat the untrained model on validation (%s %.3f at epoch 0, %.3f at the kept "
                            "epoch %d of %d): %s", name, select, score(e0), score(best), kept, t.get("epochs_run", 0), what)
            else:
                log.warning("%s: no training query had a margin-violating negative, so no optimiser step was made: "
                            "this row is the method's initialisation", name)

    # -- inference -----------------------------------------------------------------------------
    def _require_model(self) -> WindowModel:
        if self.model is None:
            raise ConfigError(f"method {self.info.name!r} has no trained model: call fit(train, val, ctx) before rank()")
        return self.model

    def embed(self, split: SplitData, ctx: RunContext, model: WindowModel | None = None) -> dict[str, np.ndarray]:
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
        q_desc = dense_descriptors(split.query.descriptors, f"{self.info.name} input (query traverse {split.query.name!r})")
        r_desc = dense_descriptors(split.reference.descriptors, f"{self.info.name} input (reference traverse {split.reference.name!r})")
        with ctx.timings("encode"):
            if model.per_frame:
                return {"q": encode_frames(model, q_desc, self._device), "r": encode_frames(model, r_desc, self._device),
                        "q_starts": q_starts, "r_starts": r_starts, "r_valid": r_valid, "q_valid": q_valid, "L": L}
            eq = encode_windows(model, q_desc, q_starts, L, self._device)
            er = encode_windows(model, r_desc, r_starts, L, self._device)
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
            return encode_frames(model, dense_descriptors(traverse.descriptors, f"{self.info.name} input (traverse {traverse.name!r})"), self._device)

    def _topk(self, e: dict[str, np.ndarray], ctx: RunContext, k: int) -> tuple[np.ndarray, np.ndarray]:
        from vprbench.matching.sequence import sequence_topk

        with ctx.timings("match"):
            return sequence_topk(e["q"], e["r"], e["q_starts"], e["r_starts"], e["L"], k, memory_mb=ctx.memory_mb, r_valid=e["r_valid"], progress=ctx.progress)

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        from vprbench.matching.topk import mask_queries

        e = self.embed(split, ctx)
        idx, dist = self._topk(e, ctx, ctx.top_k)
        return Ranking(*mask_queries(idx, dist, e["q_valid"]))

    def _validation_scores(self, model: WindowModel, val: SplitData, ctx: RunContext) -> dict[str, float]:
        """Recall@1/5/10 and MRR of ``model`` on the validation split (:mod:`vprbench.learning.selection`)."""
        from vprbench.learning.selection import VAL_TOP_K, validation_scores

        k = min(VAL_TOP_K, len(val.reference))
        quiet = RunContext(seed=ctx.seed, seq_len=ctx.seq_len, boundary=ctx.boundary, top_k=k, device=ctx.device, memory_mb=ctx.memory_mb)
        e = self.embed(val, quiet, model)
        idx, _ = self._topk(e, quiet, k)
        gt = val.ground_truth
        return validation_scores(gt.hits(idx), mask=gt.has_positive & e["q_valid"])

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


def learned_params(extra: dict[str, Param] | None = None, fixed: tuple[str, ...] = (), model: tuple[str, ...] = ()) -> dict[str, Param]:
    """Method params of a learned method: ``preset`` plus every shared hyperparameter (none = from the preset).

    ``fixed``: shared hyperparameters the method does not expose; ``model``: model-specific ones it
    does (:data:`vprbench.learning.presets.MODEL_HYPERPARAMETERS`, e.g. ``clusters``).
    """
    from vprbench.learning.presets import HYPERPARAMETERS, MODEL_HYPERPARAMETERS, PRESET_NAMES

    params: dict[str, Param] = {"preset": Param("cpu", "hyperparameter preset: cpu (sized to the training set: cpu-small / -medium / "
                                                       "-large), paper (published setup, GPU)", PRESET_NAMES)}
    for name, spec in HYPERPARAMETERS.items():
        if name not in fixed and (name not in MODEL_HYPERPARAMETERS or name in model):
            params[name] = dataclasses.replace(spec, help=spec.help + " (none: from the preset)")
    params.update(extra or {})
    return params
