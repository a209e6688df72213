"""Method specifications on the command line and their expansion into parameter grids.

Syntax: ``name`` or ``name[key=value,key2=v1|v2]``; ``|`` separates alternatives, and every
combination becomes one job (a grid, as in ann-benchmarks). A parameter that names another method
(a stage, e.g. hvpr's ``shortlister``) takes a full method spec, nested to any depth:
``hvpr[shortlister=seqnet[pca_dim=0],reranker=seqnet-s1[pca_dim=0|128]]`` (alternatives inside a
stage expand the grid too). ``all`` means every registered method. Extra
``--param name.key=v1,v2`` options add grid axes to every spec of that method.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vprbench.core.errors import ConfigError
from vprbench.core.params import Stage

if TYPE_CHECKING:
    from vprbench.plugins.registry import Registry


@dataclass(frozen=True)
class MethodSpec:
    """One method with fixed parameter values: text as typed, native values, or nested specs (stages)."""

    name: str
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The spec as written, keys sorted, e.g. ``seqmatchnet[loss=single,mining=seqmatch]``."""
        return format_spec(self.name, self.params)


def format_value(v: object) -> str:
    """A parameter value as it is written in a spec (tuples as ``a/b``, nested specs by label)."""
    if isinstance(v, MethodSpec):
        return v.label
    if hasattr(v, "label") and hasattr(v, "info"):  # a Method instance
        return str(v.label)
    if isinstance(v, (tuple, list)):
        return "/".join(map(str, v))
    return str(v)


def format_spec(name: str, params: Mapping[str, object]) -> str:
    """``name[k=v,...]`` with sorted keys, or ``name`` without parameters."""
    if not params:
        return name
    inner = ",".join(f"{k}={format_value(v)}" for k, v in sorted(params.items()))
    return f"{name}[{inner}]"


def split_top_level(text: str, sep: str = ",", keep_empty: bool = False) -> list[str]:
    """Split on ``sep`` outside square brackets (empty parts dropped unless ``keep_empty``)."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"unbalanced ']' in method spec {text!r}")
        if ch == sep and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise ConfigError(f"unbalanced '[' in method spec {text!r}")
    parts.append("".join(cur).strip())
    return parts if keep_empty else [p for p in parts if p]


def _split_item(item: str) -> tuple[str, dict[str, list[str]]]:
    """``name[k=a|b,...]`` -> (name, {k: ["a", "b"]}) with alternatives split at the top level."""
    name, bracket, rest = item.partition("[")
    name = name.strip()
    if not name:
        raise ConfigError(f"method spec {item!r}: expected name or name[key=value,...]")
    grid: dict[str, list[str]] = {}
    if bracket:
        if not rest.endswith("]"):
            raise ConfigError(f"method spec {item!r}: expected name[key=value,...] (text after ']')")
        for kv in split_top_level(rest[:-1]):
            key, eq, value = kv.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"method spec {item!r}: expected key=value, got {kv!r}")
            if key.strip() in grid:
                raise ConfigError(f"method spec {item!r}: parameter {key.strip()!r} given twice")
            if any(not v for v in split_top_level(value, "|", keep_empty=True)):
                raise ConfigError(f"method spec {item!r}: parameter {key.strip()!r} has an empty value; expected {key.strip()}=VALUE "
                                  "(or VALUE|VALUE for alternatives)")
            grid[key.strip()] = [v.strip() for v in split_top_level(value, "|")]
    return name, grid


def _is_stage(registry: Registry, name: str, key: str) -> bool:
    spec = registry.get(name).info.params.get(key)
    return spec is not None and spec.kind is Stage


def expand_item(item: str, registry: Registry, extra: Mapping[str, Mapping[str, list[str]]] | None = None) -> list[MethodSpec]:
    """Every concrete spec of one ``name[...]`` item (grid product; stages expanded recursively).

    ``frontend+matcher`` (how composed methods are named in tables) is read as
    ``matcher[frontend=frontend]``, so a label can be pasted back as a spec.
    """
    parts = split_top_level(item, "+")
    if len(parts) > 2:
        raise ConfigError(f"method spec {item!r}: expected FRONTEND+MATCHER (one '+'), got {len(parts)} parts")
    if len(parts) == 2:
        front, matcher = parts
        if "frontend" in _split_item(matcher)[1]:
            raise ConfigError(f"method spec {item!r}: the frontend is given twice ({front!r} and in {matcher!r})")
        item = f"{matcher[:-1]},frontend={front}]" if matcher.endswith("]") else f"{matcher}[frontend={front}]"
    name, grid = _split_item(item)
    registry.get(name)  # unknown method -> error with suggestions
    outside = (extra or {}).get(name, {})
    both = sorted(set(outside) & set(grid))
    if both:
        raise ConfigError(f"method spec {item!r}: {', '.join(both)} is set both in the spec and by --param {name}.{both[0]}=... "
                          "(or --sweep); give it in one place")
    axes = {**outside, **grid}
    keys = sorted(axes)
    options: list[list[object]] = []
    for k in keys:
        if _is_stage(registry, name, k):
            options.append([sub for alt in axes[k] for sub in expand_item(alt, registry)])
        else:
            options.append(list(axes[k]))
    return [MethodSpec(name, dict(zip(keys, combo))) for combo in itertools.product(*options)]


def parse_spec(text: str | MethodSpec, registry: Registry) -> MethodSpec:
    """One concrete spec (no alternatives), e.g. a stage's default ``seqnet``."""
    if isinstance(text, MethodSpec):
        return text
    specs = expand_item(text.strip(), registry)
    if len(specs) != 1:
        raise ConfigError(f"method spec {text!r}: expected one method, got {len(specs)} alternatives")
    return specs[0]


