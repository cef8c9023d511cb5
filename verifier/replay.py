"""Replaying the log: the state tables (batches, codes, check counts, PIN state, reported codes,
users, roles, tokens, key statuses, purges) are projections of the log's entries, and
`audit verify` compares each with what the entries say (docs/audit.md, "What verify compares").

`feed` keeps what the entries say about the small tables (batches, users, tokens, reported codes,
key statuses, purges, retirements); scan entries are only counted, never parsed: what a scan says
is compared row by row by `auditlog._check_scans`, and the per-code state they make (check
counts, first and last check, PIN state) is aggregated and compared in SQL
(`repos.projections.check_disagreements`). So the replay's memory grows with the batches and
accounts, never with the scans or codes.

A disagreement names the entry whose fact the table contradicts, or seq 0 with the row named
when the table holds a fact no entry made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import clock, db, replay_cases, replay_certificates, replay_lifecycle, replay_requests
from .keys import KeyRecord
from .repos import projections

# The batch facts a batch.issued entry records and the table must still hold (absent from entries
# written before issue 12: then not compared). credit_code and product_gtin are compared per
# enterprise and product (a later batch may fill them in), serials_sha256 and count with `codes`.
BATCH_FIELDS = (
    "enterprise_id",
    "enterprise",
    "product_id",
    "product",
    "spec",
    "mark",
    "form",
    "lot",
    "gtin",
    "production_date",
    "expiry_date",
    "kid",
    "base_url",
    "pin",
    "created_by",
    "unit",  # these three since issue 13
    "activation",
    "production_place",
)
ISSUED_STATUSES = ("active", "recalled")  # registry.BATCH_ACTIVE, BATCH_RECALLED: "issuing" has no entry yet
NO_BOUND = 2**63 - 1  # a purge logged before it recorded its bound: every scan id


def serials_sha256(serials: Iterable[int]) -> str:
    """SHA-256 over a batch's serials, given in ascending order, each 8 bytes big-endian: what its
    batch.issued entry commits to."""
    digest = hashlib.sha256()
    chunk: list[int] = []
    for serial in serials:
        chunk.append(serial)
        if len(chunk) == 8192:
            digest.update(struct.pack(f">{len(chunk)}Q", *chunk))
            chunk.clear()
    digest.update(struct.pack(f">{len(chunk)}Q", *chunk))
    return digest.hexdigest()


def merged_serials_sha256(runs: Sequence[Iterable[int]]) -> str:
    """serials_sha256 of the union of `runs`, each ascending (the chunks a batch registered)."""
    return serials_sha256(heapq.merge(*runs))


def password_commitment(password_hash: str) -> str:
    """What user.added records of a password: SHA-256 of the stored hash text."""
    return hashlib.sha256(password_hash.encode("utf-8")).hexdigest()


def token_commitment(token_hash: str) -> str:
    """What token.issued records of a token: SHA-256 of the stored token_hash text."""
    return hashlib.sha256(token_hash.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Disagreement:
    """A table that disagrees with the log: the entry that established the fact (0: no entry
    did, the table holds a fact the log never recorded) and what differs."""

    seq: int
    what: str


_Logged = replay_lifecycle.Logged  # an entry as the replay keeps it: seq, at, actor, body

# The replay's parts beyond the tables above, one module each: its KINDS of entries feed its log
# (`feed(kind, entry)`; an entry may feed several parts, and the tables above too), and its
# `compare(log, conn, limit)` checks its tables against that log.
_PARTS: tuple[tuple[Any, Any], ...] = (
    (replay_lifecycle, replay_lifecycle.LifecycleLog),
    (replay_certificates, replay_certificates.CertificateLog),
    (replay_cases, replay_cases.CaseLog),
    (replay_requests, replay_requests.RequestsLog),
)


@dataclass
class _State:
    batches: dict[int, _Logged] = field(default_factory=dict)
    recalls: dict[int, _Logged] = field(default_factory=dict)
    users: dict[str, _Logged] = field(default_factory=dict)
    disabled: dict[str, _Logged] = field(default_factory=dict)
    tokens: dict[int, _Logged] = field(default_factory=dict)
    revoked: dict[int, _Logged] = field(default_factory=dict)
    reports: dict[int, _Logged] = field(default_factory=dict)
    keys: dict[str, _Logged] = field(default_factory=dict)
    purges: list[_Logged] = field(default_factory=list)
    retired_at: str = ""  # when the last scans.retired entry was logged (PostgreSQL)
    retired_below: int = 0  # and the scan id below which scans are retired
    unreadable: list[Disagreement] = field(default_factory=list)
    parts: list[Any] = field(default_factory=lambda: [log() for _, log in _PARTS])  # in _PARTS' order
    scans: int = 0
    last_seq: int = 0


class Replay:
    """Fed every entry in log order (`feed`), then compares the projections with the tables."""

    def __init__(self) -> None:
        self.state = _State()

    def feed(self, seq: int, at: str, kind: str, actor: str, body: str) -> None:
        """One entry, in log order (body: its canonical JSON text)."""
        s = self.state
        s.last_seq = seq
        if kind == "scan":  # the hot path: 10,000,000 of them; compared in SQL, never parsed here
            s.scans += 1
            return
        parts = [log for (module, _), log in zip(_PARTS, s.parts) if kind in module.KINDS]
        if kind not in _KINDS and not parts:
            return
        try:
            value = json.loads(body)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            s.unreadable.append(Disagreement(seq, f"{kind} entry's body is not a JSON object"))
            return
        logged = _Logged(seq, at, actor, value)
        try:
            for log in parts:
                log.feed(kind, logged)
            if kind in _KINDS:
                _KINDS[kind](s, logged)
        except (KeyError, TypeError, ValueError):
            s.unreadable.append(Disagreement(seq, f"{kind} entry lacks what a {kind} entry records"))

    def compare(self, conn: db.Conn, keyring: Sequence[KeyRecord] | None, limit: int = 20) -> list[Disagreement]:
        """Every projection against its table, at most `limit` disagreements, first ones first.
        `keyring`: the key statuses the lookup trusts (None: not available here, not compared)."""
        s = self.state
        # Entries committed with their facts but not chained yet (PostgreSQL's sequencer) count:
        # they are named by the seq they would have next, after the last chained one.
        chained = s.last_seq
        for offset, (at, kind, actor, body) in enumerate(projections.pending_entries(conn), 1):
            self.feed(chained + offset, at, kind, actor, body)
        found = list(s.unreadable[:limit])
        for check in (_batches, _codes, _code_checks, _missing_scans, _erased_scans, _reports, _users, _tokens):
            found += check(s, conn, limit)
        if keyring is not None:
            found += _keys(s, keyring, limit)
        for (module, _), log in zip(_PARTS, s.parts):
            found += [Disagreement(seq, what) for seq, what in module.compare(log, conn, limit)]
        return sorted(found, key=lambda d: d.seq)[:limit]


# --- feeding ------------------------------------------------------------------------------


def _on_batch_issued(s: _State, e: _Logged) -> None:
    s.batches[int(e.body["id"])] = e


def _on_batch_recalled(s: _State, e: _Logged) -> None:
    s.recalls.setdefault(int(e.body["batch"]), e)


def _on_user_added(s: _State, e: _Logged) -> None:
    s.users[str(e.body["user"])] = e


def _on_user_disabled(s: _State, e: _Logged) -> None:
    s.disabled.setdefault(str(e.body["user"]), e)


def _on_token_issued(s: _State, e: _Logged) -> None:
    s.tokens[int(e.body["token_id"])] = e


def _on_token_revoked(s: _State, e: _Logged) -> None:
    s.revoked.setdefault(int(e.body["token_id"]), e)


def _on_code_reported(s: _State, e: _Logged) -> None:
    serial = int(e.body["serial"])
    if e.body.get("first", serial not in s.reports):  # the first report stands
        s.reports.setdefault(serial, e)


def _on_key_status(s: _State, e: _Logged) -> None:
    s.keys[str(e.body["kid"])] = e  # the last change stands


def _on_purged(s: _State, e: _Logged) -> None:
    if not isinstance(e.body["older_than"], str):
        raise TypeError("older_than is not a time")
    s.purges.append(e)


def _on_retired(s: _State, e: _Logged) -> None:
    s.retired_at = max(s.retired_at, e.at)
    s.retired_below = max(s.retired_below, int(e.body["below_id"]))


_KINDS = {
    "batch.issued": _on_batch_issued,
    "batch.recalled": _on_batch_recalled,
    "user.added": _on_user_added,
    "user.disabled": _on_user_disabled,
    "token.issued": _on_token_issued,
    "token.revoked": _on_token_revoked,
    "code.reported": _on_code_reported,
    "key.status": _on_key_status,
    "audit.purged": _on_purged,
    "scans.retired": _on_retired,
}


# --- comparing ----------------------------------------------------------------------------


def _seconds(at: str) -> str:
    """An entry's time (milliseconds) as the registry stores it (seconds)."""
    return clock.utc_text_seconds(dt.datetime.fromisoformat(at))


