"""The consumer's pages: the verdict for a scanned label, and typing a printed code."""

from __future__ import annotations

import urllib.parse
from typing import Any

from flask import Blueprint, Response, abort, current_app, request, url_for

from .. import codes, db, feedback, lookup
from .i18n import TEXT, choose_language, format_date, format_time, page, verdict_text, with_contact
from .state import check_code, is_prefetch, receipt_url, state

bp = Blueprint("consumer", __name__)


def verdict_page(verdict: lookup.Verdict, channel: str, typed: str | None = None) -> Response:
    """The verdict; after a wrong PIN or a typing error, the form again with the typed code (never the PIN)."""
    lang = choose_language()
    title, body = verdict_text(lang, verdict.reason, pin_first=verdict.pin == "first", detail=verdict.detail)
    batch = verdict.batch or {}
    values = {
        "checks": verdict.checks,
        "first": format_time(verdict.first_checked_at, lang),
        "pin_time": format_time(verdict.pin_verified_at, lang),
        "recalled": format_date(batch.get("recalled_at"), lang),
        "reason": batch.get("recall_reason") or "",
        "expiry": format_date(batch.get("expiry_date"), lang),
    }
    if verdict.reason == lookup.BLOCKED:  # why, in words: counterfeit, stolen, destroyed
        values["reason"] = TEXT[lang].get(f"blocked.{verdict.detail}", TEXT[lang]["blocked.unknown"])
    trace = trace_rows(verdict, lang)
    mark = (batch["mark_zh"] if lang == "zh" else batch["mark_en"]) if batch else None
    details = []
    if batch:
        details = [
            ("product", " ".join(x for x in (batch["product"], batch.get("spec")) if x)),
            ("gtin", batch.get("gtin")),
            ("enterprise", None if trace else batch["enterprise"]),  # the trace names the producer
            ("credit_code", batch.get("credit_code")),
            ("mark", None if trace else mark),
            ("lot", batch.get("lot")),
            ("production_date", None if trace else format_date(batch.get("production_date"), lang)),
            ("expiry_date", format_date(batch.get("expiry_date"), lang)),
            ("code", verdict.human_code),
            ("checks", str(verdict.checks) if verdict.checks else None),
            ("first_checked", values["first"]),
        ]
        details = [(key, value) for key, value in details if value]
    show_pin_form = (
        bool(batch.get("has_pin")) and verdict.pin is None and channel == "qr" and verdict.tone in ("ok", "warn")
    )  # not for a recall or a red verdict
    contact = str(current_app.config["REPORT_CONTACT"])
    retry = verdict.reason in (lookup.PIN_MISMATCH, lookup.MISTYPED)
    retry_code = typed.strip() if typed is not None and retry else None
    return page(
        "verdict.html",
        lang=lang,
        verdict=verdict,
        title=title.format(**values),
        body=body.format(**values),
        details=details,
        show_pin_form=show_pin_form,
        show_report=verdict.tone != "ok",
        trace=trace,
        certificate=certificate_rows(verdict, lang),
        commitment=commitment_of(verdict),
        report_url=report_link(verdict),
        report_first=verdict.tone in ("bad", "stop"),  # red verdicts: the form is the next thing to do
        retry_code=retry_code,
        report=with_contact(lang, "report", contact),
        recall_contact=with_contact(lang, "recall.contact", contact),
        enterprise=_enterprise_named(batch.get("enterprise"), lang),
        number_keys=NUMBER_KEYS,
        receipt_url=receipt_url(verdict),
    )


def trace_rows(verdict: lookup.Verdict, lang: str) -> list[tuple[str, Any, str]] | None:
    """The trace section's rows (label key, value, kind): producer, production, mark, inspection
    report, shipment (provinces only), sale, case. None for a red verdict and for a code that is not
    an issued one: a counterfeiter learns nothing, and a copied label's trace must not reassure."""
    found = verdict.trace()
    if found is None or verdict.tone == "bad":
        return None
    trace: dict[str, Any] = dict(found)
    batch = verdict.batch or {}
    text = TEXT[lang]
    rows: list[tuple[str, Any, str]] = [
        ("producer", trace["producer"], "text"),
        ("production_date", format_date(trace["production_date"], lang), "text"),
        ("production_place", trace["production_place"], "text"),
        ("mark", batch.get("mark_zh") if lang == "zh" else batch.get("mark_en"), "text"),
    ]
    report = trace["inspection_report"]
    if report:
        rows.append(("inspection_report", report, "document"))  # a link, and its SHA-256 shown
    provinces = [p[lang] for p in trace["shipped_to"]]  # the sales regions' provinces, never the dealer
    if provinces:
        rows.append(("shipped", ("、" if lang == "zh" else ", ").join(provinces), "text"))
        rows.append(("shipped_on", format_date(trace["shipped_on"], lang), "text"))
    if trace["sold_on"]:
        rows.append(("sold_on", format_date(trace["sold_on"], lang), "text"))
    if trace["in_case"]:
        rows.append(("in_case", text["in_case_yes"], "text"))
    return [row for row in rows if row[1]]


