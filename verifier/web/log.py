"""The transparency log, served read-only as C2SP tlog-tiles, its witnesses' cosignatures, and scan receipts.

Public, for anyone to mirror and check: `/log/checkpoint` (the latest signed checkpoint note, with
the witnesses' cosignatures) and the hash tiles `/log/tile/<L>/<N>[.p/<W>]`. Not public: the entry
bundles `/log/tile/entries/<N>[.p/<W>]` hold the entries themselves, serials among them, and a
serial alone answers a typed-code lookup; only inspectors and admins read them, with a bearer
token, or with an audit UI session at `/audit/log/tile/entries/...` (its cookie's path is /audit).
A receipt (`/receipt/<token>`) holds one scan's entry and is reached only through its capability,
an HMAC of the scan id (verifier/receipts.py). Every failure here is the API's error shape;
nothing here writes but a witness's cosignature. Receipts and cosignatures count against the
client's rate limit; the checkpoint and tiles do not (mirrors fetch many; they are cacheable, and
a CDN in front of /log/ serves them, see docs/operations.md).
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from .. import accounts, db, logtree, merkle, note, receipts
from .errors import api_error
from .state import bearer_user, rate_limit, session_user, state

bp = Blueprint("log", __name__)

# A tile never changes (C2SP tlog-tiles): hashes of complete subtrees are written once, so a
# partial tile of W hashes is those W hashes for good, and it is served whenever the tree holds them.
IMMUTABLE = "public, max-age=31536000, immutable"
CHECKPOINT_CACHE = "public, max-age=5"  # the newest checkpoint: a few seconds, about the signing interval
CHECKPOINT_TYPE = "text/plain; charset=utf-8"
TILE_TYPE = "application/octet-stream"
COSIGNATURE_MAX_BYTES = 8 * 1024  # a checkpoint note with a few signature lines is well under 1 kB
PENDING_RETRY_SECONDS = 5
ENTRY_READERS = ("admin", "inspector")
MAX_TILE_INDEX = 1 << (63 - merkle.TILE_HEIGHT)  # tile n covers leaves from n * 256: below 2**63

# tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>], after /log/tile/: strict, then checked canonical.
_TILE_RE = re.compile(r"(entries|0|[1-9][0-9]?)/((?:x[0-9]{3}/){0,6}[0-9]{3})(?:\.p/([1-9][0-9]{0,2}))?", re.ASCII)


def parse_tile_path(path: str) -> tuple[str, int, int] | None:
    """("entries" or the level, the tile index, the width) of a tile path after `tile/`, or None
    for anything but the one canonical spelling (`merkle.tile_path`): no leading zeroes, no
    x000 group first, a width of 1..255 only with `.p/`, a level of at most 63."""
    match = _TILE_RE.fullmatch(path)
    if match is None:
        return None
    kind, n_text, w_text = match.groups()
    index = int(n_text.replace("x", "").replace("/", ""))
    width = int(w_text) if w_text else merkle.TILE_WIDTH
    if merkle.format_tile_index(index) != n_text or width > merkle.TILE_WIDTH - (1 if w_text else 0):
        return None
    if kind != "entries" and int(kind) > merkle.MAX_TILE_LEVEL:
        return None
    if index >= MAX_TILE_INDEX:
        return None
    return kind, index, width


def _public(response: Response, cache: str) -> Response:
    response.headers["Cache-Control"] = cache
    response.headers["Access-Control-Allow-Origin"] = "*"  # mirrors and monitors may run in a browser
    return response


def _no_tile() -> Response:
    return api_error("not-found", "the log holds no such tile", 404)


@bp.get("/log/checkpoint")
def checkpoint() -> Response:
    """The latest signed checkpoint (C2SP tlog-checkpoint), with the witnesses' cosignatures."""
    stored = logtree.latest_checkpoint(state().connection())
    if stored is None:
        return api_error("not-found", "the log has no signed checkpoint yet", 404)
    return _public(Response(stored.note, content_type=CHECKPOINT_TYPE), CHECKPOINT_CACHE)


@bp.get("/log/tile/<path:path>")
def tile(path: str) -> Response:
    """A hash tile (public) or an entry bundle (inspectors and admins only)."""
    if path.startswith("entries/"):
        return _entry_bundle(path)
    parsed = parse_tile_path(path)
    if parsed is None:
        return _no_tile()
    kind, index, width = parsed
    content = logtree.tile(state().connection(), int(kind), index, width)
    if content is None:
        return _no_tile()
    return _public(Response(content, content_type=TILE_TYPE), IMMUTABLE)


@bp.get("/audit/log/tile/entries/<path:path>")
def audit_entry_bundle(path: str) -> Response:
    """The entry bundles again under /audit/, where the audit UI's session cookie is sent (its path)."""
    return _entry_bundle("entries/" + path)


