"""What the audit API and the audit UI share: this process's connection under the read limits
the app is configured with (docs/audit.md), the heavy-read slots, and the CSV export response.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from flask import Response, current_app

from .. import accounts, audit, budget
from .state import state


def limits() -> audit.Limits:
    """AUDIT_BUDGET (SQLite instructions) and AUDIT_SECONDS a request may use (falsy: unlimited)."""
    cfg = current_app.config
    steps, seconds = cfg.get("AUDIT_BUDGET", 100_000_000), cfg.get("AUDIT_SECONDS", 5.0)
    return audit.Limits(int(steps) if steps else None, float(seconds) if seconds else None)


def slots() -> int:
    """AUDIT_HEAVY_SLOTS: heavy reads (anomalies, exports) that may run at once across the workers."""
    return int(current_app.config.get("AUDIT_HEAVY_SLOTS", 1))


@contextlib.contextmanager
def reads() -> Iterator[budget.Meter]:
    """The block's statements on this process's connection within the audit budget."""
    with audit.reads(state().connection(), limits()) as meter:
        yield meter


@contextlib.contextmanager
def heavy_reads() -> Iterator[budget.Meter]:
    """A heavy slot and the audit budget for the block (audit.Busy if every slot is taken)."""
    st = state()
    with audit.heavy_reads(st.connection(), st.database, slots(), limits()) as meter:
        yield meter


def csv_response(user: accounts.User, flt: audit.ScanFilter) -> Response:
    """The matching scans as a streamed CSV attachment; the server's close() frees the slot."""
    export = audit.export_scans(state().database, flt, user, limits(), slots())
    response = Response(export, mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="scans.csv"'
    return response
