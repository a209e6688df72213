"""Reading images and the SeqSLAM patch normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vprbench.core.errors import ConfigError, DataError


def read_image(path: Path, mode: str = "L", size: tuple[int, int] | None = None) -> np.ndarray:
    """Read one image as uint8 [H, W] (mode "L") or [H, W, 3] ("RGB"), resized to ``size`` = (width, height).

    DataError naming the file when it is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if size is not None and im.size != tuple(size):
                im = im.resize(tuple(size), Image.BILINEAR)
            return np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None


def patch_normalise(images: np.ndarray, patch: int) -> np.ndarray:
    """Patch-normalise grey images [n, H, W] with non-overlapping ``patch`` x ``patch`` patches.

    Each patch is shifted to mean 0 and divided by its standard deviation (population); patches
    with standard deviation below 1e-6 become 0. Returns [n, H * W] float32 in image row order.
    """
    x = np.asarray(images, dtype=np.float32)
    n, h, w = x.shape
    if h % patch or w % patch:
        raise ConfigError(f"patchnorm: image size {w}x{h} is not a multiple of the patch size {patch}")
    b = x.reshape(n, h // patch, patch, w // patch, patch)
    mean = b.mean(axis=(2, 4), keepdims=True)
    std = b.std(axis=(2, 4), keepdims=True)
    out = np.where(std > 1e-6, (b - mean) / np.where(std > 1e-6, std, 1.0), 0.0)
    return out.reshape(n, h * w).astype(np.float32)
