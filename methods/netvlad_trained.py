"""A NetVLAD layer trained with the triplet loss on a frozen backbone's feature maps (image datasets)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vprbench.kernels import nearest_neighbours
from vprbench.method import (
    ConfigError,
    DataError,
    Method,
    MethodInfo,
    Param,
    Ranking,
    RunContext,
    SplitData,
    learned_params,
    method_code_hash,
)


class NetVLADTrained(Method):
    """NetVLAD pooling (K clusters) trained with the triplet margin loss on a frozen CNN backbone.

    Arandjelovic et al., CVPR 2016. The backbone (EfficientNet-Lite0 with ImageNet weights, the only
    pretrained backbone available offline; :mod:`vprbench.features.extractors`) is frozen, so its last feature
    maps [C, h, w] are computed once per image and cached (float16 ``.npy`` under
    ``<cache_dir>/features``, keyed by backbone weights, input size and image files). The layer is
    initialised from k-means centres of training local features and trained by the shared engine
    (:mod:`vprbench.learning`): single-frame triplets, positive = nearest non-trivial positive,
    10 hard negatives from 1,000 random candidates, margin sqrt(0.1); best epoch by validation
    Recall@5. Ranking: single-image nearest neighbour over the layer's K*C-D outputs (no PCA
    whitening). After :meth:`fit`, ``layer_path`` is a ``torch.save(state_dict)`` of the layer that
    the ``cnn`` extractor loads (``pool="netvlad", netvlad_weights=...``) to give any method these
    per-frame descriptors.
    """

    info = MethodInfo(
        name="netvlad-trained",
        family="single-image",
        provides_frontend=True,
        summary="NetVLAD layer trained with triplet loss on frozen CNN feature maps (image datasets)",
        paper="Arandjelovic et al., NetVLAD: CNN architecture for weakly supervised place recognition, CVPR 2016",
        trains=True,
        needs=("images",),
        uses_sequences=False,
        smoke_params={"epochs": 1},
        params=learned_params(
            fixed=("loss", "mining", "filter_width", "train_seq_len", "out_dim", "pca_dim", "init"),
            extra={
                "clusters": Param(16, "NetVLAD clusters K (paper: 64)", lo=1),
                "backbone": Param("efficientnet-lite0", "frozen backbone", ("efficientnet-lite0",)),
                "width": Param(128, "image width fed to the backbone (pixels)", lo=8),
                "height": Param(64, "image height fed to the backbone (pixels)", lo=8),
            },
        ),
    )

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        from vprbench.learning.presets import HYPERPARAMETERS, resolve

        overrides = {k: v for k, v in self.params.items() if k in HYPERPARAMETERS and v is not None}
        self.resolved_params: dict[str, Any] = {
            "preset": self.params["preset"], **resolve(self.info.name, self.params["preset"], overrides),
            **{k: self.params[k] for k in ("clusters", "backbone", "width", "height")},
        }
        self.model: Any = None
        self.layer_path: Path | None = None
        self.training_info: dict[str, Any] = {}
        self._backbone = None
        self._device: Any = "cpu"

    # -- backbone features ---------------------------------------------------------------------
    def _extractor(self, device: str):
        if self._backbone is None:
            from vprbench.features.extractors import CNNExtractor

            self._backbone = CNNExtractor(self.params["backbone"], width=self.params["width"], height=self.params["height"], device=device)
        return self._backbone

    def features(self, paths: tuple[Path, ...] | None, what: str, ctx: RunContext) -> np.ndarray:
        """Frozen backbone feature maps [n, C, h, w] (float16) of the images, cached under ``ctx.cache_dir``."""
        import torch

        from vprbench.core.cache import cached_array
        from vprbench.core.codehash import package_modules_hash
        from vprbench.core.hashing import ContentHash
        from vprbench.core.progress import progress_bar

        if paths is None:
            raise DataError(f"method 'netvlad-trained' needs images: {what} has no image paths (a dataset given as descriptors)")
        ext = self._extractor(str(self._device))
        # like the descriptor cache (vprbench.features.cache): an edited front-end never serves old feature maps
        h = ContentHash(ext.params(), {"code": package_modules_hash("features"), "device": str(self._device).split(":")[0]})
        for p in paths:
            try:
                h.add(Path(p).resolve()).add_file_identity(Path(p))
            except FileNotFoundError:
                raise DataError(f"{p}: image file not found") from None
        target = Path(ctx.cache_dir) / "features" / f"{h.hexdigest(20)}.npy" if ctx.cache_dir is not None else None
        backbone = ext.model[0]

        def compute() -> np.ndarray:
            out = []
            with ctx.timings("encode"), torch.inference_mode():
                for i in progress_bar(range(0, len(paths), ext.batch_size), enabled=ctx.progress, desc=f"backbone features: {what}"):
                    out.append(backbone(ext.preprocess(paths[i : i + ext.batch_size])).cpu().numpy().astype(np.float16))
            return np.concatenate(out)

        return cached_array(target, lambda x: x.ndim == 4 and x.shape[0] == len(paths), compute)

    # -- training --------------------------------------------------------------------------------
    def fit(self, train: SplitData, val: SplitData | None, ctx: RunContext) -> None:
        import torch

        from vprbench import __version__
        from vprbench.core.hashing import ContentHash
        from vprbench.learning.checkpoints import load_or_train
        from vprbench.learning.mining import TripletData
        from vprbench.learning.netvlad import FrameNetVLAD, kmeans
        from vprbench.learning.trainer import deterministic, resolve_device, train_triplet

        self._device = resolve_device(ctx.device)
        hp = self.resolved_params
        fq = self.features(train.query.image_paths, f"{train.dataset}/{train.query.name}", ctx)
        fr = self.features(train.reference.image_paths, f"{train.dataset}/{train.reference.name}", ctx)
        data = TripletData.from_split(train, 1, features=(fq, fr))
        parts = {"method": self.info.name, "hyperparameters": hp, "seed": ctx.seed, "vprbench": __version__,
                 "train_images": ContentHash(*train.query.image_paths, *train.reference.image_paths).hexdigest(20),
                 "train": train.fingerprint, "val": val.fingerprint if val is not None else "none", "code": method_code_hash(type(self)),
                 "device": str(self._device).split(":")[0]}  # GPU and CPU training are not bit-identical
        model = FrameNetVLAD(hp["clusters"], fr.shape[1])

        def train_model() -> tuple[dict, dict]:
            with ctx.timings("train"), deterministic(ctx.seed):
                local = fr[np.random.default_rng(ctx.seed).choice(len(fr), min(len(fr), 2000), replace=False)].astype(np.float32)
                local = local.transpose(0, 2, 3, 1).reshape(-1, fr.shape[1])
                local /= np.maximum(np.linalg.norm(local, axis=1, keepdims=True), 1e-12)
                if len(local) > 50000:
                    local = local[np.random.default_rng(ctx.seed).choice(len(local), 50000, replace=False)]
                model.layer.init_from_centroids(kmeans(local, hp["clusters"], ctx.seed))
                validate = None
                if val is not None:
                    vq = self.features(val.query.image_paths, f"{val.dataset}/{val.query.name}", ctx)
                    vr = self.features(val.reference.image_paths, f"{val.dataset}/{val.reference.name}", ctx)
                    validate = lambda m: self._recall5(m, vq, vr, val)  # noqa: E731
                result = train_triplet(model, data, hp, ctx.seed, self._device, validate, ctx.progress, desc="training netvlad-trained")
            training = {"best_epoch": result.best_epoch, "best_val_recall5": result.best_val_recall5,
                        "epochs_run": len(result.history), "history": result.history, "train_seconds": result.seconds}
            return result.state, {"channels": int(fr.shape[1]), "clusters": hp["clusters"], "training": training}

        state, config, info = load_or_train(ctx.cache_dir, self.info.name, parts, train_model)
        model.load_state_dict(state)
        self.training_info = {"device": str(self._device), **info, **config.get("training", {})}
        self.model = model.to(self._device).eval()
        if ctx.cache_dir is not None:
            self.layer_path = Path(ctx.cache_dir) / "models" / f"{self.info.name}-{info['cache_key']}-layer.pt"
            self.layer_path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({k: v.cpu() for k, v in model.layer.state_dict().items()}, self.layer_path)
            self.training_info["layer_path"] = str(self.layer_path)

    def _describe(self, model: Any, feats: np.ndarray) -> np.ndarray:
        from vprbench.learning.models import encode_frames

        return encode_frames(model, feats, self._device, batch=256)

    def _recall5(self, model: Any, fq: np.ndarray, fr: np.ndarray, val: SplitData) -> float:
        from vprbench.metrics.recall import recall_at_n

        idx, _ = nearest_neighbours(self._describe(model, fq), self._describe(model, fr), 5)
        return float(recall_at_n(val.ground_truth.hits(idx), (5,), val.ground_truth.has_positive)[5])

    def encode(self, traverse: Any, ctx: RunContext) -> np.ndarray:
        """Per-frame descriptors [n, K*C] of the trained NetVLAD layer for a traverse of images."""
        if self.model is None:
            raise ConfigError("method 'netvlad-trained' has no trained model: call fit(train, val, ctx) before encode()")
        feats = self.features(traverse.image_paths, traverse.name, ctx)
        with ctx.timings("encode"):
            return self._describe(self.model, feats)

    def rank(self, split: SplitData, ctx: RunContext) -> Ranking:
        if self.model is None:
            raise ConfigError("method 'netvlad-trained' has no trained model: call fit(train, val, ctx) before rank()")
        fq = self.features(split.query.image_paths, f"{split.dataset}/{split.query.name}", ctx)
        fr = self.features(split.reference.image_paths, f"{split.dataset}/{split.reference.name}", ctx)
        if fq.shape[1] != self.model.in_dim:
            raise DataError(f"method 'netvlad-trained': backbone gives C={fq.shape[1]} channels, the layer was trained on C={self.model.in_dim}")
        with ctx.timings("encode"):
            dq, dr = self._describe(self.model, fq), self._describe(self.model, fr)
        with ctx.timings("match"):
            idx, dist = nearest_neighbours(dq, dr, ctx.top_k)
        return Ranking(idx, dist)
