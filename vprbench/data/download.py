"""Data files of dataset definitions: what a dataset needs, checking it, and downloading it.

A definition lists its files as ``[[files]]`` tables::

    [[files]]
    path = "seqnet-structs/nordland_test_d-1_d2-1.db"   # relative to the data directory
    role = "structure"                                   # free text shown by `datasets info`
    url = "https://..."                                  # direct download location, if any
    page = "https://..."                                 # where a person gets it (shared folders)
    sha256 = "..."                                       # optional checksum
    size = 577224                                        # optional size in bytes
    shape = [27592, 4096]                                # optional: .npy array shape to check
    optional = false                                     # optional files do not fail `verify`

:func:`download_file` fetches one URL (``http(s)://`` or ``file://``) to a ``.part`` file next
to the target, resumes an interrupted ``.part`` with an HTTP Range request, checks size and
checksum, and only then renames it to its final name: a partial or corrupt download never sits
under the final name. :func:`download_dataset` takes a definition's ``url`` only when it is
``http(s)://`` (a ``file://`` URL in a definition would copy any local file, e.g.
``/etc/passwd``, into the data directory); local copies come from an explicit *mirror* folder
the user names (``vprbench datasets download NAME --mirror DIR``), which holds the files under
their ``path``.

Paths in definitions stay inside the data directory (:func:`data_path`): no absolute paths, no
``..`` and no symbolic link inside the data directory whose target lies outside it, unless the
definition sets ``allow_absolute_paths = true`` (for reading; downloads never write outside).
Links the user made on purpose (large files on another disk) are followed when their target lies
in a folder listed in ``$VPRBENCH_ALLOW_LINKS_TO`` (the user's consent, for every definition,
built-in ones included).
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vprbench.core.errors import ConfigError, DataError
from vprbench.core.fileio import read_npy_header
from vprbench.core.hashing import ContentHash

if TYPE_CHECKING:
    from vprbench.data.catalog import DatasetDefinition

CHUNK = 1 << 20

log = logging.getLogger("vprbench")


@dataclass(frozen=True)
class FileSpec:
    """One data file a dataset definition needs (see the module docstring for the fields)."""

    path: str
    role: str = ""
    url: str | None = None
    page: str | None = None
    sha256: str | None = None
    size: int | None = None
    shape: tuple[int, ...] | None = None
    optional: bool = False
    note: str = ""

    def where(self) -> str:
        """Where to get the file, for error messages."""
        parts = []
        if self.url:
            parts.append(f"download: {self.url}")
        if self.page:
            parts.append(f"from: {self.page}")
        if self.note:
            parts.append(self.note)
        return "; ".join(parts) or "no published location recorded"


#: Top-level definition flag that lets paths point outside the data directory (for reading only).
ALLOW_ABSOLUTE = "allow_absolute_paths"


def allows_outside_paths(definition: DatasetDefinition) -> bool:
    """The definition's ``allow_absolute_paths`` flag (a TOML boolean at the top level; default false)."""
    flag = definition.raw.get(ALLOW_ABSOLUTE, False)
    if not isinstance(flag, bool):
        raise ConfigError(f"dataset definition {definition.source}: {ALLOW_ABSOLUTE} must be true or false (a TOML boolean), got {flag!r}")
    return flag


def leaves_data_dir(rel: str) -> bool:
    """True if the path ``rel`` is absolute or climbs out of the folder it is relative to (``..``)."""
    if Path(rel).is_absolute() or os.path.isabs(rel):
        return True
    norm = os.path.normpath(rel)
    return norm == ".." or norm.startswith(".." + os.sep)


#: Environment variable: folders (separated by the OS path separator) that symbolic links inside a
#: data directory may lead into, e.g. a disk holding large descriptor files linked into it.
LINK_TARGETS_ENV = "VPRBENCH_ALLOW_LINKS_TO"


def outside_target(base: Path, path: Path) -> Path | None:
    """The real location of ``path`` if it lies outside the real ``base`` (a symbolic link leads out), else None."""
    real, root = Path(path).resolve(), Path(base).resolve()
    return None if real == root or real.is_relative_to(root) else real


