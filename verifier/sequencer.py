"""The log sequencer: the one writer of the transparency log's Merkle tree and checkpoints.

On PostgreSQL lookups commit their scan (durably) without touching the log, so no node waits for
another, and queue its id in `scan_queue`; administrative actions queue their entry in
`log_pending`. The sequencer numbers what is pending, oldest first, in batches of up to `BATCH`
entries a transaction: it inserts the entries (a scan's entry names its scan: `audit_log.scan_id`;
the scan row is never updated), adds them to the tree and drops them from the queues. On SQLite
entries are numbered in the transaction that writes them; the sequencer adds them to the tree.
On both, with a log key it signs a checkpoint (a C2SP note) at most every few seconds.

Any node may run it and only one does: the leader holds a PostgreSQL advisory lock of its
session (`run`); the others wait on standby and take over when the leader's session ends (a
crash included). Every batch also takes a transaction lock, so a one-off `sequence_once` never
interleaves with the leader. A batch is all or nothing: a sequencer killed mid-batch leaves
the entries pending, and the next one chains them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import auditlog, clock, db, logentry, logtree, merkle
from .repos import log
from .repos.scans import PERSONAL_FIELDS, SCAN_FIELDS

BATCH = 1000
IDLE_SECONDS = 0.05  # between polls when nothing is pending: the merge delay's floor (PostgreSQL)
# SQLite: every batch takes the writer lock the lookups need, in a third process on the cores the
# workers use. Polling every 50 ms doubled the lookups' p99 under load (45 -> 104 ms) and cost 4 % of
# their throughput; every 0.5 s: p99 42.5 vs 42.8 ms, 0.99 of the rps (scripts/bench_log.py).
SQLITE_IDLE_SECONDS = 0.5
STANDBY_SECONDS = 1.0  # between attempts to become the leader
RETRY_SECONDS = 2.0  # after the database could not be reached
LEADER_LOCK = "sequencer"

logger = logging.getLogger("verifier.sequencer")

_SCAN_COLUMNS = ("id", *SCAN_FIELDS[1:], *PERSONAL_FIELDS, "personal_salt")


@dataclass(frozen=True)
class Entry:
    """One pending entry: a scan (by id) or a queued one (by its queue id)."""

    at: str
    kind: str
    actor: str
    body: str
    personal_hash: str
    scan_id: int | None = None
    queue_id: int | None = None


@dataclass
class Position:
    """Where a run of full batches goes on from: the queue is read from above the last scan id
    chained, not from its start (the ids before it are gone, but their index entries linger until
    vacuum: reading past them every batch made a drain quadratic). A scan whose transaction
    committed after a later one's is below the position: `rewind` every few batches, and whenever
    a batch is not full, picks it up."""

    scan_id: int = 0
    batches: int = 0

    def advance(self, scan_ids: list[int]) -> None:
        self.batches += 1
        if self.batches % REWIND_EVERY == 0:
            self.rewind()
        elif scan_ids:
            self.scan_id = max(self.scan_id, *scan_ids)

    def rewind(self) -> None:
        self.scan_id = 0


REWIND_EVERY = 20  # full batches between two reads from the queue's start


def _pending(conn: db.Conn, limit: int, after: int = 0) -> tuple[list[Entry], list[int]]:
    """Up to `limit` queued entries and `limit` queued scans, merged by time; with the queued scan
    ids that need no entry (already chained, or no such scan: only an edit of the database makes
    those, and `audit verify` reports what such an edit hid), to drop from the queue."""
    entries = [
        Entry(at, kind, actor, body, p_hash, queue_id=qid)
        for qid, at, kind, actor, body, p_hash in log.pending_entries(conn, limit)
    ]
    stale: list[int] = []
    for queued_id, chained, *row in log.queued_scans(conn, _SCAN_COLUMNS, limit, after):
        if chained or row[0] is None:
            stale.append(queued_id)
            continue
        scan: dict[str, Any] = dict(zip(_SCAN_COLUMNS, row))
        salt = scan["personal_salt"]
        commitment = auditlog.personal_hash(salt, scan) if salt is not None else ""
        body = auditlog.canonical(auditlog.scan_body(scan))
        entries.append(Entry(scan["at"], "scan", "", body, commitment, scan_id=scan["id"]))
    entries.sort(key=lambda e: (e.at, e.scan_id is not None, e.queue_id or e.scan_id or 0))
    return entries, stale


@dataclass
class Checkpoints:
    """When the sequencer signs: with `signer`, after new entries, at most every `every_seconds`
    (the first time at once). `clock` gives the time signed into the checkpoint's row."""

    signer: logtree.LogSigner | None = None
    every_seconds: float = 2.0
    now: Callable[[], dt.datetime] = clock.now
    last_signed: float = float("-inf")

    def due(self) -> bool:
        return self.signer is not None and time.monotonic() - self.last_signed >= self.every_seconds


def sequence_once(
    conn: db.Conn, limit: int = BATCH, position: Position | None = None, checkpoints: Checkpoints | None = None
) -> int:
    """Number (PostgreSQL) and add to the tree one batch of pending entries, in one transaction,
    then sign a checkpoint if one is due; how many entries (0: nothing pending, or another
    sequencer is at work). `position`: of a run of batches (`drain`, `run`)."""
    position = position or Position()
    due = checkpoints is not None and checkpoints.due()
    if db.sequences_inline(conn) and not due and not logtree.pending(conn):
        return 0  # SQLite, nothing new: no write transaction, no writer lock taken from the lookups
    with db.transaction(conn):
        if not db.try_transaction_lock(conn, LEADER_LOCK):
            return 0
        done = logtree.extend(conn, limit)  # numbered already (SQLite; or copied in): into the tree
        if not db.sequences_inline(conn) and done < limit:
            done += _number_pending(conn, limit - done, position)
        if checkpoints is not None and checkpoints.signer is not None and checkpoints.due():
            logtree.sign_checkpoint(conn, checkpoints.signer, checkpoints.now())  # None: nothing new
            checkpoints.last_signed = time.monotonic()
    return done


