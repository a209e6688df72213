"""`vprbench report` on a folder it cannot write: one line naming the folder, exit 1 (OutputError), no traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from vprbench.cli.main import main
from vprbench.core.errors import OutputError

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "runs"
    assert main(["run", "--methods", "netvlad,seqmatch", "--dataset", "synth-tiny", "--out", str(out), "--no-report", "-q"]) == 0
    return out


def _copy(results: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(results, tmp_path / "runs"))


def _assert_clean(capsys, folder: Path) -> None:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert lines[-1].startswith("vprbench: cannot write results:") and str(folder) in lines[-1]


@pytest.mark.skipif(AS_ROOT, reason="chmod does not stop root from writing")
@pytest.mark.parametrize("unwritable", ["root", "tables", "plots"])
def test_report_into_a_read_only_folder(results, tmp_path, capsys, unwritable):
    root = _copy(results, tmp_path)
    folder = root if unwritable == "root" else root / unwritable
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    try:
        capsys.readouterr()
        assert main(["report", str(root), "--html"]) == 1
        _assert_clean(capsys, folder if unwritable != "root" else root / "tables")
    finally:
        folder.chmod(0o755)


def _fail_writes_under(monkeypatch, folder: Path, error: OSError) -> None:
    """Every file opened for writing or renamed into place, and every folder made, under ``folder`` fails with ``error`` (as on a read-only folder)."""
    import builtins

    real_open, real_mkdir, real_mkstemp, real_replace = builtins.open, Path.mkdir, __import__("tempfile").mkstemp, os.replace

    def under(p) -> bool:  # noqa: ANN001
        try:
            return Path(os.fspath(p)).resolve().is_relative_to(folder.resolve())
        except TypeError:
            return False

    def fail(p):  # noqa: ANN001
        raise type(error)(error.errno, error.strerror, os.fspath(p))

    def open_(file, mode="r", *args, **kwargs):  # noqa: ANN001
        if any(c in mode for c in "wax+") and under(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def mkdir(self, *args, **kwargs):  # noqa: ANN001
        if under(self) and not self.is_dir():
            fail(self)
        return real_mkdir(self, *args, **kwargs)

    def mkstemp(*args, dir=None, **kwargs):  # noqa: ANN001, A002
        if dir is not None and under(dir):
            fail(dir)
        return real_mkstemp(*args, dir=dir, **kwargs)

    def replace(src, dst, *args, **kwargs):  # noqa: ANN001
        if under(dst):
            fail(dst)
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr("tempfile.mkstemp", mkstemp)


@pytest.mark.parametrize("unwritable", ["root", "tables", "plots", "page"])
def test_report_write_failures_are_output_errors(results, tmp_path, capsys, monkeypatch, unwritable):
    """The same failures simulated (works as root too): EROFS for the whole folder, EACCES for one subfolder."""
    root = _copy(results, tmp_path)
    (root / "tables").mkdir(exist_ok=True)
    (root / "plots").mkdir(exist_ok=True)
    if unwritable == "root":
        _fail_writes_under(monkeypatch, root, OSError(errno.EROFS, "Read-only file system"))
        expected = root / "tables"
    elif unwritable == "page":
        _fail_writes_under(monkeypatch, root / "report.html", PermissionError(errno.EACCES, "Permission denied"))
        expected = root
    else:
        _fail_writes_under(monkeypatch, root / unwritable, PermissionError(errno.EACCES, "Permission denied"))
        expected = root / unwritable
    capsys.readouterr()
    assert main(["report", str(root), "--html"]) == 1
    _assert_clean(capsys, expected)


def test_report_api_raises_output_error(results, tmp_path, monkeypatch):
    from vprbench.reporting.report import report

    root = _copy(results, tmp_path)
    _fail_writes_under(monkeypatch, root / "tables", PermissionError(errno.EACCES, "Permission denied"))
    with pytest.raises(OutputError, match="tables.*Permission denied"):
        report(root, plots=False)
