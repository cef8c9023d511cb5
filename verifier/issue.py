"""Batch issuance: random unique serials, signing on every core, printer files, all or nothing.

A batch is registered in two phases. Its row is written first with status `issuing` (so the
batch number can be signed into compact codes) and its serials are registered chunk by chunk in
short transactions, so lookups keep flowing. Outputs go to a hidden `.partial` folder; only when
every file is written and hashed is the folder renamed into place and the batch made `active`.
An interrupted run is rolled back at once; a killed one is rolled back or forward by
`recover_interrupted` the next time a batch command runs.

Whether an issuer is alive is told by a lock, not by its process id (which means nothing across
PID namespaces, e.g. containers sharing an instance volume, or nodes sharing a PostgreSQL server):
the issuer holds the batch's lock (an flock on `<database>-batch-<id>.lock`, or a PostgreSQL
advisory lock) from before its row is visible until the batch is active or forgotten, and
recovery only touches a batch whose lock it can take without waiting.
"""

from __future__ import annotations

import array
import csv
import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import auditlog, certificates, codes, csvcells, db, errors, keys, labels, lifecycle, pins, processes, qr, replay
from . import clock as clocks
from .repos import certificates as certificates_repo
from .repos import projections, registry

FORMATS = ("csv", "png", "label-png", "svg", "pdf")
IMAGE_QR_MM = 20.0  # the QR code in PNG, label PNG and SVG files, with quiet zone
MAX_COUNT = 100_000_000
MANIFEST_FORMAT = "verifier-batch-manifest/1"


class IssueError(errors.VerifierError):
    """A batch that cannot be issued; the message is for the user. Nothing was registered."""

    exit_code = 1


class InvalidRequest(IssueError, errors.InvalidInput):
    """A batch request that is not one: a bad count, format, date, GTIN... (CLI exit status 2)."""

    exit_code = 2


class WrongKey(IssueError, errors.Conflict):
    """A key that did not sign the batch it is asked to re-sign."""


