"""The result record: schema name and version, and reading a record back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vprbench.core.errors import DataError

SCHEMA = "vprbench.result"


SCHEMA_VERSION = 1


def read_record(path: Path) -> dict[str, Any]:
    """Read a result record; DataError naming the file if it is not a valid record."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"result record {str(path)!r} is unreadable or corrupt ({e})") from None
    if not isinstance(record, dict) or record.get("schema") != SCHEMA:
        raise DataError(f"result record {str(path)!r} is not a {SCHEMA} record")
    if record.get("schema_version", 0) > SCHEMA_VERSION:
        raise DataError(
            f"result record {str(path)!r} has schema version {record['schema_version']}, newer than this vprbench "
            f"understands ({SCHEMA_VERSION}); upgrade vprbench"
        )
    return record
