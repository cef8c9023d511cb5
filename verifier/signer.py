"""The signer process (`verifier signer`): on the machine that holds the keys, it claims approved
batch requests from the database, issues each with issue.issue_batch, stores the label files in
the database and marks the request done (docs/signer.md). It never needs the web server, and the
web server never needs the key.

While it issues, a heartbeat thread writes the codes done about once a second (on a connection
of its own); a claim whose signer has been silent longer than `stale_after` is taken over by the
next signer, whose issue_batch first rolls back whatever the dead one left. A stop (SIGTERM,
Ctrl-C) is acted on at the next chunk of codes: the batch is rolled back (all or nothing) and the
request given back, approved, for the next signer; a stop while idle just ends the loop.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import socket
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import db, errors, issue, requests
from .repos import registry

HEARTBEAT_SECONDS = 1.0
MEDIA_TYPES = {".csv": "text/csv", ".pdf": "application/pdf", ".json": "application/json", ".zip": "application/zip"}
ZIP_NAME = "labels.zip"


class Abandoned(BaseException):
    """Raised in the issuing process to stop a batch at its next chunk (issue_batch rolls it back).
    A BaseException, as KeyboardInterrupt is: nothing on the way may swallow it."""


@dataclass(frozen=True)
class SignerConfig:
    """What the signer works with: the database, the signing key, the PIN secret, a private work
    folder for the label files until they are in the database."""

    database: Path | str
    private_key: Ed25519PrivateKey
    kid: bytes
    work_dir: Path
    pin_secret: bytes | None = None
    label_font: str | None = None
    name: str = field(default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}")
    stale_after: dt.timedelta = dt.timedelta(minutes=10)
    workers: int | None = None
    keep_files: bool = False  # leave the label files in work_dir too (they are in the database)


@dataclass(frozen=True)
class Outcome:
    """What became of one claimed request."""

    request_id: int
    status: str  # done | failed | released (given back at a stop) | lost (another signer took it over)
    batch_id: int | None = None
    count: int = 0
    seconds: float = 0.0
    error: str = ""
    taken_over: bool = False


class Stop:
    """Whether the loop is asked to stop: set from a signal handler, read between chunks."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, *_: object) -> None:  # usable as a signal handler
        self.requested = True


Clock = Callable[[], dt.datetime]


