"""Atomic claims of jobs, so that two runs (or workers) sharing an output folder never compute the
same job twice.

A claim is a small file created with ``O_CREAT | O_EXCL`` (atomic on local and NFS v3+ file
systems) beside the job's result, holding the claimant's host, process id and start time. A claim
is stale — and taken over — when its process is gone (same host) or when it is older than
:data:`STALE_AFTER_S` without being refreshed (another host: the claimant refreshes the file's
modification time while it works, see :meth:`Claim.refresh`).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

#: A claim of another host not refreshed for this long is taken over (seconds).
STALE_AFTER_S = 6 * 3600.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Claim:
    """A held claim on ``path`` (release it with :meth:`release` or use as a context manager)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def refresh(self) -> None:
        try:
            os.utime(self.path)
        except OSError:
            pass

    def release(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(path: Path) -> dict | None:
    """Who holds the claim at ``path`` (None: nobody, or an unreadable / stale claim)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict):
        return None
    if info.get("host") == socket.gethostname():
        return info if isinstance(info.get("pid"), int) and _alive(info["pid"]) and info["pid"] != os.getpid() else None
    return info if age < STALE_AFTER_S else None


def try_claim(path: Path) -> Claim | None:
    """Claim ``path`` atomically; None if another live run holds it. A stale claim is taken over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}).encode()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if holder(path) is not None:
                return None
            try:  # stale: remove and try once more (another run may win the race: then it holds it)
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        return Claim(path)
    return None
