"""Consistent backups of the live database, and restores that prove what they restore.

A backup is a SQLite file on both engines: of a SQLite database, a VACUUM INTO snapshot; of a
PostgreSQL database, a live copy on one snapshot (verifier/dbcopy.py, `live=True`: the sequencer
runs once, and what is still pending then, not chained yet, is left out of the backup so that its
log verifies; it is in the next one), so any backup can be checked, restored or moved with the
same commands. For a large PostgreSQL server, its own tools
(pg_basebackup and WAL archiving) are the backup; see docs/scale-out.md.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

from . import auditlog, db, dbcopy, errors, files


class BackupError(errors.VerifierError):
    """A backup or restore that cannot be done; the message is for the user (CLI exit status 1)."""

    exit_code = 1


def check(path: Path) -> auditlog.Report:
    """integrity_check must be ok and the audit chain must verify; the chain's report."""
    conn = db.open_read_only(path)
    try:
        problem = db.integrity_problem(conn)
        if problem is not None:
            raise BackupError(f"{path} fails integrity_check: {problem}")
        report = auditlog.verify(conn)
    except db.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable database: {exc}") from None
    finally:
        conn.close()
    if not report.ok:
        raise BackupError(f"{path}: the audit log does not verify (first bad entry {report.first_bad_seq})")
    return report


def backup(database: Path | str, target: Path) -> auditlog.Report:
    """A consistent snapshot of a database in use (VACUUM INTO, or a copy out of PostgreSQL, into a
    temporary file, checked, then renamed into place), so a half-written backup never carries the
    target's name."""
    target = Path(target)
    postgres = db.is_postgres(database)
    if not postgres and not Path(database).exists():
        raise BackupError(f"no database at {database}")
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
        if postgres:
            tmp.unlink()  # db copy makes the file itself (0600)
            dbcopy.copy(database, tmp, live=True)  # lookups go on: leave out what is pending
        else:
            db.snapshot(database, tmp)
        report = check(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
        files.fsync_dir(target.parent)
        return report
    except (*db.Error, dbcopy.CopyError) as exc:
        raise BackupError(f"backup failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def restore(backup_path: Path, database: Path | str, now: dt.datetime) -> tuple[auditlog.Report, Path | None]:
    """Put a checked backup in place of the database; the old one is kept beside it, named with
    `now` (UTC). Stop the server first. Returns the backup's chain report and where the old
    database went. PostgreSQL: restored by `verifier db copy` into a new database instead."""
    if db.is_postgres(database):
        raise BackupError(
            "restore into PostgreSQL with 'verifier db copy --from BACKUP --to postgresql://...' "
            "into a new, empty database, then point VERIFIER_DATABASE_URL at it"
        )
    backup_path, db_path = Path(backup_path), Path(database)
    report = check(backup_path)
    kept = None
    stamp = now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")
    if db_path.exists():
        kept = db_path.with_name(f"{db_path.name}.before-restore-{stamp}")
        db.fold_wal(db_path)  # so the kept copy is one self-contained file
        os.replace(db_path, kept)
        files.tighten(kept)
    for suffix in db.SIDE_FILE_SUFFIXES:
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
