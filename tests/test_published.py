"""report --compare: an experiment's published numbers beside ours, rows matched to records by identity."""

import numpy as np
import pytest

from vprbench.core.errors import ConfigError
from vprbench.plugins.registry import discover
from vprbench.reporting.published import compare, format_comparison
from vprbench.running.experiments import get_experiment

REG = discover()


def record(label, method, dataset, r1, r5=None, seed=None, train=None, seq_len=5, trains=False):
    return {"job": {"method": method, "label": label, "dataset": dataset, "split": "test", "seq_len": seq_len, "boundary": "shift",
                    "protocol": "default", "seed": seed, "train_dataset": train, "trains": trains, "dataset_fingerprint": "f"},
            "metrics": {"recall_at": {"1": r1, "5": r5, "10": r5, "20": r5}}, "protocol": {"text": "protocol default"}}


def test_compare_matches_rows_by_identity():
    exp = get_experiment("seqmatchnet")
    recs = [
        record("seqmatchnet[loss=single]", "seqmatchnet", "nordland-sw", 0.60, 0.80, seed=0, trains=True),
        record("seqmatchnet[loss=single]", "seqmatchnet", "nordland-sw", 0.70, 0.90, seed=1, trains=True),  # 2nd seed
        record("seqmatchnet", "seqmatchnet", "nordland-sw", 0.10, 0.20, seed=0, trains=True),
        record("seqmatchnet[loss=single]", "seqmatchnet", "nordland-sw", 0.99, 0.99, seed=0, trains=True, seq_len=10),  # other L
        record("seqmatchnet[loss=single,preset=paper]", "seqmatchnet", "nordland-sw", 0.98, 0.98, seed=0, trains=True),  # other preset
        record("seqmatchnet[loss=single]", "seqmatchnet", "synth-seasons", 0.99, 0.99, seed=0, trains=True),  # other data
        record("seqnet-s1+gism", "seqnet-s1+gism", "oxford-v1.0", 0.5, None, seed=0, trains=True, train="brisbane-day-night"),
    ]
    out = compare(exp, recs, REG)
    by = {(run.dataset.name, table.id): frame.set_index("row") for run, table, frame, _ in out}
    t1 = by[("nordland-sw", "1")]
    row = t1.loc["loss single, mining seqmatch"]
    assert row["R@1"] == pytest.approx(0.65) and row["R@1 std"] == pytest.approx(0.05) and row["R@1 paper"] == 0.66
    assert row["R@1 diff"] == pytest.approx(-0.01) and row["seeds"] == 2
    assert t1.loc["loss seqmatch, mining seqmatch", "R@1"] == pytest.approx(0.10)
    assert np.isnan(t1.loc["loss single, mining single", "R@1"])  # not run
    gism = by[("oxford-v1.0", "2")].loc["S_1 + GISM"]
    assert gism["R@1"] == 0.5 and gism["R@1 paper"] == 0.65 and np.isnan(gism["R@5"])
    assert ("synth-seasons", "1") in by and np.isnan(by[("synth-seasons", "1")]["R@1 paper"]).all()  # stand-ins: no published column
    md = format_comparison(out)
    assert "| 0.650 +-0.050 | 0.660" in md and "(not run)" in md


def test_unknown_experiment():
    with pytest.raises(ConfigError, match="unknown experiment 'nope'"):
        get_experiment("nope")
