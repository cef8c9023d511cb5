"""The certificates' part of `audit verify`'s replay: each mark certificate against its grant and
the suspensions, reinstatements and revocations logged after it; the certificate each batch was
issued under against its batch.issued entry; each enterprise's quality commitment against the last
one it published. A status, date, product or number no entry made is caught."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import db
from .replay_lifecycle import Found, Logged
from .repos import certificates as repo

KINDS = frozenset(
    {
        "certificate.granted",
        "certificate.suspended",
        "certificate.reinstated",
        "certificate.revoked",
        "enterprise.commitment",
        "batch.issued",  # read for the certificate a batch names; replay.py keeps the rest of it
    }
)
_STATUS_OF = {"certificate.suspended": "suspended", "certificate.reinstated": "valid", "certificate.revoked": "revoked"}
GRANT_FIELDS = ("number", "association", "enterprise_id", "mark", "valid_from", "valid_until")


@dataclass
class CertificateLog:
    """What the entries say of certificates, batches' certificates and commitments."""

    grants: dict[int, Logged] = field(default_factory=dict)
    changes: dict[int, Logged] = field(default_factory=dict)  # the last status change of each
    batches: dict[int, Logged] = field(default_factory=dict)
    commitments: dict[int, Logged] = field(default_factory=dict)  # the last of each enterprise

    def feed(self, kind: str, e: Logged) -> None:
        """Keep an entry of one of KINDS."""
        if kind == "certificate.granted":
            self.grants[int(e.body["id"])] = e
        elif kind in _STATUS_OF:
            if str(e.body["status"]) != _STATUS_OF[kind]:
                raise ValueError(f"{kind} entry says status {e.body['status']!r}")
            self.changes[int(e.body["id"])] = e
        elif kind == "batch.issued":
            self.batches[int(e.body["id"])] = e
        elif kind == "enterprise.commitment":
            self.commitments[int(e.body["enterprise_id"])] = e


def compare(log: CertificateLog, conn: db.Conn, limit: int) -> Found:
    """The certificates table, batches' certificate_id and enterprises' commitments against the log."""
    return _certificates(log, conn, limit) + _batches(log, conn, limit) + _commitments(log, conn, limit)


def _certificates(log: CertificateLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    rows = {int(r["id"]): r for r in repo.all_certificates(conn)}
    for certificate_id, row in rows.items():
        grant = log.grants.get(certificate_id)
        if grant is None:
            found.append((0, f"certificates: certificate {row['number']} was never granted in the log"))
            continue
        body = grant.body
        products = body.get("products")
        expected: dict[str, object] = {k: body.get(k) for k in GRANT_FIELDS}
        expected.update(
            products=None if products is None else " ".join(str(int(p)) for p in products),
            granted_at=grant.at,
            granted_by=grant.actor,
        )
        change = log.changes.get(certificate_id)
        if change is not None:
            expected.update(
                status=change.body["status"],
                reason=change.body.get("reason"),
                changed_at=change.at,
                changed_by=change.actor,
            )
        else:
            expected.update(status="valid", reason=None, changed_at=None, changed_by=None)
        for key, value in expected.items():
            if row[key] != value:
                seq = change.seq if change and key in ("status", "reason", "changed_at", "changed_by") else grant.seq
                found.append(
                    (seq, f"certificates: certificate {row['number']}'s {key} is {row[key]!r}, the log says {value!r}")
                )
        if len(found) >= limit:
            return found
    for certificate_id, grant in log.grants.items():
        if certificate_id not in rows:
            found.append(
                (grant.seq, f"certificates: certificate {grant.body.get('number')} was granted but its row is gone")
            )
    return found[:limit]


def _batches(log: CertificateLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    for batch_id, certificate_id in repo.batch_certificates(conn).items():
        entry = log.batches.get(batch_id)
        if entry is None:
            continue  # a batch row without an entry is reported with the batches (replay.py)
        logged = entry.body.get("certificate_id")
        if certificate_id != logged:
            found.append(
                (
                    entry.seq,
                    f"batches: batch {batch_id}'s certificate_id is {certificate_id!r}, the log says {logged!r}",
                )
            )
            if len(found) >= limit:
                break
    return found


def _commitments(log: CertificateLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    for enterprise_id, (text, url) in repo.commitments(conn).items():
        entry = log.commitments.get(enterprise_id)
        logged = (entry.body.get("text"), entry.body.get("url")) if entry else (None, None)
        if (text, url) != logged:
            seq = entry.seq if entry else 0
            what = "is not the one it published" if entry else "was never published in the log"
            found.append((seq, f"enterprises: enterprise {enterprise_id}'s quality commitment {what}"))
            if len(found) >= limit:
                break
    return found
