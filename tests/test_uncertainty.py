"""Block bootstrap intervals and paired tests against references: scipy's bootstrap, hand counts,
explicit resampling, and the coverage of intervals on generated data with a known true value."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.signal import lfilter

from vprbench.metrics.pr import precision_recall
from vprbench.metrics.uncertainty import (
    auto_block_length,
    block_bootstrap,
    block_bootstrap_indices,
    default_block_length,
    mcnemar_exact,
    percentile_interval,
    weighted_pr_auc,
    weighted_recall,
)


def counts(idx: np.ndarray, n: int) -> np.ndarray:
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(float)


def test_circular_blocks_are_consecutive_and_wrap():
    n, b = 10, 4
    idx = block_bootstrap_indices(n, b, n_boot=50, seed=3)
    assert idx.shape == (50, n) and idx.min() >= 0 and idx.max() < n
    for row in idx:
        for start in range(0, n, b):  # each block is start, start+1, ... modulo n
            block = row[start : start + b]
            assert np.array_equal(block, (block[0] + np.arange(len(block))) % n)
    moving = block_bootstrap_indices(n, b, n_boot=200, seed=3, circular=False)
    blocks = moving[:, :8].reshape(-1, b)
    assert (np.diff(blocks, axis=1) == 1).all()  # never wraps
    # circular: every query equally often in expectation; moving: the ends less often
    freq = np.bincount(block_bootstrap_indices(n, b, n_boot=4000, seed=1).ravel(), minlength=n) / (4000 * n)
    assert np.allclose(freq, 1 / n, atol=0.01)
    freq_m = np.bincount(block_bootstrap_indices(n, b, n_boot=4000, seed=1, circular=False).ravel(), minlength=n)
    assert freq_m[0] < 0.5 * freq_m[n // 2]


def test_weights_match_indices_and_chunking_does_not_change_results():
    n, b = 37, 5
    idx = block_bootstrap_indices(n, b, n_boot=300, seed=7)
    w_all = block_bootstrap(lambda w: w, n, b, n_boot=300, seed=7)
    assert np.array_equal(w_all, counts(idx, n))
    w_small = block_bootstrap(lambda w: w, n, b, n_boot=300, seed=7, memory_mb=0.001)  # one draw group per chunk
    assert np.array_equal(w_small, w_all)
    assert not np.array_equal(block_bootstrap(lambda w: w, n, b, n_boot=300, seed=8), w_all)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="block length must be in 1..5"):
        block_bootstrap_indices(5, 6, 10)
    with pytest.raises(ValueError, match="n_boot"):
        block_bootstrap(lambda w: w, 5, 1, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.zeros((10, 1)), level=95)


def test_iid_case_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.random(300) < 0.7
    ev = np.ones_like(x)
    ours = percentile_interval(block_bootstrap(lambda w: weighted_recall(w, x, ev), x.size, 1, n_boot=4000, seed=1))
    ref = stats.bootstrap((x.astype(float),), np.mean, n_resamples=4000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(2)).confidence_interval
    # Monte-Carlo error of a 2.5 % quantile with 4000 replicates is about 0.003 here
    assert abs(ours[0] - ref.low) < 0.012 and abs(ours[1] - ref.high) < 0.012
    # and both agree with the normal approximation sqrt(p(1-p)/n)
    half = 1.96 * np.sqrt(x.mean() * (1 - x.mean()) / x.size)
    assert abs((ours[1] - ours[0]) / 2 - half) < 0.01


def test_weighted_recall_equals_recall_of_the_resampled_queries():
    rng = np.random.default_rng(1)
    n = 60
    hits = rng.random((n, 3)) < [0.3, 0.6, 0.8]
    ev = rng.random(n) < 0.8
    idx = block_bootstrap_indices(n, 6, n_boot=20, seed=0)
    got = weighted_recall(counts(idx, n), hits, ev)
    for b, row in enumerate(idx):
        want = hits[row][ev[row]].mean(axis=0)
        assert np.allclose(got[b], want)
    assert np.allclose(weighted_recall(counts(idx, n), hits[:, 0], ev), got[:, 0])
    assert np.isnan(weighted_recall(np.ones((1, n)), hits[:, 0], np.zeros(n, bool))).all()


def test_weighted_pr_auc_equals_pr_auc_of_the_resampled_queries():
    rng = np.random.default_rng(2)
    n = 80
    conf = np.round(rng.normal(size=n), 1)  # ties: equal confidences share a threshold
    conf[rng.random(n) < 0.1] = -np.inf  # no match
    correct = rng.random(n) < 0.6
    has_pos = rng.random(n) < 0.9
    ignore = rng.random(n) < 0.1
    idx = block_bootstrap_indices(n, 4, n_boot=30, seed=5)
    w = counts(idx, n)
    for ign in (None, ignore):
        got = weighted_pr_auc(w, conf, correct, has_pos, ign)
        for b, row in enumerate(idx):
            want = precision_recall(conf[row], correct[row], has_pos[row], None if ign is None else ign[row]).auc
            assert got[b] == pytest.approx(want, abs=1e-12)
    ones = np.ones((1, n))
    assert weighted_pr_auc(ones, conf, correct, has_pos)[0] == pytest.approx(precision_recall(conf, correct, has_pos).auc)


def test_mcnemar_exact_on_hand_counts():
    def hits(both, only_a, only_b, neither):
        a = [1] * both + [1] * only_a + [0] * only_b + [0] * neither
        b = [1] * both + [0] * only_a + [1] * only_b + [0] * neither
        return np.array(a, bool), np.array(b, bool)

    r = mcnemar_exact(*hits(50, 1, 7, 10))
    assert (r.only_a, r.only_b) == (1, 7)
    assert r.pvalue == pytest.approx(2 * (1 + 8) / 2**8)  # 2 P(X <= 1), X ~ Bin(8, 1/2)
    assert mcnemar_exact(*hits(3, 0, 5, 0)).pvalue == pytest.approx(2 / 2**5)
    assert mcnemar_exact(*hits(3, 4, 4, 2)).pvalue == pytest.approx(1.0)
    assert mcnemar_exact(*hits(3, 0, 0, 2)) == mcnemar_exact(*hits(5, 0, 0, 0))  # no disagreement: p = 1
    a, b = hits(0, 1, 7, 0)
    assert mcnemar_exact(a, b, evaluated=np.arange(8) < 2).only_b == 1  # only the evaluated queries count
    with pytest.raises(ValueError, match="same queries"):
        mcnemar_exact(a, b[:3])


def ar1_hits(rng: np.random.Generator, n_series: int, n: int, phi: float, p: float) -> np.ndarray:
    """Stationary AR(1) latent thresholded at its p-quantile: P(hit) = p exactly, correlated in time."""
    e = rng.normal(size=(n_series, n))
    e[:, 0] /= np.sqrt(1 - phi**2)  # start in the stationary distribution
    z = lfilter([np.sqrt(1 - phi**2)], [1, -phi], e, axis=1)
    return z < stats.norm.ppf(p)


def coverage(data: np.ndarray, p: float, block: int | None, level: float = 0.9) -> float:
    covered = 0
    ev = np.ones(data.shape[1], bool)
    for i, x in enumerate(data):
        b = block or default_block_length([x])
        lo, hi = percentile_interval(block_bootstrap(lambda w: weighted_recall(w, x, ev), x.size, b, n_boot=400, seed=i), level)
        covered += lo <= p <= hi
    return covered / len(data)


def test_intervals_cover_the_true_value_at_the_nominal_rate():
    rng = np.random.default_rng(11)
    p, n, trials = 0.7, 400, 150
    iid = rng.random((trials, n)) < p
    cov_iid = coverage(iid, p, block=1)
    assert 0.83 <= cov_iid <= 0.96  # nominal 0.90; binomial sd over 150 trials ~0.025
    assert 0.83 <= coverage(iid, p, block=None) <= 0.96  # the automatic block length is harmless without correlation

    # correlated over ~10 queries (like hits along a route): effective sample ~10x smaller
    correlated = ar1_hits(rng, trials, 2 * n, phi=0.8, p=p)
    cov_naive = coverage(correlated, p, block=1)
    cov_block = coverage(correlated, p, block=None)
    assert cov_naive < 0.65  # the iid bootstrap ignores the correlation: far too narrow
    # block bootstrap: near nominal (percentile block intervals run a little narrow with only
    # ~40 blocks: about 0.84 here, 0.85 for phi=0.9 on 1000 queries, 0.79 on 400)
    assert cov_block >= 0.78 and cov_block > cov_naive + 0.2


def test_auto_block_length_follows_the_correlation():
    rng = np.random.default_rng(4)
    assert auto_block_length(rng.random(2000) < 0.5) < 3
    short = auto_block_length(ar1_hits(rng, 1, 2000, 0.5, 0.5)[0])
    long = auto_block_length(ar1_hits(rng, 1, 2000, 0.95, 0.5)[0])
    assert 1 < short < long <= 3 * np.sqrt(2000)
    assert auto_block_length(np.ones(100)) == 1.0  # no variance
    # blocks of a constant value repeated: correlation length ~ the run length
    runs = np.repeat(rng.random(100) < 0.5, 20)
    assert auto_block_length(runs) > 10
    assert default_block_length([rng.random(500) < 0.5], seq_len=7) == 7  # a window's overlap at least
    assert default_block_length([runs[:40]], seq_len=1) <= 20  # at most half the queries


# --- intervals of a results folder (vprbench.reporting.intervals) ---------------------------------

import json  # noqa: E402
import logging  # noqa: E402
from pathlib import Path  # noqa: E402

from vprbench.running.records import SCHEMA, SCHEMA_VERSION, identity_key, seal  # noqa: E402

NS = (1, 5, 10, 20)


def fake_result(root: Path, label: str, family: str, first_hit: np.ndarray, evaluated: np.ndarray, confidence: np.ndarray,
                seed: int = 0, k: int = 20, dataset: str = "fake", fingerprint: str = "f" * 16, seq_len: int = 5,
                recall_override: dict | None = None, peak_mb: float = 100.0) -> dict:
    """Write one record and its predictions file as the runner does; metrics computed here by brute force."""
    nq = first_hit.size
    rel = Path("predictions") / dataset / label / f"{label}-seed{seed}-{fingerprint[:4]}.npz"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    indices = np.tile(np.arange(k, dtype=np.int32), (nq, 1))
    np.savez(root / rel, indices=indices, distances=np.zeros((nq, k), np.float32), confidence=confidence)
    per_query = rel.with_name(rel.stem + "-per-query.npz")
    np.savez(root / per_query, first_hit=first_hit.astype(np.int32), evaluated=evaluated, query_mask=np.ones(nq, bool),
             has_positive=evaluated, pr_ignore=np.zeros(nq, bool), matched=np.ones(nq, bool))
    recall = {}
    for n in NS:
        hits = [(f >= 0 and f < n) for f, e in zip(first_hit, evaluated) if e]
        recall[str(n)] = None if n > k else sum(hits) / len(hits)
    recall.update(recall_override or {})
    pr = precision_recall(confidence, first_hit == 0, evaluated)
    record = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "key": f"{label}{seed}", "group_key": f"{label}-{fingerprint}-{seq_len}",
        "job": {"method": label.split()[0], "params": {"preset": "cpu"}, "label": label, "family": family, "dataset": dataset,
                "dataset_fingerprint": fingerprint, "split": "test", "query": "q", "seq_len": seq_len, "boundary": "shift",
                "protocol": "default", "seed": seed, "seeded": True, "train_dataset": None, "training": None, "trains": False,
                "user_labels": [label], "resolved_params": {"alpha": 1, "preset": "cpu"}, "device": "cpu", "top_k": k,
                "single_match": False},
        "protocol": {"name": "default", "text": "protocol default: radius 1 m, centre frame, queries without a positive excluded"},
        "dataset": {"name": dataset, "description": "a fake dataset", "radius": 1.0, "position_unit": "m", "n_reference": 50,
                    "n_query": nq},
        "metrics": {"recall_at": recall, "n_queries": nq, "n_evaluated": int(evaluated.sum()), "n_without_positive": int((~evaluated).sum()),
                    "recall_vs_radius": {"radii": [0.5, 1.0, 2.0], "recall_at_1": [recall["1"] / 2, recall["1"], recall["1"]]},
                    "pr": {"auc": pr.auc, "recall_at_100_precision": pr.recall_at_100_precision,
                           "precision": pr.precision.tolist(), "recall": pr.recall.tolist()}},
        "timings_s": {"fit": 0.5, "rank": 0.25, "total": 1.0}, "memory_mb": {"peak_rss": peak_mb, "peak_rss_increase": 1.0},
        "environment": {"packages": {"numpy": np.__version__}, "python": "3.11", "platform": "test", "vprbench": "0.1.0"},
        "predictions": str(rel), "per_query": str(per_query), "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
    }
    evaluation = Path("splits") / f"{dataset}-{fingerprint[:4]}.npz"
    (root / evaluation).parent.mkdir(parents=True, exist_ok=True)
    np.savez(root / evaluation, placeholder=np.zeros(1))
    record["evaluation_data"] = str(evaluation)
    record["identity"] = {"ranking": {"dataset": dataset, "split": "test", "method": {"name": label}, "seed": seed},
                          "seq_len": seq_len, "boundary": "shift", "protocol": {"name": "default"}}
    record["key"] = identity_key(record["identity"])
    record = seal(record, root)
    path = root / "records" / dataset / label / f"{record['key']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


def first_hits(rng: np.random.Generator, hit1: np.ndarray) -> np.ndarray:
    """first_hit ranks: 0 where hit1, else a rank in 1..25 (25 = beyond the top 20: -1)."""
    f = np.where(hit1, 0, rng.integers(1, 26, hit1.size))
    return np.where(f >= 20, -1, f)


def fake_run(root: Path, n: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Three methods on the same n queries: 'best' (90 % top-1), 'close' (best with 4 queries flipped),
    'weak' (50 %), each with a confidence that tracks correctness; 'close' has two seeds."""
    rng = np.random.default_rng(seed)
    ev = np.ones(n, bool)
    ev[rng.choice(n, 10, replace=False)] = False
    best = rng.random(n) < 0.9
    close = best.copy()
    flip = np.flatnonzero(best & ev)[:3].tolist() + np.flatnonzero(~best & ev)[:1].tolist()
    close[flip] = ~close[flip]
    close2 = best.copy()
    close2[np.flatnonzero(best)[5:7]] = False
    weak = rng.random(n) < 0.5
    out = {}
    for label, family, hits, s in (("best", "sequence-matching", best, 0), ("close", "sequential-descriptor", close, 0),
                                   ("close", "sequential-descriptor", close2, 1), ("weak", "single-image", weak, 0)):
        fh = first_hits(rng, hits)
        conf = np.where(hits, 1.0, 0.0) + rng.normal(0, 0.7, n)
        fake_result(root, label, family, fh, ev, conf, seed=s)
        out[f"{label}{s}"] = fh
    out["evaluated"] = ev
    return out


