"""`verifier db copy`: move an instance's database to another engine (SQLite <-> PostgreSQL),
everything that decides a verdict or proves the log included: registry, codes, check counts,
scans, the log and its checkpoints, accounts.

The source is read on one snapshot. The target must be a new, empty database; it is migrated,
filled table by table (COPY on PostgreSQL) in one transaction, and then checked: the log must
verify on the copy and end where the source's did (the copied checkpoints are checked by
`verifier audit verify` on the copy, which has the log keys).

Two modes, for the two ways entries can be pending on a PostgreSQL source (scans in `scan_queue`,
actions in `log_pending`: written, not chained yet by the sequencer):

- a move (`verifier db copy`, the default): the lookup nodes are stopped and the copy is to
  replace the source, so nothing may be left behind: a source with pending entries is refused
  (run `verifier sequence --once` first).
- a live copy (`live=True`, `verifier db backup` of a PostgreSQL database that is serving): the
  sequencer runs once (`sequencer.drain`), then the snapshot is copied without what is still
  pending in it (scans not chained yet, the queue), so the copy's log is the source's log up to
  the snapshot's head and verifies. What was left out stays in the source, chained, and is in
  the next backup. The copy's state must be the projection of its log (`audit verify` replays
  it): the check counts of codes whose scans were left out are rebuilt on the copy from the scans
  it has; an administrative action still queued in the snapshot (a recall a moment ago) makes
  the copy try again after the sequencer ran, then refuse, rather than hold a fact its log lacks.

On a SQLite source nothing is ever pending (entries are chained inline): both modes are the same.
The link between a scan and its entry is kept as each engine keeps it (repos/tables.LINKS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import auditlog, db, errors, logtree, sequencer
from .repos import log, tables


class CopyError(errors.VerifierError):
    """A copy that cannot be done; the message is for the user (CLI exit status 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Copied:
    rows: dict[str, int]  # table -> rows copied
    report: auditlog.Report  # the log on the copy
    left_out: int = 0  # a live copy: entries still pending on the source's snapshot, not copied


def copy(
    source: Path | str,
    target: Path | str,
    progress: Callable[[str, int], None] | None = None,
    *,
    live: bool = False,
) -> Copied:
    """Copy the database at `source` into the new database at `target`; what was copied.
    `live`: the source is serving; copy what is chained, leave out what is pending (see above)."""
    if db.location(source) == db.location(target):
        raise CopyError("the source and the target are the same database")
    src = db.connect(source, create=False)
    try:
        dst = db.connect(target)
        try:
            return _copy(src, dst, progress, live)
        finally:
            dst.close()
    finally:
        src.close()


def _counted(rows: Iterator[tuple[Any, ...]], counts: dict[str, int], table: str) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        counts[table] += 1
        yield row


def _copy(src: db.Conn, dst: db.Conn, progress: Callable[[str, int], None] | None, live: bool) -> Copied:
    not_empty = [t for t in tables.TABLES if tables.count(dst, t)]
    if not_empty:
        raise CopyError(f"the target is not empty ({', '.join(not_empty)}): copy into a new database")
    for _attempt in range(3 if live else 1):
        if live:
            sequencer.drain(src)  # chain what is written so far; what comes after is left out
        if not (live and log.queued_actions(src)):
            break
    counts: dict[str, int] = {}
    with db.read_snapshot(src):
        pending = log.pending_count(src)
        if live and log.queued_actions(src):
            raise CopyError("administrative actions keep arriving faster than the sequencer: run the backup again")
        source_head = (auditlog.head(src)[0], logtree.root(src, logtree.size(src)).hex())
        if pending and not live:
            raise CopyError(
                f"{pending:,} log entries are not chained yet: stop the lookup nodes, run "
                "'verifier sequence --once', then copy"
            )
        with db.transaction(dst):
            for table in tables.TABLES:
                names = tables.columns(dst, table)
                missing = {c for c in tables.columns(src, table) if c not in names and (table, c) not in tables.LINKS}
                if missing:
                    raise CopyError(f"the target's {table} lacks columns {sorted(missing)}: migrate it first")
                counts[table] = 0
                source_rows = tables.rows(src, table, names, chained_only=live)
                db.copy_rows(dst, table, names, _counted(source_rows, counts, table))
                tables.continue_ids(dst, table)
                if progress is not None:
                    progress(table, counts[table])
            if live and pending:
                tables.rebuild_code_checks(dst, tables.left_out_serials(src))
            # Checked before the commit, so a copy that does not verify leaves the target empty.
            # The tree, the scans and the replay are checked here; the copied checkpoints' signatures need the
            # log keys, which `verifier audit verify` on the copy has ("unknown key" here).
            report = auditlog.verify(dst)
            if not report.ok:
                first = next(p for p in report.problems if p.seq == report.first_bad_seq)
                raise CopyError(f"the copy's audit log does not verify (first bad entry {first.seq}): {first.what}")
            if (report.head_seq, report.head_hash) != source_head:
                raise CopyError(f"the copy's audit log ends at {report.head_seq}, the source's at {source_head[0]}")
    return Copied(counts, report, pending if live else 0)