def run(
    config: SignerConfig,
    clock: Clock,
    stop: Stop,
    *,
    once: bool = False,
    poll_seconds: float = 5.0,
    report: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """Claim and issue requests until `stop` (or, `once`, until none is left); what became of each."""
    outcomes: list[Outcome] = []
    conn = db.connect(config.database, create=False)
    try:
        while not stop.requested:
            outcome = process_next(conn, config, clock, stop)
            if outcome is not None:
                outcomes.append(outcome)
                report(outcome)
                if outcome.status == "released":
                    break
                continue
            if once:
                break
            deadline = time.monotonic() + poll_seconds
            while not stop.requested and time.monotonic() < deadline:
                time.sleep(min(0.2, poll_seconds))
    finally:
        conn.close()
    return outcomes


def process_next(conn: db.Conn, config: SignerConfig, clock: Clock, stop: Stop) -> Outcome | None:
    """Claim one request and issue it; None when there is none to claim."""
    claim = requests.claim_next(conn, config.name, clock(), config.stale_after)
    if claim is None:
        return None
    started = time.monotonic()
    out_dir = config.work_dir / f"request-{claim.id}"
    heartbeat = _Heartbeat(config.database, claim, clock)
    try:
        if claim.taken_over:
            reused = _left_complete(conn, out_dir, clock())
            if reused is not None:  # the dead signer issued it all but did not get to say so
                requests.finish(conn, claim, reused, collect_files(out_dir), clock())
                return Outcome(claim.id, requests.DONE, reused, int(claim.params["count"]), taken_over=True)
        if out_dir.exists():  # what a dead signer left of a batch that was rolled back
            shutil.rmtree(out_dir)
        request = requests.batch_request(
            claim.params,
            claim.request["enterprise"],
            claim.request["credit_code"],
            out_dir,
            config.label_font,
            created_by=claim.request["requested_by"],
        )

        def progress(count: int) -> None:
            heartbeat.done += count
            if stop.requested:
                raise Abandoned()
            if heartbeat.lost:
                raise requests.ClaimLost(f"batch request {claim.id} was taken over by another signer")

        heartbeat.start()
        result = issue.issue_batch(
            config.database,
            request,
            config.private_key,
            config.kid,
            config.pin_secret,
            progress=progress,
            workers=config.workers,
            now=clock(),
            clock=clock,
        )
        heartbeat.stop()
        try:
            requests.finish(conn, claim, result.batch_id, collect_files(result.out_dir), clock())
        except requests.ClaimLost as exc:
            raise requests.ClaimLost(
                f"{exc.message}: batch {result.batch_id} was issued for it all the same (recall it if unwanted)"
            ) from None
        seconds = time.monotonic() - started
        return Outcome(claim.id, requests.DONE, result.batch_id, result.count, seconds, taken_over=claim.taken_over)
    except Abandoned:
        heartbeat.stop()
        requests.release(conn, claim)
        return Outcome(claim.id, "released", taken_over=claim.taken_over)
    except requests.ClaimLost as exc:
        return Outcome(claim.id, "lost", error=exc.message, taken_over=claim.taken_over)
    except Exception as exc:  # noqa: BLE001 - any failure fails the request (nothing was registered)
        heartbeat.stop()
        if stop.requested:  # Ctrl-C reaches the signing pool's processes too: their end is the stop's
            requests.release(conn, claim)
            return Outcome(claim.id, "released", taken_over=claim.taken_over)
        message = exc.message if isinstance(exc, errors.VerifierError) else f"{type(exc).__name__}: {exc}"
        try:
            requests.fail(conn, claim, message, clock())
        except requests.ClaimLost as lost:
            return Outcome(claim.id, "lost", error=lost.message, taken_over=claim.taken_over)
        return Outcome(claim.id, requests.FAILED, error=message, taken_over=claim.taken_over)
    finally:
        heartbeat.stop()
        if not config.keep_files:
            shutil.rmtree(out_dir, ignore_errors=True)


def _left_complete(conn: db.Conn, out_dir: Path, now: dt.datetime) -> int | None:
    """The batch a dead signer issued completely into `out_dir` (recovered first), or None."""
    issue.recover_interrupted(conn, now)
    try:
        batch_id = int(json.loads((out_dir / "manifest.json").read_text("utf-8"))["batch"]["id"])
        batch = registry.get_batch(conn, batch_id)
    except (OSError, ValueError, KeyError, TypeError, errors.VerifierError):
        return None
    if batch["output_dir"] != str(out_dir.absolute()) or issue.verify_outputs(out_dir):
        return None
    return batch_id


def collect_files(out_dir: Path) -> list[requests.File]:
    """The files the console serves of a batch folder: codes.csv, the PDF sheets, manifest.json,
    and labels.zip of the whole folder (PNG and SVG images included)."""
    found: list[requests.File] = []
    for name in ["codes.csv", *sorted(p.name for p in out_dir.glob("labels*.pdf")), "manifest.json"]:
        path = out_dir / name
        if path.is_file():
            found.append(requests.File(name, MEDIA_TYPES[path.suffix], path.read_bytes()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
            # PDF and PNG are compressed already: stored, they zip 10x faster at the same size
            method = zipfile.ZIP_DEFLATED if path.suffix in (".csv", ".json", ".svg") else zipfile.ZIP_STORED
            archive.write(path, path.relative_to(out_dir).as_posix(), compress_type=method)
    found.append(requests.File(ZIP_NAME, MEDIA_TYPES[".zip"], buffer.getvalue()))
    return found


class _Heartbeat:
    """Writes the codes done every HEARTBEAT_SECONDS on a connection of its own; notes a lost claim."""

    def __init__(self, database: Path | str, claim: requests.Claim, clock: Clock) -> None:
        self.database, self.claim, self.clock = database, claim, clock
        self.done = 0
        self.lost = False
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.claim.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _beat(self) -> None:
        conn = db.connect(self.database, create=False)
        try:
            while not self._stopped.wait(HEARTBEAT_SECONDS):
                try:
                    requests.report_progress(conn, self.claim, self.done, self.clock())
                except requests.ClaimLost:
                    self.lost = True
                    return
                except Exception:  # noqa: BLE001 - the database is busy or away a moment: the next beat tries again
                    continue
        finally:
            conn.close()
