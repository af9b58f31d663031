"""ppxgb.files: the one writer of models, reports, keys and tokens."""

from __future__ import annotations

import os
import stat

import pytest

from ppxgb.errors import ParameterError
from ppxgb.files import write_atomic, write_private_file


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_private_file_is_owner_only_and_never_replaced_by_accident(tmp_path):
    key = tmp_path / "alice.key"
    write_private_file(key, "secret\n")
    assert key.read_bytes() == b"secret\n" and _mode(key) == 0o600
    with pytest.raises(ParameterError, match="does not exist yet"):
        write_private_file(key, b"other")
    assert key.read_bytes() == b"secret\n" and _names(tmp_path) == ["alice.key"]
    key.chmod(0o644)
    write_private_file(key, b"new", overwrite=True)
    assert key.read_bytes() == b"new" and _mode(key) == 0o600


def test_atomic_write_takes_the_mode_asked_for_or_the_umask_default(tmp_path):
    report = write_atomic(tmp_path / "r.html", "<html>", mode=0o644)
    assert _mode(report) == 0o644
    umask = os.umask(0o027)
    try:
        assert _mode(write_atomic(tmp_path / "m.json", b"{}")) == 0o640
    finally:
        os.umask(umask)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "model.json"
    write_atomic(target, b"one")

    def crash(src, dst):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        write_atomic(target, b"two")
    monkeypatch.setattr(os, "link", crash)
    with pytest.raises(OSError, match="power cut"):
        write_private_file(tmp_path / "k.key", b"secret")
    assert target.read_bytes() == b"one" and _names(tmp_path) == ["model.json"]


@pytest.mark.parametrize("data", [None, 3, ["x"]])
def test_only_bytes_or_text_are_written(tmp_path, data):
    with pytest.raises(TypeError, match="data"):
        write_atomic(tmp_path / "x", data)
    assert _names(tmp_path) == []
