"""Files created with their final mode, never through a symlink, replaced atomically.

:func:`write_private` writes a secret (device credentials, a configuration QR code): the file
is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` and its final mode (0600) in a private
(0700) temporary folder next to the target, then renamed over it, so it is never readable by
others for a moment, never keeps an existing file's looser mode and never follows a symlink
planted at the target. All steps use directory descriptors: renaming or swapping the
folders by name meanwhile changes nothing.

:func:`replace_keeping_owner` does the same for files another service reads (the broker's
password file and ACL): the new file gets the existing file's mode (and owner, as root).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    parent_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        tmp_dir = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0700
        dir_fd = os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        name = "new"
        try:
            fd = os.open(name, _NEW, mode, dir_fd=dir_fd)
            try:
                os.fchmod(fd, mode)  # the umask may have taken bits away
                if owner is not None:
                    os.fchown(fd, *owner)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(name, path.name, src_dir_fd=dir_fd, dst_dir_fd=parent_fd)
            os.fsync(parent_fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=dir_fd)
            os.close(dir_fd)
            os.rmdir(os.path.basename(tmp_dir), dir_fd=parent_fd)
    finally:
        os.close(parent_fd)


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the first byte (see the module)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, data, mode, None)


def replace_keeping_owner(path: Path, data: bytes, default_mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``, keeping the existing file's mode and (as root) owner."""
    try:
        st: os.stat_result | None = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        st = None  # a planted symlink: replaced by a new file, its target untouched
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path} is not a regular file: not replaced")
    mode = default_mode if st is None else stat.S_IMODE(st.st_mode)
    owner = (st.st_uid, st.st_gid) if st is not None and os.geteuid() == 0 else None
    _write(path, data, mode, owner)
