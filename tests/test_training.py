"""The shared training engine: loss, mining, training distances, checkpoints, determinism, bad input."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import make_toy_dataset
from helpers import FAST, fit

from vprbench.core.errors import ConfigError, DataError, UnknownNameError
from vprbench.learning import checkpoints, presets
from vprbench.learning.mining import TripletData, mine, window_frame_distances
from vprbench.learning.models import SeqNetModel, encode_frames
from vprbench.learning.trainer import output_distance, triplet_loss
from vprbench.matching.distances import l2_normalise
from vprbench.matching.sequence import sequence_distances
from vprbench.plugins.api import RunContext
from vprbench.plugins.registry import default_registry


def test_triplet_loss_hand_computed():
    d_pos = torch.tensor([0.5, 0.2])
    d_neg = torch.tensor([[0.6, 1.0], [0.1, 0.9]])
    mask = torch.tensor([[True, True], [True, False]])
    # hinges: 0.5-0.6+0.3=0.2, 0.5-1.0+0.3<0 -> 0, 0.2-0.1+0.3=0.4, (masked); mean over 3 valid pairs
    assert float(triplet_loss(d_pos, d_neg, 0.3, mask)) == pytest.approx(0.6 / 3)
    assert float(triplet_loss(d_pos, d_neg, 0.3)) == pytest.approx((0.2 + 0.4 + 0.0 + 0.0) / 4)


def test_sequence_loss_hand_computed():
    # two-frame windows of 2-D unit outputs; d_seq = mean of the aligned frame distances
    q = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    p = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # frame distances 0 and sqrt(2)
    n = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # frame distances sqrt(2) and 0
    d_pos = output_distance(q, p, "seqmatch")
    d_neg = output_distance(q[:, None], n, "seqmatch")
    assert float(d_pos) == pytest.approx(math.sqrt(2) / 2)
    assert float(d_neg) == pytest.approx(math.sqrt(2) / 2)
    assert float(triplet_loss(d_pos, d_neg, math.sqrt(0.1))) == pytest.approx(math.sqrt(0.1))
    # single: centre position of L' = 2 is index 1
    assert float(output_distance(q, p, "single")) == pytest.approx(math.sqrt(2))
    assert float(output_distance(q[:, None], n, "single")) == pytest.approx(0.0)


def _brute_mine(dist, positives, non_negatives, candidates, n_neg, margin, cache):
    pos_out, neg_out = [], []
    for i in range(dist.shape[0]):
        pidx = [j for j in range(dist.shape[1]) if positives[i, j] and np.isfinite(dist[i, j])]
        if not pidx:
            pos_out.append(-1)
            neg_out.append([-1] * n_neg)
            continue
        p = min(pidx, key=lambda j: (dist[i, j], j))
        pool = set(candidates[i]) | {c for c in cache[i] if c >= 0}
        viol = sorted((dist[i, j], j) for j in pool if dist[i, j] < dist[i, p] + margin)
        negs = [j for _, j in viol[:n_neg]]
        pos_out.append(p)
        neg_out.append(negs + [-1] * (n_neg - len(negs)))
    return np.array(pos_out), np.array(neg_out)


@pytest.mark.parametrize("n_candidates", [1000, 7])
def test_mining_matches_brute_force(n_candidates):
    rng = np.random.default_rng(3)
    nq, nr, n_neg, margin = 12, 30, 4, 0.3
    dist = rng.uniform(0, 1, (nq, nr)).astype(np.float32)
    dist[:, 5] = np.inf  # a reference without a window
    ref_pos = np.arange(nr)
    q_pos = rng.integers(0, nr, nq)
    positives = np.abs(ref_pos[None, :] - q_pos[:, None]) <= 1
    non_negatives = np.abs(ref_pos[None, :] - q_pos[:, None]) <= 3
    cache = np.full((nq, n_neg), -1)
    cache[0, :2] = [np.flatnonzero(~non_negatives[0])[0], np.flatnonzero(~non_negatives[0])[1]]
    pos, neg = mine(dist, positives, non_negatives, np.random.default_rng(9), n_neg, n_candidates, margin, cache)
    # reference: the same random stream gives each query its candidate set
    keys = np.random.default_rng(9).random((nq, nr))
    keys[non_negatives | ~np.isfinite(dist)] = np.inf
    cands = [[j for j in np.argsort(keys[i], kind="stable")[:n_candidates] if np.isfinite(keys[i, j])] for i in range(nq)]
    bpos, bneg = _brute_mine(dist, positives, non_negatives, cands, n_neg, margin, cache)
    np.testing.assert_array_equal(pos, bpos)
    np.testing.assert_array_equal(neg, bneg)
    # negatives are never within the negative radius, never the no-window reference, and violate the margin
    for i in range(nq):
        for j in neg[i][neg[i] >= 0]:
            assert not non_negatives[i, j] and j != 5 and dist[i, j] < dist[i, pos[i]] + margin


def test_mining_skips_queries_without_violating_negative():
    dist = np.array([[0.1, 0.9, 0.95], [0.5, 0.6, 0.55]], dtype=np.float32)
    positives = np.array([[True, False, False], [True, False, False]])
    non_neg = positives.copy()
    pos, neg = mine(dist, positives, non_neg, np.random.default_rng(0), n_neg=2, n_candidates=10, margin=0.3)
    assert pos.tolist() == [0, 0]
    assert neg[0].tolist() == [-1, -1]  # 0.9 and 0.95 are beyond 0.1 + 0.3
    assert neg[1].tolist() == [2, 1]  # hardest first


@pytest.mark.parametrize("kind,variant", [("seqmatch", "meanOfPairs"), ("single", "centerOnly")])
def test_training_distance_equals_evaluator(kind, variant):
    rng = np.random.default_rng(1)
    L = 5
    q = l2_normalise(rng.normal(size=(40, 8)))
    r = l2_normalise(rng.normal(size=(50, 8)))
    q_starts = np.array([0, 7, 20, 35])
    r_starts = np.arange(0, 46, 3)
    ref = sequence_distances(q, r, q_starts, r_starts, L, variant=variant)
    np.testing.assert_allclose(window_frame_distances(q, r, q_starts, r_starts, L, kind), ref, rtol=1e-5, atol=1e-6)
    # the loss's torch distance on model outputs equals the evaluator on the same outputs
    model = SeqNetModel(8, 6, 1)
    eq, er = encode_frames(model, q, torch.device("cpu")), encode_frames(model, r, torch.device("cpu"))
    ev = sequence_distances(eq, er, q_starts, r_starts, L, variant=variant)
    with torch.no_grad():
        oq = model(torch.from_numpy(q[q_starts[:, None] + np.arange(L)]))
        orr = model(torch.from_numpy(r[r_starts[:, None] + np.arange(L)]))
        td = output_distance(oq[:, None], orr[None, :], kind).numpy()
    np.testing.assert_allclose(td, ev, rtol=1e-5, atol=1e-5)


def test_model_matches_conv1d():
    torch.manual_seed(0)
    for w in (1, 3):
        m = SeqNetModel(16, 8, w)
        x = torch.randn(4, 5, 16)
        y = m.conv(torch.nn.functional.normalize(x, dim=-1).transpose(1, 2))
        ref = torch.nn.functional.normalize(y.transpose(1, 2), dim=-1) if w == 1 else torch.nn.functional.normalize(y.mean(-1), dim=-1)[:, None]
        torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-6)


def test_identity_init_is_raw_matching():
    m = SeqNetModel(8, 0, 1, init="identity")
    x = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    np.testing.assert_allclose(encode_frames(m, x, torch.device("cpu")), l2_normalise(x), atol=1e-6)


def test_training_windows_use_drop_policy(toy_dataset):
    data = TripletData.from_split(toy_dataset.split("train"), 5)
    n = len(toy_dataset.split("train").query)
    assert data.train_queries.min() >= 2 and data.train_queries.max() <= n - 3
    assert not data.r_valid[:2].any() and data.r_valid[2:-2].all()


def test_deterministic_under_seed(toy_dataset):
    a = fit("seqmatchnet", toy_dataset, RunContext(seed=5), **FAST)
    b = fit("seqmatchnet", toy_dataset, RunContext(seed=5), **FAST)
    c = fit("seqmatchnet", toy_dataset, RunContext(seed=6), init="default", **FAST)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv.weight"], sc["conv.weight"])
    assert a.training_info["history"][1]["queries_trained"] > 0


def test_checkpoint_roundtrip_ranks_identically(toy_dataset, tmp_path):
    ctx = RunContext(seed=0, cache_dir=tmp_path)
    test = toy_dataset.split("test")
    a = fit("seqnet", toy_dataset, ctx, **FAST)
    assert a.training_info["cache_hit"] is False
    b = fit("seqnet", toy_dataset, ctx, **FAST)
    assert b.training_info["cache_hit"] is True and b.training_info["cache_key"] == a.training_info["cache_key"]
    ra, rb = a.rank(test, ctx), b.rank(test, ctx)
    np.testing.assert_array_equal(ra.indices, rb.indices)
    np.testing.assert_array_equal(ra.distances, rb.distances)
    # any hyperparameter or the seed changes the key: retrained, not reused
    c = fit("seqnet", toy_dataset, ctx, lr=5e-4, **FAST)
    d = fit("seqnet", toy_dataset, RunContext(seed=1, cache_dir=tmp_path), **FAST)
    assert not c.training_info["cache_hit"] and not d.training_info["cache_hit"]
    assert len({a.training_info["cache_key"], c.training_info["cache_key"], d.training_info["cache_key"]}) == 3
    state, config = checkpoints.load_checkpoint(a.training_info["checkpoint"])
    assert config["model"]["in_dim"] == 16 and config["cache_parts"]["hyperparameters"]["lr"] == a.resolved_params["lr"]


def test_cache_key_uses_training_data_not_context_fingerprint(tmp_path):
    a_ds, b_ds = make_toy_dataset(seed=0), make_toy_dataset(seed=1)
    ctx = RunContext(seed=0, cache_dir=tmp_path, dataset_fingerprint="same")
    a = fit("seqmatchnet", a_ds, ctx, **FAST)
    b = fit("seqmatchnet", b_ds, ctx, **FAST)
    assert a.training_info["cache_key"] != b.training_info["cache_key"]
    # cross-dataset: trained on A, evaluated on B
    r = a.rank(b_ds.split("test"), ctx)
    assert r.indices.shape == (len(b_ds.split("test").query), ctx.top_k)


def test_bad_checkpoints_are_refused(tmp_path):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="corrupt or not a vprbench checkpoint"):
        checkpoints.load_checkpoint(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weight": torch.zeros(2)}, foreign)
    with pytest.raises(DataError, match="not a vprbench checkpoint"):
        checkpoints.load_checkpoint(foreign)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"format": "vprbench-checkpoint", "x": Evil()}))
    with pytest.raises(DataError, match="weights_only=True"):
        checkpoints.load_checkpoint(evil)
    assert not marker.exists()
    with pytest.raises(DataError, match="does not exist"):
        checkpoints.load_checkpoint(tmp_path / "missing.pt")


def test_cached_model_with_other_input_dimension(monkeypatch, tmp_path):
    monkeypatch.setattr(checkpoints, "cache_key", lambda parts, length=20: "fixed")
    ctx = RunContext(seed=0, cache_dir=tmp_path)
    fit("seqmatchnet", make_toy_dataset(dim=16), ctx, **FAST)
    # the file under the (forced) same name holds a model for other data: retrained, never used
    with pytest.warns(UserWarning, match="trained for other settings"):
        m = fit("seqmatchnet", make_toy_dataset(dim=8), ctx, **FAST)
    assert m.model.in_dim == 8 and not m.training_info["cache_hit"]


def test_rank_with_other_input_dimension(toy_dataset):
    m = fit("seqnet-s1", toy_dataset, RunContext(), **FAST)
    with pytest.raises(DataError, match="trained on D=16"):
        m.rank(make_toy_dataset(dim=8).split("test"), RunContext())


def test_no_training_queries(toy_dataset):
    train = toy_dataset.split("train")
    far = replace(train, query=replace(train.query, positions=train.query.positions + 1e4))
    with pytest.raises(DataError, match="no query frame has a non-trivial positive"):
        TripletData.from_split(far, 5)


def test_negative_radius_not_larger(toy_dataset):
    train = toy_dataset.split("train")
    with pytest.raises(DataError, match="negative radius"):
        TripletData.from_split(replace(train, negative_radius=1.0), 5)
    with pytest.raises(DataError, match="negative radius"):
        TripletData.from_split(replace(train, negative_radius=None, nontrivial_radius=2.0), 5)


def test_unknown_preset_and_parameter():
    reg = default_registry()
    with pytest.raises(ConfigError, match="preset"):
        reg.create("seqmatchnet", preset="gpu")
    with pytest.raises(UnknownNameError, match="parameter"):
        reg.create("seqmatchnet", learning_rate=0.1)
    with pytest.raises(UnknownNameError, match="preset"):
        presets.resolve("seqnet", "fast")
    with pytest.raises(ConfigError, match="epochs"):
        reg.create("seqnet", epochs="2.5")
    with pytest.raises(ConfigError, match="filter_width"):
        presets.resolve("seqnet", "cpu", {"train_seq_len": 2, "filter_width": 3})


def test_paper_presets_restate_the_papers():
    smn = presets.resolve("seqmatchnet", "paper")
    assert (smn["optimizer"], smn["lr"], smn["momentum"], smn["weight_decay"]) == ("sgd", 1e-3, 0.9, 1e-3)
    assert (smn["lr_step"], smn["lr_gamma"], smn["epochs"], smn["batch_size"], smn["out_dim"]) == (5, 0.5, 50, 16, 4096)
    assert smn["margin"] == pytest.approx(math.sqrt(0.1)) and (smn["n_neg"], smn["n_neg_candidates"]) == (10, 1000)
    sn = presets.resolve("seqnet", "paper")
    assert (sn["lr"], sn["lr_step"], sn["epochs"], sn["filter_width"], sn["out_dim"]) == (1e-4, 50, 200, 3, 4096)
    # CLI strings are typed from the preset
    m = default_registry().create("seqmatchnet", epochs="3", lr="0.01", loss="single")
    assert m.resolved_params["epochs"] == 3 and m.resolved_params["lr"] == 0.01 and m.resolved_params["loss"] == "single"


# -- model selection, mining that keeps training, thread pools, presets per scale ----------------

def _toy_engine(ds, **hp):
    """A per-frame model, the training data and resolved cpu hyperparameters of the toy dataset."""
    data = TripletData.from_split(ds.split("train"), 5)
    params = presets.resolve("seqmatchnet", "cpu", {"epochs": 4, "batch_size": 8, "patience": 0, **hp}, n_train_queries=data.train_queries.size)
    return SeqNetModel(16, 0, 1, init="identity"), data, params


def test_epoch_selection_ties_go_to_later_epoch_and_higher_mrr(toy_dataset):
    from vprbench.learning.trainer import train_triplet

    model, data, hp = _toy_engine(toy_dataset, select="recall@5")
    # scripted validation: epoch 0 .. 4
    script = iter([{"recall@5": 0.5, "mrr": 0.4}, {"recall@5": 0.7, "mrr": 0.5}, {"recall@5": 0.7, "mrr": 0.6},
                   {"recall@5": 0.7, "mrr": 0.6}, {"recall@5": 0.6, "mrr": 0.9}])
    res = train_triplet(model, data, hp, 0, torch.device("cpu"), validate=lambda m: next(script))
    # 0.7 ties at epochs 1-3: higher MRR wins (2 over 1), equal MRR goes to the later epoch (3)
    assert res.best_epoch == 3 and res.best_val == {"recall@5": 0.7, "mrr": 0.6} and res.untrained is False
    assert [h["val_recall5"] for h in res.history] == [0.5, 0.7, 0.7, 0.7, 0.6]
    # the kept weights are epoch 3's: training again for 3 epochs reproduces them
    model3, data3, hp3 = _toy_engine(toy_dataset, select="recall@5", epochs=3)
    train_triplet(model3, data3, hp3, 0, torch.device("cpu"))
    assert torch.equal(model.state_dict()["conv.weight"], model3.state_dict()["conv.weight"])


def test_no_better_than_epoch0_is_untrained(toy_dataset):
    from vprbench.learning.trainer import train_triplet

    model, data, hp = _toy_engine(toy_dataset)
    flat = {"recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0}  # saturated validation
    res = train_triplet(model, data, hp, 0, torch.device("cpu"), validate=lambda m: dict(flat))
    assert res.untrained is True and res.best_epoch == 4  # ties: the last epoch is kept, but it is no better
    res = train_triplet(*_toy_engine(toy_dataset), 0, torch.device("cpu"))
    assert res.untrained is None  # no validation: unknown


def test_patience_counts_epochs_without_strict_improvement(toy_dataset):
    from vprbench.learning.trainer import train_triplet

    model, data, hp = _toy_engine(toy_dataset, epochs=10, patience=2)
    script = iter([{"mrr": 0.1}, {"mrr": 0.3}, {"mrr": 0.3}, {"mrr": 0.2}, {"mrr": 0.9}])
    res = train_triplet(model, data, hp, 0, torch.device("cpu"), validate=lambda m: next(script))
    assert len(res.history) == 4 and res.best_epoch == 2  # epochs 2 and 3 did not improve on 1: stop after 3


def test_negative_gaps_and_adapted_margin():
    from vprbench.learning.mining import adapt_margin, negative_gaps

    dist = np.array([[0.2, 0.9, 0.5, np.inf], [0.4, 0.3, 0.8, 0.7], [0.1, 0.2, 0.3, 0.4]])
    positives = np.array([[True, False, False, False], [True, True, False, False], [False, False, False, False]])
    non_neg = positives | np.array([[False, False, True, False], [False] * 4, [False] * 4])
    # q0: positive 0.2, negatives {1: 0.9} (2 is too close, 3 has no window) -> 0.7; q1: 0.3 vs min(0.8, 0.7) -> 0.4; q2: none
    np.testing.assert_allclose(negative_gaps(dist, positives, non_neg), [0.7, 0.4, np.nan])
    gaps = np.array([0.7, 0.4, np.nan, 0.05])
    assert adapt_margin(gaps, 0.1, 0.2, 1.0) == 0.1  # 1 of 3 already violate 0.1
    assert adapt_margin(gaps, 0.1, 0.6, 1.0) == pytest.approx(0.4 + 1e-6)  # 2 of 3 must: just above the 2nd gap
    assert adapt_margin(gaps, 0.1, 1.0, 0.5) == 0.5  # capped
    assert adapt_margin(gaps, 0.1, 0.0, 1.0) == 0.1


def test_mining_keeps_training_when_margins_are_met(toy_dataset):
    from vprbench.learning.trainer import train_triplet

    # a tiny margin: the identity start already separates almost every query by it
    runs = {}
    for adapt in (0.0, 0.6):
        model, data, hp = _toy_engine(toy_dataset, margin=0.01, margin_adapt=adapt, margin_growth=100.0, epochs=2)
        runs[adapt] = train_triplet(model, data, hp, 0, torch.device("cpu")).history
    # without adaptation (the papers) the toy set leaves no query with a violating negative: nothing trains
    assert all(h["trained_fraction"] == 0.0 and h["margin"] is None and h["hard_rounds"] == 0 for h in runs[0.0])
    for h in runs[0.6]:
        assert h["trained_fraction"] >= 0.6 and h["hard_rounds"] >= 1 and h["margin"] > 0.01
        assert h["queries_trained"] + h["queries_skipped"] == data.train_queries.size


def test_thread_pools_set_for_torch_and_blas():
    from threadpoolctl import threadpool_info

    from vprbench.learning.trainer import deterministic

    def blas() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before, torch_before = blas(), torch.get_num_threads()
    with deterministic(0, threads=1):
        assert torch.get_num_threads() == 1 and blas() and set(blas()) == {1}
    assert blas() == before and torch.get_num_threads() == torch_before


def test_cpu_preset_scales_with_the_training_set():
    small, medium, large = (presets.resolve("seqmatchnet", "cpu", n_train_queries=n) for n in (99, 1139, 15000))
    assert (small["pca_dim"], small["batch_size"], small["epochs"]) == (4096, 8, 20)
    assert (medium["pca_dim"], medium["epochs"]) == (512, 12) and (large["epochs"], large["lr"]) == (8, 1e-4)
    assert presets.resolve("seqmatchnet", "cpu-small") == small and presets.resolve("seqmatchnet", "cpu") == medium
    assert presets.concrete_preset("seqnet", "cpu", 999) == "cpu-small" and presets.concrete_preset("seqnet", "cpu", 1000) == "cpu-medium"
    assert presets.resolve("seqvlad", "cpu", n_train_queries=50)["pca_dim"] == 512  # a method keeps its own setting
    # the paper preset does not scale, never adapts the margin and selects by Recall@5
    assert presets.resolve("seqmatchnet", "paper", n_train_queries=99) == presets.resolve("seqmatchnet", "paper")
    assert presets.resolve("seqmatchnet", "paper")["margin_adapt"] == 0.0 and presets.resolve("seqmatchnet", "paper")["select"] == "recall@5"
    with pytest.raises(ConfigError, match="margin_growth"):
        presets.resolve("seqmatchnet", "cpu", {"margin_growth": 0.5})
    with pytest.raises(UnknownNameError, match="preset"):
        presets.resolve("netvlad-trained", "cpu-small")


def test_fit_records_scale_projection_and_untrained_warning(toy_dataset, caplog):
    import logging

    log = logging.getLogger("vprbench")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        # pca_dim 8 < 16: a projection fitted on train + val (no labels), recorded; lr so small nothing moves
        m = fit("seqmatchnet", toy_dataset, RunContext(), pca_dim=8, lr=1e-12, **FAST)
    finally:
        log.removeHandler(handler)
    t = m.training_info
    assert t["preset_resolved"] == m.resolved_params["preset_resolved"] == "cpu-small" and t["n_train_queries"] < 1000
    assert t["pca"]["dim"] == 8 and t["pca"]["fit_rows"] == sum(len(toy_dataset.split(s).query) * 2 for s in ("train", "val"))
    assert t["untrained"] is True and [h["epoch"] for h in t["history"]][0] == 0
    assert any("did not beat the untrained model" in r for r in records)


def test_observe_adds_the_reference_map_to_the_projection(toy_dataset, tmp_path):
    ctx = RunContext(cache_dir=tmp_path)
    test = toy_dataset.split("test")
    a = fit("seqmatchnet", toy_dataset, ctx, pca_dim=8, **FAST)
    b = default_registry().create("seqmatchnet", pca_dim=8, **FAST)
    b.observe(test)
    b.fit(toy_dataset.split("train"), toy_dataset.split("val"), ctx)
    assert b.training_info["pca"]["fit_rows"] == a.training_info["pca"]["fit_rows"] + len(test.reference)
    assert b.training_info["cache_key"] != a.training_info["cache_key"] and not b.training_info["cache_hit"]
    with pytest.raises(ConfigError, match="before fit"):
        b.observe(test)
    c = fit("seqmatchnet", toy_dataset, ctx, pca_dim=8, pca_fit="train", **FAST)
    assert c.training_info["pca"]["fit_rows"] == 2 * len(toy_dataset.split("train").query)


def test_projection_capped_at_the_data_rank_with_a_warning():
    import logging

    ds = make_toy_dataset(dim=600)  # 600-D descriptors, 2 x (55 + 25) train + val frames to fit on
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: messages.append(r.getMessage())  # type: ignore[method-assign]
    logging.getLogger("vprbench").addHandler(handler)
    try:
        m = fit("seqnet-s1", ds, RunContext(), pca_dim=512, epochs=1, batch_size=8)
    finally:
        logging.getLogger("vprbench").removeHandler(handler)
    rows = 2 * (len(ds.split("train").query) + len(ds.split("val").query))
    assert m.training_info["pca"]["capped"] and m.training_info["pca"]["dim"] == m.model.pca_dim == rows
    assert m.model.out_dim == rows  # the learned layer works on the kept dimensions, no zero padding
    assert any(f"keeps {rows} of the 512 requested dimensions" in s for s in messages)


def test_observed_map_of_other_dimension_is_a_data_error(toy_dataset):
    m = default_registry().create("seqmatchnet", pca_dim=8, **FAST)
    m.observe(make_toy_dataset(dim=12).split("test"))
    with pytest.raises(DataError, match="observed map toy/test reference"):
        m.fit(toy_dataset.split("train"), toy_dataset.split("val"), RunContext())
