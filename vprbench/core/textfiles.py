"""Reading text files that users write (definitions, experiment and published-value files), with
errors that name the file instead of a UnicodeDecodeError or OSError traceback."""

from __future__ import annotations

from pathlib import Path

from vprbench.core.errors import ConfigError


def read_user_text(path: Path, what: str, kind: str = "text") -> str:
    """The UTF-8 text of ``path`` (a leading BOM dropped).

    Raises :class:`ConfigError` starting with ``what`` (e.g. ``"dataset definition x.toml"``) for an
    unreadable file, bytes that are not UTF-8, or NUL bytes (a binary file); ``kind`` says what the
    file should have been (e.g. ``"a TOML file"``).
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as e:
        raise ConfigError(f"{what}: cannot read the file ({type(e).__name__}: {e})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: not UTF-8 text ({e.reason} at byte {e.start}); expected {kind} in UTF-8") from None
    if "\0" in text:
        raise ConfigError(f"{what}: not a text file (it contains NUL bytes); expected {kind}")
    return text
