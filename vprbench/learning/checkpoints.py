"""Safe saving and loading of trained models with their configuration, and a cache by key.

A checkpoint is a ``torch.save`` of a plain dict holding only tensors, strings and numbers::

    {"format": "vprbench-checkpoint", "version": 1, "config": "<JSON text>", "state": {name: tensor}}

so that it loads with ``torch.load(weights_only=True)``: no pickled Python objects are ever
executed. Anything else (a corrupt file, a foreign checkpoint, a pickle) is rejected with a
:class:`~vprbench.core.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vprbench.core.errors import DataError
from vprbench.core.fileio import atomic_path
from vprbench.core.hashing import canonical_json, stable_hash

FORMAT = "vprbench-checkpoint"
VERSION = 1


def cache_key(parts: dict[str, Any], length: int = 20) -> str:
    """Hex key of everything a trained model depends on (canonical JSON, sha256)."""
    return stable_hash(parts, length=length)


def model_path(cache_dir: str | os.PathLike, method: str, key: str) -> Path:
    """Where the model of ``method`` with cache key ``key`` lives: ``<cache_dir>/models/<method>-<key>.pt``."""
    return Path(cache_dir) / "models" / f"{method}-{key}.pt"


def save_checkpoint(path: str | os.PathLike, state: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write ``state`` (tensors, moved to CPU) and ``config`` (JSON-able) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": canonical_json(config),
        "state": {k: v.detach().to("cpu").clone() for k, v in state.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint written by :func:`save_checkpoint`; returns (state dict, config).

    Always ``weights_only=True``: a file holding pickled objects is refused, never executed.
    Raises :class:`DataError` for a missing, corrupt or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"checkpoint {str(path)!r} is corrupt or not a vprbench checkpoint; it was loaded with "
            f"torch.load(weights_only=True), so no code in it ran ({first[:200]}). Delete it to retrain."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DataError(f"checkpoint {str(path)!r} is not a vprbench checkpoint (no 'format': {FORMAT!r} field)")
    if payload.get("version") != VERSION:
        raise DataError(f"checkpoint {str(path)!r} has format version {payload.get('version')!r}, expected {VERSION}")
    state, config = payload.get("state"), payload.get("config")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(f"checkpoint {str(path)!r}: field 'state' must map names to tensors")
    try:
        config = json.loads(config)
    except (TypeError, json.JSONDecodeError):
        raise DataError(f"checkpoint {str(path)!r}: field 'config' is not valid JSON text") from None
    if not isinstance(config, dict):
        raise DataError(f"checkpoint {str(path)!r}: field 'config' must be a JSON object")
    return state, config


def load_or_train(
    cache_dir: str | os.PathLike | None,
    method: str,
    parts: dict[str, Any],
    train: Callable[[], tuple[dict[str, torch.Tensor], dict[str, Any]]],
) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """The one cache of trained models: a checkpoint per ``(method, parts)`` under ``cache_dir``.

    ``parts`` is everything the model depends on; its hash names the file
    (:func:`model_path`) and it is stored inside the checkpoint. A checkpoint is used only if its
    stored parts equal ``parts`` (a file of another model under the same name is retrained over,
    with a warning). Otherwise ``train()`` returns ``(state, config)`` and the checkpoint is written
    atomically; a cache folder that cannot be written costs only the reuse (warning), never the
    trained model.

    Returns ``(state, config, info)`` with ``info`` = cache key, ``cache_hit``, ``checkpoint`` path.
    """
    key = cache_key(parts)
    path = model_path(cache_dir, method, key) if cache_dir is not None else None
    info: dict[str, Any] = {"cache_key": key}
    wanted = json.loads(canonical_json(parts))
    claim = _wait_for_claim(path) if path is not None else None
    try:
        if path is not None and path.is_file():
            state, config = load_checkpoint(path)
            if config.get("cache_parts") == wanted:
                return state, config, {**info, "cache_hit": True, "checkpoint": str(path)}
            warnings.warn(
                f"cached model {str(path)!r} was trained for other settings than this job (its stored cache parts differ); "
                "retraining and replacing it",
                stacklevel=2,
            )
        state, config = train()
        config = {**config, "cache_parts": wanted}
        info["cache_hit"] = False
        if path is not None:
            try:
                save_checkpoint(path, state, config)
                info["checkpoint"] = str(path)
            except OSError as e:
                warnings.warn(f"could not write the trained model to the cache {str(path)!r} ({e.strerror or e}); "
                              "the result is kept, the model will be trained again next time", stacklevel=2)
        return state, config, info
    finally:
        if claim is not None:
            claim.release()


def _wait_for_claim(path: Path, poll_s: float = 0.5) -> Any:
    """Claim the training of the model at ``path``; while another live process trains it, wait.

    So that several jobs (or workers) that share a model train it once: the others load it when
    the first is done. None when the cache folder cannot be written (then nothing is shared).
    """
    from vprbench.core.claims import try_claim

    claim_file = path.with_name(path.name + ".claim")
    while True:
        try:
            claim = try_claim(claim_file)
        except OSError:
            return None
        if claim is not None:
            return claim
        time.sleep(poll_s)
