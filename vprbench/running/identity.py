"""What a result depends on, as data: the identity of a method, of its ranking and of a record.

* :func:`method_identity`: name, every parameter as resolved (``Method.resolved_params`` after
  ``Method.prepare``, stages recursively; a preset's name is dropped once every value is resolved,
  so specs that resolve alike are one job), and the code that computes it: the plugin file and the vprbench modules
  it may run (:func:`vprbench.core.codehash.class_code_hash`), or the version the plugin declares
  (``MethodInfo.version``) plus vprbench's version.
* :func:`ranking_identity`: the method plus the data and settings the ranking depends on. The seed
  only counts for methods whose result depends on it (``MethodInfo.seeded``, by default the learned
  ones), the sequence length and window policy only for methods that use sequences: a
  deterministic training-free method is computed once for all seeds, a single-image method once for
  all L.
* :func:`record_identity`: the ranking plus the evaluation (L and window policy, which select the
  evaluated queries, and the protocol). Records are stored under the hash of this (one record per
  resolved job: ``seqmatch`` and ``seqmatch[variant=meanOfPairs]`` are one job).
"""

from __future__ import annotations

from typing import Any

from vprbench import __version__
from vprbench.core.codehash import class_code_hash, package_modules_hash
from vprbench.core.hashing import stable_hash, to_jsonable
from vprbench.plugins.api import Method

#: The code that turns a ranking into metrics (part of every record's identity).
EVALUATION_CODE = ("metrics",)


def code_identity(cls: type[Method]) -> dict[str, str]:
    """What identifies a method's code: its declared version, or a hash of its source closure."""
    declared = getattr(cls.info, "version", None)
    if declared:
        return {"declared_version": str(declared), "vprbench": __version__}
    return {"source": class_code_hash(cls), "vprbench": __version__}


def method_identity(method: Method) -> dict[str, Any]:
    """Everything that defines a configured method (JSON-able)."""
    params = {k: v for k, v in method.params.items() if k not in method.stages}
    resolved = {k: v for k, v in (getattr(method, "resolved_params", None) or {}).items() if k not in method.stages}
    merged = {**params, **resolved}
    if resolved and set(params) <= set(resolved) | {"preset"}:
        # every parameter is resolved: the preset's name is only how the values were chosen
        merged.pop("preset", None)
        merged.pop("preset_resolved", None)
    out: dict[str, Any] = {
        "name": method.info.name,
        "params": to_jsonable(merged),
        "code": code_identity(getattr(method, "code_class", type(method))),
    }
    if method.stages:
        out["stages"] = {k: method_identity(s) for k, s in sorted(method.stages.items())}
    return out


def seeded(method: Method) -> bool:
    """Whether the method's result depends on the seed."""
    return method.info.depends_on_seed


def ranking_identity(method: Method, *, dataset: str, fingerprint: str, split: str, query: str, seq_len: int,
                     boundary: str, seed: int, top_k: int, train: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """What the ranking of ``method`` on a split depends on (see the module docstring)."""
    uses_seq = bool(method.info.uses_sequences)
    return {
        "method": method_identity(method),
        "dataset": dataset,
        "dataset_fingerprint": fingerprint,
        "split": split,
        "query": query,
        "top_k": top_k,
        "seq_len": seq_len if uses_seq else None,
        "boundary": boundary if uses_seq else None,
        "seed": seed if seeded(method) else None,
        "train": train if method.info.trains else None,
        "device": device.split(":")[0] if method.info.trains else None,
    }


def record_identity(ranking: dict[str, Any], *, seq_len: int, boundary: str, protocol: dict[str, Any]) -> dict[str, Any]:
    """What a record depends on: its ranking, the evaluated queries (L, policy) and the protocol."""
    return {
        "ranking": ranking,
        "seq_len": seq_len,
        "boundary": boundary,
        "protocol": protocol,
        "evaluation_code": package_modules_hash(*EVALUATION_CODE),
    }


def key(identity: dict[str, Any]) -> str:
    """The 16-hex-digit key of an identity."""
    return stable_hash(identity)
