"""Parameter sweeps: ``--sweep AXIS=V1,V2,...``, several making a grid of run configurations.

An axis is one of:

* a run setting: ``seq_len``, ``boundary``;
* a method parameter: ``METHOD.KEY`` (e.g. ``seqslam.vmin``, ``hvpr.shortlist_k``,
  ``seqnet-s1.epochs``): a grid axis of that method's specs, like ``--param``;
* a dataset parameter: ``dataset.KEY`` (e.g. ``dataset.query_noise`` of a synthetic route);
* a protocol field: ``protocol.radius``, ``protocol.tolerance``, ``protocol.positives``,
  ``protocol.no_positive``: evaluation only, so every value reuses the same stored rankings.

Every record of a sweep carries ``job.sweep`` ({axis: value}) and ``job.sweep_base`` (its label
without the swept method parameters), from which ``vprbench report`` draws metric-vs-parameter
lines. Jobs that cannot differ are computed once (see :mod:`vprbench.running.identity`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from vprbench.core.errors import ConfigError
from vprbench.data.protocol import PROTOCOL_PARAMS
from vprbench.plugins.registry import Registry
from vprbench.plugins.specs import split_top_level
from vprbench.running.runner import RunConfig

RUN_AXES = ("seq_len", "boundary")


@dataclass(frozen=True)
class SweepAxis:
    """One swept parameter: where it applies (``run``, ``method``, ``dataset``, ``protocol``), its key and values."""

    name: str
    target: str
    key: str
    values: tuple[str, ...]
    method: str | None = None


def parse_sweep(option: str, registry: Registry) -> SweepAxis:
    """One ``--sweep AXIS=V1,V2`` option; ConfigError for unknown axes and empty value lists."""
    lhs, eq, rhs = option.partition("=")
    lhs = lhs.strip()
    values = tuple(v.strip() for v in split_top_level(rhs.replace("|", ",")))
    if not eq or not lhs or not values:
        raise ConfigError(f"--sweep {option!r}: expected AXIS=V1,V2,... (axes: {', '.join(RUN_AXES)}, METHOD.KEY, "
                          "dataset.KEY, protocol.radius|tolerance|positives|no_positive)")
    if not all(v.strip() for v in split_top_level(rhs.replace("|", ","), keep_empty=True)):
        raise ConfigError(f"--sweep {option!r}: an empty value (two commas, or one at an end); expected AXIS=V1,V2,...")
    if len(set(values)) != len(values):
        raise ConfigError(f"--sweep {option!r}: a value is given twice")
    if lhs in RUN_AXES:
        return SweepAxis(lhs, "run", lhs, values)
    head, dot, key = lhs.partition(".")
    if not dot or not key:
        raise ConfigError(f"--sweep {option!r}: unknown axis {lhs!r}; expected one of {', '.join(RUN_AXES)}, METHOD.KEY, "
                          "dataset.KEY or protocol.FIELD")
    if head == "dataset":
        return SweepAxis(lhs, "dataset", key, values)
    if head == "protocol":
        if key not in PROTOCOL_PARAMS or key == "description":
            raise ConfigError(f"--sweep {option!r}: protocol field must be one of radius, tolerance, positives, no_positive")
        return SweepAxis(lhs, "protocol", key, values)
    spec = registry.get(head).info.params
    if key not in spec:
        from vprbench.core.errors import unknown_name

        raise unknown_name(f"parameter of method {head!r}", key, spec)
    return SweepAxis(lhs, "method", key, values, method=head)


def _typed(value: str) -> Any:
    """A CLI text as the TOML scalar it spells (numbers, booleans), else the text."""
    import tomllib

    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return value


def expand_configs(base: RunConfig, axes: list[SweepAxis]) -> list[RunConfig]:
    """One run configuration per combination of the run, dataset and protocol axes (method axes
    become ``--param``-style grids, see :func:`method_param_options`)."""
    config_axes = [a for a in axes if a.target != "method"]
    method_axes = {a.name: None for a in axes if a.target == "method"}
    names = {a.name for a in axes}
    if len(names) != len(axes):
        raise ConfigError("--sweep: an axis is given twice")
    out = []
    for combo in itertools.product(*(a.values for a in config_axes)) if config_axes else [()]:
        changes: dict[str, Any] = {}
        dataset_params = dict(base.dataset_params)
        protocol_overrides = dict(base.protocol_overrides)
        sweep: dict[str, Any] = {}
        for axis, value in zip(config_axes, combo):
            typed = _typed(value)
            sweep[axis.name] = typed
            if axis.target == "run":
                if axis.key == "seq_len" and (isinstance(typed, bool) or not isinstance(typed, int)):
                    raise ConfigError(f"--sweep seq_len: expected integers, got {value!r}")
                changes[axis.key] = typed
            elif axis.target == "dataset":
                dataset_params[axis.key] = typed
            else:
                protocol_overrides[axis.key] = typed
        out.append(replace(base, **changes, dataset_params=dataset_params, protocol_overrides=protocol_overrides,
                           sweep={**base.sweep, **sweep, **method_axes}))
    return out


def method_param_options(axes: list[SweepAxis]) -> list[str]:
    """The method axes as ``--param METHOD.KEY=V1,V2`` options."""
    return [f"{a.method}.{a.key}={','.join(a.values)}" for a in axes if a.target == "method"]