@dataclass(frozen=True)
class BatchRequest:
    """What an enterprise orders: one product line, one mark, `count` labels."""

    mark: codes.Mark
    enterprise: str
    product: str
    count: int
    out_dir: Path
    base_url: str
    formats: tuple[str, ...] = ("csv", "pdf")
    credit_code: str | None = None
    spec: str = ""
    gtin: str | None = None
    lot: str | None = None
    production_date: dt.date | None = None
    expiry: dt.date | None = None
    form: str = codes.FORM_COMPACT
    pin: bool = False
    layout: labels.SheetLayout = field(default_factory=labels.SheetLayout)
    note: str = ""
    created_by: str = ""
    label_font: str | None = None  # a CJK TrueType font for PDF and PNG labels (settings.label_font)
    unit: str = "item"  # lifecycle.UNITS: item labels, or case / pallet labels that items are packed into
    activation: str = "issue"  # lifecycle.ACTIVATIONS: when its codes are released for sale
    production_place: str | None = None  # shown to consumers with the trace
    certificate: str | None = None  # the number of the mark certificate it is issued under (certificates.py)

    def validate(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise InvalidRequest(f"--count must be between 1 and {MAX_COUNT:,}")
        unknown = set(self.formats) - set(FORMATS)
        if unknown or not self.formats:
            raise InvalidRequest(f"--format takes a comma-separated list of {', '.join(FORMATS)}")
        try:
            codes.normalize_base_url(self.base_url)
            self.layout.validate()
            if "pdf" in self.formats:
                self.label_plan()
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if self.form == codes.FORM_GS1:
            if not (self.gtin and self.lot and self.expiry):
                raise InvalidRequest("a GS1 Digital Link batch needs --gtin, --lot and --expiry")
            try:
                codes.validate_gtin(self.gtin)
                codes.validate_lot(self.lot)
                codes.expiry_text(self.expiry)
            except (codes.InvalidCode, ValueError) as exc:
                raise InvalidRequest(str(exc).split(": ", 1)[-1]) from None
        elif self.form != codes.FORM_COMPACT:
            raise InvalidRequest(f"unknown URL form {self.form!r} (compact or gs1)")
        if self.production_date and self.expiry and self.expiry < self.production_date:
            raise InvalidRequest("the expiry date is before the production date")
        if self.unit not in lifecycle.UNITS:
            raise InvalidRequest(f"--unit is one of {', '.join(lifecycle.UNITS)}")
        if self.activation not in lifecycle.ACTIVATIONS:
            raise InvalidRequest(f"--activation is one of {', '.join(lifecycle.ACTIVATIONS)}")
        if self.production_place is not None and not 1 <= len(self.production_place.strip()) <= 100:
            raise InvalidRequest("--production-place is 1-100 characters")

    def label_text(self) -> labels.LabelText:
        """What every label of the batch prints besides its code."""
        return labels.LabelText(
            self.mark.name_zh,
            self.enterprise,
            f"{self.product} {self.spec}".strip(),
            self.lot or "",
            labels.lookup_host(self.base_url),
            self.pin,
        )

    def label_plan(self) -> labels.LabelPlan:
        """The PDF label's layout; ValueError if `layout.label_mm` cannot hold it."""
        return labels.plan_label(self.layout.label_mm, self.label_text(), self.label_font)


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    count: int
    out_dir: Path
    files: int
    pdf_pages: int
    seconds: float


# --- work done in each process ------------------------------------------------------------

_worker: dict[str, Any] = {}


Signer = Callable[[int], str]  # serial -> the code's URL


def make_signer(
    private: Ed25519PrivateKey,
    kid: bytes,
    mark: codes.Mark,
    form: str,
    batch_id: int,
    base_url: str,
    gtin: str | None = None,
    lot: str | None = None,
    expiry: str | None = None,
) -> Signer:
    """The URL signer of one batch's codes: compact (the batch number signed in) or GS1."""
    signer: Signer  # codes' signer factories are untyped: say what they make
    if form == codes.FORM_COMPACT:
        signer = codes.compact_signer(private, kid, mark, batch_id, base_url)
    else:
        assert gtin is not None and lot is not None and expiry is not None
        signer = codes.gs1_signer(private, kid, mark, gtin, lot, expiry, base_url)
    return signer


def batch_signer(batch: dict[str, Any], record: keys.KeyRecord, private: Ed25519PrivateKey) -> Signer:
    """A signer that re-creates a registered batch's URLs (Ed25519 signatures are deterministic);
    WrongKey unless `record` is the key that signed the batch."""
    if record.kid != batch["kid"]:
        raise WrongKey(f"batch {batch['id']} was signed by key {batch['kid']}, not {record.kid}")
    expiry = None
    if batch["form"] == codes.FORM_GS1:
        expiry = codes.expiry_text(dt.date.fromisoformat(batch["expiry_date"]))
    return make_signer(
        private,
        bytes.fromhex(record.kid),
        codes.mark_by_slug(batch["mark"]),
        batch["form"],
        batch["id"],
        batch["base_url"],
        batch["gtin"],
        batch["lot"],
        expiry,
    )


def load_signer_for_batch(keys_dir: Path, key_name: str, passphrase: bytes, batch: dict[str, Any]) -> Signer:
    """Load key `key_name` (whatever its status: a retired key's codes still verify) and make the
    signer of `batch` with it (`batch export --key`)."""
    record, private = keys.load_private_key_any_status(keys_dir, key_name, passphrase)
    return batch_signer(batch, record, private)


def signing_key(keys_dir: Path, key_name: str, passphrase: bytes) -> tuple[Ed25519PrivateKey, bytes]:
    """The private key and key id that sign new codes (an active `codes` key: keys.KeyringError else)."""
    record, private = keys.load_private_key(keys_dir, key_name, passphrase)
    return private, bytes.fromhex(record.kid)


def sign_code(
    private: Ed25519PrivateKey,
    kid: bytes,
    mark: codes.Mark,
    serial: int,
    base_url: str,
    batch: int = 1,
    gtin: str | None = None,
    lot: str | None = None,
    expiry: dt.date | None = None,
) -> str:
    """The URL of one signed code (`verifier sign`): GS1 when `gtin` is given, else compact."""
    try:
        if gtin:
            if not lot or not expiry:
                raise InvalidRequest("a GS1 code needs --gtin, --lot and --expiry")
            code = codes.Code(
                codes.FORM_GS1,
                kid,
                mark,
                serial,
                gtin=codes.normalize_gtin(gtin),
                lot=lot,
                expiry=codes.expiry_text(expiry),
            )
        else:
            code = codes.Code(codes.FORM_COMPACT, kid, mark, serial, batch=batch)
        return codes.encode_url(codes.sign(code, private), base_url)
    except (codes.InvalidCode, ValueError) as exc:
        raise InvalidRequest(str(exc).split(": ", 1)[-1]) from None


def _init_worker(settings: dict[str, Any]) -> None:
    """Set up a signing process; the private key arrives as its 32 raw bytes."""
    private = Ed25519PrivateKey.from_private_bytes(settings["private_raw"])
    signer = make_signer(
        private,
        settings["kid"],
        settings["mark"],
        settings["form"],
        settings["batch_id"],
        settings["base_url"],
        settings["gtin"],
        settings["lot"],
        settings["expiry"],
    )
    if "pdf" in settings["formats"]:
        labels.label_font(settings["label_font"])  # registered in this process too (not only by fork)
    _worker.clear()
    _worker.update(settings, signer=signer, private_raw=None)


def _init_pool_worker(settings: dict[str, Any]) -> None:
    """Set up a pool process: it dies with its issuer and does not keep the batch lock alive."""
    processes.die_with_parent(settings["parent_pid"])
    try:  # forked with the issuer's descriptors: a copy of the lock's (its file, or its PostgreSQL
        os.close(settings["lock_fd"])  # session's socket, never used here) would outlive a killed issuer
    except OSError:
        pass
    _init_worker(settings)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _work_chunk(part: str, serials: list[int]) -> tuple[str, list[tuple[str, str]], int]:
    """Sign one chunk and render its files: (CSV rows, [(file, sha256)], PDF pages)."""
    w = _worker
    signer, formats, folder = w["signer"], w["formats"], Path(w["folder"])
    urls = [signer(s) for s in serials]
    humans = [codes.human_code(s) for s in serials]
    secret = w["pin_secret"]
    codes_pins: list[str | None]
    if secret:
        codes_pins = [pins.derive_pin(secret, s) for s in serials]
        rows = [csv_row(s, h, u, p) for s, h, u, p in zip(serials, humans, urls, codes_pins)]
    else:
        codes_pins = [None] * len(serials)
        rows = [csv_row(s, h, u) for s, h, u in zip(serials, humans, urls)]
    written: list[tuple[str, str]] = []
    pages = 0
    if {"png", "label-png", "svg", "pdf"} & set(formats):
        matrices = [qr.encode(u) for u in urls]
        for serial, human, url, matrix in zip(serials, humans, urls, matrices):
            if "png" in formats:
                data = labels.png_bytes(matrix, IMAGE_QR_MM)
                written.append(_write_bytes(folder, f"png/{serial:016d}.png", data))
            if "label-png" in formats:
                data = labels.label_png_bytes(matrix, human, w["png_text"], IMAGE_QR_MM, font_path=w["label_font"])
                written.append(_write_bytes(folder, f"label-png/{serial:016d}.png", data))
            if "svg" in formats:
                data = labels.svg_text(matrix, IMAGE_QR_MM, title=url).encode("utf-8")
                written.append(_write_bytes(folder, f"svg/{serial:016d}.svg", data))
        if "pdf" in formats:
            path = folder / part
            items = (labels.Label(u, h, m, p) for u, h, m, p in zip(urls, humans, matrices, codes_pins))
            pages = labels.write_pdf(path, items, w["layout"], w["plan"], w["mark_title"])
            os.chmod(path, SECRET_FILE_MODE)
            written.append((part, _sha256_file(path)))
    return "".join(rows), written, pages


CSV_HEADER = ("serial", "code", "url", "pin")
CSV_TEXT_DIGITS = ("serial", "pin")  # written with csvcells.text_digits: a leading tab


def csv_row(serial: int, human: str, url: str, pin: str | None = None) -> str:
    """One line of codes.csv, exactly as csvcells.SafeWriter writes it (every field quoted, serial
    and PIN as text digits, text cells neutralised), without the csv module's 5 µs a row (~8 % of
    signing): no field can hold a quote (digits, spaces, an http(s) URL of A-Z a-z 0-9 . _ - / ~ ? = &)."""
    cells: list[Any] = [csvcells.text_digits(f"{serial:016d}"), csvcells.safe_cell(human), csvcells.safe_cell(url)]
    if pin is not None:
        cells.append(csvcells.text_digits(pin))
    return '"' + '","'.join(cells) + '"\r\n'


def read_codes_csv(fh: IO[str]) -> Iterator[dict[str, str]]:
    """Rows of a codes.csv (or `batch export`) opened with newline="", with the exact values:
    the leading tab of text digits and the apostrophe of neutralised cells taken off again."""
    for row in csv.DictReader(fh):
        yield {name: csvcells.plain_cell(value, digits=name in CSV_TEXT_DIGITS) for name, value in row.items()}


def _write_bytes(folder: Path, name: str, data: bytes) -> tuple[str, str]:
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    with open(fd, "wb") as fh:
        fh.write(data)
    return name, hashlib.sha256(data).hexdigest()


# Labels are secrets until printed (a copy of them is a genuine label; codes.csv holds the PINs):
# the output folder is the owner's only, and so is every file in it.
SECRET_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600


def _create_secret(path: Path) -> IO[str]:
    """A new text file only its owner can read (umask cannot widen it), for writing CSV."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    return open(fd, "w", encoding="utf-8", newline="")


def _mkdir_secret(path: Path) -> None:
    path.mkdir(mode=SECRET_DIR_MODE)
    os.chmod(path, SECRET_DIR_MODE)  # exactly, whatever the umask


# --- the coordinating process -------------------------------------------------------------


def chunk_size(layout: labels.SheetLayout, target: int = 4000) -> int:
    """Codes per unit of work: whole PDF pages, about `target` labels."""
    return max(1, round(target / layout.per_page)) * layout.per_page


_RANDOM_LIMIT = (2**56 // codes.SERIAL_LIMIT) * codes.SERIAL_LIMIT  # rejection bound: uniform mod 10^16


RandomBytes = Callable[[int], bytes]  # n -> n random bytes; os.urandom in production


def _draw_serials(
    count: int, random_bytes: RandomBytes = os.urandom, avoid: set[int] | frozenset[int] = frozenset()
) -> list[int]:
    """`count` distinct uniformly random serials from `random_bytes`, none of them in `avoid`."""
    out: list[int] = []
    seen = set(avoid)
    while len(out) < count:
        block = random_bytes(8 * (count - len(out) + 8))
        for value in array.array("Q", block[: len(block) // 8 * 8]):
            value &= 0xFF_FFFF_FFFF_FFFF  # 56 bits
            if value >= _RANDOM_LIMIT:
                continue
            serial = value % codes.SERIAL_LIMIT
            if serial not in seen:
                seen.add(serial)
                out.append(serial)
                if len(out) == count:
                    break
    return out


REGISTER_PER_TRANSACTION = 50_000  # measured: 4,000 a commit costs 2x (WAL page rewrites); ~0.3 s a lock
MAX_REDRAWS = 8  # a redraw collides again with probability < 10^-3 even at 10^13 codes issued


def _register_serials(conn: db.Conn, batch_id: int, count: int, random_bytes: RandomBytes = os.urandom) -> list[int]:
    """Draw and register `count` new serials in one short transaction; the registry's primary
    key keeps them unique across all batches, so nothing of the batch is held in memory."""
    serials = sorted(_draw_serials(count, random_bytes))  # neighbouring keys share B-tree pages
    for _ in range(MAX_REDRAWS + 1):
        try:
            with db.transaction(conn):
                registry.insert_codes(conn, batch_id, serials)
            return serials
        except db.IntegrityError as exc:  # about 1 in 10^9 a code per 10^7 issued: redraw those
            taken = registry.serials_taken(conn, serials)
            if not taken:  # not a collision: retrying could never succeed
                if not registry.is_issuing(conn, batch_id):
                    raise IssueError(
                        f"batch {batch_id} was removed from the registry while it was being "
                        "issued; nothing of it is registered"
                    ) from None
                raise IssueError(f"the registry refused the serials of batch {batch_id}: {exc}") from None
            fresh = iter(_draw_serials(len(taken), random_bytes, avoid=set(serials)))
            serials = sorted(next(fresh) if s in taken else s for s in serials)
    raise IssueError(
        f"new serials collided with issued ones {MAX_REDRAWS + 1} times in a row: "
        "the source of random serials is not random"
    )


def _prepare_out_dir(out_dir: Path) -> Path:
    out_dir = out_dir.expanduser().absolute()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise IssueError(f"output folder {out_dir} already exists and is not empty")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IssueError(f"cannot create output folder {out_dir}: {exc.strerror}") from None
    try:  # a real attempt: permission bits alone say nothing for root or read-only mounts
        os.rmdir(tempfile.mkdtemp(prefix=f".{out_dir.name}.probe-", dir=parent))
    except OSError as exc:
        raise IssueError(f"output folder {out_dir} is not writable: {exc.strerror}") from None
    return out_dir


def _partial_dir(out_dir: Path, batch_id: int) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial-{batch_id}"


def issue_batch(
    database: Path | str,
    request: BatchRequest,
    private_key: Ed25519PrivateKey,
    kid: bytes,
    pin_secret: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    now: dt.datetime | None = None,
    random_bytes: RandomBytes = os.urandom,
    clock: Callable[[], dt.datetime] = clocks.now,
) -> BatchResult:
    """Issue a batch: register it, sign and render every code, write outputs; all or nothing.

    `now` is the batch's registration time (default: `clock()`); `clock` is read again when the
    batch is activated, minutes or hours later for a large one, so the log says when that was.
    `random_bytes` is where serials come from: the OS CSPRNG; tests pass a seeded one.
    """
    request.validate()
    if request.pin and not pin_secret:
        raise IssueError("--pin needs a PIN secret (VERIFIER_PIN_SECRET or VERIFIER_PIN_SECRET_FILE)")
    out_dir = _prepare_out_dir(request.out_dir)
    started = time.monotonic()
    now = now or clock()
    conn = db.connect(database)
    lock: db.NamedLock | None = None
    try:
        recover_interrupted(conn, now)
        with db.transaction(conn):
            enterprise_id = registry.ensure_enterprise(conn, request.enterprise, request.credit_code, now)
            product_id = registry.ensure_product(conn, enterprise_id, request.product, request.spec, request.gtin, now)
            try:  # once a mark is granted by certificate, only under a valid one of its enterprise
                certificate_id = certificates.check_issuance(
                    conn, request.mark, enterprise_id, product_id, request.certificate, now
                )
            except certificates.CertificateError as exc:
                raise IssueError(exc.message) from None
            batch_id = registry.insert_batch(
                conn,
                {
                    "enterprise_id": enterprise_id,
                    "product_id": product_id,
                    "mark": request.mark.slug,
                    "form": request.form,
                    "lot": request.lot,
                    "gtin": request.gtin,
                    "production_date": _iso(request.production_date),
                    "expiry_date": _iso(request.expiry),
                    "count": request.count,
                    "kid": kid.hex(),
                    "base_url": codes.normalize_base_url(request.base_url),
                    "pin": int(request.pin),
                    "status": registry.BATCH_ISSUING,
                    "output_dir": str(out_dir),
                    "issuing_pid": os.getpid(),
                    "created_by": request.created_by or _user(),
                    "note": request.note,
                    "unit": request.unit,
                    "activation": request.activation,
                    "production_place": request.production_place.strip() if request.production_place else None,
                    "certificate_id": certificate_id,
                },
                now,
            )
            # Locked before the row is committed, so no other process ever sees it unlocked.
            lock = _batch_lock(conn, batch_id, wait=True)
    except BaseException:
        _close(conn, lock)
        raise
    assert lock is not None
    try:
        if batch_id >= codes.BATCH_LIMIT:
            _roll_back(conn, batch_id, None)
            raise IssueError("batch numbers are exhausted (2^32 - 1)")
        partial = _partial_dir(out_dir, batch_id)
        try:
            runs: list[array.array[int]] = []  # the serials as registered: sorted runs, 8 bytes a code
            pages, counts = _produce(
                conn,
                batch_id,
                request,
                private_key,
                kid,
                pin_secret,
                partial,
                progress,
                workers,
                random_bytes,
                lock.descriptor(),
                runs,
            )
            _write_manifest(conn, batch_id, request, partial, counts, pages)
            _move_into_place(partial, out_dir)
            digest = replay.merged_serials_sha256(runs)
            runs.clear()
            _activate(conn, batch_id, clock(), digest)
        except BaseException:
            _roll_back(conn, batch_id, partial)
            raise
    finally:
        _close(conn, lock)
    seconds = time.monotonic() - started
    return BatchResult(batch_id, request.count, out_dir, sum(counts.values()) + 1, pages, seconds)


def _close(conn: db.Conn, lock: db.NamedLock | None) -> None:
    if lock is not None:
        lock.release()
    conn.close()


def _batch_lock(conn: db.Conn, batch_id: int, wait: bool) -> db.NamedLock | None:
    """The lock an issuer holds while it issues batch `batch_id` (SQLite: an flock on
    `<database>-batch-<id>.lock`; PostgreSQL: an advisory lock of its session, gone with it);
    None if another process holds it and `wait` is false."""
    return db.acquire_lock(conn, f"batch-{batch_id}", wait=wait)


def _activate(conn: db.Conn, batch_id: int, now: dt.datetime, serials_sha256: str | None = None) -> None:
    """Register the batch, and say so in the audit log, in one transaction. The entry records
    what a verdict shows and what decides access (enterprise, product, mark, form, lot, dates,
    key, address, PIN) and commits to the batch's exact set of serials (`serials_sha256`:
    replay.serials_sha256 of the serials registered; None: read back from the registry, as
    recovery does), so `audit verify` can tell an edited batch or an invented code."""
    if serials_sha256 is None:
        serials_sha256 = replay.serials_sha256(registry.batch_serials(conn, batch_id))
    with db.transaction(conn):
        registry.activate_batch(conn, batch_id)
        (row,) = projections.batch_facts(conn, batch_id)
        body = {
            k: row[k]
            for k in (
                "id",
                "enterprise_id",
                "enterprise",
                "credit_code",
                "product_id",
                "product",
                "spec",
                "product_gtin",
                "mark",
                "form",
                "lot",
                "gtin",
                "production_date",
                "expiry_date",
                "count",
                "kid",
                "base_url",
                "pin",
                "created_by",
                "unit",
                "activation",
                "production_place",
            )
        }
        certificate = certificates_repo.batch_certificate(conn, batch_id)
        if certificate:  # only then: a batch under no certificate logs what it always did
            body["certificate_id"], body["certificate"] = certificate
        body["serials_sha256"] = serials_sha256
        auditlog.append(conn, "batch.issued", body, clocks.utc_text(now), actor=row["created_by"])


def _move_into_place(partial: Path, out_dir: Path) -> None:
    if out_dir.exists():
        out_dir.rmdir()  # checked empty before we started
    os.rename(partial, out_dir)


def _iso(date: dt.date | None) -> str | None:
    return date.isoformat() if date else None


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _produce(
    conn: db.Conn,
    batch_id: int,
    request: BatchRequest,
    private_key: Ed25519PrivateKey,
    kid: bytes,
    pin_secret: bytes | None,
    partial: Path,
    progress: Callable[[int], None] | None,
    workers: int | None,
    random_bytes: RandomBytes,
    lock_fd: int,
    runs: list[array.array[int]],
) -> tuple[int, dict[str, int]]:
    """Sign and render every chunk, writing codes.csv in order; (PDF pages, files by kind). The
    serials registered are appended to `runs`, one sorted array a registering transaction."""
    _mkdir_secret(partial)
    for fmt in ("png", "label-png", "svg"):
        if fmt in request.formats:
            _mkdir_secret(partial / fmt)
    settings = {
        "private_raw": private_key.private_bytes_raw(),
        "kid": kid,
        "mark": request.mark,
        "form": request.form,
        "batch_id": batch_id,
        "base_url": request.base_url,
        "gtin": request.gtin,
        "lot": request.lot,
        "expiry": codes.expiry_text(request.expiry) if request.form == codes.FORM_GS1 and request.expiry else None,
        "pin_secret": pin_secret if request.pin else None,
        "formats": request.formats,
        "folder": str(partial),
        "layout": request.layout,
        "plan": request.label_plan() if "pdf" in request.formats else None,
        "mark_title": request.mark.name_zh,
        "png_text": labels.label_png_text(request.label_text(), request.mark.name_en, request.label_font),
        "label_font": request.label_font,
        "parent_pid": os.getpid(),
        "lock_fd": lock_fd,
    }
    size = chunk_size(request.layout)
    chunks = -(-request.count // size)
    part_names = ["labels.pdf"] if chunks == 1 else [f"labels-{i + 1:05d}.pdf" for i in range(chunks)]
    manifest_lines = partial / ".files"
    pages = 0
    counts = {"csv": 1, "png": 0, "label-png": 0, "svg": 0, "pdf": 0}
    header = CSV_HEADER if request.pin else CSV_HEADER[:3]
    with _create_secret(partial / "codes.csv") as out, open(manifest_lines, "w") as listing:
        csvcells.writer(out).writerow(header)

        def collect(result: tuple[str, list[tuple[str, str]], int], count: int) -> None:
            nonlocal pages
            text, written, chunk_pages = result
            out.write(text)
            for name, digest in written:
                listing.write(f"{digest}  {name}\n")
                counts[name.split("/", 1)[0] if "/" in name else name.rsplit(".", 1)[-1]] += 1
            pages += chunk_pages
            if progress:
                progress(count)

        registered: list[int] = []

        def next_chunk(index: int) -> list[int]:
            nonlocal registered
            count = min(size, request.count - index * size)
            if len(registered) < count:
                wanted = min(max(REGISTER_PER_TRANSACTION, count), request.count - index * size) - len(registered)
                fresh = _register_serials(conn, batch_id, wanted, random_bytes)
                runs.append(array.array("Q", fresh))
                registered += fresh
            chunk, registered = registered[:count], registered[count:]
            return chunk

        if chunks == 1 or workers == 1:
            _init_worker(settings)
            for index in range(chunks):
                serials = next_chunk(index)
                collect(_work_chunk(part_names[index], serials), len(serials))
        else:
            with ProcessPoolExecutor(
                max_workers=workers or os.cpu_count(), initializer=_init_pool_worker, initargs=(settings,)
            ) as pool:
                pending: deque[tuple[Future[tuple[str, list[tuple[str, str]], int]], int]] = deque()
                window = 2 * (workers or os.cpu_count() or 1)
                for index in range(chunks):
                    serials = next_chunk(index)
                    pending.append((pool.submit(_work_chunk, part_names[index], serials), len(serials)))
                    while len(pending) >= window:
                        future, count = pending.popleft()
                        collect(future.result(), count)
                while pending:
                    future, count = pending.popleft()
                    collect(future.result(), count)
        out.flush()
        os.fsync(out.fileno())
    return pages, counts


def _write_manifest(
    conn: db.Conn, batch_id: int, request: BatchRequest, partial: Path, counts: dict[str, int], pages: int
) -> None:
    """manifest.json: batch metadata, counts, and the SHA-256 of every file, streamed."""
    row = registry.batch_row(conn, batch_id)
    batch = {k: v for k, v in row.items() if k not in ("issuing_pid", "output_dir")}
    batch["status"] = registry.BATCH_ACTIVE
    head = {
        "format": MANIFEST_FORMAT,
        "batch": batch,
        "mark": {"slug": request.mark.slug, "zh": request.mark.name_zh, "en": request.mark.name_en},
        "counts": {
            "codes": request.count,
            "png_files": counts["png"],
            "label_png_files": counts["label-png"],
            "svg_files": counts["svg"],
            "pdf_files": counts["pdf"],
            "pdf_pages": pages,
        },
        "layout": {
            **asdict(request.layout),
            "labels_per_page": request.layout.per_page,
            "image_qr_mm": IMAGE_QR_MM,
            "pdf_qr_mm": round(request.label_plan().qr_mm, 2) if "pdf" in request.formats else None,
        },
        "pins": "in codes.csv and the PDF labels' scratch-off boxes only; never stored" if request.pin else None,
    }
    listing = partial / ".files"
    with _create_secret(partial / "manifest.json") as out:
        text = json.dumps(head, indent=2, ensure_ascii=False)
        out.write(text[:-2] + ',\n  "files": {\n')
        entries = [("codes.csv", _sha256_file(partial / "codes.csv"))]
        first = True
        for name, digest in entries + [tuple(reversed(line.rstrip("\n").split("  ", 1))) for line in open(listing)]:
            out.write(("" if first else ",\n") + f"    {json.dumps(name)}: {json.dumps(digest)}")
            first = False
        out.write("\n  }\n}\n")
        out.flush()
        os.fsync(out.fileno())
    listing.unlink()


def _roll_back(conn: db.Conn, batch_id: int, partial: Path | None) -> None:
    """Forget a batch that did not complete: its codes, its row, its partial outputs."""
    with db.transaction(conn):
        registry.forget_batch(conn, batch_id)
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)


def recover_interrupted(conn: db.Conn, now: dt.datetime) -> list[tuple[int, str]]:
    """Finish or forget batches whose issuer is gone: [(batch id, 'completed'|'rolled back')].

    A batch whose lock is held is being issued, whatever process id it records (PIDs mean
    nothing across PID namespaces); one whose lock can be taken has no issuer left.
    """
    outcomes = []
    for batch_id, _ in registry.issuing_batches(conn):
        lock = _batch_lock(conn, batch_id, wait=False)
        if lock is None:
            continue
        try:
            folder = registry.issuing_output_dir(conn, batch_id)
            if folder is None:  # its issuer finished (or another recovery did) before we locked it
                continue
            out = Path(folder)
            if _outputs_complete(out, batch_id):
                _activate(conn, batch_id, now)
                outcomes.append((batch_id, "completed"))
            else:
                _roll_back(conn, batch_id, _partial_dir(out, batch_id))
                outcomes.append((batch_id, "rolled back"))
        finally:
            lock.release()
    return outcomes


def _outputs_complete(out_dir: Path, batch_id: int) -> bool:
    """Whether `out_dir` holds this batch's manifest and every file it lists, unaltered."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text("utf-8"))
        if manifest.get("batch", {}).get("id") != batch_id:
            return False
        return all(_sha256_file(out_dir / name) == digest for name, digest in manifest["files"].items())
    except (OSError, ValueError, KeyError):
        return False


