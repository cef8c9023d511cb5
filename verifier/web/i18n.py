"""The consumer pages' words in Chinese (the default) and English, and the pages made with them."""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from flask import Response, g, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.datastructures import LanguageAccept, MultiDict
from werkzeug.http import parse_accept_header

from ..clock import CHINA
from .state import SESSION_COOKIE

LANGUAGES = ("zh", "en")

TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "lang_name": "中文",
        "other_lang": "English",
        "site": "产品防伪溯源查询",
        "manual_title": "输入防伪码查询",
        "manual_intro": "请输入标签上印刷的 17 位数字防伪码；如标签有刮开涂层，请一并输入刮开后的 8 位验证码。",
        "code_label": "防伪码（17 位数字）",
        "pin_label": "刮开验证码（如有）",
        "submit": "查询",
        "pin_prompt": "此标签带有刮开验证码。刮开涂层，输入验证码，可确认是否由您首次查询。",
        "product": "产品",
        "gtin": "商品条码",
        "enterprise": "企业",
        "credit_code": "统一社会信用代码",
        "mark": "标志",
        "lot": "批次",
        "production_date": "生产日期",
        "expiry_date": "有效期至",
        "code": "防伪码",
        "checks": "查询次数",
        "first_checked": "首次查询时间",
        "report": "如有疑问，请保留产品和包装，拨打 {contact} 举报，或联系品牌方。",
        "again": "查询其他防伪码",
        "receipt": "保存本次查验凭证",
        "tz": "北京时间",
        "retry": "请对照标签核对后重新输入：",
        "rate_title": "查询过于频繁",
        "rate_body": "请稍候 {seconds} 秒再试。",
        "notfound_title": "页面不存在",
        "notfound_body": "请扫描标签上的二维码，或输入防伪码查询。",
        "error_title": "暂时无法查询",
        "error_body": "服务暂时出现问题，您的查询未能完成，请稍后再试。",
        # verdicts: title, then body
        "genuine.title": "正品：首次查询",
        "genuine.body": "您所查询的是正品，请放心使用。本次为该防伪码的首次查询，查询时间已记录。",
        "genuine-pin.body": "刮开验证码正确，且为首次验证：您所查询的是正品，请放心使用。",
        "genuine-repeat.title": "正品：此码已被查询 {checks} 次",
        "genuine-repeat.body": "此防伪码已被查询 {checks} 次，首次查询时间为 {first}。如果首次查询不是您本人，请谨防假冒。",
        "suspicious-repeat.title": "警告：查询次数异常",
        "suspicious-repeat.body": "此防伪码已被查询 {checks} 次，超过正常次数，首次查询时间为 {first}。标签可能被复制，请谨防假冒。",
        "pin-reused.title": "警告：验证码已被验证过",
        "pin-reused.body": "此刮开验证码已于 {pin_time} 验证过。如果涂层是您刚刚刮开的，请谨防假冒。",
        "recalled.title": "此批次产品已召回",
        "recalled.body": "该产品所属批次已于 {recalled} 召回，原因：{reason}。",
        "remedy": "您应该怎么做",
        "recall.stop": "请立即停止使用该产品。",
        "recall.return": "将产品连同包装退回购买处，或联系生产企业{enterprise}办理退货、换货。",
        "recall.contact": "如有疑问或已受到损害，请拨打 {contact} 投诉。",
        "expired.title": "已超过有效期",
        "expired.body": "该产品的标志有效期至 {expiry}，现已过期。",
        "mistyped.title": "防伪码输入有误",
        "mistyped.body": "校验位不符，可能是输入时打错了数字。请对照标签仔细核对后重新输入。这不代表产品是假冒的。",
        "mistyped-length.body": "防伪码是 17 位数字，您输入的位数不对，可能漏输或多输了数字。请对照标签仔细核对后重新输入。这不代表产品是假冒的。",
        "pin-mismatch.title": "验证码不正确",
        "pin-mismatch.body": "刮开验证码与防伪码不符。请核对后重新输入；如仍不符，请谨防假冒。",
        "pin-throttled.title": "验证码尝试次数过多",
        "pin-throttled.body": "此防伪码近期输错验证码的次数过多，为防止猜测，暂停核对它的验证码，本次输入的验证码未被核对。请稍后再试。",
        "unknown-code.title": "查无此码",
        "unknown-code.body": "没有查到此防伪码。请核对输入；如确认无误，该产品可能是假冒产品。",
        "reported-counterfeit.title": "警告：此防伪码已被举报为假冒",
        "reported-counterfeit.body": "核查人员已确认此防伪码被复制到假冒产品上。您手中的产品很可能是假冒的，请勿使用，保留产品和包装并举报。",
        "not-genuine.title": "警告：非正品防伪码",
        "not-genuine.body": "此二维码不是本系统签发的有效防伪码，产品可能是假冒的。请勿使用。",
        "key-revoked.body": "此防伪码的签发密钥已被吊销，不能证明产品为正品。请勿使用。",
        "malformed.title": "无法识别的防伪码",
        "malformed.body": "这不是有效的防伪码格式。请重新扫描标签上的二维码，或输入标签上印刷的防伪码。",
        "blocked.title": "警告：此防伪码已被停用",
        "blocked.body": "生产企业已停用此防伪码（{reason}）。带有此码的产品不应在售，很可能是假冒或来路不明的，请勿使用，保留产品和包装并举报。",
        "blocked.counterfeit": "该码已被复制到假冒产品上",
        "blocked.stolen": "该产品已被盗",
        "blocked.destroyed": "该产品已被销毁",
        "not-released.title": "此产品尚未放行销售",
        "not-released.body": "此防伪码是正品防伪码，但该产品尚未出厂放行。如果您是在商店购买的，产品可能来路不明，请向商家核实或举报。",
        "mark-suspended.title": "此产品的标志使用资格已暂停",
        "mark-suspended.body": "此防伪码是正品防伪码，但颁证机构已暂停或撤销生产企业在此产品上使用该标志的资格，或其证书已过期（证书编号见下方）。该标志不再代表此产品通过认定；如有疑问，请向颁证机构核实。",
        "certificate": "标志证书",
        "certificate_no": "证书编号",
        "certificate_validity": "有效期",
        "certificate_validity_to": "至",
        "certificate_by": "颁证机构",
        "certificate_status": "证书状态",
        "certificate.suspended": "已暂停",
        "certificate.revoked": "已撤销",
        "certificate.expired": "已过期",
        "commitment": "企业质量诚信承诺",
        "commitment_open": "查看完整承诺",
        "trace": "产品溯源",
        "producer": "生产企业",
        "production_place": "产地",
        "inspection_report": "检验报告",
        "report_sha256": "报告指纹（SHA-256）",
        "shipped": "发往",
        "shipped_on": "发货日期",
        "sold_on": "售出日期",
        "in_case": "装箱",
        "in_case_yes": "随密封整箱出厂",
        "blocked.unknown": "原因未说明",
        "inspection_report_open": "查看检验报告",
        # the report form ("report this product") and its thank-you page
        "report_link": "举报/反馈此产品",
        "report_title": "举报/反馈此产品",
        "report_goes_to": "您的反馈将转给：",
        "report_privacy": "描述、购买地点、联系方式和照片仅用于核实，保存期满后删除；照片中的位置等信息会被去除。",
        "report_to_enterprise": "生产企业{enterprise}和市场监管核查人员",
        "report_to_inspectors": "市场监管核查人员",
        "report_code_label": "防伪码（如有）",
        "report_verdict": "查询结果",
        "report_what": "发生了什么",
        "what.fake": "疑似假冒",
        "what.damaged": "包装破损或被拆封",
        "what.diverted": "窜货：在非指定区域销售",
        "what.other": "其他问题",
        "report_bought_at": "购买地点（店名、网店或城市，最多 200 字）",
        "report_details": "详细情况（最多 2000 字）",
        "report_photo": "照片（可选，最大 4 MB）",
        "report_contact": "联系方式（可选：手机号码或电子邮箱）",
        "report_brand_may_contact": "同意品牌方通过此联系方式联系我（不勾选则仅核查人员可见）",
        "report_submit": "提交反馈",
        "report_error": "未能提交：",
        "report_err.what-missing": "请选择发生了什么。",
        "report_err.too-long.bought_at": "购买地点过长：最多 200 字。",
        "report_err.too-long.details": "详细情况过长：最多 2000 字。",
        "report_err.too-long.contact": "联系方式过长：最多 100 字。",
        "report_err.bad-contact": "联系方式请填写手机号码或电子邮箱。",
        "report_err.photo-too-large": "照片太大：最大 4 MB。",
        "report_err.photo-not-an-image": "无法读取此照片，请上传 JPEG、PNG、WebP 或 HEIC 图片。",
        "report_err.photo-too-many-pixels": "照片像素过多，请换一张或缩小后再上传。",
        "report_err.stale": "表单已过期或不是从本站提交的，请核对后重新提交。",
        "report_err.bad-form": "表单无法读取，请重新填写后提交。",
        "report_err.too-many": "今天您对此防伪码的反馈已达上限。请明天再试，或拨打 {contact} 举报。",
        "report_sent_title": "已收到您的反馈",
        "report_sent_number": "反馈编号",
        "report_sent_to": "已转给",
        "report_next": "接下来会怎样",
        "report_next_check": "核查人员和企业会核实您反馈的情况；如确认为假冒或窜货，该防伪码会被停用，其他消费者查询时会看到警告。",
        "report_next_contact": "如您留下了联系方式，核查人员可能与您联系；只有在您同意时，企业才能看到您的联系方式。",
        "report_next_keep": "请保留产品、包装和购物凭证，以备核查。",
        "report_next_urgent": "如情况紧急或已受到损害，请拨打 {contact} 投诉。",
    },
    "en": {
        "lang_name": "English",
        "other_lang": "中文",
        "site": "Product authenticity check",
        "manual_title": "Check a printed code",
        "manual_intro": "Type the 17-digit code printed on the label. If the label has a scratch-off layer, also type the 8-digit PIN under it.",
        "code_label": "Code (17 digits)",
        "pin_label": "Scratch-off PIN (if any)",
        "submit": "Check",
        "pin_prompt": "This label has a scratch-off PIN. Scratch it off and type it to confirm you are the first to check it.",
        "product": "Product",
        "gtin": "GTIN",
        "enterprise": "Enterprise",
        "credit_code": "Unified social credit code",
        "mark": "Mark",
        "lot": "Lot",
        "production_date": "Produced",
        "expiry_date": "Valid until",
        "code": "Code",
        "checks": "Checks",
        "first_checked": "First checked",
        "report": "If in doubt, keep the product and its packaging and report it by calling {contact}, or contact the brand.",
        "again": "Check another code",
        "receipt": "Keep a receipt of this check",
        "tz": "China Standard Time",
        "retry": "Compare with the label and type it again:",
        "rate_title": "Too many checks",
        "rate_body": "Please wait {seconds} seconds and try again.",
        "notfound_title": "Page not found",
        "notfound_body": "Scan the QR code on the label, or type the printed code.",
        "error_title": "Check unavailable",
        "error_body": "Something went wrong and your check did not complete. Please try again later.",
        "genuine.title": "Genuine: first check",
        "genuine.body": "This product is genuine. This is the first check of this code; the time has been recorded.",
        "genuine-pin.body": "The PIN is correct and this is its first verification: the product is genuine.",
        "genuine-repeat.title": "Genuine: checked {checks} times",
        "genuine-repeat.body": "This code has been checked {checks} times, first on {first}. If that first check was not yours, beware of counterfeits.",
        "suspicious-repeat.title": "Warning: unusually many checks",
        "suspicious-repeat.body": "This code has been checked {checks} times, more than a genuine label should be; the first check was on {first}. The label may have been copied: beware of counterfeits.",
        "pin-reused.title": "Warning: PIN already verified",
        "pin-reused.body": "This PIN was already verified on {pin_time}. If you have just scratched it off, beware of counterfeits.",
        "recalled.title": "This batch has been recalled",
        "recalled.body": "The product's batch was recalled on {recalled}. Reason: {reason}.",
        "remedy": "What to do",
        "recall.stop": "Stop using the product now.",
        "recall.return": "Return it with its packaging where you bought it, or contact {enterprise} for a refund or replacement.",
        "recall.contact": "If in doubt, or if it has harmed you, call {contact}.",
        "expired.title": "Past its validity",
        "expired.body": "The mark on this product was valid until {expiry}.",
        "mistyped.title": "Typing error",
        "mistyped.body": "The check digit does not match, so a digit was probably mistyped. Compare with the label and type it again. This does not mean the product is counterfeit.",
        "mistyped-length.body": "A printed code has 17 digits and what you typed has a different number of them: a digit was probably left out or typed twice. Compare with the label and type it again. This does not mean the product is counterfeit.",
        "pin-mismatch.title": "Wrong PIN",
        "pin-mismatch.body": "The scratch-off PIN does not match this code. Check it and type it again; if it still does not match, beware of counterfeits.",
        "pin-throttled.title": "Too many PIN attempts",
        "pin-throttled.body": "Too many wrong PINs have been typed for this code lately, so its PIN checks are paused against guessing and the PIN you typed was not checked. Please try again later.",
        "unknown-code.title": "No such code",
        "unknown-code.body": "This code was never issued. Check what you typed; if it is right, the product may be counterfeit.",
        "reported-counterfeit.title": "Warning: reported counterfeit",
        "reported-counterfeit.body": "Inspectors have confirmed that this code was copied onto counterfeit products. The product in your hands is probably counterfeit: do not use it, keep it and its packaging, and report it.",
        "not-genuine.title": "Warning: not a genuine code",
        "not-genuine.body": "This QR code was not issued by this system: the product may be counterfeit. Do not use it.",
        "key-revoked.body": "The key that signed this code has been revoked, so it does not prove the product genuine. Do not use it.",
        "malformed.title": "Unrecognised code",
        "malformed.body": "This is not a valid code. Scan the QR code on the label again, or type the printed code.",
        "blocked.title": "Warning: this code has been blocked",
        "blocked.body": "The producer has blocked this code ({reason}). A product with it should not be on sale and is probably counterfeit or of unknown origin: do not use it, keep it and its packaging, and report it.",
        "blocked.counterfeit": "it was copied onto counterfeit products",
        "blocked.stolen": "the product was stolen",
        "blocked.destroyed": "the product was destroyed",
        "not-released.title": "Not yet released for sale",
        "not-released.body": "This is a genuine code, but the product has not been released from the factory yet. If you bought it in a shop, its origin is unclear: ask the seller, or report it.",
        "mark-suspended.title": "The right to use this mark is suspended",
        "mark-suspended.body": "This is a genuine code, but the body that grants the mark has suspended or revoked the producer's right to use it on this product, or its certificate has expired (its number is below). The mark no longer vouches for this product; if in doubt, ask the body that grants it.",
        "certificate": "Mark certificate",
        "certificate_no": "Certificate no.",
        "certificate_validity": "Valid",
        "certificate_validity_to": "to",
        "certificate_by": "Granted by",
        "certificate_status": "Certificate status",
        "certificate.suspended": "suspended",
        "certificate.revoked": "revoked",
        "certificate.expired": "expired",
        "commitment": "The producer's quality commitment",
        "commitment_open": "Read the whole commitment",
        "trace": "Trace",
        "producer": "Producer",
        "production_place": "Made in",
        "inspection_report": "Inspection report",
        "report_sha256": "Report fingerprint (SHA-256)",
        "shipped": "Shipped to",
        "shipped_on": "Shipped on",
        "sold_on": "Sold on",
        "in_case": "Packed",
        "in_case_yes": "left the factory in a sealed case",
        "blocked.unknown": "no reason given",
        "inspection_report_open": "Open the inspection report",
        "report_link": "Report this product",
        "report_title": "Report this product",
        "report_goes_to": "Your report goes to:",
        "report_privacy": "What you write, where you bought it, your contact and photo are used only to look into it and are erased after a while; location and other data in the photo are removed.",
        "report_to_enterprise": "the producer, {enterprise}, and market inspectors",
        "report_to_inspectors": "market inspectors",
        "report_code_label": "Code (if any)",
        "report_verdict": "Check result",
        "report_what": "What happened",
        "what.fake": "Looks counterfeit",
        "what.damaged": "Damaged or opened packaging",
        "what.diverted": "Sold outside its sales region",
        "what.other": "Something else",
        "report_bought_at": "Where you bought it (shop, online store or city; up to 200 characters)",
        "report_details": "What happened (up to 2000 characters)",
        "report_photo": "Photo (optional, up to 4 MB)",
        "report_contact": "Contact (optional: phone number or email)",
        "report_brand_may_contact": "The brand may contact me there (otherwise only inspectors see it)",
        "report_submit": "Send report",
        "report_error": "Not sent:",
        "report_err.what-missing": "Choose what happened.",
        "report_err.too-long.bought_at": "Where you bought it is too long: at most 200 characters.",
        "report_err.too-long.details": "What happened is too long: at most 2000 characters.",
        "report_err.too-long.contact": "The contact is too long: at most 100 characters.",
        "report_err.bad-contact": "A contact is a phone number or an email address.",
        "report_err.photo-too-large": "The photo is too large: at most 4 MB.",
        "report_err.photo-not-an-image": "This photo cannot be read: send a JPEG, PNG, WebP or HEIC picture.",
        "report_err.photo-too-many-pixels": "The photo has too many pixels: send a smaller one.",
        "report_err.stale": "This form has expired or was not sent from this site: check it and send it again.",
        "report_err.bad-form": "The form could not be read: fill it in and send it again.",
        "report_err.too-many": "You have sent as many reports on this code as one day allows. Try again tomorrow, or call {contact}.",
        "report_sent_title": "Report received",
        "report_sent_number": "Report number",
        "report_sent_to": "Sent to",
        "report_next": "What happens next",
        "report_next_check": "Inspectors and the producer look into what you reported; if the product is confirmed counterfeit or diverted, the code is blocked and others who check it are warned.",
        "report_next_contact": "If you left a contact, inspectors may get in touch; the producer sees it only if you agreed.",
        "report_next_keep": "Keep the product, its packaging and your receipt in case they are needed.",
        "report_next_urgent": "If it is urgent, or the product has harmed you, call {contact}.",
    },
}

