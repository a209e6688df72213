"""The method plugin interface: metadata, ``fit`` and ``rank``, the ranking they return, the run context."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.params import Param, Stage, coerce_params
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse

Family = Literal["single-image", "sequential-descriptor", "sequence-matching", "hierarchical"]
#: Families in the order the SeqMatchNet paper's tables group them.
FAMILIES: tuple[str, ...] = ("single-image", "sequential-descriptor", "sequence-matching", "hierarchical")


#: The parameter the framework adds to every method that accepts a per-frame representation.
FRONTEND_PARAM = Param(None, "per-frame representation whose outputs replace the descriptors (a method spec, e.g. seqnet-s1; "
                             "none: the dataset's descriptors)", type=Stage, optional=True)


@dataclass(frozen=True)
class MethodInfo:
    """Metadata of a method plugin.

    Attributes:
        name: unique name used on the command line.
        family: one of :data:`FAMILIES`.
        summary: one line for ``vprbench list``.
        paper: citation of the method's paper.
        trains: whether ``fit`` learns from the training split.
        needs: what the method consumes: ``"descriptors"`` (per-frame descriptors), ``"distances"``
            (only single-image distances: runs on imported distance matrices too) or ``"images"``.
        params: parameters with defaults.
        single_match: returns one match per query (Recall@N for N > 1 is undefined, shown as "-").
        uses_sequences: the result depends on the sequence length L. False means one result serves
            every L (the runner computes it once; the conformance check ``same_for_every_length``
            holds the method to it).
        smoke_params: parameter overrides for the quick conformance check on a tiny dataset
            (e.g. one training epoch); they must not change what the method computes, only how long.
        version: a version string the plugin declares for its code; results are then identified by
            it (and vprbench's version) instead of a hash of the plugin's source files. Bump it
            whenever the plugin computes something else.
        seeded: whether results depend on the run's seed (None: the same as ``trains``). A
            deterministic method is computed once for all seeds (the conformance check
            ``same_for_every_seed`` holds it to that).
        provides_frontend: the method can serve as a per-frame representation of other methods
            (it implements :meth:`Method.encode`, e.g. SeqNet S_1 or SeqMatchNet's transform).
        accepts_frontend: the method takes a ``frontend`` parameter (a per-frame representation
            whose outputs replace the dataset's descriptors); None: every training-free method that
            works on descriptors or distances does (the framework adds the parameter).
        aliases: other names the method is found by (e.g. an earlier name).
    """

    name: str
    family: str
    summary: str
    paper: str = ""
    trains: bool = False
    needs: tuple[str, ...] = ("descriptors",)
    params: Mapping[str, Param] = field(default_factory=dict)
    single_match: bool = False
    uses_sequences: bool = True
    smoke_params: Mapping[str, Any] = field(default_factory=dict)
    version: str | None = None
    seeded: bool | None = None
    provides_frontend: bool = False
    accepts_frontend: bool | None = None
    aliases: tuple[str, ...] = ()

    @property
    def depends_on_seed(self) -> bool:
        """Whether results depend on the run's seed (``seeded``, by default ``trains``)."""
        return bool(self.trains if self.seeded is None else self.seeded)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"method {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.accepts_frontend is None:
            object.__setattr__(self, "accepts_frontend", not self.trains and set(self.needs) <= {"descriptors", "distances"})
        if self.accepts_frontend and "frontend" not in self.params:
            object.__setattr__(self, "params", {**self.params, "frontend": FRONTEND_PARAM})


@dataclass
class Ranking:
    """The output of :meth:`Method.rank` for every query of a split.

    Attributes:
        indices: [n_query, K] int64 reference indices, best first; -1 where there is no match
            (e.g. a query a sequence matcher cannot place).
        distances: [n_query, K] float32, ascending along each row (lower = more similar); inf for -1.
        confidence: [n_query] float64 confidence in the top-1 match (higher = more confident), used
            for precision-recall curves. Defaults to minus the top-1 distance.
    """

    indices: np.ndarray
    distances: np.ndarray
    confidence: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.distances = np.asarray(self.distances, dtype=np.float32)
        if self.indices.ndim != 2 or self.indices.shape != self.distances.shape:
            raise DataError(f"ranking: indices {self.indices.shape} and distances {self.distances.shape} must both be [n_query, K]")
        if self.confidence is None:
            top = self.distances[:, 0].astype(np.float64)
            self.confidence = np.where(self.indices[:, 0] >= 0, -top, -np.inf)
        self.confidence = np.asarray(self.confidence, dtype=np.float64)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def validate(self, n_query: int, n_ref: int, method: str) -> None:
        """Check shapes and ranges against a split; raise :class:`DataError` naming the method."""
        if self.indices.shape[0] != n_query:
            raise DataError(f"method {method!r} ranked {self.indices.shape[0]} queries, the split has {n_query}")
        if self.confidence.shape != (n_query,):
            raise DataError(f"method {method!r}: confidence must be [{n_query}], got {self.confidence.shape}")
        if (self.indices >= n_ref).any() or (self.indices < -1).any():
            raise DataError(f"method {method!r} returned reference indices outside -1..{n_ref - 1}")
        d = np.where(self.indices >= 0, self.distances, np.inf)
        if np.isnan(d).any():
            raise DataError(f"method {method!r} returned NaN distances")
        with np.errstate(invalid="ignore"):  # inf - inf after the last match
            descending = np.diff(d, axis=1) < -1e-5 * np.maximum(1.0, np.abs(d[:, :-1]))
        if descending.any():
            raise DataError(f"method {method!r}: distances must be ascending along each row")


class Timings:
    """Named wall-clock timers (seconds), accumulated: ``with timings("encode"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


@dataclass
class RunContext:
    """Everything about a run that is not a method parameter.

    Attributes:
        seed: random seed; methods draw randomness only from :meth:`rng` / torch seeded with it.
        seq_len: sequence length L in frames.
        boundary: window boundary policy, ``"shift"`` or ``"drop"`` (see :mod:`vprbench.data.windows`).
        top_k: number of references to return per query.
        device: torch device string (``"cpu"``, ``"cuda"``).
        cache_dir: where trained models and computed descriptors are cached (None: no cache).
        progress: show progress bars.
        memory_mb: budget for one distance-matrix block, MiB.
        timings: stage timers; methods time ``"encode"`` and ``"match"`` with ``ctx.timings(...)``.
        dataset_fingerprint: content hash of the dataset (part of cache keys).
        notes: facts about how the methods ran, written by the methods (e.g. ``notes["distance"]``:
            which definition of distance or similarity was used); stored with each result.
            Shared by contexts derived with ``dataclasses.replace`` (a composed method's stages).
    """

    seed: int = 0
    seq_len: int = 5
    boundary: str = "shift"
    top_k: int = 20
    device: str = "cpu"
    cache_dir: Path | None = None
    progress: bool = False
    memory_mb: float = 512.0
    timings: Timings = field(default_factory=Timings)
    dataset_fingerprint: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def rng(self, salt: int = 0) -> np.random.Generator:
        """A numpy generator seeded by (seed, salt)."""
        return np.random.default_rng([self.seed, salt])


class Method(ABC):
    """Base class of every method plugin. Subclasses set ``info`` and implement :meth:`rank`.

    Parameters are passed as keyword arguments, validated against ``info.params`` and available as
    ``self.params`` (a dict holding every parameter, defaults filled in). Parameters of type
    :class:`~vprbench.core.params.Stage` name other methods; the registry creates those
    (:meth:`vprbench.plugins.registry.Registry.create`) and puts them in ``self.stages``, then
    calls :meth:`bind`.
    """

    info: ClassVar[MethodInfo]
    #: Where the registry found the class (file or entry point) and its file; set on discovery.
    source: ClassVar[str] = ""
    source_path: ClassVar[Path | None] = None

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = coerce_params(self.info.params, params, f"method {self.info.name!r}")
        self.stages: dict[str, Method] = {}
        self.check_params()

    def check_params(self) -> None:
        """Checks across parameters (e.g. ``vmax >= vmin``); raise :class:`ConfigError`. Called by ``__init__``."""

    def configure_stage(self, key: str, spec: Any, registry: Any) -> Any:
        """The :class:`~vprbench.plugins.specs.MethodSpec` to create for stage ``key`` (default: as given).

        Override to pass settings down, e.g. a preset to stages that have one.
        """
        return spec

    def bind(self, registry: Any) -> None:
        """Called by the registry once the stages are created (``self.stages``); check or adapt them here."""

    def stage(self, name: str) -> Method:
        """The method created for stage parameter ``name``."""
        if name not in self.stages:
            raise ConfigError(
                f"method {self.info.name!r} composes other methods ({name!r}): create it with a registry, "
                f"e.g. vprbench.plugins.registry.discover().create({self.info.name!r}, ...)"
            )
        return self.stages[name]

    @property
    def label(self) -> str:
        """Canonical name of this configuration: the method name and the parameters that differ from
        their defaults (stages by their own label), e.g. ``seqmatch[variant=centerOnly]``."""
        from vprbench.plugins.specs import format_spec

        changed = {}
        for key, value in self.params.items():
            default = self.info.params[key].default
            if key in self.stages:
                if self.stages[key].label != str(default):
                    changed[key] = self.stages[key].label
            elif value != default:
                changed[key] = value
        return format_spec(self.info.name, changed)

    def prepare(self, train: SplitData | None, ctx: RunContext) -> None:
        """Called by the runner while it plans, before a job's identity is taken, with the training split
        (None when the method does not train or there is none) and the run's context (seed, L, ...).

        Resolve settings that depend on the data or the run into ``self.resolved_params`` (they are
        part of the identity: two specs that resolve alike are one job) and raise
        :class:`ConfigError` for settings that cannot work in this run (e.g. a filter longer than L),
        so the run stops before any long work. Default: prepare every stage.
        """
        for stage in self.stages.values():
            stage.prepare(train if stage.info.trains else None, ctx)

    def observe(self, split: SplitData) -> None:
        """Called by the runner before :meth:`fit` with the evaluation split's ranking view (descriptors,
        no positions or labels), for methods whose unsupervised parts may see the map (e.g. an input
        projection fitted on it). Default: nothing."""

    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        """Learn from the training split (and validate on ``val``). Training-free methods skip it."""

    def encode(self, traverse: Traverse, ctx: RunContext) -> np.ndarray:
        """Per-frame outputs [n, D'] of this method's representation for a traverse (after ``fit``).

        Only for methods with ``info.provides_frontend``; the framework then feeds these outputs to
        any method with ``frontend=<this method>`` in place of the dataset's descriptors.
        """
        raise ConfigError(f"method {self.info.name!r} provides no per-frame representation (it cannot be a frontend)")

    @abstractmethod
    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        """Rank the split's reference frames for each of its query frames (top ``ctx.top_k``)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.info.name}({args})"
