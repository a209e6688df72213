"""Method specifications on the command line and their expansion into parameter grids.

Syntax: ``name`` or ``name[key=value,key2=v1|v2]``; ``|`` separates alternatives, and every
combination becomes one job (a grid, as in ann-benchmarks). ``all`` means every registered method.
Extra ``--param name.key=v1,v2`` options add grid axes to every spec of that method.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ConfigError
from .registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    """One method with fixed parameter values (strings as typed, or native values)."""

    name: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """Display name, e.g. ``seqmatchnet[loss=single,mining=seqmatch]``."""
        if not self.params:
            return self.name
        inner = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.params.items()))
        return f"{self.name}[{inner}]"


def _fmt(v: object) -> str:
    if isinstance(v, (tuple, list)):
        return "/".join(map(str, v))
    return str(v)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside square brackets."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced ']' in method list {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ConfigError(f"unbalanced '[' in method list {text!r}")
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def parse_method_list(text: str, registry: Registry) -> list[tuple[str, dict[str, list[str]]]]:
    """Parse ``--methods``: a list of (name, {key: [alternatives]})."""
    out: list[tuple[str, dict[str, list[str]]]] = []
    for item in split_top_level(text):
        if item == "all":
            out.extend((name, {}) for name in registry.names())
            continue
        name, _, rest = item.partition("[")
        name = name.strip()
        registry.get(name)  # unknown method -> error with suggestions
        grid: dict[str, list[str]] = {}
        if rest:
            if not rest.endswith("]"):
                raise ConfigError(f"method spec {item!r}: expected name[key=value,...]")
            for kv in split_top_level(rest[:-1]):
                key, eq, value = kv.partition("=")
                if not eq or not key.strip():
                    raise ConfigError(f"method spec {item!r}: expected key=value, got {kv!r}")
                grid[key.strip()] = [v.strip() for v in value.split("|")]
        out.append((name, grid))
    if not out:
        raise ConfigError("--methods is empty; give 'all' or a comma-separated list of method names")
    return out


def parse_param_options(options: Iterable[str], registry: Registry) -> dict[str, dict[str, list[str]]]:
    """Parse ``--param method.key=v1,v2`` options into {method: {key: [values]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for opt in options:
        lhs, eq, value = opt.partition("=")
        method, dot, key = lhs.partition(".")
        if not eq or not dot or not method or not key:
            raise ConfigError(f"--param {opt!r}: expected METHOD.KEY=VALUE[,VALUE...]")
        registry.get(method)
        out.setdefault(method, {})[key] = [v.strip() for v in value.replace("|", ",").split(",")]
    return out


def expand(methods: str, param_options: Iterable[str], registry: Registry) -> list[MethodSpec]:
    """All concrete method specs (grid products), validated against each method's parameters."""
    extra = parse_param_options(param_options, registry)
    specs: list[MethodSpec] = []
    for name, grid in parse_method_list(methods, registry):
        axes = {**extra.get(name, {}), **grid}
        keys = sorted(axes)
        for combo in itertools.product(*(axes[k] for k in keys)) if keys else [()]:
            spec = MethodSpec(name, dict(zip(keys, combo)))
            registry.create(name, **spec.params)  # validates names, types and choices now
            if spec not in specs:
                specs.append(spec)
    return specs
