"""The one clock: adapters read it once per request or command and pass `now` down.

Library code never calls `datetime.now()`; it takes `now` as an argument, so tests inject time.
Stored times are UTC ISO 8601 text in one of two precisions, both made here.
"""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC
CHINA = dt.timezone(dt.timedelta(hours=8), "CST")  # China Standard Time, what consumers read


def now() -> dt.datetime:
    """The current time, timezone-aware UTC. Only adapters (a request, a command) call this."""
    return dt.datetime.now(UTC)


def utc_text(moment: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds: scans, log entries, sessions (sortable as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def utc_text_seconds(moment: dt.datetime) -> str:
    """UTC ISO 8601 to the second: registry rows (batches, keys, migrations)."""
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def parse(text: str | None) -> dt.datetime | None:
    """A stored time back as an aware datetime (None stays None)."""
    return dt.datetime.fromisoformat(text) if text else None
