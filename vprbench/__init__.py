"""vprbench: a benchmark suite for sequence-based visual place recognition."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vprbench")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

from .dataset import BenchmarkDataset, SplitData, SplitIndices
from .groundtruth import GroundTruth
from .method import FAMILIES, Method, MethodInfo, Param, Ranking, RunContext
from .traverse import Traverse

__all__ = [
    "BenchmarkDataset",
    "FAMILIES",
    "GroundTruth",
    "Method",
    "MethodInfo",
    "Param",
    "Ranking",
    "RunContext",
    "SplitData",
    "SplitIndices",
    "Traverse",
    "__version__",
]
