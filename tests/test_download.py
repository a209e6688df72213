"""Downloader and file verification, against file:// URLs and a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import definition_text, write_definition

from vprbench.core.errors import ConfigError, DataError
from vprbench.data.catalog import DatasetDefinition
from vprbench.data.download import download_dataset, download_file, file_specs, verify_files

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    """A local HTTP server for one payload: honours Range unless told not to; can cut a response short."""

    def __init__(self, payload: bytes, honour_range: bool = True) -> None:
        self.payload, self.honour_range, self.cut_after = payload, honour_range, None
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                body, status = outer.payload, 200
                if rng and outer.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.end_headers()
                        return
                    body, status = body[start:], 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.cut_after is not None:
                    self.wfile.write(body[: outer.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    outer.cut_after = None
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/file.bin"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_file_url_with_checksum(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "f.bin"
    seen = []
    got = download_file(src.as_uri(), dest, sha256=SHA, size=len(PAYLOAD), progress=lambda d, t: seen.append(d))
    assert got == dest and dest.read_bytes() == PAYLOAD and seen[-1] == len(PAYLOAD)
    assert not dest.with_name("f.bin.part").exists()
    # an existing verified file is kept
    assert download_file(src.as_uri(), dest, sha256=SHA) == dest


def test_checksum_mismatch_leaves_nothing(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError, match="checksum mismatch"):
        download_file(src.as_uri(), dest, sha256="0" * 64)
    assert not dest.exists() and not (tmp_path / "f.bin.part").exists()


def test_bad_url_and_scheme(tmp_path):
    with pytest.raises(ConfigError, match="unsupported URL"):
        download_file("ftp://example.org/x", tmp_path / "x")
    with pytest.raises(DataError, match="cannot fetch"):
        download_file((tmp_path / "nope.bin").as_uri(), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_http_resume_with_range(tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:40000])
    with Server(PAYLOAD) as srv:
        download_file(srv.url, dest, sha256=SHA)
    assert srv.ranges == ["bytes=40000-"]
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()


def test_http_server_ignoring_range_starts_over(tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(b"x" * 1000)  # garbage that must not be kept
    with Server(PAYLOAD, honour_range=False) as srv:
        download_file(srv.url, dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_interrupted_download_never_under_final_name_then_resumes(tmp_path):
    dest = tmp_path / "f.bin"
    with Server(PAYLOAD) as srv:
        srv.cut_after = 30000
        with pytest.raises(DataError, match="run again to resume"):
            download_file(srv.url, dest, sha256=SHA)
        assert not dest.exists()
        have = (tmp_path / "f.bin.part").stat().st_size
        assert 0 < have < len(PAYLOAD)
        download_file(srv.url, dest, sha256=SHA)
        assert srv.ranges[-1] == f"bytes={have}-"
    assert dest.read_bytes() == PAYLOAD


def test_complete_part_file_gets_416_and_is_verified(tmp_path):
    dest = tmp_path / "f.bin"
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)
    with Server(PAYLOAD) as srv:
        download_file(srv.url, dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def _files() -> list[dict]:
    """The [[files]] of the download test: a checksummed file (fetched from a local mirror here), a manual one, an optional one."""
    return [{"path": "sub/a.bin", "url": "https://example.org/never-fetched/a.bin", "sha256": SHA, "size": len(PAYLOAD)},
            {"path": "sub/manual.npy", "page": "https://example.org/shared-folder", "shape": [4, 3]},
            {"path": "sub/extra.txt", "optional": True}]


def _mirror(tmp_path: Path) -> Path:
    """A local copy of the download test's files (what ``--mirror`` points at)."""
    (tmp_path / "mirror" / "sub").mkdir(parents=True)
    (tmp_path / "mirror" / "sub" / "a.bin").write_bytes(PAYLOAD)
    return tmp_path / "mirror"


def test_download_dataset_and_verify(tmp_path):
    mirror = _mirror(tmp_path)
    text = definition_text("synthetic", name="dl", summary="download test", files=_files())
    d = DatasetDefinition.from_toml(text, str(tmp_path / "dl.toml"))
    data = tmp_path / "data"
    status = {s.spec.path: s for s in verify_files(d, data)}
    assert not status["sub/a.bin"].ok and "missing" in status["sub/a.bin"].problem
    assert "example.org/shared-folder" in status["sub/manual.npy"].problem
    got, manual = download_dataset(d, data, progress=None, mirror=mirror)
    assert got == [data / "sub/a.bin"] and [m.path for m in manual] == ["sub/manual.npy"]
    np.save(data / "sub/manual.npy", np.zeros((4, 2), np.float32))
    status = {s.spec.path: s for s in verify_files(d, data)}
    assert status["sub/a.bin"].ok
    assert "array shape [4, 2], expected [4, 3]" in status["sub/manual.npy"].problem
    np.save(data / "sub/manual.npy", np.zeros((4, 3), np.float32))
    (data / "sub/a.bin").write_bytes(PAYLOAD[:-1] + b"\x00")
    status = {s.spec.path: s for s in verify_files(d, data)}
    assert status["sub/manual.npy"].ok and "sha256" in status["sub/a.bin"].problem


def test_file_specs_reject_unknown_keys(tmp_path):
    d = DatasetDefinition.from_toml('name = "x"\nloader = "synthetic"\nsummary = "s"\n[[files]]\npath = "a"\nchecksum = "1"\n', "x.toml")
    with pytest.raises(ConfigError, match="unknown keys"):
        file_specs(d)


def test_datasets_cli(tmp_path, capsys):
    from vprbench.cli.main import main

    mirror = _mirror(tmp_path)
    toml = write_definition(tmp_path / "dl.toml", "synthetic", summary="download test", files=_files())
    data = tmp_path / "data"
    assert main(["datasets", "verify", str(toml), "--data-dir", str(data)]) == 3
    err = capsys.readouterr().err
    assert "sub/a.bin: missing" in err and "example.org/shared-folder" in err
    assert main(["datasets", "download", str(toml), "--data-dir", str(data), "--mirror", str(mirror)]) == 1  # one file is manual
    out = capsys.readouterr().out
    assert "sub/manual.npy" in out and (data / "sub/a.bin").read_bytes() == PAYLOAD
    np.save(data / "sub/manual.npy", np.zeros((4, 3), np.float32))
    assert main(["datasets", "verify", str(toml), "--data-dir", str(data)]) == 0
    assert main(["datasets", "info", str(toml), "--data-dir", str(data)]) == 0
    assert "[ok]" in capsys.readouterr().out
    assert main(["datasets", "list"]) == 0
    assert "nordland-64x32" in capsys.readouterr().out
