"""The result record: schema name and version, structural validation, reading a record back.

A record is one JSON file per evaluated job (schema ``vprbench.result``). Reading distinguishes:

* unreadable or not JSON, or valid JSON of the wrong structure (missing metrics, wrong types,
  recall outside [0, 1]): :class:`InvalidRecord` — the runner and the report set such a file aside
  (renamed ``*.invalid-<time>``) with a warning naming it and what is wrong;
* a record of a newer schema version: :class:`NewerRecord` — left untouched (a newer vprbench
  wrote it) and skipped with a warning;
* a record of an older schema version: :class:`OlderRecord` — left untouched and skipped; run
  the job again to get a current record.

Records are sealed when written (:func:`seal`): ``content_sha256`` over the record itself and
``files`` with the sha256 of the prediction, per-query and evaluation files it refers to (paths
relative to the results folder, never outside it). A record edited by hand, whose key does not
match its identity or file name, or whose files changed or are unreadable is an
:class:`InvalidRecord`: set aside and recomputed, never reported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from vprbench.core.errors import DataError
from vprbench.core.hashing import canonical_json, stable_hash

log = logging.getLogger("vprbench")

SCHEMA = "vprbench.result"
#: 2: records keyed by job identity (code, resolved parameters, protocol), per-query predictions.
#: 3: sealed: the record's own content hash and the hashes of the files it refers to.
SCHEMA_VERSION = 3
#: The fields of a record naming files under the results folder, all sealed into the record.
FILE_FIELDS = ("predictions", "per_query", "evaluation_data")


class InvalidRecord(DataError):
    """A record file that is not a readable, well-formed record of this schema."""


class NewerRecord(DataError):
    """A record written by a newer vprbench (schema version above ours)."""


class OlderRecord(DataError):
    """A record of an older schema version."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def record_problems(record: Any) -> list[str]:
    """What is structurally wrong with a record of the current schema (empty: nothing)."""
    if not isinstance(record, dict):
        return ["not a JSON object"]
    problems = []
    job, metrics = record.get("job"), record.get("metrics")
    if not isinstance(job, dict):
        problems.append("field 'job' missing or not an object")
    else:
        for key, kinds in (("method", str), ("label", str), ("dataset", str), ("split", str), ("boundary", str), ("protocol", str),
                           ("family", str), ("seq_len", int)):
            if not isinstance(job.get(key), kinds) or isinstance(job.get(key), bool):
                problems.append(f"job.{key} missing or not a {kinds.__name__}")
        if job.get("seed") is not None and not isinstance(job.get("seed"), int):
            problems.append("job.seed must be an integer or null")
    if not isinstance(metrics, dict):
        problems.append("field 'metrics' missing or not an object")
        return problems
    recall = metrics.get("recall_at")
    if not isinstance(recall, dict) or not recall:
        problems.append("metrics.recall_at missing or empty")
    else:
        for n, v in recall.items():
            if not str(n).isdigit():
                problems.append(f"metrics.recall_at key {n!r} is not an integer N")
            elif v is not None and not (_number(v) and 0.0 <= v <= 1.0):
                problems.append(f"metrics.recall_at[{n}] = {v!r} is not a recall in [0, 1]")
    for key in ("n_queries", "n_evaluated", "n_without_positive"):
        v = metrics.get(key)
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 0):
            problems.append(f"metrics.{key} missing or not a non-negative integer")
    pr = metrics.get("pr")
    if not isinstance(pr, dict) or not (pr.get("auc") is None or (_number(pr.get("auc")) and 0.0 <= pr["auc"] <= 1.0 + 1e-9)):
        problems.append("metrics.pr.auc missing or outside [0, 1]")
    for key in FILE_FIELDS:
        rel = record.get(key)
        if not isinstance(rel, str) or not rel:
            problems.append(f"field {key!r} (a file under the results folder) missing")
        elif Path(rel).is_absolute() or ".." in Path(rel).parts:
            problems.append(f"field {key!r} = {rel!r} leaves the results folder (expected a relative path inside it)")
    identity = record.get("identity")
    if not isinstance(identity, dict):
        problems.append("field 'identity' missing or not an object")
    elif isinstance(job, dict):
        ranking = identity.get("ranking") if isinstance(identity.get("ranking"), dict) else {}
        for field, value in (("seq_len", identity.get("seq_len")), ("boundary", identity.get("boundary")),
                             ("dataset", ranking.get("dataset")), ("split", ranking.get("split"))):
            if job.get(field) != value:
                problems.append(f"job.{field} = {job.get(field)!r} differs from its identity's {value!r}")
    return problems


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _content_sha256(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json({k: v for k, v in record.items() if k != "content_sha256"}).encode()).hexdigest()