def verify_outputs(out_dir: Path) -> list[str]:
    """Files of a batch folder whose SHA-256 differs from its manifest (or are missing)."""
    manifest = json.loads((Path(out_dir) / "manifest.json").read_text("utf-8"))
    bad = []
    for name, digest in manifest["files"].items():
        path = Path(out_dir) / name
        if not path.is_file() or _sha256_file(path) != digest:
            bad.append(name)
    return bad


# --- after issuance: recall, export -------------------------------------------------------


def recall_batch(conn: db.Conn, batch_id: int, reason: str, now: dt.datetime, actor: str = "") -> dict[str, Any]:
    """Mark a batch recalled with a reason (and log it); lookups then report it. The batch after."""
    reason = reason.strip()
    if not reason:
        raise db.StoreInvalid("a recall needs a reason (--reason)")
    with db.transaction(conn):
        registry.lock_batch(conn, batch_id)  # a recall at the same moment waits, then finds it recalled
        batch = registry.get_batch(conn, batch_id)
        if batch["status"] == registry.BATCH_RECALLED:
            raise db.StoreConflict(f"batch {batch_id} was already recalled on {batch['recalled_at']}")
        registry.mark_recalled(conn, batch_id, reason, now)
        auditlog.append(
            conn, "batch.recalled", {"batch": batch_id, "reason": reason}, clocks.utc_text(now), actor=actor
        )
    return registry.get_batch(conn, batch_id)


EXPORT_HEADER = ("serial", "code", "batch", "status")


def export_rows(conn: db.Conn, batch: dict[str, Any], signer: Signer | None = None) -> Iterator[list[object]]:
    """The rows of `batch export` after its header (EXPORT_HEADER, + "url" with a signer), streamed
    in serial order: serial as 16 digits, printed code, batch, status (and the code's URL)."""
    for serial in registry.batch_serials(conn, batch["id"]):
        row: list[object] = [f"{serial:016d}", codes.human_code(serial), batch["id"], batch["status"]]
        yield row + [signer(serial)] if signer else row
