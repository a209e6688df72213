"""vprbench: a benchmark suite for sequence-based visual place recognition.

The package is grouped by pipeline stage; dependencies point one way (``tests/test_layout.py``):

``core`` (errors, parameters, hashing, files) <- ``features`` (image front-ends) <- ``data``
(traverses, datasets, ground truth, windows, loaders) <- ``metrics`` / ``matching`` (kernels)
<- ``learning`` (models, mining, trainer) <- ``plugins`` (the method plugin API, registry,
conformance) <- ``running`` (runner, records) <- ``reporting`` (tables, plots) <- ``cli``.

The public plugin API is :mod:`vprbench.method` and :mod:`vprbench.kernels`. Names below are
imported on first use, so ``import vprbench`` stays cheap.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("vprbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

_LAZY = {
    "BenchmarkDataset": "vprbench.data.dataset",
    "SplitData": "vprbench.data.dataset",
    "SplitIndices": "vprbench.data.dataset",
    "GroundTruth": "vprbench.data.groundtruth",
    "Traverse": "vprbench.data.traverse",
    "FAMILIES": "vprbench.plugins.api",
    "Method": "vprbench.plugins.api",
    "MethodInfo": "vprbench.plugins.api",
    "Param": "vprbench.core.params",
    "Ranking": "vprbench.plugins.api",
    "RunContext": "vprbench.plugins.api",
}

__all__ = [*sorted(_LAZY), "__version__"]

# the first version's flat module names (vprbench.dataset, vprbench.training, ...) stay importable
from vprbench.core import compat as _compat  # noqa: E402

_compat.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vprbench' has no attribute {name!r}")
