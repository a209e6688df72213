"""Benchmark datasets: a reference traverse, query traverse(s), named splits and radii."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from vprbench.core.errors import DataError, unknown_name
from vprbench.core.hashing import ContentHash
from vprbench.data.groundtruth import GroundTruth
from vprbench.data.protocol import DEFAULT_DESCRIPTION, DEFAULT_PROTOCOL, Protocol, for_ground_truth
from vprbench.data.traverse import Traverse

#: What an imported single-image matrix (``distances``) holds. "distance": a generic distance
#: (lower = more similar); "unit-euclidean": Euclidean distances of unit vectors (d in [0, 2]);
#: "cosine-similarity": the cosine of unit vectors, S in [-1, 1] (higher = more similar);
#: "similarity": a generic similarity (higher = more similar). Methods read it through
#: :func:`vprbench.matching.distances.split_distance_source`, which converts it to the quantity each
#: method needs (documented there).
DISTANCE_KINDS: tuple[str, ...] = ("distance", "unit-euclidean", "cosine-similarity", "similarity")


@dataclass(frozen=True, eq=False)
class SplitIndices:
    """Frames of one split: indices into the reference traverse and into the query traverse."""

    reference: np.ndarray
    query: np.ndarray

    @classmethod
    def from_ranges(cls, reference: tuple[int, int], query: tuple[int, int]) -> SplitIndices:
        """From [start, end) frame ranges."""
        return cls(np.arange(*reference, dtype=np.int64), np.arange(*query, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class SplitData:
    """One split as a method sees it: sub-traverses (re-indexed from 0) and evaluation ground truth.

    Attributes:
        dataset, split: names.
        reference, query: the split's frames as traverses; sequence windows never bridge gaps
            in the split's frame selection.
        radius: localisation radius for evaluation (metres or frames).
        nontrivial_radius: positives for training lie within this radius (None: same as radius).
        negative_radius: training negatives lie beyond this radius (None: same as radius).
        distances: optional imported single-image matrix [n_query, n_ref]; what it holds is
            ``distance_kind`` (one of :data:`DISTANCE_KINDS`; similarities are higher = better).
        distance_kind: the meaning of ``distances`` (default "distance": lower = more similar).
    """

    dataset: str
    split: str
    reference: Traverse
    query: Traverse
    radius: float
    nontrivial_radius: float | None = None
    negative_radius: float | None = None
    distances: np.ndarray | None = None
    explicit_ground_truth: GroundTruth | None = None
    distance_kind: str = "distance"

    @cached_property
    def ground_truth(self) -> GroundTruth:
        """Evaluation ground truth: the dataset's explicit one if it has it, else references within ``radius``."""
        if self.explicit_ground_truth is not None:
            return self.explicit_ground_truth
        return GroundTruth.from_positions(self.reference.positions, self.query.positions, self.radius)

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of the split as training sees it (descriptors, positions, segments, ground truth, radii)."""
        h = ContentHash()
        for t in (self.reference, self.query):
            t.update_hash(h)
        if self.explicit_ground_truth is not None:  # validation recall (best epoch) depends on it
            self.explicit_ground_truth.update_hash(h)
        h.update(repr((self.dataset, self.split, self.radius, self.nontrivial_radius, self.negative_radius)).encode())
        return h.hexdigest(20)

    def training_positives(self) -> GroundTruth:
        """Non-trivial positives for training (within ``nontrivial_radius``)."""
        return GroundTruth.from_positions(self.reference.positions, self.query.positions, self.nontrivial_radius or self.radius)

    def training_non_negatives(self) -> GroundTruth:
        """References too close to be negatives (within ``negative_radius``)."""
        return GroundTruth.from_positions(self.reference.positions, self.query.positions, self.negative_radius or self.radius)


@dataclass(frozen=True, eq=False)
class BenchmarkDataset:
    """A reference traverse, one or more query traverses, splits and radii.

    Attributes:
        name: dataset name as used on the command line.
        reference: the reference (database) traverse.
        queries: query traverses by name; the first is the default.
        splits: named frame selections (``train`` / ``val`` / ``test``), disjoint in both traverses.
        radius: localisation radius for evaluation, in the traverses' position unit.
        nontrivial_radius: training positives lie within it (SeqNet's nonTrivPosDistSqThr, as a radius).
        negative_radius: training negatives lie beyond it (SeqNet's posDistThr); must exceed
            ``nontrivial_radius``.
        description: one line for ``vprbench list``.
        distances: optional imported single-image matrix [n_query, n_ref] of the default query
            traverse against the reference; what it holds is ``distance_kind``.
        distance_kind: one of :data:`DISTANCE_KINDS` (default "distance": lower = more similar;
            "cosine-similarity" / "similarity": higher = more similar).
        ground_truth: optional explicit ground truth of the default query traverse (full traverses).
        meta: provenance (generator parameters, source files), recorded with results. Two lists
            of strings the runner records and prints: ``meta["warnings"]`` (suspicious data: frame
            order, degrees as metres, ...; filled at construction by
            :func:`vprbench.data.order.dataset_warnings` and by loaders) and ``meta["notes"]``
            (decisions taken for the user, e.g. derived training radii).
        protocols: named evaluation protocols (see :mod:`vprbench.data.protocol`); ``default`` always.
    """

    name: str
    reference: Traverse
    queries: dict[str, Traverse]
    splits: dict[str, SplitIndices]
    radius: float
    nontrivial_radius: float | None = None
    negative_radius: float | None = None
    description: str = ""
    distances: np.ndarray | None = None
    ground_truth: GroundTruth | None = None
    meta: dict = field(default_factory=dict)
    protocols: dict[str, Protocol] = field(default_factory=lambda: {DEFAULT_PROTOCOL: Protocol(description=DEFAULT_DESCRIPTION)})
    distance_kind: str = "distance"

    def __post_init__(self) -> None:
        what = f"dataset {self.name!r}"
        if self.distance_kind not in DISTANCE_KINDS:
            raise DataError(f"{what}: distance_kind must be one of {list(DISTANCE_KINDS)}, got {self.distance_kind!r}")
        default_q = self.queries[next(iter(self.queries))] if self.queries else None
        if self.distances is not None and default_q is not None:
            expected = (len(default_q), len(self.reference))
            if self.distances.shape != expected:
                raise DataError(f"{what}: distance matrix has shape {self.distances.shape}, expected [n_query, n_ref] = {list(expected)}")
            if np.isnan(self.distances).any():
                raise DataError(f"{what}: distance matrix holds NaN values")
        if self.ground_truth is not None and default_q is not None:
            if (self.ground_truth.n_query, self.ground_truth.n_ref) != (len(default_q), len(self.reference)):
                raise DataError(
                    f"{what}: ground truth covers {self.ground_truth.n_query} queries x {self.ground_truth.n_ref} references, "
                    f"expected {len(default_q)} x {len(self.reference)}"
                )
        if not self.queries:
            raise DataError(f"{what}: needs at least one query traverse")
        if not (self.radius > 0 and np.isfinite(self.radius)):
            raise DataError(f"{what}: localisation radius must be a finite number > 0, got {self.radius}")
        if self.nontrivial_radius is not None and self.negative_radius is not None:
            if not self.negative_radius > self.nontrivial_radius:
                raise DataError(
                    f"{what}: negative radius ({self.negative_radius}) must be larger than the "
                    f"non-trivial positive radius ({self.nontrivial_radius})"
                )
        for qname, q in self.queries.items():
            if q.position_unit != self.reference.position_unit:
                raise DataError(f"{what}: query {qname!r} positions are in {q.position_unit!r}, reference in {self.reference.position_unit!r}")
            if q.positions.shape[1] != self.reference.positions.shape[1]:
                raise DataError(f"{what}: query {qname!r} positions are {q.positions.shape[1]}-D, reference {self.reference.positions.shape[1]}-D")
            if q.descriptors is not None and self.reference.descriptors is not None and q.dim != self.reference.dim:
                raise DataError(
                    f"{what}: descriptor dimension mismatch: reference {self.reference.name!r} has D={self.reference.dim}, "
                    f"query {qname!r} has D={q.dim}; expected equal dimensions"
                )
        n_ref = len(self.reference)
        n_q = min(len(q) for q in self.queries.values())
        for sname, s in self.splits.items():
            for side, idx, n in (("reference", s.reference, n_ref), ("query", s.query, n_q)):
                if idx.size == 0:
                    raise DataError(f"{what}: split {sname!r} has no {side} frames")
                if idx.min() < 0 or idx.max() >= n:
                    raise DataError(f"{what}: split {sname!r} {side} indices out of range 0..{n - 1}")
        names = list(self.splits)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                for side in ("reference", "query"):
                    common = np.intersect1d(getattr(self.splits[a], side), getattr(self.splits[b], side))
                    if common.size:
                        raise DataError(
                            f"{what}: splits {a!r} and {b!r} overlap in {common.size} {side} frame(s) "
                            f"(first: {common[:5].tolist()}); expected disjoint splits"
                        )
        object.__setattr__(self, "protocols", for_ground_truth(self.protocols, self.ground_truth is not None, what))
        self._collect_warnings()

    def _collect_warnings(self) -> None:
        """Add suspicious-data warnings (frame order, degrees as metres, degenerate descriptors, a radius
        covering the whole map) to ``meta["warnings"]`` (a list of strings)."""
        from vprbench.data.order import dataset_warnings

        found = dataset_warnings(self.reference, self.queries.values(), radius=None if self.ground_truth is not None else self.radius)
        if found:
            known = list(self.meta.get("warnings", []))
            self.meta["warnings"] = known + [w for w in found if w not in known]

    @property
    def position_unit(self) -> str:
        return self.reference.position_unit

    @property
    def default_query(self) -> str:
        return next(iter(self.queries))

    def split(self, name: str, query: str | None = None) -> SplitData:
        """The split ``name`` as :class:`SplitData`; errors if no query of it has a positive."""
        if name not in self.splits:
            raise unknown_name("split", name, self.splits)
        qname = query or self.default_query
        if qname not in self.queries:
            raise unknown_name("query traverse", qname, self.queries)
        s = self.splits[name]
        data = SplitData(
            dataset=self.name,
            split=name,
            reference=self.reference.subset(s.reference, name=f"{self.reference.name}[{name}]"),
            query=self.queries[qname].subset(s.query, name=f"{qname}[{name}]"),
            radius=self.radius,
            nontrivial_radius=self.nontrivial_radius,
            negative_radius=self.negative_radius,
            distances=None if self.distances is None or qname != self.default_query else self.distances[np.ix_(s.query, s.reference)],
            explicit_ground_truth=None if self.ground_truth is None or qname != self.default_query else self.ground_truth.subset(s.query, s.reference),
            distance_kind=self.distance_kind,
        )
        if not data.ground_truth.has_positive.any():
            raise DataError(
                f"dataset {self.name!r}: no query of split {name!r} has a positive reference within "
                f"radius {self.radius} {self.position_unit}; check positions, radius and split ranges"
            )
        return data

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of everything results depend on (cached; part of every cache key)."""
        if "fingerprint" in self.meta:
            return str(self.meta["fingerprint"])
        h = ContentHash()
        for t in (self.reference, *self.queries.values()):
            t.update_hash(h)
        if self.distances is not None:
            h.update(np.ascontiguousarray(self.distances).tobytes())
            if self.distance_kind != "distance":  # the same numbers mean something else
                h.update(self.distance_kind.encode())
        if self.ground_truth is not None:
            self.ground_truth.update_hash(h)
        for sname, s in self.splits.items():
            h.update(sname.encode() + s.reference.tobytes() + s.query.tobytes())
        h.update(repr((self.radius, self.nontrivial_radius, self.negative_radius)).encode())
        return h.hexdigest(16)
