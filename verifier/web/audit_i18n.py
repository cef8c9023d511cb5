"""The audit UI's words in Chinese (the default) and English, its times in China Standard Time,
and the language choice: ?lang= (remembered in a cookie scoped to /audit), then that cookie."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request

from ..clock import CHINA

LANGUAGES = ("zh", "en")
COOKIE = "vaudit_lang"

TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "site": "防伪溯源核查",
        "other_lang": "English",
        "scans": "查询记录",
        "batches": "批次",
        "anomalies": "异常",
        "map": "地图",
        "trends": "趋势",
        "keys": "签名密钥",
        "console": "企业控制台",
        "certificates": "标志证书",
        "logout": "退出",
        "login": "登录",
        "username": "用户名",
        "password": "密码",
        "role.admin": "管理员",
        "role.inspector": "核查人员",
        "role.enterprise": "企业",
        "scan_log": "查询记录",
        "filter": "筛选",
        "any": "全部",
        "export": "导出 CSV",
        "since": "起始",
        "until": "截止",
        "older": "更早的记录 →",
        "no_scans": "没有符合条件的查询记录。",
        "never_scanned": "从未被查询。",
        "yes": "是",
        "no": "否",
        "tz": "北京时间",
        "batch": "批次",
        "status": "状态",
        "enterprise": "企业",
        "product": "产品",
        "mark": "标志",
        "lot": "批号",
        "codes": "码数",
        "issued": "签发时间",
        "no_batches": "没有批次。",
        "scans_of_batch": "此批次的查询记录",
        "scans_per_day": "每日查询次数",
        "no_scans_yet": "尚无查询。",
        "verdicts": "判定",
        "most_checked": "查询最多的防伪码",
        "code": "防伪码",
        "checks": "查询次数",
        "scan_count": "查询",
        "recall": "召回",
        "recall_reason": "原因",
        "recall_button": "召回批次 {batch}",
        "recalled_on": "于 {at} 召回（{reason}）",
        "code_title": "防伪码 {code}",
        "serial": "序列号",
        "reported": "已举报为假冒",
        "reported_by": "于 {at} 由 {by} 举报",
        "note": "备注",
        "report_button": "标记为已举报假冒",
        "anomalies_title": "异常（最近 {days} 天）",
        "rule": "规则",
        "severity": "严重程度",
        "severity.high": "高",
        "severity.low": "低",
        "what": "内容",
        "count": "次数",
        "first": "首次",
        "last": "最近",
        "evidence": "证据（查询编号）",
        "no_anomalies": "没有异常。",
        "open_case": "立案调查",
        "dealer": "经销商",
        "shipped_to": "发往",
        "seen_in": "出现于",
        "event": "事件",
        "blocked": "已停用",
        "codes_n": "{n} 个码",
        "keys_title": "签名密钥",
        "key_name": "名称",
        "purpose": "用途",
        "created": "创建时间",
        "revoke": "吊销",
        "map_title": "各省查询分布（最近 {days} 天）",
        "map_label": "中国各省{metric}地图",
        "metric.scans": "查询次数",
        "metric.counterfeit": "假冒码查询",
        "metric.diversions": "窜货异常",
        "province": "省份",
        "elsewhere": "境外或未定位",
        "window": "时间范围",
        "days_n": "{n} 天",
        "map_source": "省界数据：{source}；为显示而简化，香港、澳门另以方块标出。示意图，不是标准地图。",
        "trends_title": "趋势（最近 {days} 天）",
        "by_verdict": "每日查询：按判定",
        "by_enterprise": "每日查询：按企业",
        "day": "日期（北京时间）",
        "total": "合计",
        "class.genuine": "正品",
        "class.warnings": "警示",
        "class.not-genuine": "非正品",
        "no_enterprise": "无企业（伪造或未知码）",
        "others": "其他",
        "login_failed": "用户名或密码错误，或该账户目前无法登录。",
        "login_retry": "请在 {minutes} 分钟后重试。",
        "login_stale": "表单未提交：表单已过期或并非来自本站登录页。请重新输入用户名和密码。",
        "too_broad.title": "一次读取的数据过多",
        "too_broad": (
            "此查询所需的工作量超过单次核查请求的上限：请缩短时间范围（天数、起止时间），或增加批次、防伪码筛选条件。"
        ),
        "busy.title": "系统繁忙",
        "busy": "另一个大型核查请求（异常或导出）正在运行，请几秒后重试。",
        "not_found.title": "页面不存在",
        "not_found": "没有这个核查页面。",
        "bad_filter.title": "筛选条件有误",
        "not_done.title": "未完成",
        "forbidden.title": "无权操作",
        "forbidden": "您的角色不能执行此操作。",
        "recall_failed": "召回未完成",
        "revoke_failed": "未吊销",
        "confirm.cancel": "取消，不做任何操作",
        "confirm.recall.title": "召回批次 {batch}？",
        "confirm.recall.effect": (
            "批次 {batch}（{enterprise} / {product}）的 {count} 枚标签，此后每位消费者扫码都会看到“已召回”。"
        ),
        "confirm.recall.button": "召回批次 {batch}",
        "confirm.recall.note": "原因：{reason}。召回无法撤销。",
        "confirm.report.title": "将防伪码 {code} 举报为假冒？",
        "confirm.report.effect": (
            "1 枚标签（防伪码 {code}），此后每位消费者扫码都会看到“已举报为假冒”，无论其他情况如何。"
        ),
        "confirm.report.button": "举报此防伪码",
        "confirm.report.note": "备注：{note}。以第一次举报为准，无法撤销。",
        "confirm.revoke.title": "吊销密钥 {kid}（{name}）？",
        "confirm.revoke.effect": (
            "{count} 枚标签将显示“非正品”：密钥 {kid} 签发的每个防伪码都将被报告为由已吊销的密钥签名。"
        ),
        "confirm.revoke.button": "吊销密钥 {kid}",
        "confirm.revoke.note": "密钥一经吊销便永久吊销，无法撤销，也不再签发新码。",
        "revoke.none": "没有这个密钥，或它已被吊销。",
        "jwks.title": "密钥来自 JWKS 文件",
        "jwks": "请在密钥环所在的机器上用 `verifier keys revoke` 吊销，然后重新发布 JWKS。",
        # scan columns
        "col.id": "编号",
        "col.at": "时间（北京时间）",
        "col.channel": "渠道",
        "col.reason": "判定",
        "col.detail": "详情",
        "col.serial": "序列号",
        "col.batch_id": "批次",
        "col.kid": "签名密钥",
        "col.counted": "计入查询次数",
        "col.checks": "查询次数",
        "col.claimed_batch": "所称批次",
        "col.claimed_gtin": "所称商品条码",
        "col.claimed_mark": "所称标志",
        "col.pin": "刮开验证码",
        "col.country": "国家/地区",
        "col.region": "省份/地区",
        "col.city": "城市",
        "col.ip_prefix": "IP 前缀",
        "col.ip_hash": "IP 散列",
        "col.session_hash": "会话散列",
        "col.user_agent": "浏览器",
        "channel.qr": "扫码",
        "channel.manual": "手工输入",
        "channel.api": "接口",
        "pin.first": "首次验证",
        "pin.reused": "重复验证",
        "pin.mismatch": "不正确",
        "pin.throttled": "尝试过多",
        "status.active": "有效",
        "status.issuing": "签发中",
        "status.recalled": "已召回",
        "status.retired": "已停用",
        "status.revoked": "已吊销",
    },
    "en": {
        "site": "verifier audit",
        "other_lang": "中文",
        "scans": "Scans",
        "batches": "Batches",
        "anomalies": "Anomalies",
        "map": "Map",
        "trends": "Trends",
        "keys": "Keys",
        "console": "Console",
        "certificates": "Mark certificates",
        "logout": "Log out",
        "login": "Log in",
        "username": "User name",
        "password": "Password",
        "role.admin": "admin",
        "role.inspector": "inspector",
        "role.enterprise": "enterprise",
        "scan_log": "Scan log",
        "filter": "Filter",
        "any": "any",
        "export": "Export CSV",
        "since": "Since",
        "until": "Until",
        "older": "Older scans →",
        "no_scans": "No scans match.",
        "never_scanned": "Never scanned.",
        "yes": "yes",
        "no": "no",
        "tz": "China Standard Time",
        "batch": "Batch",
        "status": "Status",
        "enterprise": "Enterprise",
        "product": "Product",
        "mark": "Mark",
        "lot": "Lot",
        "codes": "Codes",
        "issued": "Issued",
        "no_batches": "No batches.",
        "scans_of_batch": "Scans of this batch",
        "scans_per_day": "Scans per day",
        "no_scans_yet": "No scans yet.",
        "verdicts": "Verdicts",
        "most_checked": "Most checked codes",
        "code": "Code",
        "checks": "Checks",
        "scan_count": "Scans",
        "recall": "Recall",
        "recall_reason": "Reason",
        "recall_button": "Recall batch {batch}",
        "recalled_on": "on {at} ({reason})",
        "code_title": "Code {code}",
        "serial": "Serial",
        "reported": "reported counterfeit",
        "reported_by": "on {at} by {by}",
        "note": "Note",
        "report_button": "Mark as reported counterfeit",
        "anomalies_title": "Anomalies, last {days} days",
        "rule": "Rule",
        "severity": "Severity",
        "severity.high": "high",
        "severity.low": "low",
        "what": "What",
        "count": "Count",
        "first": "First",
        "last": "Last",
        "evidence": "Evidence (scan ids)",
        "no_anomalies": "No anomalies.",
        "open_case": "open a case",
        "dealer": "dealer",
        "shipped_to": "shipped to",
        "seen_in": "seen in",
        "event": "event",
        "blocked": "blocked",
        "codes_n": "{n} codes",
        "keys_title": "Signing keys",
        "key_name": "Name",
        "purpose": "Purpose",
        "created": "Created",
        "revoke": "Revoke",
        "map_title": "Scans by province, last {days} days",
        "map_label": "map of China's provinces: {metric}",
        "metric.scans": "scans",
        "metric.counterfeit": "counterfeit scans",
        "metric.diversions": "diversion anomalies",
        "province": "Province",
        "elsewhere": "abroad or not located",
        "window": "Window",
        "days_n": "{n} days",
        "map_source": "Boundaries: {source}, simplified; squares mark Hong Kong and Macao. Not a standard map.",
        "trends_title": "Trends, last {days} days",
        "by_verdict": "Scans per day by verdict",
        "by_enterprise": "Scans per day by enterprise",
        "day": "Day (China Standard Time)",
        "total": "Total",
        "class.genuine": "genuine",
        "class.warnings": "warnings",
        "class.not-genuine": "not genuine",
        "no_enterprise": "no enterprise (forged or unknown codes)",
        "others": "others",
        "login_failed": "Wrong user name or password, or the account cannot sign in now.",
        "login_retry": "Try again in {minutes} minute{s}.",
        "login_stale": (
            "This form was not sent: it has expired or did not come from this site's login page. "
            "Enter your user name and password again."
        ),
        "too_broad.title": "Too much to read at once",
        "too_broad": "",  # the service's own sentence
        "busy.title": "Busy",
        "busy": "",
        "not_found.title": "Not found",
        "not_found": "There is no such audit page.",
        "bad_filter.title": "Bad filter",
        "not_done.title": "Not done",
        "forbidden.title": "Not allowed",
        "forbidden": "Your role cannot do this.",
        "recall_failed": "Recall not done",
        "revoke_failed": "Not revoked",
        "confirm.cancel": "Cancel: do nothing",
        "confirm.recall.title": "Recall batch {batch}?",
        "confirm.recall.effect": (
            "{count} label{s} of batch {batch} ({enterprise} / {product}) "
            "will show “recalled” to every consumer who scans them."
        ),
        "confirm.recall.button": "Recall batch {batch}",
        "confirm.recall.note": "Reason: {reason}. A recall cannot be undone.",
        "confirm.report.title": "Report code {code} as counterfeit?",
        "confirm.report.effect": (
            "1 label, code {code}, will show “reported counterfeit” "
            "to every consumer who scans it, whatever else holds."
        ),
        "confirm.report.button": "Report this code",
        "confirm.report.note": "Note: {note}. The first report stands: it cannot be undone.",
        "confirm.revoke.title": "Revoke key {kid} ({name})?",
        "confirm.revoke.effect": (
            "{count} label{s} will show “not genuine”: every code key "
            "{kid} signed is then reported as signed by a revoked key."
        ),
        "confirm.revoke.button": "Revoke key {kid}",
        "confirm.revoke.note": "A revoked key stays revoked: it cannot be undone, and it signs nothing new.",
        "revoke.none": "No such key, or it is revoked.",
        "jwks.title": "Keys come from a JWKS file",
        "jwks": "Revoke with `verifier keys revoke` where the keyring lives, then publish the JWKS again.",
        "col.id": "ID",
        "col.at": "Time (CST)",
        "col.channel": "Channel",
        "col.reason": "Verdict",
        "col.detail": "Detail",
        "col.serial": "Serial",
        "col.batch_id": "Batch",
        "col.kid": "Signing key",
        "col.counted": "Counted as a check",
        "col.checks": "Checks",
        "col.claimed_batch": "Claimed batch",
        "col.claimed_gtin": "Claimed GTIN",
        "col.claimed_mark": "Claimed mark",
        "col.pin": "PIN",
        "col.country": "Country",
        "col.region": "Region",
        "col.city": "City",
        "col.ip_prefix": "IP prefix",
        "col.ip_hash": "IP hash",
        "col.session_hash": "Session hash",
        "col.user_agent": "Browser",
        "channel.qr": "QR scan",
        "channel.manual": "typed",
        "channel.api": "API",
        "pin.first": "first",
        "pin.reused": "reused",
        "pin.mismatch": "wrong",
        "pin.throttled": "too many tries",
        "status.active": "active",
        "status.issuing": "issuing",
        "status.recalled": "recalled",
        "status.retired": "retired",
        "status.revoked": "revoked",
    },
}

# Each verdict's short name (the consumer pages' titles are sentences).
VERDICTS: dict[str, dict[str, str]] = {
    "zh": {
        "genuine": "正品（首次查询）",
        "genuine-repeat": "正品（重复查询）",
        "recalled": "已召回",
        "not-released": "尚未放行",
        "suspicious-repeat": "查询次数异常",
        "pin-reused": "验证码已被验证过",
        "pin-throttled": "验证码尝试过多",
        "expired": "已过有效期",
        "mistyped": "输入有误",
        "pin-mismatch": "验证码不正确",
        "reported-counterfeit": "已举报为假冒",
        "blocked": "已停用",
        "unknown-batch": "未知批次",
        "unknown-code": "查无此码",
        "key-revoked": "密钥已吊销",
        "bad-signature": "签名无效（伪造）",
        "unknown-key": "未知密钥",
        "malformed": "格式无法识别",
    },
    "en": {
        "genuine": "genuine (first check)",
        "genuine-repeat": "genuine (repeat check)",
        "recalled": "recalled",
        "not-released": "not released yet",
        "suspicious-repeat": "suspiciously many checks",
        "pin-reused": "PIN already verified",
        "pin-throttled": "too many PIN tries",
        "expired": "expired",
        "mistyped": "mistyped",
        "pin-mismatch": "wrong PIN",
        "reported-counterfeit": "reported counterfeit",
        "blocked": "blocked",
        "unknown-batch": "unknown batch",
        "unknown-code": "unknown code",
        "key-revoked": "key revoked",
        "bad-signature": "bad signature (forged)",
        "unknown-key": "unknown key",
        "malformed": "malformed",
    },
}

RULES: dict[str, dict[str, str]] = {
    "zh": {
        "repeat-checks": "同一防伪码被查询的次数超出正品标签的正常范围",
        "many-sessions": "同一防伪码被许多不同浏览器查询",
        "distant-regions": "同一防伪码在短时间内出现在不同地区",
        "counterfeit-cluster": "伪造或未知防伪码在同一地区同一天集中出现",
        "scan-after-recall": "已召回批次的防伪码仍在被查询",
        "pin-reused": "刮开验证码被验证了不止一次",
        "pin-guessing": "多个客户端对同一防伪码输错验证码",
        "diversion": "已发货的防伪码在经销商销售区域以外的省份被查询（窜货）",
        "scan-before-release": "产品在放行销售之前被查询：货物过早离开工厂",
        "blocked-scanned": "已停用的防伪码（假冒、被盗或已销毁）仍在被查询",
    },
}
RULE_NAMES: dict[str, dict[str, str]] = {
    "zh": {
        "repeat-checks": "查询次数过多",
        "many-sessions": "多浏览器查询",
        "distant-regions": "异地查询",
        "counterfeit-cluster": "假冒集中出现",
        "scan-after-recall": "召回后仍被查询",
        "pin-reused": "验证码重复验证",
        "pin-guessing": "验证码猜测",
        "diversion": "窜货",
        "scan-before-release": "放行前被查询",
        "blocked-scanned": "停用码被查询",
    },
}


# --- cases, and the links to them from the map and the anomalies (the inspector's path) ------------
# The case pages' words (web/cases.py, templates audit/case*.html as `cw`), and the few the map, the
# anomaly list and the header use to link to cases. Kept apart from TEXT on purpose.
CASE_TEXT: dict[str, dict[str, str]] = {
    "zh": {
        "cases": "案件",
        "case": "案件",
        "case_n": "案件 {id}（{status}）",
        "rule": "规则",
        "subject": "对象",
        "severity": "严重程度",
        "status": "状态",
        "status.open": "待处理",
        "status.investigating": "调查中",
        "status.closed": "已结案",
        "assignee": "负责人",
        "opened": "立案",
        "closed": "结案",
        "any": "全部",
        "filter": "筛选",
        "none": "暂无案件。",
        "details": "异常详情",
        "detail.dealer": "经销商",
        "detail.shipped_provinces": "发往省份",
        "detail.shipped_regions": "销售区域（行政区划代码）",
        "detail.shipped_at": "发货时间（北京时间）",
        "detail.scan_provinces": "查询所在省份",
        "detail.event": "发货事件编号",
        "detail.event_id": "发货事件标识",
        "detail.reason": "停用原因",
        "detail.codes": "码数",
        "evidence": "证据扫描",
        "hidden": "条扫描属于其他企业，不显示",
        "notes": "备注",
        "no_notes": "暂无备注。",
        "add_note": "添加备注",
        "assign": "指派",
        "change_status": "更改状态",
        "link": "关联扫描（编号，逗号分隔）",
        "link_button": "关联",
        "export": "下载证据包",
        "open_title": "由异常立案",
        "open_confirm": "确认立案",
        "close_title": "确认结案",
        "close_text": "结案后案件状态为“已结案”，记录结案人和时间，并写入透明日志。",
        "close_confirm": "确认结案",
        "back": "返回",
        "time": "时间（北京时间）",
        "verdict": "结论",
        "region": "地区",
        "scan": "扫描",
        "code": "码",
        "batch": "批次",
        "read_only": "企业账户只能查看本企业的案件。",
        "high": "高",
        "low": "低",
        "not_found": "没有这个案件。",
        "not_allowed": "您的角色不能执行此操作。",
        "not_done": "未完成",
        "anomalies_in": "{rule}：出现于 {province}",
        "all_anomalies": "全部异常",
        "to_anomalies": "{province}的窜货异常",
    },
    "en": {
        "cases": "Cases",
        "case": "Case",
        "case_n": "case {id} ({status})",
        "rule": "Rule",
        "subject": "Subject",
        "severity": "Severity",
        "status": "Status",
        "status.open": "open",
        "status.investigating": "investigating",
        "status.closed": "closed",
        "assignee": "Assignee",
        "opened": "Opened",
        "closed": "Closed",
        "any": "any",
        "filter": "Filter",
        "none": "No cases.",
        "details": "The anomaly",
        "detail.dealer": "Dealer",
        "detail.shipped_provinces": "Shipped to",
        "detail.shipped_regions": "Sales regions (GB/T 2260)",
        "detail.shipped_at": "Shipped (CST)",
        "detail.scan_provinces": "Scanned in",
        "detail.event": "Shipping event",
        "detail.event_id": "Shipping event ID",
        "detail.reason": "Blocked because",
        "detail.codes": "Codes",
        "evidence": "Evidence scans",
        "hidden": "linked scans belong to another enterprise and are not shown",
        "notes": "Notes",
        "no_notes": "No notes.",
        "add_note": "Add a note",
        "assign": "Assign",
        "change_status": "Change status",
        "link": "Link scans (ids, comma separated)",
        "link_button": "Link",
        "export": "Download the evidence export",
        "open_title": "Open a case from an anomaly",
        "open_confirm": "Open the case",
        "close_title": "Close this case?",
        "close_text": (
            "A closed case shows “closed”, who closed it and when; the change is written to the transparency log."
        ),
        "close_confirm": "Close the case",
        "back": "Back",
        "time": "Time (CST)",
        "verdict": "Verdict",
        "region": "Region",
        "scan": "Scan",
        "code": "Code",
        "batch": "Batch",
        "read_only": "An enterprise account reads its own enterprise's cases only.",
        "high": "high",
        "low": "low",
        "not_found": "No such case.",
        "not_allowed": "Your role cannot do this.",
        "not_done": "Not done",
        "anomalies_in": "{rule}: seen in {province}",
        "all_anomalies": "all anomalies",
        "to_anomalies": "diversion anomalies in {province}",
    },
}


def language() -> str:
    """?lang=, then the audit UI's language cookie; Chinese otherwise (inspectors' default)."""
    asked = request.args.get("lang")
    if asked in LANGUAGES:
        return str(asked)
    remembered = request.cookies.get(COOKIE)
    return str(remembered) if remembered in LANGUAGES else "zh"


def other_language_link(lang: str) -> str:
    """This page in the other language (a GET; after a POST, the scan list)."""
    other = "en" if lang == "zh" else "zh"
    if request.method != "GET":
        return f"/audit/?lang={other}"
    args = [f"{k}={v}" for k, v in request.args.items(multi=True) if k != "lang"]
    return request.path + "?" + "&".join(args + [f"lang={other}"])


def format_time(value: str | dt.datetime | None, lang: str, seconds: bool = False) -> str:
    """A stored UTC time in China Standard Time: '2026年11月26日 17:00' / '26 Nov 2026 17:00'."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    local = moment.astimezone(CHINA)
    clock = f"{local:%H:%M:%S}" if seconds else f"{local:%H:%M}"
    if lang == "zh":
        return f"{local.year}年{local.month}月{local.day}日 {clock}"
    return f"{local.day} {local:%b %Y} {clock}"