def load(root: Path):
    from vprbench.reporting.tables import load_records, records_frame, summary_table

    records = load_records(root)
    frame = records_frame(records)
    return summary_table(frame), frame, records


def test_intervals_equal_explicit_resampling_and_mark_the_best(tmp_path):
    from vprbench.reporting.intervals import add_intervals

    arrays = fake_run(tmp_path)
    summary, frame, records = load(tmp_path)
    out = add_intervals(summary, frame, records, tmp_path, block_length=8, n_boot=300, seed=4).set_index("label")
    ev = arrays["evaluated"]
    idx = block_bootstrap_indices(ev.size, 8, 300, seed=4)

    def reps(fh, n):  # brute force: Recall@n of each explicitly resampled query set
        hit = (fh >= 0) & (fh < n)
        return np.array([hit[row][ev[row]].mean() for row in idx])

    for label, keys in (("best", ["best0"]), ("weak", ["weak0"]), ("close", ["close0", "close1"])):
        for n in (1, 5):
            mean = np.mean([reps(arrays[k], n) for k in keys], axis=0)  # mean over seeds, same resamples
            assert out.loc[label, f"R@{n} lo"] == pytest.approx(np.percentile(mean, 2.5))
            assert out.loc[label, f"R@{n} hi"] == pytest.approx(np.percentile(mean, 97.5))
    assert out.loc["best", "R@1 vs best"] == "best"
    assert out.loc["close", "R@1 vs best"] == "indistinguishable"  # 3-4 queries of 390 differ
    assert out.loc["weak", "R@1 vs best"] == "worse"
    assert out.loc["weak", "R@1 diff hi"] < 0 and out.loc["close", "R@1 diff lo"] < 0 <= out.loc["close", "R@1 diff hi"]
    # exact McNemar against the best, on the lowest seed: 'close' seed 0 flips 3 hits and 1 miss
    assert out.loc["close", "R@1 McNemar p"] == pytest.approx(mcnemar_exact(arrays["close0"] == 0, arrays["best0"] == 0, ev).pvalue)
    assert out.loc["close", "R@1 McNemar p"] == pytest.approx(2 * (1 + 4) / 2**4)  # only_a = 1, only_b = 3
    for label in ("best", "close", "weak"):
        assert out.loc[label, "PR-AUC lo"] <= out.loc[label, "PR-AUC"] <= out.loc[label, "PR-AUC hi"]
        assert out.loc[label, "ci block"] == 8 and not out.loc[label, "ci block auto"] and out.loc[label, "ci queries"] == 400
    assert out.loc["best", "PR-AUC vs best"] == "best" and out.loc["weak", "PR-AUC vs best"] == "worse"


