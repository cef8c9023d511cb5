"""Fixed-window rate limits kept in the database, so they hold across every server process."""

from __future__ import annotations

import itertools
import re
import sqlite3
from dataclasses import dataclass

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_pruning = itertools.count()


@dataclass(frozen=True)
class Limit:
    hits: int
    seconds: int

    def __str__(self) -> str:
        unit = next(name for name, s in _UNITS.items() if s == self.seconds)
        return f"{self.hits}/{unit}"


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    remaining: int
    retry_after: int  # seconds until the window resets


def parse_limit(text: str) -> Limit | None:
    """'120/minute' -> Limit(120, 60); 'off' -> None; ValueError otherwise."""
    text = text.strip().lower()
    if text in ("off", "none", "0", ""):
        return None
    m = re.fullmatch(r"(\d+)\s*/\s*(second|minute|hour|day)", text)
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"a rate limit looks like 120/minute (or off), not {text!r}")
    return Limit(int(m.group(1)), _UNITS[m.group(2)])


def hit(conn: sqlite3.Connection, client: str, limit: Limit, now_seconds: float) -> Outcome:
    """Count one request of `client`; call inside a write transaction."""
    window = int(now_seconds // limit.seconds)
    (hits,) = conn.execute(
        """INSERT INTO rate_limits (client, window, hits) VALUES (?, ?, 1)
           ON CONFLICT (client, window) DO UPDATE SET hits = hits + 1 RETURNING hits""",
        (client, window),
    ).fetchone()
    if next(_pruning) % 1000 == 0:  # old windows are never read again
        conn.execute("DELETE FROM rate_limits WHERE window < ?", (window - 1,))
    retry_after = max(1, int((window + 1) * limit.seconds - now_seconds))
    return Outcome(hits <= limit.hits, max(0, limit.hits - hits), retry_after)