def _number_pending(conn: db.Conn, limit: int, position: Position) -> int:
    """Give the queued entries their sequence numbers and leaves, inside the sequencer's transaction."""
    pending, stale = _pending(conn, limit, position.scan_id)
    if not pending:
        log.dequeue(conn, [], stale)
        position.rewind()
        return 0
    seq = log.last_seq(conn)
    in_tree = logtree.size(conn) == seq  # else a gap below: leave the leaves to `extend`
    start = seq
    rows: list[tuple[object, ...]] = []
    leaves: list[bytes] = []
    scan_ids: list[int] = []
    queue_ids: list[int] = []
    for entry in pending:
        seq += 1
        leaf = logentry.leaf_bytes(entry.kind, entry.at, entry.actor, entry.personal_hash, entry.body)
        leaves.append(leaf)
        fields = (entry.at, entry.kind, entry.actor, entry.body, entry.personal_hash)
        rows.append((seq, *fields, "", merkle.leaf_hash(leaf).hex(), entry.scan_id))
        if entry.scan_id is not None:
            scan_ids.append(entry.scan_id)
        elif entry.queue_id is not None:
            queue_ids.append(entry.queue_id)
    log.insert_entries(conn, rows)
    if in_tree:
        logtree.append_leaves(conn, start, leaves)
    log.dequeue(conn, queue_ids, scan_ids + stale)
    position.advance(scan_ids + stale)
    return len(rows)


def drain(conn: db.Conn, limit: int = BATCH, signer: logtree.LogSigner | None = None) -> int:
    """Sequence everything pending now, then sign a checkpoint with `signer` (a one-off run, tests,
    `verifier sequence --once`); how many entries."""
    total, position, rewound = 0, Position(), False
    checkpoints = Checkpoints(signer, every_seconds=float("inf"))
    while True:
        done = sequence_once(conn, limit, position)
        total += done
        if done < limit:
            if position.scan_id == 0 or rewound:
                if signer is not None:
                    checkpoints.last_signed = float("-inf")
                    sequence_once(conn, limit, position, checkpoints)
                return total
            position.rewind()  # one more pass from the start, for a late commit below the position
            rewound = True


class Stop:
    """When `run` should stop: an event set by the caller, or the parent process gone."""

    def __init__(self, event: threading.Event | None = None, parent_pid: int | None = None) -> None:
        self.event = event or threading.Event()
        self.parent_pid = parent_pid

    def __call__(self) -> bool:
        return self.event.is_set() or (self.parent_pid is not None and os.getppid() != self.parent_pid)

    def wait(self, seconds: float) -> None:
        self.event.wait(seconds)


def run(
    location: Path | str,
    stop: Stop | None = None,
    batch: int = BATCH,
    on_batch: Callable[[int], None] | None = None,
    checkpoints: Checkpoints | None = None,
) -> None:
    """Sequence until `stop()`: become the leader when no other session is, then chain pending
    entries as they come. Survives the database going away (it reconnects)."""
    stop = stop or Stop()
    while not stop():
        try:
            conn = db.connect(location)
        except db.StoreError as exc:
            logger.warning("sequencer: %s; retrying in %.0f s", exc, RETRY_SECONDS)
            stop.wait(RETRY_SECONDS)
            continue
        try:
            _lead(conn, stop, batch, on_batch, checkpoints or Checkpoints())
        except db.Error as exc:
            logger.warning("sequencer: the database failed (%s); reconnecting", exc)
            stop.wait(RETRY_SECONDS)
        finally:
            try:
                conn.close()
            except db.Error:
                pass


def _lead(
    conn: db.Conn, stop: Stop, batch: int, on_batch: Callable[[int], None] | None, checkpoints: Checkpoints
) -> None:
    lock = None
    while not stop() and lock is None:
        lock = db.acquire_lock(conn, LEADER_LOCK, wait=False)
        if lock is None:
            stop.wait(STANDBY_SECONDS)  # another node leads; take over if it goes
    if lock is None:
        return
    logger.info("sequencer: leading (pid %d)", os.getpid())
    position = Position()
    try:
        while not stop():
            done = sequence_once(conn, batch, position, checkpoints)
            if on_batch is not None and done:
                on_batch(done)
            if done < batch:
                position.rewind()
                stop.wait(SQLITE_IDLE_SECONDS if db.sequences_inline(conn) else IDLE_SECONDS)
    finally:
        lock.release()


def status(conn: db.Conn) -> dict[str, object]:
    """What waits for the sequencer (how many entries, and since when: None, nothing), and who
    leads (PostgreSQL: the leader's backend pid, client address and since when; None: nobody leads,
    so nothing gets chained)."""
    return {
        "pending": log.pending_count(conn) + logtree.pending(conn),
        "oldest_pending_at": log.oldest_pending_at(conn),
        "leader": db.lock_holder(conn, LEADER_LOCK),
    }


def lag_seconds(conn: db.Conn, now: float | None = None) -> float:
    """How long the oldest pending entry has waited (0 when nothing waits)."""
    oldest = log.oldest_pending_at(conn)
    if oldest is None:
        return 0.0
    moment = clock.parse(oldest)
    assert moment is not None
    return max(0.0, (now if now is not None else time.time()) - moment.timestamp())