def test_default_block_length_is_per_table_from_the_data(tmp_path):
    from vprbench.reporting.intervals import add_intervals

    arrays = fake_run(tmp_path)
    summary, frame, records = load(tmp_path)
    out = add_intervals(summary, frame, records, tmp_path, n_boot=50)
    ev = arrays["evaluated"]
    want = default_block_length([(arrays[k] == 0)[ev] for k in ("weak0", "close0", "best0")], seq_len=5)
    assert (out["ci block"] == want).all() and out["ci block auto"].all() and want >= 5


def test_single_match_rows_have_only_recall_at_1(tmp_path):
    from vprbench.reporting.intervals import add_intervals

    rng = np.random.default_rng(0)
    ev = np.ones(100, bool)
    fh = np.where(rng.random(100) < 0.6, 0, -1)
    fake_result(tmp_path, "single", "sequence-matching", fh, ev, rng.random(100), k=1)
    summary, frame, records = load(tmp_path)
    out = add_intervals(summary, frame, records, tmp_path, n_boot=100, block_length=5).iloc[0]
    assert out["R@1 lo"] < out["R@1"] < out["R@1 hi"]
    assert np.isnan(out["R@5 lo"]) and out["R@5 vs best"] == "" and out["R@1 vs best"] == "best"


def test_unusable_predictions_warn_once_and_give_no_interval(tmp_path, caplog):
    """A record whose files are gone or edited is set aside at load; one whose per-query results do not give its
    (sealed) Recall@N gets no interval and a warning."""
    from vprbench.reporting.intervals import add_intervals

    rng = np.random.default_rng(1)
    ev = np.ones(60, bool)
    fh = np.where(rng.random(60) < 0.7, 0, 3)
    fake_result(tmp_path, "ok", "single-image", fh, ev, rng.random(60))
    fake_result(tmp_path, "stale", "single-image", fh, ev, rng.random(60), recall_override={"1": 0.123})
    gone = fake_result(tmp_path, "gone", "single-image", fh, ev, rng.random(60))
    (tmp_path / gone["per_query"]).unlink()
    edited = fake_result(tmp_path, "edited", "single-image", fh, ev, rng.random(60))
    path = tmp_path / "records" / "fake" / "edited" / f"{edited['key']}.json"
    stored = json.loads(path.read_text())
    stored["metrics"]["recall_at"]["1"] = 0.5
    path.write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING, logger="vprbench"):
        summary, frame, records = load(tmp_path)
    assert "its per_query file" in caplog.text and "is missing or unreadable" in caplog.text
    assert "edited after it was written" in caplog.text
    assert set(summary["label"]) == {"ok", "stale"}
    assert list((tmp_path / "records" / "fake" / "edited").glob("*.invalid-*"))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vprbench"):
        out = add_intervals(summary, frame, records, tmp_path, n_boot=50, block_length=3).set_index("label")
    assert "does not reproduce the record's Recall@N" in caplog.text
    assert np.isfinite(out.loc["ok", "R@1 lo"])
    assert np.isnan(out.loc["stale", "R@1 lo"]) and np.isnan(out.loc["stale", "PR-AUC lo"])
    with pytest.raises(Exception, match="block length must be a positive integer"):
        add_intervals(summary, frame, records, tmp_path, block_length=0)