def format_day(day: dt.date, lang: str) -> str:
    return f"{day.month}月{day.day}日" if lang == "zh" else f"{day.day} {day:%b}"


def verdict(reason: str | None, lang: str) -> str:
    return VERDICTS[lang].get(reason or "", reason or "")


def rule_name(rule: str, lang: str) -> str:
    return RULE_NAMES.get(lang, {}).get(rule, rule)


def rule_text(rule: str, lang: str, english: str) -> str:
    return RULES.get(lang, {}).get(rule, english)


def cell(column: str, value: Any, lang: str) -> str:
    """A scan column's value in words: verdicts, channels, PIN states, yes/no, times in CST."""
    if value is None:
        return ""
    t = TEXT[lang]
    if column == "reason":
        return verdict(value, lang)
    if column == "at":
        return format_time(value, lang, seconds=True)
    if column == "counted":
        return t["yes"] if value else t["no"]
    if column in ("channel", "pin", "status"):
        return t.get(f"{column}.{value}", str(value))
    return str(value)


def context(lang: str) -> dict[str, Any]:
    """What every audit template gets: the words, the language and the helpers."""
    return {
        "lang": lang,
        "t": TEXT[lang],
        "cw": CASE_TEXT[lang],
        "other_lang": other_language_link(lang),
        "cst": lambda value, seconds=False: format_time(value, lang, seconds),
        "verdict": lambda reason: verdict(reason, lang),
        "cell": lambda column, value: cell(column, value, lang),
        "rule_name": lambda rule: rule_name(rule, lang),
        "rule_text": lambda rule, english: rule_text(rule, lang, english),
        "day": lambda day: format_day(day, lang),
    }
