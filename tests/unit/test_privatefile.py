"""Files created with their final mode (issue 10 §6): credentials, QR codes, broker files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from gateway.brokersync import _write_atomic
from gateway.installer.labels import config_qr_png
from gateway.privatefile import replace_keeping_owner, write_private


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path, follow_symlinks=False).st_mode)


def test_an_existing_looser_file_becomes_0600(tmp_path: Path) -> None:
    out = tmp_path / "creds.json"
    out.write_text("old")
    out.chmod(0o644)
    write_private(out, b'{"secret": 1}')
    assert _mode(out) == 0o600 and out.read_bytes() == b'{"secret": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["creds.json"]  # no temp left


def test_the_mode_does_not_depend_on_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "a", b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a") == 0o600


def test_a_planted_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    link = tmp_path / "passwd"
    link.symlink_to(victim)
    _write_atomic(link, "user:hash\n")
    assert not link.is_symlink() and link.read_text() == "user:hash\n"
    assert victim.read_text() == "keep me"
    assert _mode(link) == 0o600


def test_broker_files_keep_their_mode(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("old")
    acl.chmod(0o640)
    replace_keeping_owner(acl, b"topic read x\n")
    assert _mode(acl) == 0o640 and acl.read_text() == "topic read x\n"
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError, match="not a regular file"):
        replace_keeping_owner(tmp_path / "dir", b"x")


def test_the_config_qr_code_is_created_0600(tmp_path: Path) -> None:
    qr = tmp_path / "bt-1.png"
    qr.write_bytes(b"old")
    qr.chmod(0o666)
    config_qr_png('{"device_id":"bt-1","password":"p"}', qr)
    assert _mode(qr) == 0o600 and qr.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
