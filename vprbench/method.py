"""The public plugin API: what a method plugin subclasses, declares and returns.

A plugin file imports from here and from :mod:`vprbench.kernels` (see README, "Adding a method");
these names stay stable when vprbench's internals move. The built-in plugins in ``methods/`` use
nothing else (the learned ones also call the training engine, :mod:`vprbench.learning`).
"""

from typing import Any

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.params import Param, Stage
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse
from vprbench.plugins.api import FAMILIES, Method, MethodInfo, Ranking, RunContext
from vprbench.plugins.graph import GRAPH_PARAMS, GraphMatcher
from vprbench.plugins.learned import TrainedSeqNetMethod, learned_params, method_code_hash
from vprbench.plugins.sequential import WindowWeightedDescriptor
from vprbench.plugins.specs import MethodSpec

__all__ = [
    "FAMILIES",
    "GRAPH_PARAMS",
    "ConfigError",
    "DataError",
    "GraphMatcher",
    "Method",
    "MethodInfo",
    "MethodSpec",
    "Param",
    "Ranking",
    "RunContext",
    "SplitData",
    "Stage",
    "TrainedSeqNetMethod",
    "Traverse",
    "WindowWeightedDescriptor",
    "learned_params",
    "method_code_hash",
]


def __getattr__(name: str) -> Any:
    if name == "Registry":  # for type hints of Method.configure_stage / bind
        from vprbench.plugins.registry import Registry

        return Registry
    raise AttributeError(f"module 'vprbench.method' has no attribute {name!r}")