def parse_param_options(options: Iterable[str], registry: Registry) -> dict[str, dict[str, list[str]]]:
    """Parse ``--param method.key=v1,v2`` options into {method: {key: [values]}}."""
    out: dict[str, dict[str, list[str]]] = {}
    for opt in options:
        lhs, eq, value = opt.partition("=")
        method, dot, key = lhs.partition(".")
        if not eq or not dot or not method or not key:
            raise ConfigError(f"--param {opt!r}: expected METHOD.KEY=VALUE[,VALUE...]")
        registry.get(method)
        if key in out.get(method, {}):
            raise ConfigError(f"{method}.{key} is given twice (by two --param options, or by --param and --sweep); put every "
                              f"value in one --param {method}.{key}=A,B or one --sweep {method}.{key}=A,B")
        sep = "|" if _is_stage(registry, method, key) else ","
        values = [v.strip() for v in split_top_level(value.replace("|", sep) if sep == "," else value, sep, keep_empty=True)]
        if not all(values):
            raise ConfigError(f"--param {opt!r}: {'no value' if value.strip() == '' else 'an empty value'} for {method}.{key}; "
                              f"expected {method}.{key}=VALUE[{sep}VALUE...]")
        out.setdefault(method, {})[key] = values
    return out


def expand(methods: str, param_options: Iterable[str], registry: Registry) -> list[MethodSpec]:
    """All concrete method specs (grid products), each validated by creating the method now.

    Raises :class:`ConfigError` (exit 2) for unknown names, bad values and ``--param`` options for
    methods that are not in ``methods``.
    """
    extra = parse_param_options(param_options, registry)
    items = split_top_level(methods, keep_empty=True)
    if not any(items):
        raise ConfigError("--methods is empty; give 'all' or a comma-separated list of method names")
    if not all(items):
        raise ConfigError(f"--methods {methods!r} has an empty entry (two commas, or one at an end); expected NAME,NAME,...")
    names_used: set[str] = set()
    specs: list[MethodSpec] = []
    for item in items:
        for text in registry.names() if item == "all" else [item]:
            for spec in expand_item(text, registry, extra):
                names_used.add(spec.name)
                registry.create(spec)  # validates names, types, ranges and stages now
                if spec not in specs:
                    specs.append(spec)
    unused = sorted(set(extra) - names_used)
    if unused:
        raise ConfigError(
            f"--param or --sweep given for method(s) {unused} that are not in --methods {methods!r}; add them to --methods or drop "
            "the option"
        )
    return specs