def _link_target_allowed(real: Path) -> bool:
    """True if ``real`` lies in a folder of ``$VPRBENCH_ALLOW_LINKS_TO``."""
    folders = [Path(d).expanduser().resolve() for d in os.environ.get(LINK_TARGETS_ENV, "").split(os.pathsep) if d.strip()]
    return any(real == f or real.is_relative_to(f) for f in folders)


def data_path(definition: DatasetDefinition, data_dir: Path | None, rel: object, key: str) -> Path:
    """The file or folder ``rel`` (definition parameter ``key``) under ``data_dir``.

    Paths in definitions are relative to the data directory and must stay inside it (no absolute
    paths, no ``..`` climbing out, no symbolic link leading out of it: the real location is
    checked, and a link may lead only into a folder of ``$VPRBENCH_ALLOW_LINKS_TO``) unless the
    definition sets ``allow_absolute_paths = true``; ConfigError otherwise, naming the parameter.
    ``data_dir`` None checks the text of the path only (and returns it).
    """
    if not isinstance(rel, str) or not rel:
        raise ConfigError(f"dataset definition {definition.source}: {key} must be a non-empty path string, got {rel!r}")
    allow = f"Set {ALLOW_ABSOLUTE} = true at the top of the definition to read files elsewhere"
    if leaves_data_dir(rel):
        if not allows_outside_paths(definition):
            raise ConfigError(
                f"dataset definition {definition.source}: {key} = {rel!r} points outside the data directory; paths are "
                f"relative to the data directory and stay inside it. {allow}"
            )
        return Path(rel)
    if data_dir is None:
        return Path(rel)
    path = Path(data_dir) / rel
    real = outside_target(data_dir, path)
    if real is not None and not _link_target_allowed(real) and not allows_outside_paths(definition):
        raise ConfigError(
            f"dataset definition {definition.source}: {key} = {rel!r} leads outside the data directory {data_dir} through a "
            f"symbolic link (its real location is {real}); paths stay inside the data directory. If you made that link (e.g. "
            f"to large files on another disk), allow its target: export {LINK_TARGETS_ENV}={real.parent} (folders separated "
            f"by {os.pathsep!r}); or {allow[0].lower()}{allow[1:]}"
        )
    return path


def param_key(definition: DatasetDefinition, rel: str) -> str:
    """The ``[params]`` key whose value is the path ``rel`` (``key.name`` inside a table), for messages; else "path"."""
    for key, value in definition.params.items():
        if value == rel:
            return key
        if isinstance(value, dict):
            sub = next((k for k, v in value.items() if v == rel), None)
            if sub is not None:
                return f"{key}.{sub}"
    return "path"


def _check_type(definition: DatasetDefinition, i: int, key: str, value: Any, kind: type | tuple[type, ...], expected: str) -> None:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise ConfigError(f"dataset definition {definition.source}: files[{i}].{key} must be {expected}, got {value!r}")