_VERDICT_KEYS = {  # reasons that share wording
    "bad-signature": ("not-genuine.title", "not-genuine.body"),
    "unknown-key": ("not-genuine.title", "not-genuine.body"),
    "unknown-batch": ("not-genuine.title", "not-genuine.body"),
    "key-revoked": ("not-genuine.title", "key-revoked.body"),
}


def verdict_text(lang: str, reason: str, pin_first: bool = False, detail: str | None = None) -> tuple[str, str]:
    """The (title, body) templates of a verdict."""
    title_key, body_key = _VERDICT_KEYS.get(reason, (f"{reason}.title", f"{reason}.body"))
    if reason == "genuine" and pin_first:
        body_key = "genuine-pin.body"
    if reason == "mistyped" and detail == "bad-length":
        body_key = "mistyped-length.body"
    return TEXT[lang][title_key], TEXT[lang][body_key]


def format_time(value: dt.datetime | None, lang: str) -> str:
    """A time in China Standard Time, as a reader of `lang` expects it."""
    if value is None:
        return ""
    local = value.astimezone(CHINA)
    if lang == "zh":
        return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}（{TEXT['zh']['tz']}）"
    return f"{local.day} {local:%b %Y %H:%M} ({TEXT['en']['tz']})"


def format_date(value: str | None, lang: str) -> str:
    if not value:
        return ""
    date = dt.date.fromisoformat(value[:10])
    return f"{date.year}年{date.month}月{date.day}日" if lang == "zh" else f"{date.day} {date:%b %Y}"


