"""Writing files so that a crash never leaves half of one: the one writer of ppxgb.

Models, reports, key files, tokens and TLS keys are all written the same way: the
bytes go to a temporary file in the target's own folder (same file system, so the
final rename is atomic), are flushed and fsync'ed, and only then take the target's
name.  A reader sees the old file or the new one, never a truncated mix, and a failed
write leaves nothing behind.

Private files (keys, tokens, master keys) are created with mode 0600 from the first
byte: the temporary file is made 0600 by `mkstemp`, so there is no moment in which
another user could open it.  By default a private file is never overwritten, since
replacing a key by accident loses it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import ParameterError

PRIVATE_MODE = 0o600


def _default_mode() -> int:
    """What `open()` would give a new file under the current umask (0644 usually)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _write_temp(target: Path, data: bytes, mode: int) -> str:
    """A fsync'ed temporary file next to `target` holding `data` with `mode`."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data: expected bytes or str, got {type(data).__name__}")


def write_atomic(path: str | os.PathLike[str], data: bytes | str, mode: int | None = None,
                 overwrite: bool = True) -> Path:
    """Write `data` to `path` all at once and return the path.

    mode: the file's permissions (default: what the umask gives a new file).
    overwrite: when False an existing `path` is refused (ParameterError) and the check
    is atomic with the write (a hard link, which fails if the name is taken).
    """
    payload = _as_bytes(data)
    target = Path(path)
    if not target.name:
        raise ParameterError.bad("path", "a file path", str(path))
    tmp = _write_temp(target, payload, _default_mode() if mode is None else mode)
    try:
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise ParameterError.bad("path", "a file that does not exist yet", str(path)) from None
    except BaseException:
        _unlink(tmp)
        raise
    if not overwrite:
        _unlink(tmp)
    return target


def write_private_file(path: str | os.PathLike[str], data: bytes | str, overwrite: bool = False) -> Path:
    """Write a secret (key, token, master key) readable by its owner only (0600), atomically.

    An existing file is refused unless `overwrite`, so a key is never replaced by accident.
    """
    return write_atomic(path, data, mode=PRIVATE_MODE, overwrite=overwrite)