def certificate_rows(verdict: lookup.Verdict, lang: str) -> list[tuple[str, str]] | None:
    """The mark certificate's rows (label key, value): number, validity, who granted it, and its
    status unless valid. None without a certificate, and for a red verdict."""
    batch = verdict.batch or {}
    if not batch.get("certificate") or verdict.tone == "bad":
        return None
    text = TEXT[lang]
    start = format_date(batch.get("certificate_valid_from"), lang)
    validity = f"{start} {text['certificate_validity_to']} {format_date(batch.get('certificate_valid_until'), lang)}"
    rows = [
        ("certificate_no", str(batch["certificate"])),
        ("certificate_validity", validity),
        ("certificate_by", str(batch.get("certificate_association") or "")),
    ]
    status = batch.get("certificate_status")
    if status and status != "valid":
        rows.append(("certificate_status", text.get(f"certificate.{status}", str(status))))
    return [row for row in rows if row[1]]


COMMITMENT_SHOWN = 300  # characters of the commitment on the page; the link has the rest


def commitment_of(verdict: lookup.Verdict) -> dict[str, str | None] | None:
    """The enterprise's quality commitment as a genuine page shows it: a short text, its link."""
    batch = verdict.batch or {}
    text = batch.get("commitment")
    if not verdict.genuine or not text:
        return None
    short = text if len(text) <= COMMITMENT_SHOWN else text[: COMMITMENT_SHOWN - 1].rstrip() + "…"
    return {"text": short, "url": batch.get("commitment_url")}


def report_link(verdict: lookup.Verdict) -> str:
    """The "report this product" link of a verdict page: the printed code, the verdict, and the
    page's token for them (verifier/feedback.py), so the report form knows what the page showed."""
    token = feedback.verdict_token(state().hash_key, verdict.serial, verdict.reason)
    code = codes.normalize_typed(verdict.human_code or "")  # digits only: no "+" in the link
    return url_for("feedback.report_form", code=code, v=verdict.reason, s=token)


NUMBER_KEYS = frozenset(
    {"code", "gtin", "credit_code", "lot", "certificate_no"}
)  # long unbroken values: may wrap anywhere


def _enterprise_named(name: str | None, lang: str) -> str:
    """The enterprise as the recall remedy names it: 「name」 in Chinese, the name in English (no
    parentheses around a name that may end with one)."""
    if lang == "zh":
        return f"「{name}」" if name else ""
    return name or "the enterprise"


@bp.get("/")
def manual_form() -> Response:
    return page("manual.html")


@bp.post("/check")
def manual_check() -> Response:
    typed = request.form.get("code", "")[:64]
    pin = request.form.get("pin", "")[:64] or None  # normalised by the lookup, like the code
    verdict = check_code(typed, "manual", typed=True, pin=pin)
    return verdict_page(verdict, "manual", typed=typed)


@bp.get("/doc/<sha256>")
def document(sha256: str) -> Response:
    """A document attached to a batch (an inspection report), by its SHA-256: public, since only
    what an enterprise attached for consumers to see is a document; immutable, as its name is its hash."""
    found = feedback.document(state().connection(), sha256)
    if found is None:
        abort(404)
    response = Response(found.content, mimetype=found.media_type)
    response.headers["Content-Disposition"] = _inline(found.name)
    response.headers["X-Content-SHA256"] = found.sha256
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    response.set_etag(found.sha256)
    response.make_conditional(request)  # If-None-Match: 304, no body
    return response


def _inline(name: str) -> str:
    """Content-Disposition inline with the document's name: an ASCII fallback and RFC 5987 UTF-8."""
    ascii_name = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name) or "document"
    if ascii_name == name:
        return f'inline; filename="{name}"'
    return f"inline; filename=\"{ascii_name}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


@bp.get("/robots.txt")
def robots() -> Response:
    return Response("User-agent: *\nDisallow: /\n", mimetype="text/plain")


@bp.get("/favicon.ico")
def favicon() -> Response:
    return Response(status=204)


@bp.get("/healthz")
def health() -> Response:
    db.ping(state().connection())
    return Response("ok\n", mimetype="text/plain")


@bp.route("/<path:subpath>", methods=["GET", "HEAD"])
def scanned(subpath: str) -> Response:
    """A label's URL, compact or GS1 Digital Link: verify it, record the scan, show the verdict."""
    if is_prefetch():
        return Response(status=204)  # a link preview is not a consumer's check
    if subpath.startswith(("static/", "api/", ".well-known/", "log/", "receipt/", "doc/", "report/")):
        abort(404)
    query = request.query_string.decode("latin-1")
    text = f"{_base_host(state().base_urls, request.host, subpath)}/{subpath}" + (f"?{query}" if query else "")
    return verdict_page(check_code(text, "qr", typed=False), "qr")


def _base_host(base_urls: tuple[str, ...], host: str, subpath: str) -> str:
    """The host of the base URL this request's label was issued under: among the bases whose path
    starts the request's path, the longest path, then the request's host (behind a proxy it may be
    another name, so the host alone never rules a base out)."""
    host, subpath = host.lower(), subpath.lower()
    candidates = []
    for base in base_urls:
        base_host, _, base_path = codes.normalize_base_url(base).split("://", 1)[1].partition("/")
        if subpath.startswith(base_path.lower()):
            candidates.append((len(base_path), base_host.lower() == host, base_host))
    return max(candidates)[2] if candidates else _host(base_urls[0])


def _host(base_url: str) -> str:
    return base_url.split("://", 1)[1].split("/", 1)[0]