def first(values: MultiDict[str, str], key: str) -> str | None:
    """values.get(key) without the exception werkzeug builds, raises and catches for a missing key
    (an HTTPException, ~1.2 µs): most requests have no ?lang= and no cookies."""
    return values[key] if key in values else None


def choose_language() -> str:
    """?lang= (remembered in a cookie), then the cookie, then Accept-Language; Chinese by default."""
    asked = first(request.args, "lang")
    if asked in LANGUAGES:
        return str(asked)
    cookie = first(request.cookies, "lang")
    if cookie in LANGUAGES:
        return str(cookie)
    return _negotiate(request.headers.get("Accept-Language"))


@functools.lru_cache(maxsize=512)  # phones send few distinct headers: parse each once a process
def _negotiate(accept_language: str | None) -> str:
    """The language an Accept-Language header asks for, as `request.accept_languages` chooses it."""
    accepted = parse_accept_header(accept_language, LanguageAccept)
    return accepted.best_match(["zh", "en"], default="zh") or "zh"


def page(template: str, status: int = 200, **context: Any) -> Response:
    """A consumer page in the request's language; sets the language and browser-session cookies."""
    lang = context.pop("lang", None) or choose_language()
    html = render_template(template, lang=lang, t=TEXT[lang], other=_other_language_link(lang), **context)
    response = Response(html, status)  # what flask.make_response makes of a str and a status
    if first(request.args, "lang") in LANGUAGES:
        response.set_cookie("lang", lang, max_age=365 * 86400, httponly=True, samesite="Lax", secure=request.is_secure)
    if g.get("new_session"):  # the browser session: repeat views from it count once
        response.set_cookie(
            SESSION_COOKIE,
            g.session_id,
            max_age=2 * 365 * 86400,
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
        )
    return response


def message_page(status: int, title_key: str, body: str) -> Response:
    """The consumer's message page (not found, too many checks, unavailable...)."""
    return page("message.html", status, title_key=title_key, body=body)


def _other_language_link(lang: str) -> str:
    other = "en" if lang == "zh" else "zh"
    if request.method != "GET":
        return url_for("consumer.manual_form", lang=other)
    args = [f"{k}={v}" for k, v in request.args.items(multi=True) if k != "lang"]
    return request.path + "?" + "&".join(args + [f"lang={other}"])


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
def with_contact(lang: str, key: str, contact: str) -> Markup:
    """The sentence `key` of `lang` with the report contact's link in it (the same every request)."""
    return _fill(TEXT[lang][key], contact=contact_link(contact))
