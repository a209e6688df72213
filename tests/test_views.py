"""rank() sees descriptors, frame order, segments and timestamps only (vprbench.data.views)."""

from dataclasses import replace

import numpy as np
import pytest

from vprbench.core.errors import DataError
from vprbench.data.views import ranking_view


def test_view_hides_positions_ground_truth_and_metadata(toy_dataset):
    split = toy_dataset.split("test")
    view = ranking_view(split)
    np.testing.assert_array_equal(view.query.descriptors, split.query.descriptors)
    np.testing.assert_array_equal(view.reference.segment_bounds, split.reference.segment_bounds)
    assert len(view.query) == len(split.query) and view.query.dim == split.query.dim
    for read in (lambda: view.ground_truth, lambda: view.training_positives(), lambda: view.query.positions,
                 lambda: view.reference.meta, lambda: view.query.subset(np.arange(3)), lambda: view.fingerprint):
        with pytest.raises(DataError, match="rank\\(\\) may not read"):
            read()
    assert view.radius is None and view.explicit_ground_truth is None
    assert ranking_view(view) is view


def test_view_can_be_derived_without_leaking(toy_dataset):
    view = ranking_view(toy_dataset.split("test"))
    q = view.query.with_descriptors(np.zeros_like(view.query.descriptors))
    with pytest.raises(DataError):
        q.positions
    derived = replace(view, query=q)
    assert (derived.query.descriptors == 0).all()
    with pytest.raises(DataError):
        derived.ground_truth


def test_view_holds_no_positions_or_metadata_at_all(toy_dataset):
    """Not even through ``vars()`` or ``object.__getattribute__``, which bypass the view's guard."""
    split = toy_dataset.split("test")
    view = ranking_view(split)
    for t in (view.query, view.reference, view.query.with_descriptors(split.query.descriptors * 2)):
        leaked = {k for k, v in vars(t).items() if k in ("positions", "meta", "position_unit") or isinstance(v, type(split.query))}
        assert not leaked, leaked
        with pytest.raises(AttributeError):
            object.__getattribute__(t, "positions")
    assert not any(isinstance(v, type(split.query)) and type(v) is type(split.query) for v in vars(view).values())
