"""SeqVLAD and SeqGeM models against hand computations; the input projection; validation scores and epoch selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vprbench.core.errors import ConfigError, DataError
from vprbench.learning.models import SeqGeMModel, SeqNetModel, SeqVLADModel, build_model, encode_frames, encode_windows, fit_input_pca
from vprbench.learning.selection import selection_key, validation_scores
from vprbench.matching.distances import l2_normalise


def test_seqvlad_hand_computed():
    # K = 2 clusters at e1, e2; alpha = ln 3 makes the soft-assignment of e1 (3/4, 1/4) and of e2 (1/4, 3/4)
    m = SeqVLADModel(2, clusters=2)
    m.vlad.alpha = math.log(3.0)
    m.vlad.init_from_centroids(np.eye(2, dtype=np.float32))
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # V_1 = 3/4 (e1 - e1) + 1/4 (e2 - e1) = (-1/4, 1/4); V_2 = 1/4 (e1 - e2) + 3/4 (e2 - e2) = (1/4, -1/4)
    # intra-normalised (+-1/sqrt 2 each), flattened, L2-normalised: +-1/2
    out = m(x)
    assert out.shape == (1, 1, 4)
    torch.testing.assert_close(out[0, 0], torch.tensor([-0.5, 0.5, 0.5, -0.5]), atol=1e-6, rtol=0)
    # frame order does not matter; input scale does not either (frames are L2-normalised first)
    torch.testing.assert_close(m(torch.tensor([[[0.0, 3.0], [2.0, 0.0]]])), out, atol=1e-6, rtol=0)


def test_seqvlad_kmeans_init_and_alpha():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    frames = np.concatenate([c + 0.05 * rng.normal(size=(30, 3)) for c in centres]).astype(np.float32)
    m = SeqVLADModel(3, clusters=3)
    m.init_clusters(frames, seed=0)
    got = l2_normalise(m.vlad.centroids.detach().numpy())
    assert sorted(np.abs(got).argmax(1).tolist()) == [0, 1, 2]  # one centre per cluster
    z = l2_normalise(frames)
    dots = np.sort(z @ got.T, axis=1)
    assert m.vlad.alpha == pytest.approx(-math.log(0.01) / np.mean(dots[:, -1] - dots[:, -2]), rel=1e-5)
    # the assignment weights are alpha * unit centre, no bias
    np.testing.assert_allclose(m.vlad.conv.weight.detach().numpy()[:, :, 0, 0], m.vlad.alpha * got, rtol=1e-5, atol=1e-6)
    assert m.vlad.conv.bias is None


def test_seqgem_hand_computed():
    x = torch.tensor([[[0.6, 0.8], [0.8, -0.6]]])
    m = SeqGeMModel(2, out_dim=2, init="identity", p=2.0)
    # p = 2: per dimension sqrt(mean(max(f, eps)^2)): (sqrt(0.5), sqrt(0.32)), then L2-normalised
    g = np.array([math.sqrt(0.5), math.sqrt(0.32)])
    torch.testing.assert_close(m(x)[0, 0], torch.tensor(g / np.linalg.norm(g), dtype=torch.float32), atol=1e-5, rtol=0)
    # signed identity (D_out = 2H): f_t = [z; -z] / sqrt 2, so both signs survive the clamp
    m2 = SeqGeMModel(2, init="identity", p=2.0)
    assert m2.out_dim == 4
    torch.testing.assert_close(m2(x)[0, 0], torch.tensor([0.5, 0.4, 0.0, 0.3]) / math.sqrt(0.5), atol=1e-5, rtol=0)
    # p = 1 is the mean of the clamped frames
    m1 = SeqGeMModel(2, out_dim=2, init="identity", p=1.0)
    g1 = np.array([0.7, 0.4])
    torch.testing.assert_close(m1(x)[0, 0], torch.tensor(g1 / np.linalg.norm(g1), dtype=torch.float32), atol=1e-5, rtol=0)


def test_seqgem_exponent_is_learned():
    torch.manual_seed(0)
    m = SeqGeMModel(4, out_dim=3, p=3.0)
    y = m(torch.randn(2, 5, 4))
    y.sum().backward()
    assert m.p.grad is not None and float(m.p.grad.abs()) > 0


@pytest.mark.parametrize("model", [SeqNetModel(6, 5, 3, init="identity"), SeqVLADModel(6, 3), SeqGeMModel(6, 4)])
def test_models_rebuild_from_config_and_encode(model):
    rebuilt = build_model(model.config())
    rebuilt.load_state_dict(model.state_dict())
    x = np.random.default_rng(1).normal(size=(12, 6)).astype(np.float32)
    starts = np.array([0, 3, 7])
    a = encode_windows(model, x, starts, 5, torch.device("cpu"))
    np.testing.assert_array_equal(a, encode_windows(rebuilt, x, starts, 5, torch.device("cpu")))
    assert a.shape == (3, model.out_dim)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-5)
    with torch.no_grad():
        ref = model(torch.from_numpy(x[starts[:, None] + np.arange(5)]))[:, 0].numpy()
    np.testing.assert_allclose(a, ref, atol=1e-6)


def test_build_model_rejects_unknown_and_incomplete():
    with pytest.raises(DataError, match="unknown model architecture"):
        build_model({"arch": "lstm"})
    with pytest.raises(DataError, match="incomplete"):
        build_model({"arch": "seqvlad", "in_dim": 4})


def test_input_pca_keeps_distances_when_it_keeps_the_rank():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(16, 6)))[0]  # data in a 6-D subspace of 16-D
    x = l2_normalise(rng.normal(size=(40, 6)) @ basis.T)
    pca = fit_input_pca(x, 8)
    assert pca.report["dim"] == 6 and pca.report["capped"] and pca.report["requested"] == 8  # never padded
    assert np.abs(pca.components).sum(0).min() > 0.1  # no zero columns
    np.testing.assert_allclose(pca.components.T @ pca.components, np.eye(6), atol=1e-5)
    m = SeqNetModel(16, 0, 1, pca_dim=6, init="identity")
    m.set_pca(pca)
    out = encode_frames(m, x, torch.device("cpu"))
    # uncentred projection onto the data's span + identity layer = the raw (unit) descriptors' distances
    np.testing.assert_allclose(out @ out.T, x @ x.T, atol=1e-5)  # same inner products, so the same distances
    with pytest.raises(ConfigError, match="expects"):
        SeqNetModel(16, 0, 1, pca_dim=5).set_pca(pca)


def test_input_pca_energy_and_held_out_estimate():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(50, 10)) * np.array([10, 8, 6, 1, 1, 1, 1, 1, 1, 1])
    pca = fit_input_pca(a, 3, center=True)
    _, s, _ = np.linalg.svd(l2_normalise(a).astype(np.float64) - l2_normalise(a).astype(np.float64).mean(0), full_matrices=False)
    assert pca.report["fit_energy"] == pytest.approx((s[:3] ** 2).sum() / (s**2).sum(), rel=1e-6)
    # held out: a projection fitted on e1..e3 data keeps nothing of data along e4..e6
    tr = np.zeros((20, 6))
    tr[:, :3] = rng.normal(size=(20, 3))
    te = np.zeros((20, 6))
    te[:, 3:] = rng.normal(size=(20, 3))
    assert fit_input_pca(np.concatenate([tr, te]), 3, held_out=(tr, te)).report["held_out_energy"] == pytest.approx(0.0, abs=1e-10)
    assert fit_input_pca(tr, 3, held_out=(tr, tr)).report["held_out_energy"] == pytest.approx(1.0)


def test_validation_scores_hand_computed():
    hits = np.array([[True, False, False], [False, False, True], [False, False, False], [False, True, True]])
    s = validation_scores(hits)
    # Recall@5 / @10 are undefined with K = 3 ranked references (NaN), as everywhere else
    assert s["recall@1"] == pytest.approx(0.25) and np.isnan(s["recall@5"]) and np.isnan(s["recall@10"])
    wide = np.pad(hits, ((0, 0), (0, 7)))  # K = 10: the query without a positive in its top 10 is a miss
    assert validation_scores(wide)["recall@5"] == pytest.approx(0.75) and validation_scores(wide)["recall@10"] == pytest.approx(0.75)
    assert s["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4)
    assert validation_scores(hits, mask=np.array([True, False, False, True]))["mrr"] == pytest.approx(0.75)
    assert np.isnan(validation_scores(hits, mask=np.zeros(4, bool))["mrr"])
    # ties on the selected score are broken by MRR; NaN counts as the worst
    assert selection_key({"recall@5": 1.0, "mrr": 0.9}, "recall@5") > selection_key({"recall@5": 1.0, "mrr": 0.8}, "recall@5")
    assert selection_key({"recall@5": float("nan"), "mrr": float("nan")}, "recall@5") < selection_key({"recall@5": 0.0, "mrr": 0.0}, "recall@5")
    with pytest.raises(ConfigError, match="selection score"):
        selection_key({"recall@5": 1.0}, "mrr")
