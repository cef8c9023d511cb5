"""Replaying the log: the state tables (batches, codes, check counts, PIN state, reported codes,
users, roles, tokens, key statuses, purges) are projections of the log's entries, and
`audit verify` compares each with what the entries say.

STATUS: interface only; the comparisons land next (issue 12).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import db
from .keys import KeyRecord


@dataclass(frozen=True)
class Disagreement:
    """A table that disagrees with the log: the entry that established the fact (0: no entry
    did, the table holds a fact the log never recorded) and what differs."""

    seq: int
    what: str


class Replay:
    """Fed every entry in log order (`feed`), then compares the projections with the tables."""

    def feed(self, seq: int, at: str, kind: str, actor: str, body: str) -> None:
        """One entry, in log order (body: its canonical JSON text)."""

    def compare(self, conn: db.Conn, keyring: Sequence[KeyRecord] | None, limit: int = 20) -> list[Disagreement]:
        """Every projection against its table, at most `limit` disagreements, first ones first.
        `keyring`: the key statuses the lookup trusts (None: not available here, not compared)."""
        return []
