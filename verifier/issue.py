"""Batch issuance: random unique serials, signing on every core, printer files, all or nothing.

A batch is registered in two phases. Its row is written first with status `issuing` (so the
batch number can be signed into compact codes) and its serials are registered chunk by chunk in
short transactions, so lookups keep flowing. Outputs go to a hidden `.partial` folder; only when
every file is written and hashed is the folder renamed into place and the batch made `active`.
An interrupted run is rolled back at once; a killed one is rolled back or forward by
`recover_interrupted` the next time a batch command runs.
"""

from __future__ import annotations

import array
import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import auditlog, codes, labels, pins, qr, store

FORMATS = ("csv", "png", "svg", "pdf")
MAX_COUNT = 100_000_000
MANIFEST_FORMAT = "verifier-batch-manifest/1"


class IssueError(Exception):
    """A batch that cannot be issued; the message is for the user. Nothing was registered."""


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

    def validate(self) -> None:
        if not 1 <= self.count <= MAX_COUNT:
            raise IssueError(f"--count must be between 1 and {MAX_COUNT:,}")
        unknown = set(self.formats) - set(FORMATS)
        if unknown or not self.formats:
            raise IssueError(f"--format takes a comma-separated list of {', '.join(FORMATS)}")
        try:
            codes.normalize_base_url(self.base_url)
            self.layout.validate()
        except ValueError as exc:
            raise IssueError(str(exc)) from None
        if self.form == codes.FORM_GS1:
            if not (self.gtin and self.lot and self.expiry):
                raise IssueError("a GS1 Digital Link batch needs --gtin, --lot and --expiry")
            try:
                codes.validate_gtin(self.gtin)
                codes.validate_lot(self.lot)
                codes.expiry_text(self.expiry)
            except (codes.InvalidCode, ValueError) as exc:
                raise IssueError(str(exc).split(": ", 1)[-1]) from None
        elif self.form != codes.FORM_COMPACT:
            raise IssueError(f"unknown URL form {self.form!r} (compact or gs1)")
        if self.production_date and self.expiry and self.expiry < self.production_date:
            raise IssueError("the expiry date is before the production date")


@dataclass(frozen=True)
class BatchResult:
    batch_id: int
    count: int
    out_dir: Path
    files: int
    pdf_pages: int
    seconds: float


# --- work done in each process ------------------------------------------------------------

_worker: dict = {}


def _init_worker(settings: dict) -> None:
    """Set up a signing process; the private key arrives as its 32 raw bytes."""
    private = Ed25519PrivateKey.from_private_bytes(settings["private_raw"])
    kid, mark = settings["kid"], settings["mark"]
    if settings["form"] == codes.FORM_COMPACT:
        signer = codes.compact_signer(private, kid, mark, settings["batch_id"], settings["base_url"])
    else:
        signer = codes.gs1_signer(private, kid, mark, settings["gtin"], settings["lot"], settings["expiry"],
                                  settings["base_url"])  # fmt: skip
    _worker.clear()
    _worker.update(settings, signer=signer, private_raw=None)


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
    # No field ever needs CSV quoting (digits, spaces, URL characters), so rows are joined directly.
    if w["pin_secret"]:
        secret = w["pin_secret"]
        rows = [f"{s:016d},{h},{u},{pins.derive_pin(secret, s)}\r\n" for s, h, u in zip(serials, humans, urls)]
    else:
        rows = [f"{s:016d},{h},{u}\r\n" for s, h, u in zip(serials, humans, urls)]
    written: list[tuple[str, str]] = []
    pages = 0
    if {"png", "svg", "pdf"} & set(formats):
        matrices = [qr.encode(u) for u in urls]
        qr_mm = w["qr_mm"]
        for serial, url, matrix in zip(serials, urls, matrices):
            if "png" in formats:
                data = labels.png_bytes(matrix, qr_mm)
                written.append(_write_bytes(folder, f"png/{serial:016d}.png", data))
            if "svg" in formats:
                data = labels.svg_text(matrix, qr_mm, title=url).encode("utf-8")
                written.append(_write_bytes(folder, f"svg/{serial:016d}.svg", data))
        if "pdf" in formats:
            path = folder / part
            items = (labels.Label(u, h, m) for u, h, m in zip(urls, humans, matrices))
            pages = labels.write_pdf(path, items, w["layout"], w["mark_title"], w["subtitle"])
            written.append((part, _sha256_file(path)))
    return "".join(rows), written, pages


def _write_bytes(folder: Path, name: str, data: bytes) -> tuple[str, str]:
    (folder / name).write_bytes(data)
    return name, hashlib.sha256(data).hexdigest()


# --- the coordinating process -------------------------------------------------------------


