"""Consistent backups of the live database, and restores that prove what they restore."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
from pathlib import Path

from . import auditlog, files


class BackupError(Exception):
    """A backup or restore that cannot be done; the message is for the user."""


def check(path: Path) -> auditlog.Report:
    """integrity_check must be ok and the audit chain must verify; the chain's report."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise BackupError(f"{path} fails integrity_check: {result}")
        report = auditlog.verify(conn)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable database: {exc}") from None
    finally:
        conn.close()
    if not report.ok:
        raise BackupError(f"{path}: the audit log does not verify (first bad entry {report.first_bad_seq})")
    return report


def backup(db_path: Path, target: Path) -> auditlog.Report:
    """A consistent snapshot of a database in use (VACUUM INTO a temporary file, checked, then
    renamed into place), so a half-written backup never carries the target's name."""
    db_path, target = Path(db_path), Path(target)
    if not db_path.exists():
        raise BackupError(f"no database at {db_path}")
    if target.exists():
        raise BackupError(f"{target} already exists; choose a new name")
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        files.make_private_dir(target.parent)  # a folder we make for backups is 0700
        tmp.unlink(missing_ok=True)  # left by a crashed run of a process with our pid
        files.create_private_file(tmp)  # 0600 before a byte is in it; VACUUM INTO fills an empty file
    except OSError as exc:
        raise BackupError(f"cannot write {exc.filename or target}: {exc.strerror}") from None
    try:
        source = sqlite3.connect(db_path, timeout=30)
        try:
            source.execute("VACUUM INTO ?", (str(tmp),))
        finally:
            source.close()
        report = check(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        files.fsync_dir(target.parent)
        return report
    except sqlite3.Error as exc:
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def restore(backup_path: Path, db_path: Path, now: dt.datetime | None = None) -> tuple[auditlog.Report, Path | None]:
    """Put a checked backup in place of the database; the old one is kept beside it. Stop the
    server first. Returns the backup's chain report and where the old database went."""
    backup_path, db_path = Path(backup_path), Path(db_path)
    report = check(backup_path)
    kept = None
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S")
    if db_path.exists():
        kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
        source = sqlite3.connect(db_path)
        try:  # fold the WAL in, so the kept copy is one self-contained file
            source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            source.close()
        os.replace(db_path, kept)
        files.tighten(kept)
    for suffix in ("-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.restoring")
    tmp.unlink(missing_ok=True)
    files.create_private_file(tmp)  # the database is 0600 whatever the backup file's mode
    shutil.copyfile(backup_path, tmp)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, db_path)
    files.fsync_dir(db_path.parent)
    return report, kept
