from pathlib import Path

import numpy as np
import pytest

from vprbench.core.errors import ConfigError
from vprbench.reporting.published import compare, format_comparison, load_published

PUBLISHED = Path(__file__).resolve().parents[1] / "results" / "published" / "seqmatchnet.csv"


def record(method, dataset, params, r1, r5=None):
    return {"job": {"method": method, "dataset": dataset, "split": "test", "params": params},
            "metrics": {"recall_at": {"1": r1, "5": r5}}}


def test_compare_matches_methods_params_and_datasets():
    df, mapping = load_published(PUBLISHED)
    recs = [
        record("seqmatchnet", "nordland-sw", {"loss": "single", "mining": "seqmatch"}, 0.60, 0.80),
        record("seqmatchnet", "nordland-sw", {"loss": "single", "mining": "seqmatch"}, 0.70, 0.90),  # 2nd seed
        record("seqmatchnet", "nordland-sw", {"loss": "seqmatch", "mining": "seqmatch"}, 0.10, 0.20),
        record("seqmatchnet", "synth-seasons", {"loss": "single", "mining": "seqmatch"}, 0.99, 0.99),
        record("gism", "oxford-v1.0", {}, 0.5),
    ]
    out = compare(df, mapping, recs)
    row = out[(out.table == 1) & (out.dataset == "nordland") & (out.loss == "single") & (out.mining == "seqmatch") & (out.recall_at == 1)]
    assert row["ours"].item() == pytest.approx(0.65) and row["value"].item() == 0.66
    gism = out[(out.method == "seqnet-s1+gism") & (out.dataset == "oxford")]
    assert gism["ours"].item() == 0.5
    assert np.isnan(out[(out.method == "delta")]["ours"]).all()
    md = format_comparison(out)
    assert "0.66 / 0.65" in md and "0.59 / -" in md


def test_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_published(tmp_path / "nope.csv")
    (tmp_path / "p.csv").write_text("method,value\nx,1\n")
    with pytest.raises(ConfigError, match="lacks column"):
        load_published(tmp_path / "p.csv")
