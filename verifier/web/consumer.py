"""The consumer's pages: the verdict for a scanned label, and typing a printed code."""

from __future__ import annotations

import functools
import re

from flask import Blueprint, Response, abort, current_app, request
from markupsafe import Markup, escape

from .. import codes, db, lookup
from .i18n import TEXT, choose_language, format_date, format_time, page, verdict_text
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
    details = []
    if batch:
        details = [
            ("product", " ".join(x for x in (batch["product"], batch.get("spec")) if x)),
            ("gtin", batch.get("gtin")),
            ("enterprise", batch["enterprise"]),
            ("credit_code", batch.get("credit_code")),
            ("mark", batch["mark_zh"] if lang == "zh" else batch["mark_en"]),
            ("lot", batch.get("lot")),
            ("production_date", format_date(batch.get("production_date"), lang)),
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
        retry_code=retry_code,
        report=_with_contact(lang, "report", contact),
        recall_contact=_with_contact(lang, "recall.contact", contact),
        enterprise=_enterprise_named(batch.get("enterprise"), lang),
        number_keys=NUMBER_KEYS,
        receipt_url=receipt_url(verdict),
    )


NUMBER_KEYS = frozenset({"code", "gtin", "credit_code", "lot"})  # long unbroken values: may wrap anywhere
_PHONE_RE = re.compile(r"\+?[0-9][0-9 ()-]{1,30}")
_URL_RE = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~!$&'()*+,;=:@%/?#-]*)?")
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@functools.lru_cache(maxsize=64)  # one contact a deployment: the same markup every request
def contact_link(contact: str) -> Markup:
    """The report contact as a link: tel: for a phone number (12315), the address of an http(s) URL,
    mailto: for an email address; anything else as escaped text."""
    contact = contact.strip()
    if _PHONE_RE.fullmatch(contact):
        number = ("+" if contact.startswith("+") else "") + "".join(ch for ch in contact if ch.isdigit())
        return Markup('<a href="tel:{}">{}</a>').format(number, contact)
    if _URL_RE.fullmatch(contact):
        return Markup('<a href="{}" rel="noopener noreferrer">{}</a>').format(contact, contact)
    if _EMAIL_RE.fullmatch(contact):
        return Markup('<a href="mailto:{}">{}</a>').format(contact, contact)
    return escape(contact)


def _fill(template: str, **values: Markup) -> Markup:
    """A sentence of ours with markup filled in; every value not already markup is escaped."""
    return escape(template).format(**values)


@functools.lru_cache(maxsize=64)
def _with_contact(lang: str, key: str, contact: str) -> Markup:
    """The sentence `key` of `lang` with the report contact's link in it (the same every request)."""
    return _fill(TEXT[lang][key], contact=contact_link(contact))


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
    if subpath.startswith(("static/", "api/", ".well-known/", "log/", "receipt/")):
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