def test_real_runner_output_is_reproduced_per_query(tmp_path, caplog):
    """The runner's predictions files give back its recorded Recall@N and PR-AUC (so intervals are of the reported numbers)."""
    from conftest import make_toy_dataset

    from vprbench.plugins.registry import discover
    from vprbench.plugins.specs import expand
    from vprbench.reporting.intervals import add_intervals
    from vprbench.running.runner import RunConfig, Runner

    reg = discover()
    Runner(RunConfig(dataset="toy", out=tmp_path, seq_len=3, boundary="drop"), reg, [make_toy_dataset(n=200)]).run(
        expand("netvlad,seqmatch,gism", [], reg))
    summary, frame, records = load(tmp_path)
    caplog.clear()  # (the run itself warned that L=3 under "drop" leaves queries out)
    with caplog.at_level(logging.WARNING, logger="vprbench"):
        out = add_intervals(summary, frame, records, tmp_path, n_boot=200)
    assert "no confidence" not in caplog.text, caplog.text
    assert len(out) == 3
    for _, row in out.iterrows():
        assert row["R@1 lo"] <= row["R@1"] <= row["R@1 hi"] and row["PR-AUC lo"] <= row["PR-AUC"] <= row["PR-AUC hi"]
        assert row["ci block"] >= 3  # at least the sequence length