def chunk_size(layout: labels.SheetLayout, target: int = 4000) -> int:
    """Codes per unit of work: whole PDF pages, about `target` labels."""
    return max(1, round(target / layout.per_page)) * layout.per_page


_RANDOM_LIMIT = (2**56 // codes.SERIAL_LIMIT) * codes.SERIAL_LIMIT  # rejection bound: uniform mod 10^16


def _draw_serials(count: int, avoid: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """`count` distinct uniformly random serials (from the OS CSPRNG), none of them in `avoid`."""
    out: list[int] = []
    seen = set(avoid)
    while len(out) < count:
        for value in array.array("Q", os.urandom(8 * (count - len(out) + 8))):
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


def _register_serials(db, batch_id: int, count: int) -> list[int]:
    """Draw and register `count` new serials in one short transaction; the registry's primary
    key keeps them unique across all batches, so nothing of the batch is held in memory."""
    serials = sorted(_draw_serials(count))  # neighbouring keys share B-tree pages
    while True:
        try:
            with store.transaction(db) as conn:
                store.insert_codes(conn, batch_id, serials)
            return serials
        except sqlite3.IntegrityError:  # about 1 in 10^9 a code per 10^7 issued: redraw those
            taken = store.serials_taken(db.conn, serials)
            fresh = iter(_draw_serials(len(taken), avoid=set(serials)))
            serials = sorted(next(fresh) if s in taken else s for s in serials)


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
    db_path: Path,
    request: BatchRequest,
    private_key: Ed25519PrivateKey,
    kid: bytes,
    pin_secret: bytes | None = None,
    progress: Callable[[int], None] | None = None,
    workers: int | None = None,
    now: dt.datetime | None = None,
) -> BatchResult:
    """Issue a batch: register it, sign and render every code, write outputs; all or nothing."""
    request.validate()
    if request.pin and not pin_secret:
        raise IssueError("--pin needs a PIN secret (VERIFIER_PIN_SECRET or VERIFIER_PIN_SECRET_FILE)")
    out_dir = _prepare_out_dir(request.out_dir)
    started = dt.datetime.now(dt.timezone.utc)
    db = store.connect(db_path)
    recover_interrupted(db)
    try:
        with store.transaction(db):
            enterprise_id = store.ensure_enterprise(db, request.enterprise, request.credit_code)
            product_id = store.ensure_product(db, enterprise_id, request.product, request.spec, request.gtin)
            batch_id = db.execute(
                """INSERT INTO batches (enterprise_id, product_id, mark, form, lot, gtin, production_date,
                   expiry_date, count, kid, base_url, pin, status, output_dir, issuing_pid, created_at,
                   created_by, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [enterprise_id, product_id, request.mark.slug, request.form, request.lot, request.gtin,
                 _iso(request.production_date), _iso(request.expiry), request.count, kid.hex(),
                 codes.normalize_base_url(request.base_url), int(request.pin), store.BATCH_ISSUING,
                 str(out_dir), os.getpid(), store.now_text(now), request.created_by or _user(), request.note],
            ).lastrowid  # fmt: skip
    except store.StoreError as exc:
        raise IssueError(str(exc)) from None
    if batch_id >= codes.BATCH_LIMIT:
        _roll_back(db, batch_id, None)
        raise IssueError("batch numbers are exhausted (2^32 - 1)")
    partial = _partial_dir(out_dir, batch_id)
    try:
        pages, counts = _produce(db, batch_id, request, private_key, kid, pin_secret, partial, progress, workers)
        _write_manifest(db, batch_id, request, partial, counts, pages)
        _move_into_place(partial, out_dir)
        _activate(db, batch_id)
    except BaseException:
        _roll_back(db, batch_id, partial)
        raise
    finally:
        db.close()
    seconds = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    return BatchResult(batch_id, request.count, out_dir, sum(counts.values()) + 1, pages, seconds)


def _activate(db, batch_id: int) -> None:
    """Register the batch, and say so in the audit log, in one transaction."""
    with store.transaction(db) as conn:
        conn.execute("UPDATE batches SET status = ?, issuing_pid = NULL WHERE id = ?", [store.BATCH_ACTIVE, batch_id])
        row = store.batch_row(db, batch_id)
        body = {k: row[k] for k in ("id", "enterprise", "product", "spec", "mark", "form", "lot", "gtin", "count", "kid",
                                    "expiry_date", "created_by")}  # fmt: skip
        auditlog.append(conn, "batch.issued", body, auditlog.now_text(), actor=row["created_by"])


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


def _produce(db, batch_id, request, private_key, kid, pin_secret, partial: Path, progress,
             workers) -> tuple[int, dict[str, int]]:  # fmt: skip
    """Sign and render every chunk, writing codes.csv in order; (PDF pages, files by kind)."""
    partial.mkdir()
    for fmt in ("png", "svg"):
        if fmt in request.formats:
            (partial / fmt).mkdir()
    settings = {
        "private_raw": private_key.private_bytes_raw(), "kid": kid, "mark": request.mark, "form": request.form,
        "batch_id": batch_id, "base_url": request.base_url, "gtin": request.gtin, "lot": request.lot,
        "expiry": codes.expiry_text(request.expiry) if request.form == codes.FORM_GS1 else None,
        "pin_secret": pin_secret if request.pin else None, "formats": request.formats, "folder": str(partial),
        "layout": request.layout, "qr_mm": request.layout.qr_mm, "mark_title": request.mark.name_zh,
        "subtitle": f"{request.product} {request.lot or ''}".strip(),
    }  # fmt: skip
    size = chunk_size(request.layout)
    chunks = -(-request.count // size)
    part_names = ["labels.pdf"] if chunks == 1 else [f"labels-{i + 1:05d}.pdf" for i in range(chunks)]
    manifest_lines = partial / ".files"
    pages = 0
    counts = {"csv": 1, "png": 0, "svg": 0, "pdf": 0}
    header = ["serial", "code", "url"] + (["pin"] if request.pin else [])
    with open(partial / "codes.csv", "w", encoding="utf-8", newline="") as out, open(manifest_lines, "w") as listing:
        out.write(",".join(header) + "\r\n")

        def collect(result: tuple[str, list[tuple[str, str]], int], count: int) -> None:
            nonlocal pages
            text, written, chunk_pages = result
            out.write(text)
            for name, digest in written:
                listing.write(f"{digest}  {name}\n")
                counts[name.rsplit(".", 1)[-1]] += 1
            pages += chunk_pages
            if progress:
                progress(count)

        registered: list[int] = []

        def next_chunk(index: int) -> list[int]:
            nonlocal registered
            count = min(size, request.count - index * size)
            if len(registered) < count:
                wanted = min(max(REGISTER_PER_TRANSACTION, count), request.count - index * size) - len(registered)
                registered += _register_serials(db, batch_id, wanted)
            chunk, registered = registered[:count], registered[count:]
            return chunk

        if chunks == 1 or workers == 1:
            _init_worker(settings)
            for index in range(chunks):
                serials = next_chunk(index)
                collect(_work_chunk(part_names[index], serials), len(serials))
        else:
            with ProcessPoolExecutor(max_workers=workers or os.cpu_count(), initializer=_init_worker,
                                     initargs=(settings,)) as pool:  # fmt: skip
                pending: deque[tuple[Future, int]] = deque()
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


def _write_manifest(db, batch_id: int, request: BatchRequest, partial: Path, counts: dict[str, int],
                    pages: int) -> None:  # fmt: skip
    """manifest.json: batch metadata, counts, and the SHA-256 of every file, streamed."""
    batch = {k: v for k, v in store.batch_row(db, batch_id).items() if k not in ("issuing_pid", "output_dir")}
    batch["status"] = store.BATCH_ACTIVE
    head = {
        "format": MANIFEST_FORMAT,
        "batch": batch,
        "mark": {"slug": request.mark.slug, "zh": request.mark.name_zh, "en": request.mark.name_en},
        "counts": {"codes": request.count, "png_files": counts["png"], "svg_files": counts["svg"],
                   "pdf_files": counts["pdf"], "pdf_pages": pages},
        "layout": {**asdict(request.layout), "qr_mm": request.layout.qr_mm, "labels_per_page": request.layout.per_page},
        "pins": "in codes.csv only; never stored" if request.pin else None,
    }  # fmt: skip
    listing = partial / ".files"
    with open(partial / "manifest.json", "w", encoding="utf-8") as out:
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


def _roll_back(db, batch_id: int, partial: Path | None) -> None:
    """Forget a batch that did not complete: its codes, its row, its partial outputs."""
    with store.transaction(db):
        db.execute("DELETE FROM codes WHERE batch_id = ?", [batch_id])
        db.execute("DELETE FROM batches WHERE id = ? AND status = ?", [batch_id, store.BATCH_ISSUING])
    if partial is not None:
        shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_interrupted(db) -> list[tuple[int, str]]:
    """Finish or forget batches whose issuing process died: [(batch id, 'completed'|'rolled back')]."""
    outcomes = []
    for row in db.execute("SELECT id, output_dir, issuing_pid FROM batches WHERE status = ?", [store.BATCH_ISSUING]).fetchall():
        batch_id, out_dir, pid = row
        if _alive(pid) and pid != os.getpid():
            continue
        out = Path(out_dir)
        if _outputs_complete(out, batch_id):
            _activate(db, batch_id)
            outcomes.append((batch_id, "completed"))
        else:
            _roll_back(db, batch_id, _partial_dir(out, batch_id))
            outcomes.append((batch_id, "rolled back"))
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
