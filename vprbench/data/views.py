"""What a method's ``rank`` may see of a split: descriptors (or imported distances), images, frame
order, segments and timestamps — never positions, ground truth, radii, metadata or source indices.

:func:`ranking_view` wraps a :class:`~vprbench.data.dataset.SplitData` so that reading anything else
raises a :class:`~vprbench.core.errors.DataError` naming the attribute; the runner and the
conformance check pass only such views to ``rank`` (``fit`` sees the full training split).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from vprbench.core.errors import DataError
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse

#: Traverse attributes hidden from rank().
HIDDEN_TRAVERSE = frozenset({"positions", "meta", "update_hash", "subset", "position_unit"})
#: Split attributes hidden from rank(). (Its fields explicit_ground_truth and the radii read as None in
#: the view, so that ``dataclasses.replace(view, ...)`` works.)
HIDDEN_SPLIT = frozenset({"ground_truth", "training_positives", "training_non_negatives", "fingerprint"})
#: Fields of a traverse that a view does not hold at all (so ``vars(view)`` cannot reach them either).
_DATA_NOT_COPIED = frozenset({"positions", "meta", "position_unit"})
#: The full traverse behind each view, by ``id(view)``: kept outside the view so that neither its
#: attributes nor ``vars()`` lead back to positions (needed only by :meth:`RankingTraverse.with_descriptors`).
_FULL: dict[int, Traverse] = {}


def _refuse(what: str, name: str) -> DataError:
    hint = " (to give a traverse other descriptors use traverse.with_descriptors(...))" if name in HIDDEN_TRAVERSE else ""
    return DataError(
        f"rank() may not read the {name!r} of {what}: a method ranks from descriptors (or imported distances), "
        "images, frame order, segments and timestamps only; positions and ground truth are for evaluation "
        f"(fit() sees the training split's){hint}"
    )


class RankingTraverse(Traverse):
    """A :class:`Traverse` whose positions and metadata cannot be read (see :data:`HIDDEN_TRAVERSE`)."""

    def __getattribute__(self, name: str) -> Any:
        if name in HIDDEN_TRAVERSE:
            raise _refuse(f"traverse {object.__getattribute__(self, 'name')!r}", name)
        return object.__getattribute__(self, name)

    def __len__(self) -> int:
        return int(object.__getattribute__(self, "_n"))

    def with_descriptors(self, descriptors: np.ndarray, tag: str | None = None) -> RankingTraverse:
        return _blind(_FULL[id(self)].with_descriptors(descriptors, tag))

    def __repr__(self) -> str:
        return f"RankingTraverse({object.__getattribute__(self, 'name')!r}, {len(self)} frames)"


def _blind(t: Traverse) -> RankingTraverse:
    if isinstance(t, RankingTraverse):
        return t
    view = object.__new__(RankingTraverse)
    for key, value in vars(t).items():
        if key not in _DATA_NOT_COPIED:
            object.__setattr__(view, key, value)
    object.__setattr__(view, "_n", len(t))
    _FULL[id(view)] = t
    weakref.finalize(view, _FULL.pop, id(view), None)
    return view


class RankingSplit(SplitData):
    """A :class:`SplitData` without ground truth and radii (see :data:`HIDDEN_SPLIT`)."""

    def __getattribute__(self, name: str) -> Any:
        if name in HIDDEN_SPLIT:
            raise _refuse(f"split {object.__getattribute__(self, 'split')!r} of {object.__getattribute__(self, 'dataset')!r}", name)
        return object.__getattribute__(self, name)

    def __repr__(self) -> str:
        return f"RankingSplit({object.__getattribute__(self, 'dataset')!r}, {object.__getattribute__(self, 'split')!r})"


def ranking_view(split: SplitData) -> SplitData:
    """``split`` as rank() may see it (idempotent)."""
    if isinstance(split, RankingSplit):
        return split
    view = object.__new__(RankingSplit)
    for key, value in vars(split).items():
        if key in HIDDEN_SPLIT:  # cached properties already computed on the full split
            continue
        object.__setattr__(view, key, value)
    object.__setattr__(view, "reference", _blind(split.reference))
    object.__setattr__(view, "query", _blind(split.query))
    for hidden in ("explicit_ground_truth", "radius", "nontrivial_radius", "negative_radius"):
        object.__setattr__(view, hidden, None)
    return view
