"""The public plugin API: what a method plugin subclasses, declares and returns.

A plugin file imports from here and from :mod:`vprbench.kernels` (see README, "Adding a method");
these names stay stable when vprbench's internals move. The training-free built-in plugins in
``methods/`` use nothing else (the learned ones also use the training engine,
:mod:`vprbench.learning`, and ``netvlad-trained`` the image front-ends, :mod:`vprbench.features`).
"""

from typing import Any

from vprbench.core.errors import ConfigError, DataError, unknown_name
from vprbench.core.params import Param, Stage
from vprbench.data.dataset import SplitData
from vprbench.data.traverse import Traverse
from vprbench.plugins.api import FAMILIES, Family, Method, MethodInfo, Ranking, RunContext, Timings
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
    "Family",
    "Timings",
    "coerce_param",
    "learned_params",
    "method_code_hash",
    "unknown_name",
]


def coerce_param(method: str, name: str, spec: Param, value: Any) -> Any:
    """``value`` (e.g. a CLI string) converted to parameter ``name``'s type and checked (first-version API)."""
    return spec.coerce(value, name, f"method {method!r}")


def __getattr__(name: str) -> Any:
    if name == "Registry":  # for type hints of Method.configure_stage / bind
        from vprbench.plugins.registry import Registry

        return Registry
    raise AttributeError(f"module 'vprbench.method' has no attribute {name!r}")