def _batches(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    found: list[Disagreement] = []
    rows = {row["id"]: row for row in projections.batch_facts(conn)}
    credit_codes: dict[int, tuple[int, Any]] = {}  # enterprise id -> (seq, the last logged credit code)
    gtins: dict[int, tuple[int, Any]] = {}  # product id -> (seq, the last logged GTIN)
    for batch_id, row in rows.items():
        entry = s.batches.get(batch_id)
        if entry is None:
            if row["status"] in ISSUED_STATUSES:
                found.append(Disagreement(0, f"batches: batch {batch_id} is {row['status']} but was never issued"))
            elif row["status"] != "issuing":
                found.append(Disagreement(0, f"batches: batch {batch_id} has unknown status {row['status']!r}"))
            continue
        body = entry.body
        recall = s.recalls.get(batch_id)
        expected = {key: body[key] for key in BATCH_FIELDS if key in body}
        expected["status"] = "recalled" if recall else "active"
        if recall:
            expected["recalled_at"] = _seconds(recall.at)
            expected["recall_reason"] = recall.body.get("reason")
        else:
            expected["recalled_at"] = expected["recall_reason"] = None
        for key, value in expected.items():
            if _differs(row[key], value):
                seq = recall.seq if recall and key in ("status", "recalled_at", "recall_reason") else entry.seq
                found.append(
                    Disagreement(seq, f"batches: batch {batch_id}'s {key} is {row[key]!r}, the log says {value!r}")
                )
        if body.get("credit_code") is not None and "enterprise_id" in body:
            credit_codes[int(body["enterprise_id"])] = (entry.seq, body["credit_code"])
        if body.get("product_gtin") is not None and "product_id" in body:
            gtins[int(body["product_id"])] = (entry.seq, body["product_gtin"])
    for batch_id, entry in s.batches.items():
        if batch_id not in rows:
            found.append(Disagreement(entry.seq, f"batches: batch {batch_id} was issued but its row is gone"))
    for row in rows.values():
        for facts, key, owner, what in (
            (credit_codes, "credit_code", "enterprise_id", "enterprise"),
            (gtins, "product_gtin", "product_id", "product"),
        ):
            logged = facts.pop(row[owner], None)  # once per enterprise or product
            if logged and row[key] != logged[1]:
                found.append(
                    Disagreement(
                        logged[0],
                        f"batches: {what} {row[owner]}'s {key} is {row[key]!r}, the log says {logged[1]!r}",
                    )
                )
    return found[:limit]


def _differs(stored: object, logged: object) -> bool:
    if isinstance(stored, bool) or isinstance(logged, bool):
        return bool(stored) != bool(logged)
    return stored != logged


def _codes(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    """Each issued batch's serials against its entry: the count, and the SHA-256 of the serials in
    ascending order, from one stream of `codes` in serial order (one hash object per batch)."""
    hashers: dict[int, Any] = {}
    counts: dict[int, int] = {}
    for rows in projections.codes_in_serial_order(conn):
        runs: dict[int, list[int]] = {}
        for serial, batch_id in rows:
            run = runs.get(batch_id)
            if run is None:
                run = runs[batch_id] = []
            run.append(serial)
        for batch_id, run in runs.items():
            hasher = hashers.get(batch_id)
            if hasher is None:
                hasher = hashers[batch_id] = hashlib.sha256()
                counts[batch_id] = 0
            hasher.update(struct.pack(f">{len(run)}Q", *run))
            counts[batch_id] += len(run)
    found: list[Disagreement] = []
    statuses = {row["id"]: row["status"] for row in projections.batch_facts(conn)}
    for batch_id in sorted(set(counts) | set(s.batches)):
        entry = s.batches.get(batch_id)
        count = counts.get(batch_id, 0)
        if entry is None:
            if statuses.get(batch_id) == "issuing":
                continue  # its codes are being registered; no lookup answers them yet
            if batch_id not in statuses:
                found.append(Disagreement(0, f"codes: {count} codes are in batch {batch_id}, which does not exist"))
            continue  # a batch row without an entry is reported with the batches
        logged_count = int(entry.body.get("count", count))
        if count != logged_count:
            found.append(
                Disagreement(
                    entry.seq,
                    f"codes: batch {batch_id} has {count} codes, its entry logged {logged_count} "
                    f"({'codes inserted or moved in' if count > logged_count else 'codes deleted or moved out'})",
                )
            )
        elif "serials_sha256" in entry.body:
            digest = hashers[batch_id].hexdigest() if batch_id in hashers else hashlib.sha256().hexdigest()
            if digest != entry.body["serials_sha256"]:
                found.append(
                    Disagreement(entry.seq, f"codes: batch {batch_id}'s serials are not the set its entry logged")
                )
        if len(found) >= limit:
            break
    return found


def _code_checks(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    found = []
    for row in projections.check_disagreements(conn, s.retired_at, limit):
        serial = f"{row['serial']:016d}"
        if not row["has_state"]:
            what = f"code {serial} has {row['n']} counted scans but no check state (its count was reset)"
        elif row["n"] is None:
            what = f"code {serial} has {row['checks']} checks but no counted scan"
        else:
            what = (
                f"code {serial} says {row['checks']} checks, first {row['first_checked_at']}, last "
                f"{row['last_checked_at']}, PIN {row['pin_verified_at']}; its scans say {row['hi']} checks "
                f"({row['n']} counted scans), first {row['first_at']}, last {row['last_at']}, PIN {row['pin_at']}"
            )
        seq = int(row["seq"])
        if row["has_state"] and row["hi"] is not None and seq and row["checks"] > row["hi"]:
            # More checks than its scans made: the scans that made them would come after its last one
            seq += 1
            what += f" (the scans after entry {seq - 1} that made the other checks are missing)"
        found.append(Disagreement(seq, "code_checks: " + what))
    return found


def _missing_scans(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    if not s.scans:
        return []
    return [
        Disagreement(
            seq,
            f"scans: scan {scan_id} is gone (its row was deleted)" if scan_id else "scans: a scan entry names no scan",
        )
        for seq, scan_id in projections.scan_entries_without_scan(conn, s.retired_below, limit)
    ]


def _erased_scans(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    """Scans whose personal fields are erased must be older than the cutoff of a purge logged
    after them (a purge records the highest scan id it could erase; one logged before it did,
    every id)."""
    bounds: list[tuple[int, str]] = []
    for purge in sorted(s.purges, key=lambda p: -int(p.body.get("through_id", NO_BOUND))):
        bound, cutoff = int(purge.body.get("through_id", NO_BOUND)), str(purge.body["older_than"])
        if bounds and cutoff <= bounds[-1][1]:
            continue  # a larger bound already allows as old a cutoff
        if bounds and bound == bounds[-1][0]:
            bounds[-1] = (bound, max(cutoff, bounds[-1][1]))
        else:
            bounds.append((bound, cutoff))
    bounds.reverse()  # ascending ids, descending cutoffs
    return [
        Disagreement(seq, f"scans: scan {scan_id} of {at} had its personal fields erased outside a logged purge")
        for scan_id, at, seq in projections.erased_outside_purges(conn, bounds, limit)
    ]


def _reports(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    found = []
    rows = {r[0]: r for r in projections.reported_codes(conn)}
    for serial, (_, reported_at, reported_by, note) in rows.items():
        entry = s.reports.get(serial)
        if entry is None:
            found.append(Disagreement(0, f"reported_codes: code {serial:016d} is reported but no entry reported it"))
        elif (reported_at, reported_by, note) != (entry.at, entry.actor, entry.body.get("note", "")):
            found.append(Disagreement(entry.seq, f"reported_codes: code {serial:016d}'s report differs from its entry"))
    for serial, entry in s.reports.items():
        if serial not in rows:
            found.append(Disagreement(entry.seq, f"reported_codes: code {serial:016d}'s report is gone"))
    return found[:limit]


def _users(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    found = []
    rows = projections.users(conn)
    names = {r[1] for r in rows}
    for user_id, name, role, enterprise_id, password_hash, disabled in rows:
        entry = s.users.get(name)
        if entry is None:
            found.append(Disagreement(0, f"users: user {name} ({role}) was never added"))
            continue
        body = entry.body
        for key, stored, logged in (
            ("id", user_id, body.get("user_id", user_id)),
            ("role", role, body.get("role")),
            ("enterprise", enterprise_id, body.get("enterprise_id")),
        ):
            if stored != logged:
                found.append(
                    Disagreement(entry.seq, f"users: user {name}'s {key} is {stored!r}, the log says {logged!r}")
                )
        if "password_sha256" in body and password_commitment(password_hash) != body["password_sha256"]:
            found.append(Disagreement(entry.seq, f"users: user {name}'s password hash is not the one logged"))
        off = s.disabled.get(name)
        if off is not None and not disabled:
            found.append(Disagreement(off.seq, f"users: user {name} was disabled but is enabled"))
        elif off is None and disabled:
            found.append(Disagreement(0, f"users: user {name} is disabled but no entry disabled it"))
    for name, entry in s.users.items():
        if name not in names:
            found.append(Disagreement(entry.seq, f"users: user {name} was added but its row is gone"))
    return found[:limit]


def _tokens(s: _State, conn: db.Conn, limit: int) -> list[Disagreement]:
    found = []
    user_ids = {r[1]: r[0] for r in projections.users(conn)}
    rows = projections.api_tokens(conn)
    ids = {r[0] for r in rows}
    for token_id, user_id, token_hash, label, revoked_at in rows:
        entry = s.tokens.get(token_id)
        if entry is None:
            found.append(Disagreement(0, f"api_tokens: token {token_id} of user id {user_id} was never issued"))
            continue
        body = entry.body
        owner = str(body.get("user"))
        added = s.users.get(owner)
        owner_id = added.body.get("user_id", user_ids.get(owner)) if added else user_ids.get(owner)
        if user_id != owner_id:
            found.append(Disagreement(entry.seq, f"api_tokens: token {token_id} is not {owner}'s (user id {user_id})"))
        if label != body.get("label", label):
            found.append(Disagreement(entry.seq, f"api_tokens: token {token_id}'s label is not the one logged"))
        if "token_sha256" in body and token_commitment(token_hash) != body["token_sha256"]:
            found.append(Disagreement(entry.seq, f"api_tokens: token {token_id}'s hash is not the one logged"))
        ends = [e for e in (s.revoked.get(token_id), s.disabled.get(owner)) if e is not None and e.seq > entry.seq]
        end = min(ends, key=lambda e: e.seq) if ends else None
        if end is not None and revoked_at is None:
            found.append(Disagreement(end.seq, f"api_tokens: token {token_id} was revoked but is active"))
        elif end is not None and revoked_at != end.at:
            found.append(Disagreement(end.seq, f"api_tokens: token {token_id}'s revocation time is not the one logged"))
        elif end is None and revoked_at is not None:
            found.append(Disagreement(0, f"api_tokens: token {token_id} is revoked but no entry revoked it"))
    for token_id, entry in s.tokens.items():
        if token_id not in ids:
            found.append(Disagreement(entry.seq, f"api_tokens: token {token_id} was issued but its row is gone"))
    return found[:limit]


def _keys(s: _State, keyring: Sequence[KeyRecord], limit: int) -> list[Disagreement]:
    found = []
    kids = {r.kid for r in keyring}
    for record in keyring:
        entry = s.keys.get(record.kid)
        logged = str(entry.body.get("status")) if entry else "active"
        if record.status == logged:
            continue
        what = f"keys: key {record.name} ({record.kid}) is {record.status} in the keyring, the log says {logged}"
        found.append(Disagreement(entry.seq if entry else 0, what))
    for kid, entry in s.keys.items():
        if kid not in kids:
            found.append(Disagreement(entry.seq, f"keys: key {kid} ({entry.body.get('status')}) is not in the keyring"))
    return found[:limit]
