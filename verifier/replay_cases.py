"""Cases' part of `audit verify`'s replay: each case row, its notes and its linked evidence
against the "case.*" entries that made them (opened, assigned, note, status, linked).

A case's row must be what folding its entries makes of it (verifier/evidence.py's `fold_case`,
the same fold the offline export check applies); a case, note or link no entry made is named
with seq 0. Cases are few: the replay keeps their entries in memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import db, evidence, logentry
from .replay_lifecycle import Logged
from .repos import cases as repo

KINDS = frozenset({"case.opened", "case.assigned", "case.note", "case.status", "case.linked"})

Found = list[tuple[int, str]]  # (seq, what): replay.Disagreement's fields


@dataclass
class CaseLog:
    """Each case's entries, in log order, as the replay was fed them."""

    entries: dict[int, list[tuple[str, Logged]]] = field(default_factory=dict)

    def feed(self, kind: str, e: Logged) -> None:
        case_id = e.body["case"]
        if not isinstance(case_id, int) or isinstance(case_id, bool):
            raise TypeError("a case entry names its case by number")
        if kind == "case.opened":
            self.entries.setdefault(case_id, [])
        elif case_id not in self.entries:
            raise ValueError("an entry of a case no entry opened")
        self.entries[case_id].append((kind, e))


def _leaf(kind: str, e: Logged) -> logentry.LeafEntry:
    return logentry.LeafEntry(kind, e.at, e.actor, "", "")


def compare(log: CaseLog, conn: db.Conn, limit: int) -> Found:
    """Every case, note and link against the log, at most `limit` disagreements."""
    found: Found = []
    rows = {int(r["id"]): r for r in repo.all_cases(conn)}
    notes: dict[int, list[dict[str, Any]]] = {}
    for note in repo.all_notes(conn):
        notes.setdefault(int(note["case_id"]), []).append(note)
    linked: dict[int, list[int]] = {}
    for link in repo.all_evidence(conn):
        linked.setdefault(int(link["case_id"]), []).append(int(link["scan_id"]))
    for case_id, row in rows.items():
        entries = log.entries.get(case_id)
        if entries is None:
            found.append((0, f"cases: case {case_id} ({row['rule']}) was never opened in the log"))
            continue
        made = evidence.fold_case(case_id, [(_leaf(k, e), e.body) for k, e in entries])
        last = {k: e.seq for k, e in entries}
        stored = dict(row)
        try:
            stored["details"] = json.loads(row["details"])
        except ValueError:
            stored["details"] = row["details"]
        for key in evidence.CASE_FIELDS:
            if stored[key] != made["case"].get(key):
                seq = _seq_of(key, last, entries[0][1].seq)
                found.append(
                    (seq, f"cases: case {case_id}'s {key} is {stored[key]!r}, the log says {made['case'].get(key)!r}")
                )
        given = [{k: n[k] for k in evidence.NOTE_FIELDS} for n in notes.pop(case_id, [])]
        if given != made["notes"]:
            note_seqs = [e.seq for k, e in entries if k == "case.note"]
            first = next((i for i, (a, b) in enumerate(zip(given, made["notes"])) if a != b), None)
            first = min(len(given), len(made["notes"])) if first is None else first
            seq = note_seqs[first] if first < len(note_seqs) else 0  # 0: a note no entry wrote
            found.append((seq, f"case_notes: case {case_id}'s notes are not those its entries wrote"))
        if sorted(linked.pop(case_id, [])) != made["evidence"]:
            found.append(
                (
                    last.get("case.linked", entries[0][1].seq),
                    f"case_evidence: case {case_id}'s evidence scans are not those its entries linked",
                )
            )
        if len(found) >= limit:
            return found[:limit]
    for case_id in sorted(notes):
        found.append((0, f"case_notes: notes of case {case_id}, which was never opened"))
    for case_id in sorted(linked):
        found.append((0, f"case_evidence: scans linked to case {case_id}, which was never opened"))
    for case_id, entries in log.entries.items():
        if case_id not in rows:
            found.append((entries[0][1].seq, f"cases: case {case_id} was opened but its row is gone"))
    return found[:limit]


def _seq_of(key: str, last: dict[str, int], opened: int) -> int:
    """The entry that set a case's field last (its opening entry for the fields it alone sets)."""
    if key == "assignee":
        return last.get("case.assigned", opened)
    if key in ("status", "closed_at", "closed_by"):
        return last.get("case.status", opened)
    return opened
