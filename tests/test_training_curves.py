"""Training-curve plots of learned rows (vprbench.reporting.training_curves)."""

from __future__ import annotations

import matplotlib.image
import pytest

from vprbench.reporting.training_curves import curve_path, plot_training_curves, training_curves


def _history(mrr):
    return [{"epoch": e, "loss": None if e == 0 else 0.3 / e, "trained_fraction": 0.0 if e == 0 else 1.0 - 0.1 * e,
             "margin": None if e == 0 else 0.32, "val_mrr": v, "val_recall1": v - 0.1, "val_recall5": min(1.0, v + 0.1)}
            for e, v in enumerate(mrr)]


def _record(label, training, key="abcdef0123", seed=0):
    return {"key": key, "job": {"label": label, "method": label.split("[")[0], "dataset": "toy", "seed": seed, "training": training}}


RECORDS = [
    _record("seqmatch", None),
    _record("seqmatchnet", {"history": _history([0.5, 0.6, 0.7, 0.65]), "best_epoch": 2, "untrained": False, "select": "mrr"}),
    _record("hvpr", {"shortlister": {"history": _history([0.2, 0.3]), "best_epoch": 1, "untrained": False},
                     "reranker": {"history": _history([0.9, 0.9]), "best_epoch": 1, "untrained": True}}, key="99887766"),
    _record("seqnet[lr=0.1]", {"cache_hit": True}),  # no history (e.g. an older record): nothing to draw
]


def test_curves_extracted_from_records():
    assert training_curves(RECORDS[0]) == [] and training_curves(RECORDS[3]) == []
    (c,) = training_curves(RECORDS[1])
    assert c.epochs == [0, 1, 2, 3] and c.best_epoch == 2 and c.untrained is False and c.select == "mrr"
    assert c.val["mrr"] == [0.5, 0.6, 0.7, 0.65] and c.val["recall5"][0] == 0.6 and "recall10" not in c.val
    assert c.loss[0] is None and c.loss[1:] == pytest.approx([0.3, 0.15, 0.1]) and c.trained_fraction[1:] == pytest.approx([0.9, 0.8, 0.7])
    stages = training_curves(RECORDS[2])
    assert [s.stage for s in stages] == ["shortlister", "reranker"] and stages[1].untrained is True


def test_one_png_per_learned_record(tmp_path):
    paths = plot_training_curves(RECORDS, tmp_path / "plots")
    assert paths == [curve_path(tmp_path / "plots", RECORDS[1]), curve_path(tmp_path / "plots", RECORDS[2])]
    assert paths[0].name == "training-toy-seqmatchnet-seed0-abcdef01.png"
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a two-stage record is drawn side by side: wider than a single-model one
    assert matplotlib.image.imread(paths[1]).shape[1] > 1.5 * matplotlib.image.imread(paths[0]).shape[1]
    assert curve_path(tmp_path, _record("seqnet[lr=0.1]", {})).name == "training-toy-seqnet_lr=0.1-seed0-abcdef01.png"
