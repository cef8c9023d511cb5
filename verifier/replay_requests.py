"""Batch requests' part of `audit verify`'s replay: each request and its label files against the
entries that requested, approved, cancelled, finished or failed it (verifier/requests.py).

A request's row must hold what its entries say: who asked for what (the parameters exactly), who
approved or cancelled it and when, the batch it was issued as (a batch of its enterprise, of the
count asked for) or why it failed; its status must be one those entries allow (a claim and its
progress are the signer's working state, not logged: approved and issuing are both "approved").
Every stored file must be one the finishing entry listed, with that SHA-256 and size, and its
content must still hash to it, so a swapped label sheet is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from . import db
from .replay_lifecycle import Found, Logged
from .repos import projections
from .repos import requests as repo

KINDS = frozenset(
    {"batch.requested", "batch.approved", "batch.cancelled", "batch.request.done", "batch.request.failed"}
)


@dataclass
class RequestsLog:
    """What the entries say of each batch request, fed by the replay."""

    requested: dict[int, Logged] = field(default_factory=dict)
    approved: dict[int, Logged] = field(default_factory=dict)
    ended: dict[int, tuple[str, Logged]] = field(default_factory=dict)  # cancelled | done | failed: the first stands

    def feed(self, kind: str, e: Logged) -> bool:
        """Keep an entry of a request kind; whether it was one."""
        if kind not in KINDS:
            return False
        request_id = int(e.body["id"])
        if kind == "batch.requested":
            self.requested[request_id] = e
        elif kind == "batch.approved":
            self.approved.setdefault(request_id, e)
        else:
            self.ended.setdefault(request_id, (kind.rsplit(".", 1)[-1], e))
        return True


def compare(log: RequestsLog, conn: db.Conn, limit: int) -> Found:
    """Every request and file against the log, at most `limit` disagreements of each."""
    return _requests(log, conn, limit) + _files(log, conn, limit)


def _expected(log: RequestsLog, request_id: int) -> tuple[dict[str, Any], tuple[str, ...], int]:
    """(the columns the entries fix, the statuses they allow, the seq of the last entry deciding them)."""
    entry = log.requested[request_id]
    body = entry.body
    expected: dict[str, Any] = {
        "enterprise_id": body["enterprise_id"],
        "requested_by": body["requested_by"],
        "params": body["params"],
        "created_at": entry.at,
        "approved_by": None,
        "approved_at": None,
        "cancelled_by": None,
        "batch_id": None,
        "error": None,
        "finished_at": None,
    }
    statuses: tuple[str, ...] = ("requested",)
    seq = entry.seq
    approval = log.approved.get(request_id)
    if approval is not None:
        expected.update(approved_by=approval.body["approved_by"], approved_at=approval.at)
        statuses, seq = ("approved", "issuing"), approval.seq
    ended = log.ended.get(request_id)
    if ended is not None:
        how, end = ended
        expected["finished_at"] = end.at
        if how == "cancelled":
            expected["cancelled_by"] = end.body["cancelled_by"]
        elif how == "done":
            expected["batch_id"] = end.body["batch"]
        else:
            expected["error"] = end.body["error"]
        statuses, seq = (how,), end.seq
    return expected, statuses, seq


def _requests(log: RequestsLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    batches = {int(row["id"]): row for row in projections.batch_facts(conn)}
    rows = repo.all_requests(conn)
    seen = set()
    for row in rows:
        request_id = int(row["id"])
        seen.add(request_id)
        if request_id not in log.requested:
            found.append((0, f"batch_requests: request {request_id} ({row['status']}) was never requested"))
            continue
        expected, statuses, seq = _expected(log, request_id)
        stored = {**row, "params": _json(row["params"])}
        for key, value in expected.items():
            if stored[key] != value:
                what = "its parameters are not the ones requested" if key == "params" else f"{key} is {stored[key]!r}"
                found.append((seq, f"batch_requests: request {request_id}'s {what}, the log says {value!r}"[:400]))
        if row["status"] not in statuses:
            found.append(
                (seq, f"batch_requests: request {request_id} is {row['status']}, the log says {' or '.join(statuses)}")
            )
        batch_id = expected["batch_id"]
        if batch_id is not None:
            batch = batches.get(int(batch_id))
            params = expected["params"]
            if batch is None or (batch["enterprise_id"], batch["count"]) != (
                expected["enterprise_id"],
                params["count"],
            ):
                found.append(
                    (seq, f"batch_requests: request {request_id}'s batch {batch_id} is not the batch it asked for")
                )
        if len(found) >= limit:
            return found[:limit]
    for request_id, entry in log.requested.items():
        if request_id not in seen:
            found.append((entry.seq, f"batch_requests: request {request_id} was requested but its row is gone"))
    return found[:limit]


def _files(log: RequestsLog, conn: db.Conn, limit: int) -> Found:
    found: Found = []
    listed: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}
    for request_id, (how, end) in log.ended.items():
        if how == "done":
            for name, facts in dict(end.body.get("files", {})).items():
                listed[(request_id, str(name))] = (end.seq, dict(facts))
    for f in repo.all_files(conn):
        key = (f["request_id"], f["name"])
        logged = listed.pop(key, None)
        where = f"batch_files: request {key[0]}'s {key[1]}"
        if logged is None:
            found.append((0, f"{where} was never logged"))
        else:
            seq, facts = logged
            if (f["sha256"], f["size"], f["media_type"]) != (
                facts.get("sha256"),
                facts.get("size"),
                facts.get("media_type"),
            ):
                found.append((seq, f"{where} is recorded as another file than the one logged"))
            elif (f["content_sha256"], f["content_size"]) != (f["sha256"], f["size"]):
                found.append((seq, f"{where}'s content is not the file logged (edited or swapped)"))
        if len(found) >= limit:
            return found
    for (request_id, name), (seq, _) in listed.items():
        found.append((seq, f"batch_files: request {request_id}'s {name} is gone"))
    return found[:limit]


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None
