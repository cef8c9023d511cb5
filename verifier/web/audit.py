"""The audit API for inspectors, enterprises and admins (bearer tokens from `verifier users token`).

An adapter over the audit service (verifier/audit.py), which holds the rules: object-level
authorisation on every route (an enterprise account sees its own enterprise's batches and their
scans only, and another enterprise's batch is "not found", not "forbidden"), the filters' 400s,
the read budget and the heavy-read slots. Errors are `VerifierError`s, answered in the API's shape.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from .. import accounts, audit, codes, errors
from . import audit_reads
from .auth import token_required
from .errors import api_error
from .state import state

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")


authenticated = token_required  # a bearer token (or an audit UI session) of one of `roles`


@bp.errorhandler(errors.VerifierError)
def verifier_error(error: errors.VerifierError) -> Response:
    """Bad filters, too broad a read, busy slots, no such batch or code: the status the error's kind has."""
    headers = {}
    if isinstance(error, errors.Unavailable) and error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    return api_error(error.api_code, error.message, error.http_status, headers)


# --- routes ------------------------------------------------------------------------------


@bp.get("/scans")
@authenticated(*accounts.AUDIT_READERS)
def list_scans() -> Response:
    """Newest first, keyset-paginated: pass the last `id` as `after` for the next page."""
    flt = audit.scan_filter(request.args)
    limit = audit.int_arg(request.args, "limit", 1, audit.PAGE_MAX) or 100
    after = audit.int_arg(request.args, "after", 1)
    with audit_reads.reads():
        page = audit.list_scans(state().connection(), flt, g.user, after, limit)
    return _json({"ok": True, "scans": page.scans, "next": page.next})


@bp.get("/scans.csv")
@authenticated(*accounts.AUDIT_READERS)
def export_scans() -> Response:
    """All matching scans as CSV (docs/audit.md: cell rules), streamed."""
    return audit_reads.csv_response(g.user, audit.scan_filter(request.args))


@bp.get("/batches")
@authenticated(*accounts.AUDIT_READERS)
def list_batches() -> Response:
    batches = audit.list_batches(state().connection(), g.user)
    return _json({"ok": True, "batches": [audit.public_batch(b) for b in batches]})


@bp.get("/batches/<batch>")
@authenticated(*accounts.AUDIT_READERS)
def batch_dashboard(batch: str) -> Response:
    """A batch with its scans per day, verdict mix and most suspicious codes."""
    batch_id = audit.batch_id_of(batch)
    conn = state().connection()
    found = audit.visible_batch(conn, g.user, batch_id)
    with audit_reads.reads():
        stats = audit.batch_statistics(conn, batch_id)
    return _json(
        {
            "ok": True,
            "batch": audit.public_batch(found),
            "scans_per_day": [{"day": d, "scans": n} for d, n in stats.per_day],
            "verdicts": dict(stats.verdicts),
            "top_codes": [
                {"serial": f"{s:016d}", "code": codes.human_code(s), "checks": c, "scans": n}
                for s, c, n in stats.top_codes
            ],
        }
    )


@bp.get("/codes/<code>")
@authenticated(*accounts.AUDIT_READERS)
def code_history(code: str) -> Response:
    """Every scan of one code, oldest first."""
    serial = audit.serial_of(code)
    with audit_reads.reads():
        history = audit.code_history(state().connection(), g.user, serial)
    return _json(
        {
            "ok": True,
            "serial": f"{serial:016d}",
            "code": history.human_code,
            "batch_id": history.batch_id,
            "checks": history.checks,
            "first_checked_at": history.first_checked_at,
            "scans": history.scans,
        }
    )


@bp.get("/anomalies")
@authenticated(*accounts.AUDIT_READERS)
def list_anomalies() -> Response:
    days = audit.int_arg(request.args, "days", 1, audit.DAYS_MAX) or 30
    with audit_reads.heavy_reads():
        since, found = audit.anomalies_for(state().connection(), g.user, days, g.now)
    return _json({"ok": True, "since": since, "anomalies": [a.as_dict() for a in found]})


@bp.post("/batches/<batch>/recall")
@authenticated("admin")
def recall(batch: str) -> Response:
    batch_id = audit.batch_id_of(batch)
    data = request.get_json(silent=True) or {}
    reason = data.get("reason") if isinstance(data, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return api_error("missing-parameter", "'reason' is required", 400)
    audit.parse_text("reason", reason, audit.RECALL_REASON_MAX)
    recalled = audit.recall(state().connection(), batch_id, reason, f"api:{g.user.username}", g.now)
    return _json({"ok": True, "batch": audit.public_batch(recalled)})


def _json(data: dict[str, Any]) -> Response:
    return jsonify(data)


@bp.route("/<path:rest>", methods=["GET", "POST"])
def not_found(rest: str) -> Response:
    """Anything else under /api/v1/audit/: the API's error shape, not the consumer's page."""
    return api_error("not-found", "no such audit API route", 404)