def file_specs(definition: DatasetDefinition) -> list[FileSpec]:
    """The ``[[files]]`` of a definition as :class:`FileSpec` (ConfigError on a malformed entry).

    Every field is type-checked (``shape`` a list of integers, -1 for "any"; ``size`` a
    non-negative integer; ``optional`` a boolean; the rest strings), and ``path`` must stay inside
    the data directory unless ``allow_absolute_paths = true``.
    """
    raw = definition.raw.get("files", [])
    if not isinstance(raw, list):
        raise ConfigError(f"dataset definition {definition.source}: 'files' must be an array of tables ([[files]])")
    out = []
    known = set(FileSpec.__dataclass_fields__)
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            raise ConfigError(f"dataset definition {definition.source}: files[{i}] needs a string 'path'")
        extra = set(entry) - known
        if extra:
            raise ConfigError(f"dataset definition {definition.source}: files[{i}] has unknown keys {sorted(extra)}; known: {sorted(known)}")
        values: dict[str, Any] = dict(entry)
        for key in ("role", "url", "page", "sha256", "note"):
            if key in values:
                _check_type(definition, i, key, values[key], str, "a string")
        if "sha256" in values and not re.fullmatch(r"[0-9a-fA-F]{64}", values["sha256"]):
            raise ConfigError(f"dataset definition {definition.source}: files[{i}].sha256 must be 64 hexadecimal digits "
                              f"(a SHA-256 digest, as `sha256sum` prints it), got {values['sha256']!r}")
        if "size" in values:
            _check_type(definition, i, "size", values["size"], int, "a whole number of bytes")
            if values["size"] < 0:
                raise ConfigError(f"dataset definition {definition.source}: files[{i}].size must be >= 0, got {values['size']}")
        if "optional" in values:
            _check_type(definition, i, "optional", values["optional"], bool, "true or false")
        if "shape" in values:
            shape = values["shape"]
            if not isinstance(shape, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in shape):
                raise ConfigError(
                    f"dataset definition {definition.source}: files[{i}].shape must be a list of integers (-1 for any size), "
                    f"e.g. [27592, 4096], got {shape!r}"
                )
            values["shape"] = tuple(shape)
        data_path(definition, None, values["path"], f"files[{i}].path")
        out.append(FileSpec(**values))
    return out


def missing_files_error(definition: DatasetDefinition, data_dir: Path | None, paths: list[str]) -> DataError:
    """A DataError listing exactly which files are missing and where each comes from."""
    specs = {s.path: s for s in file_specs(definition)}
    base = str(data_dir) if data_dir is not None else "(no data directory: pass --data-dir or set VPRBENCH_DATA_DIR)"
    lines = [f"dataset {definition.name!r}: {len(paths)} file(s) missing under data directory {base}:"]
    for p in paths:
        spec = specs.get(p)
        lines.append(f"  - {p}  [{spec.where() if spec else 'see the dataset definition ' + definition.source}]")
    lines.append(f"Run `vprbench datasets info {definition.name}` for details, `vprbench datasets verify {definition.name}` to check.")
    return DataError("\n".join(lines))


def require_data_dir(definition: DatasetDefinition, data_dir: Path | None) -> Path:
    """``data_dir`` as a Path, or a DataError saying how to set it."""
    if data_dir is None:
        raise DataError(
            f"dataset {definition.name!r} reads real data files: pass --data-dir DIR or set VPRBENCH_DATA_DIR "
            f"(run `vprbench datasets info {definition.name}` to see which files it needs)"
        )
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        state = "is not a directory" if data_dir.exists() else "does not exist"
        raise DataError(f"dataset {definition.name!r}: data directory {data_dir} {state}")
    return data_dir


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    return ContentHash().add_file(path, CHUNK).hexdigest(64)


def npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, without reading the array."""
    with open(path, "rb") as f:
        try:
            shape, _, dtype = read_npy_header(f)
        except ValueError as e:
            raise DataError(f"{path}: not a valid .npy file ({e})") from None
    return shape, dtype


@dataclass(frozen=True)
class FileStatus:
    spec: FileSpec
    path: Path
    ok: bool
    problem: str = ""


def verify_files(definition: DatasetDefinition, data_dir: Path | None, checksums: bool = True) -> list[FileStatus]:
    """Check every listed file: present, size, ``.npy`` shape, checksum (if recorded and ``checksums``)."""
    base = Path(data_dir) if data_dir is not None else Path(".")
    out = []
    for spec in file_specs(definition):
        path = data_path(definition, base, spec.path, "files.path")
        problem = ""
        if not path.exists():
            problem = f"missing ({spec.where()})"
        elif path.is_dir():
            problem = ""
        elif spec.size is not None and path.stat().st_size != spec.size:
            problem = f"size {path.stat().st_size} bytes, expected {spec.size}"
        elif spec.shape is not None and path.suffix == ".npy":
            try:
                shape, _ = npy_shape(path)
                if len(shape) != len(spec.shape) or any(e >= 0 and e != s for e, s in zip(spec.shape, shape)):
                    problem = f"array shape {list(shape)}, expected {list(spec.shape)}"
            except DataError as e:
                problem = str(e)
        if not problem and checksums and spec.sha256 and path.is_file():
            got = sha256_of(path)
            if got != spec.sha256.lower():
                problem = f"sha256 {got}, expected {spec.sha256}"
        out.append(FileStatus(spec, path, not problem, problem))
    return out


# downloading ----------------------------------------------------------------------------------


def _open(url: str, start: int, timeout: float):
    req = urllib.request.Request(url)
    if start > 0 and urllib.parse.urlparse(url).scheme in ("http", "https"):
        req.add_header("Range", f"bytes={start}-")
    return urllib.request.urlopen(req, timeout=timeout)


def _content_total(resp, start: int) -> int | None:
    """The size of the whole file according to the response (Content-Range total, else start + Content-Length)."""
    rng = resp.headers.get("Content-Range") or ""
    if "/" in rng and rng.rsplit("/", 1)[1].strip().isdigit():
        return int(rng.rsplit("/", 1)[1])
    length = resp.headers.get("Content-Length")
    return start + int(length) if length is not None and length.strip().isdigit() else None


def _write_response(resp, url: str, part: Path, start: int, size: int | None, progress) -> bool:
    """Append (resumed, HTTP 206) or write the response body to ``part``.

    Returns True when the server's whole file is now in ``part`` (the body ended where the server
    said the file ends, or the server gave no length and the body ended normally); DataError if the
    body was cut short.
    """
    with resp:
        status = getattr(resp, "status", None)
        if start > 0 and status != 206:
            start = 0  # server ignored the Range request (or file://): start over
        server_total = _content_total(resp, start)
        total = server_total if server_total is not None else size
        done = start
        try:
            with open(part, "ab" if start > 0 else "wb") as f:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise DataError(f"download: {url} interrupted after {done} bytes ({type(e).__name__}); run again to resume from {part}") from None
    if server_total is not None and done < server_total:
        raise DataError(f"download: {url} ended after {done} of {server_total} bytes; run again to resume from {part}")
    return True


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    size: int | None = None,
    resume: bool = True,
    timeout: float = 60.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``url`` to ``dest`` safely; return ``dest``.

    Bytes go to ``dest + ".part"``; an existing ``.part`` is resumed with an HTTP Range request
    (servers that ignore Range make it start over). When complete, size and SHA-256 (if given) are
    checked; a mismatch deletes the ``.part`` and raises DataError. Only a verified file is renamed
    to ``dest`` (atomic on one file system). An existing ``dest`` that verifies is kept as is.

    Args:
        url: ``http://``, ``https://`` or ``file://`` URL.
        dest: final file path.
        sha256: expected hex digest, or None to skip the check.
        size: expected size in bytes, or None.
        resume: continue an existing ``.part`` file.
        progress: called with (bytes so far, total or None) after each chunk.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise ConfigError(f"download: unsupported URL {url!r}; expected http://, https:// or file://")
    if dest.exists():
        if _matches(dest, sha256, size):
            return dest
        raise DataError(
            f"download: {dest} exists but does not match the expected "
            f"{'checksum' if sha256 else 'size'}; move it away and download again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if (resume and part.exists()) else 0
    try:
        resp = _open(url, start, timeout)
    except urllib.error.HTTPError as e:
        if not (e.code == 416 and start > 0):  # 416: the .part already holds the whole file
            raise DataError(f"download: cannot fetch {url}: HTTP {e.code} {e.reason}") from None
        resp = None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise DataError(f"download: cannot fetch {url}: {e}") from None
    # 416 on a resume: the server says the .part already holds its whole file
    complete = True if resp is None else _write_response(resp, url, part, start, size, progress)
    got_size = part.stat().st_size
    if size is not None and got_size != size:
        if not complete:  # pragma: no cover - _write_response raises when cut short
            raise DataError(f"download: {url} gave {got_size} of {size} bytes; run again to resume from {part}")
        if sha256 is not None and sha256_of(part) == sha256.lower():
            log.warning("download: %s is %d bytes, not the recorded size %d, but its SHA-256 matches: keeping it; fix `size` in the definition", url, got_size, size)
        else:
            raise DataError(
                f"download: {url}: the server sent its complete file, {got_size} bytes, but the definition records size = {size}. "
                "The recorded size is wrong or the file at the URL has changed; resuming cannot fix that. Correct `size` (and "
                f"check `sha256`) in the definition; the downloaded bytes stay in {part} and are used once they match"
            )
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256.lower():
            part.unlink()
            raise DataError(f"download: checksum mismatch for {url}: sha256 {got}, expected {sha256}; the partial file was deleted")
    os.replace(part, dest)
    return dest


def _matches(path: Path, sha256: str | None, size: int | None) -> bool:
    if size is not None and path.stat().st_size != size:
        return False
    return sha256 is None or sha256_of(path) == sha256.lower()


def _mirror_dir(mirror: str | os.PathLike) -> Path:
    text = str(mirror)
    if text.startswith("file://"):
        text = urllib.request.url2pathname(urllib.parse.urlparse(text).path)
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"download: mirror {mirror} is not a folder; expected a folder holding the files under their paths")
    return folder


def download_dataset(
    definition: DatasetDefinition,
    data_dir: Path,
    progress: Callable[[str], None] | None = print,
    mirror: str | os.PathLike | None = None,
) -> tuple[list[Path], list[FileSpec]]:
    """Fetch every listed file that is missing: from ``mirror`` if given and it holds the file, else from its ``url``.

    Returns (files fetched or already present, files that need a manual download). Files are
    written only inside ``data_dir`` (ConfigError for a path that leaves it, by ``..`` or through
    a symbolic link, whatever the definition allows for reading; links into folders of
    ``$VPRBENCH_ALLOW_LINKS_TO`` are the user's own and allowed). A definition's ``url`` must be
    ``http://`` or ``https://`` (ConfigError otherwise, before anything is fetched); ``mirror``
    (a folder, or a ``file://`` URL of one) is the user's explicit local copy, with the files
    under their ``path``; copies from it are checked like downloads (size, SHA-256).
    """
    got: list[Path] = []
    manual: list[FileSpec] = []
    specs = file_specs(definition)

    def escapes(rel: str) -> bool:
        real = None if leaves_data_dir(rel) else outside_target(data_dir, Path(data_dir) / rel)
        return leaves_data_dir(rel) or real is not None and not _link_target_allowed(real)

    outside = [s.path for s in specs if (s.url or mirror is not None) and escapes(s.path)]
    if outside:  # even with allow_absolute_paths: that flag is for reading files elsewhere, never writing there
        raise ConfigError(
            f"dataset definition {definition.source}: download writes only inside the data directory {data_dir}, "
            f"but files {outside} point outside it (a path that leaves it, or a symbolic link leading out); give paths "
            "relative to the data directory"
        )
    for i, spec in enumerate(specs):
        if spec.url and urllib.parse.urlparse(spec.url).scheme not in ("http", "https"):
            raise ConfigError(
                f"dataset definition {definition.source}: files[{i}].url = {spec.url!r}: datasets download only from http:// "
                "or https:// URLs. To copy files from a local folder (a mirror holding them under their paths), pass "
                "--mirror DIR to `vprbench datasets download` (download_dataset(..., mirror=DIR))"
            )
    source = _mirror_dir(mirror) if mirror is not None else None
    for spec in specs:
        dest = Path(data_dir) / spec.path
        if dest.exists() and _matches(dest, spec.sha256, spec.size):
            got.append(dest)
            continue
        local = source / spec.path if source is not None else None
        if local is not None and outside_target(source, local) is None and local.is_file():
            if progress:
                progress(f"copying {local} -> {dest}")
            got.append(download_file(local.resolve().as_uri(), dest, spec.sha256, spec.size))
            continue
        if not spec.url:
            if not spec.optional:
                manual.append(spec)
            continue
        if progress:
            progress(f"downloading {spec.url} -> {dest}")
        got.append(download_file(spec.url, dest, spec.sha256, spec.size))
    return got, manual
