"""`verifier db copy`: move an instance's database to another engine (SQLite <-> PostgreSQL),
everything that decides a verdict or proves the log included: registry, codes, check counts,
scans, the log and its checkpoints, accounts.

The source is read on one snapshot (writers may go on, but stop the lookup nodes first: what
they write after the snapshot stays behind). The target must be a new, empty database; it is
migrated, filled table by table (COPY on PostgreSQL) in one transaction, and then checked: the
log must verify on the copy as on the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import auditlog, db, errors
from .repos import log, tables


class CopyError(errors.VerifierError):
    """A copy that cannot be done; the message is for the user (CLI exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]  # table -> rows copied
    report: auditlog.Report  # the log on the copy


def copy(source: Path | str, target: Path | str, progress: Callable[[str, int], None] | None = None) -> Copied:
    """Copy the database at `source` into the new database at `target`; what was copied."""
    if db.location(source) == db.location(target):
        raise CopyError("the source and the target are the same database")
    src = db.connect(source, create=False)
    try:
        dst = db.connect(target)
        try:
            return _copy(src, dst, progress)
        finally:
            dst.close()
    finally:
        src.close()


def _counted(rows: Iterator[tuple[Any, ...]], counts: dict[str, int], table: str) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        counts[table] += 1
        yield row


def _copy(src: db.Conn, dst: db.Conn, progress: Callable[[str, int], None] | None) -> Copied:
    not_empty = [t for t in tables.TABLES if tables.count(dst, t)]
    if not_empty:
        raise CopyError(f"the target is not empty ({', '.join(not_empty)}): copy into a new database")
    counts: dict[str, int] = {}
    with db.read_snapshot(src):
        pending = log.pending_count(src)
        if pending:
            raise CopyError(
                f"{pending:,} log entries are not chained yet: stop the lookup nodes, run "
                "'verifier sequence --once', then copy"
            )
        with db.transaction(dst):
            for table in tables.TABLES:
                names = tables.columns(src, table)
                missing = set(names) - set(tables.columns(dst, table))
                if missing:
                    raise CopyError(f"the target's {table} lacks columns {sorted(missing)}: migrate it first")
                counts[table] = 0
                db.copy_rows(dst, table, names, _counted(tables.rows(src, table, names), counts, table))
                tables.continue_ids(dst, table)
                if progress is not None:
                    progress(table, counts[table])
    report = auditlog.verify(dst, auditlog.stored_checkpoints(dst))
    if not report.ok:
        raise CopyError(f"the copy's audit log does not verify (first bad entry {report.first_bad_seq})")
    return Copied(counts, report)