def _entry_bundle(path: str) -> Response:
    """An entry bundle, after who asks: a token's or a session's inspector or admin."""
    refused = _refuse_entry_reader()
    if refused is not None:
        return refused
    parsed = parse_tile_path(path)
    if parsed is None:
        return _no_tile()
    _kind, index, width = parsed
    bundle = logtree.entry_bundle(state().connection(), index, width)
    if bundle is None:
        return _no_tile()
    response = Response(bundle, content_type=TILE_TYPE)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _refuse_entry_reader() -> Response | None:
    """None for an inspector's or an admin's token or audit UI session; the API's 401/403 otherwise."""
    user: accounts.User | None = bearer_user()
    if user is None and "Authorization" not in request.headers:
        user = session_user()
    if user is None:
        return api_error(
            "unauthorized",
            "entry bundles are for inspectors and admins: send Authorization: Bearer <token>",
            401,
            {"WWW-Authenticate": 'Bearer realm="verifier-audit"'},
        )
    if user.role not in ENTRY_READERS:
        return api_error("forbidden", "entry bundles need the admin or inspector role", 403)
    return None


@bp.post("/log/cosignature")
def cosignature() -> Response:
    """A witness's cosignature of a checkpoint the log signed: the note with its cosignature/v1 line."""
    rate_limit()  # a witness posts one note a checkpoint; more is someone else
    witnesses = state().log_witnesses
    refused = api_error  # one shape, one code for every refusal of the note itself
    if request.content_length is not None and request.content_length > COSIGNATURE_MAX_BYTES:
        return refused("payload-too-large", f"a cosigned note is at most {COSIGNATURE_MAX_BYTES} bytes", 413)
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return refused("payload-too-large", f"a cosigned note is at most {COSIGNATURE_MAX_BYTES} bytes", 413)
    if len(body) > COSIGNATURE_MAX_BYTES:
        return refused("payload-too-large", f"a cosigned note is at most {COSIGNATURE_MAX_BYTES} bytes", 413)
    if not witnesses:
        return refused("bad-cosignature", "this log accepts no witness cosignatures (none is configured)", 400)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return refused("bad-cosignature", "a cosigned note is UTF-8 text", 400)
    conn = state().connection()
    try:
        with db.transaction(conn):
            stored = logtree.add_cosignature(conn, text, witnesses, g.now)
    except note.InvalidNote as exc:
        current_app.logger.info("cosignature refused: %s", exc)
        return refused("bad-cosignature", "no configured witness cosigned this checkpoint", 400)
    except logtree.NotInTree:
        return refused("bad-cosignature", "the log did not sign this checkpoint", 400)
    return jsonify({"ok": True, "checkpoint": {"size": stored.size, "at": stored.at}})


OTHER_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@bp.route("/log/", defaults={"rest": ""}, methods=OTHER_METHODS)
@bp.route("/log/<path:rest>", methods=OTHER_METHODS)
def other_log_request(rest: str) -> Response:
    """Anything else under /log/ (the routes above take precedence): the API's error shape, never
    a consumer's verdict page; 405 for a method the log does not take."""
    if rest == "cosignature":  # reached here with another method than POST
        return _not_allowed("POST")
    if request.method not in ("GET", "HEAD"):
        return _not_allowed("GET, HEAD")
    return api_error("not-found", "no such log resource", 404)


def _not_allowed(allowed: str) -> Response:
    return api_error("method-not-allowed", "method not allowed on this endpoint", 405, {"Allow": allowed})


# --- receipts ------------------------------------------------------------------------------


@bp.get("/receipt/<token>")
def receipt(token: str) -> Response:
    """A scan's receipt as a JSON download: complete once a signed checkpoint covers its entry,
    else pending (200, Retry-After). An unknown token is 404, like a token of no scan. Counted
    against the client's rate limit, as a lookup is (a receipt reads the tree)."""
    rate_limit()
    st = state()
    scan_id = receipts.scan_of_token(st.hash_key, token)
    if scan_id is None:
        return _no_receipt()
    conn = st.connection()
    with db.read_snapshot(conn):
        index = logtree.scan_entry_index(conn, scan_id)
        if index is None:
            if db.sequences_inline(conn):  # SQLite: a scan's entry is written with it, so no such scan
                return _no_receipt()
            return _receipt_response(receipts.build(scan_id))  # PostgreSQL: not sequenced yet
        leaf = logtree.entry_leaf(conn, index)
        if leaf is None:
            return _no_receipt()
        covering = logtree.checkpoint_covering(conn, index)
        proof = None
        if covering is not None:
            try:
                proof = logtree.inclusion_proof(conn, index, covering.size)
            except logtree.NotInTree:
                covering = None
    made = receipts.build(scan_id, index, leaf, covering.note if covering else None, proof)
    return _receipt_response(made)


def _no_receipt() -> Response:
    return api_error("not-found", "no such receipt", 404)


def _receipt_response(made: dict[str, object]) -> Response:
    response = Response(receipts.dumps(made), content_type="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="receipt-{made["scan"]}.json"'
    response.headers["Cache-Control"] = "private, no-store"  # it names a serial: never in a shared cache
    if made["state"] == receipts.PENDING:
        response.headers["Retry-After"] = str(PENDING_RETRY_SECONDS)
    return response


@bp.route("/receipt/", defaults={"rest": ""}, methods=OTHER_METHODS)
@bp.route("/receipt/<path:rest>", methods=OTHER_METHODS)
def other_receipt_request(rest: str) -> Response:
    """A receipt path with more in it, or another method: the API's error shape."""
    if request.method not in ("GET", "HEAD"):
        return _not_allowed("GET, HEAD")
    return _no_receipt()
