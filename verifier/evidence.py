"""A case's evidence export ("verifier-case-export/1"): the case, its notes, its evidence scans
as CSV, and every log entry that records them with an RFC 9162 inclusion proof against one
signed checkpoint, as one JSON document that anyone checks offline with the log's vkey.

Pure: values in, values out. `build` makes one from what the log and the tables hold;
`verify` recomputes each leaf's hash and proof against the checkpoint, checks the checkpoint's
signature, that each CSV row says what its scan's entry says (the fields the entry records: the
personal region and city are committed to only through the scan's salted hash), and that the
case and its notes are what the case's entries make them. docs/cases.md.

    {"format": "verifier-case-export/1", "state": "complete" | "pending",
     "case": {"id": 3, "rule": "diversion", ..., "details": {...}},
     "notes": [{"id": 1, "at": "...", "author": "ui:ian", "text": "..."}],
     "evidence": [120, 121],
     "scans_csv": "\\"id\\",\\"at\\",...\\r\\n...",
     "entries": [{"index": 41, "leaf": "<base64 leaf data>", "proof": ["<base64 hash>", ...]}],
     "checkpoint": "<signed checkpoint note>"}

"pending": an entry is not in a signed checkpoint yet (`checkpoint` is null, proofs empty).
Every refusal is an `InvalidExport` with a stable machine `reason`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import csvcells, logentry, merkle, note, receipts

FORMAT = "verifier-case-export/1"
COMPLETE = "complete"
PENDING = "pending"
SCAN_FIELDS = (  # what a scan's entry records (repos.scans.SCAN_FIELDS; kept here: this module is pure)
    "id",
    "at",
    "channel",
    "reason",
    "detail",
    "serial",
    "batch_id",
    "kid",
    "counted",
    "checks",
    "pin",
    "country",
)
CSV_COLUMNS = SCAN_FIELDS + ("region", "city")  # region and city: personal, not in the entry
CASE_FIELDS = (
    "id",
    "rule",
    "subject",
    "serial",
    "batch_id",
    "enterprise_id",
    "severity",
    "details",
    "status",
    "assignee",
    "opened_at",
    "opened_by",
    "closed_at",
    "closed_by",
)
NOTE_FIELDS = ("id", "at", "author", "text")
MAX_ENTRIES = 2000
MAX_PROOF = 64
MAX_NOTE_BYTES = 64 * 1024

# The machine reasons of InvalidExport.
NOT_AN_EXPORT = "not-an-export"  # not a JSON object of this format: the CLI's exit status 2
EXPORT_PENDING = "pending"  # well formed, not covered by a signed checkpoint yet: exit status 3
MALFORMED = "malformed"  # a field missing or of the wrong type or encoding
BAD_CHECKPOINT = "bad-checkpoint"  # the note is not signed by the log key, or is not a checkpoint
BAD_PROOF = "bad-proof"  # a leaf is not at its index of the checkpoint's tree
BAD_LEAF = "bad-leaf"  # a leaf is neither a scan of the evidence nor an entry of this case
CSV_MISMATCH = "csv-mismatch"  # a CSV row differs from its scan's entry, or a scan is missing
CASE_MISMATCH = "case-mismatch"  # the case, its notes or evidence differ from the case's entries


class InvalidExport(ValueError):
    """An export that proves nothing, or not what it claims; `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


@dataclass(frozen=True)
class Verified:
    """What a verified export proves: case `case_id` and its evidence scans are recorded by
    `entries` entries of the log `origin`, in its signed checkpoint of `size` entries."""

    case_id: int
    rule: str
    subject: str
    status: str
    notes: int
    scans: int
    entries: int
    origin: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


# --- making one ----------------------------------------------------------------------------------


def _text(column: str, value: object) -> str:
    """A scan field as its CSV cell holds it (before the cell rules)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(int(value))
    if column == "serial" and isinstance(value, int):
        return f"{value:016d}"
    return str(value)


def scans_csv(scans: Iterable[Mapping[str, Any]]) -> str:
    """The evidence scans as CSV (CSV_COLUMNS; formula-safe cells, serials kept as text)."""
    buffer = io.StringIO()
    writer = csvcells.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    serial = frozenset({CSV_COLUMNS.index("serial")})
    for scan in scans:
        writer.writerow(
            [_text(c, scan.get(c)) if c in SCAN_FIELDS else scan.get(c) for c in CSV_COLUMNS], text_columns=serial
        )
    return buffer.getvalue()


def build(
    case: Mapping[str, Any],
    notes: Sequence[Mapping[str, Any]],
    evidence: Sequence[int],
    scans: Sequence[Mapping[str, Any]],
    entries: Mapping[int, bytes],
    checkpoint: str | None,
    proofs: Mapping[int, Sequence[bytes]] | None,
) -> dict[str, Any]:
    """An export of `case` (its row, details decoded), `notes`, the scan ids linked as `evidence`
    and those scans' rows, the log `entries` (leaf index -> leaf data) recording them, and the
    checkpoint note with each entry's inclusion proof; "pending" without them."""
    complete = checkpoint is not None and proofs is not None and set(proofs) >= set(entries)
    return {
        "format": FORMAT,
        "state": COMPLETE if complete else PENDING,
        "case": {k: case.get(k) for k in CASE_FIELDS},
        "notes": [{k: n.get(k) for k in NOTE_FIELDS} for n in notes],
        "evidence": sorted(int(s) for s in evidence),
        "scans_csv": scans_csv(scans),
        "entries": [
            {
                "index": index,
                "leaf": _b64(leaf),
                "proof": [_b64(h) for h in proofs[index]] if complete and proofs is not None else [],
            }
            for index, leaf in sorted(entries.items())
        ],
        "checkpoint": checkpoint if complete else None,
    }


def dumps(export: Mapping[str, Any]) -> str:
    """The export file's text: indented JSON, a final newline."""
    return json.dumps(export, ensure_ascii=False, indent=2) + "\n"


def filename(case_id: int) -> str:
    return f"case-{case_id}-evidence.json"


# --- checking one ----------------------------------------------------------------------------------


def loads(text: str | bytes) -> dict[str, Any]:
    """An export file's JSON object; InvalidExport(NOT_AN_EXPORT) for anything that is not one."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidExport(NOT_AN_EXPORT, "not JSON") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidExport(NOT_AN_EXPORT, f"not a {FORMAT} document")
    return data


def verify(export: Mapping[str, Any], log_vkeys: Iterable[note.VerifierKey]) -> Verified:
    """Check an export offline against the log's keys: what it proves, or InvalidExport naming
    the part that is not what the log says."""
    if not isinstance(export, Mapping) or export.get("format") != FORMAT:
        raise InvalidExport(NOT_AN_EXPORT, f"not a {FORMAT} document")
    state = export.get("state")
    if state not in (COMPLETE, PENDING):
        raise InvalidExport(MALFORMED, "state is neither complete nor pending")
    if state == PENDING:
        raise InvalidExport(EXPORT_PENDING, "an entry of the case is not in a signed checkpoint yet: export it again")
    case, notes, evidence = export.get("case"), export.get("notes"), export.get("evidence")
    if not isinstance(case, dict) or not _is_id(case.get("id")):
        raise InvalidExport(MALFORMED, "case is an object with its id")
    if not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes):
        raise InvalidExport(MALFORMED, "notes is a list of objects")
    if not isinstance(evidence, list) or not all(_is_id(s) for s in evidence):
        raise InvalidExport(MALFORMED, "evidence is a list of scan ids")
    checkpoint = _open_checkpoint(export.get("checkpoint"), list(log_vkeys))
    leaves = _proven_leaves(export.get("entries"), checkpoint)
    case_id = int(case["id"])
    scan_bodies: dict[int, dict[str, Any]] = {}
    case_entries: list[tuple[logentry.LeafEntry, dict[str, Any]]] = []
    for index, leaf in leaves:
        try:
            entry = logentry.parse_leaf(leaf)
            body = json.loads(entry.body)
        except ValueError:
            raise InvalidExport(BAD_LEAF, f"entry {index + 1} is not a log entry with a JSON body") from None
        if not isinstance(body, dict):
            raise InvalidExport(BAD_LEAF, f"entry {index + 1}'s body is not a JSON object")
        if entry.kind == "scan" and _is_id(body.get("id")):
            scan_bodies[int(body["id"])] = body  # each must be an evidence scan: checked with the CSV
        elif entry.kind.startswith("case.") and body.get("case") == case_id:
            case_entries.append((entry, body))
        else:
            raise InvalidExport(
                BAD_LEAF, f"entry {index + 1} is neither an evidence scan nor an entry of case {case_id}"
            )
    _check_case(case, notes, evidence, case_entries)
    _check_csv(export.get("scans_csv"), evidence, scan_bodies)
    return Verified(
        case_id,
        str(case.get("rule")),
        str(case.get("subject")),
        str(case.get("status")),
        len(notes),
        len(evidence),
        len(leaves),
        checkpoint.origin,
        checkpoint.size,
    )


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def _proven_leaves(entries: object, checkpoint: note.Checkpoint) -> list[tuple[int, bytes]]:
    """Each entry's (index, leaf data), its inclusion proof checked against the checkpoint."""
    if not isinstance(entries, list) or not entries or len(entries) > MAX_ENTRIES:
        raise InvalidExport(MALFORMED, f"entries is a list of 1 to {MAX_ENTRIES} entries")
    found: list[tuple[int, bytes]] = []
    seen: set[int] = set()
    for item in entries:
        if not isinstance(item, dict):
            raise InvalidExport(MALFORMED, "an entry is an object")
        index, proof = item.get("index"), item.get("proof")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < 2**63 or index in seen:
            raise InvalidExport(MALFORMED, "an entry's index is a whole number, each once")
        seen.add(index)
        leaf = _b64_field(item.get("leaf"), f"entry {index + 1}'s leaf", logentry.MAX_LEAF_BYTES)
        if not isinstance(proof, list) or len(proof) > MAX_PROOF:
            raise InvalidExport(MALFORMED, f"entry {index + 1}'s proof is a list of at most {MAX_PROOF} hashes")
        hashes = [_b64_field(h, "a proof hash", merkle.HASH_SIZE) for h in proof]
        if any(len(h) != merkle.HASH_SIZE for h in hashes):
            raise InvalidExport(MALFORMED, f"a proof hash is {merkle.HASH_SIZE} bytes")
        try:
            merkle.verify_inclusion(merkle.leaf_hash(leaf), index, checkpoint.size, hashes, checkpoint.root)
        except merkle.InvalidProof as exc:
            raise InvalidExport(
                BAD_PROOF,
                f"entry {index + 1} is not in the checkpoint's tree ({exc.reason}): its leaf or proof was altered",
            ) from None
        found.append((index, leaf))
    return sorted(found)


def _open_checkpoint(text: object, log_keys: list[note.VerifierKey]) -> note.Checkpoint:
    if not isinstance(text, str) or len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InvalidExport(MALFORMED, "checkpoint is a signed note")
    try:
        opened = note.open_note(text, log_keys)
        checkpoint = note.parse_checkpoint(opened.text)
    except note.InvalidNote as exc:
        raise InvalidExport(BAD_CHECKPOINT, f"the checkpoint is not signed by the log key ({exc.reason})") from None
    if not any(s.name == checkpoint.origin for s in opened.verified):
        raise InvalidExport(BAD_CHECKPOINT, "the checkpoint's origin is not the name of the key that signed it")
    return checkpoint


def fold_case(case_id: int, entries: Iterable[tuple[logentry.LeafEntry, Mapping[str, Any]]]) -> dict[str, Any]:
    """What a case's entries (in log order) make of it: its fields, notes and evidence scan ids."""
    case: dict[str, Any] = {}
    notes: list[dict[str, Any]] = []
    evidence: set[int] = set()
    for entry, body in entries:
        if entry.kind == "case.opened":
            case = {k: body.get(k) for k in ("rule", "subject", "serial", "batch_id", "enterprise_id", "severity")}
            case.update(id=case_id, details=body.get("details"), status="open", assignee=None)
            case.update(opened_at=entry.at, opened_by=entry.actor, closed_at=None, closed_by=None)
            evidence |= set(body.get("evidence") or [])
        elif entry.kind == "case.assigned":
            case["assignee"] = body.get("assignee")
        elif entry.kind == "case.note":
            notes.append({"id": body.get("note"), "at": entry.at, "author": entry.actor, "text": body.get("text")})
        elif entry.kind == "case.status":
            closed = body.get("status") == "closed"
            case.update(status=body.get("status"), closed_at=entry.at if closed else None)
            case["closed_by"] = entry.actor if closed else None
        elif entry.kind == "case.linked":
            evidence |= set(body.get("scans") or [])
    return {"case": case, "notes": notes, "evidence": sorted(evidence)}


def _check_case(
    case: Mapping[str, Any],
    notes: list[Any],
    evidence: list[Any],
    entries: list[tuple[logentry.LeafEntry, dict[str, Any]]],
) -> None:
    case_id = int(case["id"])
    if not entries or entries[0][0].kind != "case.opened":
        raise InvalidExport(CASE_MISMATCH, f"the export holds no entry that opened case {case_id}")
    made = fold_case(case_id, entries)
    for key in CASE_FIELDS:
        if key not in case or case[key] != made["case"].get(key) or type(case[key]) is not type(made["case"].get(key)):
            raise InvalidExport(CASE_MISMATCH, f"the case's {key} is not what its log entries record")
    if len(notes) != len(made["notes"]):
        raise InvalidExport(CASE_MISMATCH, f"the case has {len(notes)} notes, its entries record {len(made['notes'])}")
    for number, (given, logged) in enumerate(zip(notes, made["notes"]), 1):
        if {k: given.get(k) for k in NOTE_FIELDS} != logged or set(given) != set(NOTE_FIELDS):
            raise InvalidExport(CASE_MISMATCH, f"note {number} is not what its log entry records")
    if sorted(evidence) != made["evidence"] or len(set(evidence)) != len(evidence):
        raise InvalidExport(CASE_MISMATCH, "the evidence scans are not those the case's entries linked")


def _check_csv(text: object, evidence: list[int], bodies: Mapping[int, Mapping[str, Any]]) -> None:
    if not isinstance(text, str):
        raise InvalidExport(MALFORMED, "scans_csv is CSV text")
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error:
        raise InvalidExport(CSV_MISMATCH, "scans_csv is not CSV") from None
    if not rows or tuple(rows[0]) != CSV_COLUMNS:
        raise InvalidExport(CSV_MISMATCH, "the CSV's header is not the export's columns")
    seen: list[int] = []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(CSV_COLUMNS):
            raise InvalidExport(CSV_MISMATCH, f"CSV line {number} has {len(row)} cells, not {len(CSV_COLUMNS)}")
        cells = {c: csvcells.plain_cell(v, digits=c == "serial") for c, v in zip(CSV_COLUMNS, row)}
        scan_id = int(cells["id"]) if cells["id"].isascii() and cells["id"].isdigit() else None
        body = bodies.get(scan_id) if scan_id is not None else None
        if scan_id is None or body is None:
            raise InvalidExport(CSV_MISMATCH, f"CSV line {number} is no evidence scan the export's entries record")
        for column in SCAN_FIELDS:
            if cells[column] != _text(column, body.get(column)):
                raise InvalidExport(
                    CSV_MISMATCH, f"CSV line {number} (scan {scan_id}): {column} is not what the scan's log entry says"
                )
        seen.append(scan_id)
    if sorted(seen) != sorted(evidence) or len(set(seen)) != len(seen):
        missing = sorted(set(evidence) - set(seen)) or sorted(set(seen))
        raise InvalidExport(CSV_MISMATCH, f"the CSV's scans are not the case's evidence (scan {missing[0]})")
    if sorted(bodies) != sorted(evidence):
        raise InvalidExport(CSV_MISMATCH, "an evidence scan has no log entry in the export")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _b64_field(value: object, what: str, limit: int) -> bytes:
    try:
        return receipts.canonical_b64(value, limit)
    except ValueError as exc:
        raise InvalidExport(MALFORMED, f"{what} {exc}") from None