def identity_key(identity: dict[str, Any]) -> str:
    """The key a record with this identity is stored under."""
    return stable_hash({**identity, "schema": SCHEMA_VERSION})


def seal(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """``record`` with the sha256 of its files (under ``root``) and of itself added."""
    out = {**record, "files": {record[k]: file_sha256(Path(root) / record[k]) for k in FILE_FIELDS}}
    out["content_sha256"] = _content_sha256(out)
    return out


def check_seal(record: dict[str, Any], path: Path, root: Path | None) -> list[str]:
    """What shows ``record`` (read from ``path``) was changed after it was written (empty: nothing)."""
    problems = []
    if record.get("content_sha256") != _content_sha256(record):
        problems.append("its content does not match its content_sha256 (edited after it was written)")
    if record.get("key") != path.stem:
        problems.append(f"its key {record.get('key')!r} is not its file name {path.stem!r}")
    elif record.get("key") != identity_key(record["identity"]):
        problems.append("its key is not the hash of its identity")
    files = record.get("files")
    if not isinstance(files, dict):
        return [*problems, "field 'files' (hashes of its files) missing"]
    if root is not None:
        for key in FILE_FIELDS:
            rel = record[key]
            try:
                ok = files.get(rel) == file_sha256(Path(root) / rel)
            except OSError:
                problems.append(f"its {key} file {rel!r} is missing or unreadable")
                continue
            if not ok:
                problems.append(f"its {key} file {rel!r} changed after the record was written")
    return problems


def results_root(path: Path) -> Path | None:
    """The results folder of a record at ``<root>/records/<dataset>/<method>/<key>.json`` (None elsewhere)."""
    path = Path(path)
    return path.parents[3] if len(path.parents) > 3 and path.parents[2].name == "records" else None


def read_record(path: Path) -> dict[str, Any]:
    """Read a result record; :class:`InvalidRecord` / :class:`NewerRecord` / :class:`OlderRecord` naming the file."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidRecord(f"result record {str(path)!r} is unreadable or not JSON ({e})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise InvalidRecord(f"result record {str(path)!r} is not a {SCHEMA} record")
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidRecord(f"result record {str(path)!r} has no integer schema_version")
    if version > SCHEMA_VERSION:
        raise NewerRecord(
            f"result record {str(path)!r} has schema version {version}, newer than this vprbench understands "
            f"({SCHEMA_VERSION}); it is left untouched (upgrade vprbench to read it)"
        )
    if version < SCHEMA_VERSION:
        raise OlderRecord(f"result record {str(path)!r} has the older schema version {version} (current {SCHEMA_VERSION}); "
                          "it is left untouched and not reported; run its job again for a current record")
    problems = record_problems(record)
    if problems:
        raise InvalidRecord(f"result record {str(path)!r} is structurally invalid: {'; '.join(problems)}")
    problems = check_seal(record, Path(path), results_root(Path(path)))
    if problems:
        raise InvalidRecord(f"result record {str(path)!r} is not as it was written: {'; '.join(problems)}")
    return record


def set_aside(path: Path, error: DataError) -> Path | None:
    """Rename an invalid record out of the way (``*.invalid-<unix time>``) and warn; None if it could not be moved."""
    target = path.with_name(f"{path.name}.invalid-{int(time.time())}")
    try:
        path.rename(target)
    except OSError as e:
        log.warning("%s; could not set it aside (%s)", error, e.strerror or e)
        return None
    log.warning("%s; set it aside as %s", error, target.name)
    return target


def load_record_or_none(path: Path) -> dict[str, Any] | None:
    """A record, or None (with a warning) when it is invalid (set aside), newer or older (left untouched)."""
    try:
        return read_record(path)
    except InvalidRecord as e:
        set_aside(path, e)
    except (NewerRecord, OlderRecord) as e:
        log.warning("skipping %s", e)
    return None


def untrained_parts(training: Any, prefix: str = "") -> list[str]:
    """Which parts of a record's ``training`` ended no better than their initialisation: "" for the
    method itself, stage names ("reranker", "frontend", ...) for a composite's learned stages."""
    if not isinstance(training, dict):
        return []
    if training.get("untrained"):
        return [prefix]
    return [p for k, v in training.items() if isinstance(v, dict) for p in untrained_parts(v, f"{prefix}.{k}" if prefix else k)]
