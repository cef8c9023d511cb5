"""Files that hold secrets or personal data: private folders (0700) and files (0600), atomic writes.

Modes are set explicitly where a file or folder is made, never through the process umask, which
belongs to whoever runs us (and which can only take permissions away, never guarantee them).
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("verifier.files")

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def make_private_dir(folder: Path) -> Path:
    """Create `folder` and its missing parents with mode 0700; an existing folder is left as it is."""
    folder = Path(folder)
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            os.mkdir(path, PRIVATE_DIR)
        except FileExistsError:  # another process made it first: it is that process's to set
            continue
        os.chmod(path, PRIVATE_DIR)
    return folder


def create_private_file(path: Path) -> bool:
    """Make `path` an empty file with mode 0600 unless it exists; True if this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def tighten(path: Path) -> None:
    """Make an existing file 0600 if group or others have any access to it; a missing file is fine."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_IMODE(mode) & (stat.S_IRWXG | stat.S_IRWXO):
        try:
            os.chmod(path, PRIVATE_FILE)
        except PermissionError:  # only its owner (or root) may: say so, and go on as before
            log.warning(
                "%s is readable by others (mode %04o) and not ours to change: chmod 600 it", path, stat.S_IMODE(mode)
            )


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new name in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Replace `path` with `data`: a unique temporary file in the same folder (so concurrent
    writers never share one), fsynced, renamed over `path`, then the folder fsynced."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
