#!/usr/bin/env python3
"""Adversarial inputs on every surface: the invalid vectors plus mutations of valid codes.

    .venv/bin/python scripts/adversarial.py [--codes 1000] [--audit-random 20] [--json]

Every character of each valid URL and printed code is flipped (XOR 1, which never only changes
case or adds whitespace), each is truncated at every length and extended with 'A', '0' and '/'.
The inputs go through the consumer page, the JSON API, the manual-entry form and
`verifier verify`. Reported: inputs tried, accepted (any genuine verdict), server errors.

The transparency log gets every mutation of valid tile paths, receipt tokens and a cosigned
checkpoint, and the hostile values in each place of them: there "accepted" is a 200 answer to
anything but the valid original (a tile that is not the tree's, a receipt nobody was given, a
cosignature by no witness).

EPCIS capture (`POST /epcis/capture`, an enterprise's token) gets documents whose code
references are every mutation of valid label URLs and the invalid vectors, and documents with
a hostile value in each field of an event: there "accepted" is a 201 for a reference that names
none of the enterprise's codes (a signature is not checked at capture: a URL whose signature was
mutated still names its code), or for a hostile field. The report form (`POST /report`) gets the
hostile values in each field: "accepted" is a report attributed to an enterprise for a code the
page never showed.

The audit API and UI get hostile values (superscript and full-width digits, integers past
2^63, negative numbers, impossible dates, overlong strings, control characters, NUL, formula
prefixes, path traversal), plus `--audit-random` seeded random strings, in every parameter of
every route, as an admin and as an enterprise. There "accepted" is a 200 answer to a value
the parameter rules (docs/audit.md, re-stated here independently) call invalid.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import re
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from urllib.parse import quote

from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from verifier import codes, issue, keys, note
from verifier.cli import cli
from verifier.web import create_app

ROOT = Path(__file__).resolve().parent.parent
BASE = "HTTPS://VERIFY.EXAMPLE.CN/"
GENUINE = {"genuine", "genuine-repeat", "suspicious-repeat", "pin-reused", "recalled", "expired"}


def mutations(text: str) -> list[str]:
    out = [text[:i] + chr(ord(ch) ^ 1) + text[i + 1 :] for i, ch in enumerate(text)]
    out += [text[:i] for i in range(len(text))]
    out += [text + extra for extra in ("A", "0", "/")]
    return out


def invalid_vectors() -> list[str]:
    cases = []
    for path in sorted((ROOT / "tests" / "vectors" / "invalid").glob("*.json")):
        case = json.loads(path.read_text("utf-8"))
        if "input_repeat" in case:
            spec = case["input_repeat"]
            case["input"] = spec["prefix"] + spec["repeat"] * spec["count"]
        cases.append(case["input"])
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=1000)
    parser.add_argument("--audit-random", type=int, default=20, help="Random strings per audit parameter.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adversarial-"))
    record = keys.create_key(tmp / "keys", "adv", b"adv", dt.datetime.now(dt.UTC))
    _, private = keys.load_private_key(tmp / "keys", "adv", b"adv")
    request = issue.BatchRequest(
        mark=codes.MARKS[0],
        enterprise="E",
        product="P",
        count=args.codes,
        out_dir=tmp / "batch",
        base_url=BASE,
        formats=("csv",),
    )
    issue.issue_batch(tmp / "verifier.db", request, private, bytes.fromhex(record.kid))
    with open(tmp / "batch" / "codes.csv", encoding="utf-8", newline="") as fh:
        rows = list(issue.read_codes_csv(fh))
    urls, printed = [r["url"] for r in rows], [r["code"] for r in rows]
    app = create_app(
        {
            "DATABASE": str(tmp / "verifier.db"),
            "KEYS_DIR": str(tmp / "keys"),
            "BASE_URLS": [BASE],
            "RATELIMIT": "off",
            "INSTANCE": str(tmp),
            "SECRET_KEY": b"adv",
            "LOG_WITNESSES": [note.format_vkey(WITNESS.verifier)],
        }
    )
    client = app.test_client()
    url_inputs = invalid_vectors() + [m for u in urls for m in mutations(u)]
    typed_inputs = [m for p in printed for m in mutations(p)]
    jwks_file = tmp / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks(keys.read_keyring(tmp / "keys"))))
    report = {}
    started = time.perf_counter()

    def tally(surface: str, outcomes: list[tuple[int, str]]) -> None:
        report[surface] = {
            "tried": len(outcomes),
            "accepted": sum(r in GENUINE for _, r in outcomes),
            "server_errors": sum(status >= 500 for status, _ in outcomes),
        }

    page = []
    for text in url_inputs:
        if text.upper().startswith(BASE) and "#" not in text:
            rest = text[len(BASE) :]
            path, _, query = rest.partition("?")
            wsgi = lambda value: value.encode("utf-8").decode("latin-1")  # noqa: E731 - PEP 3333 strings
            response = client.get("/", environ_overrides={"PATH_INFO": wsgi("/" + path), "QUERY_STRING": wsgi(query)})
            body = response.get_data(as_text=True)
            marker = body.find('data-reason="')
            page.append((response.status_code, body[marker + 13 : body.find('"', marker + 13)] if marker >= 0 else ""))
    tally("web page", page)
    api = []
    for text in url_inputs + typed_inputs:
        response = client.get("/api/v1/verify", query_string={"code": text})
        data = response.get_json(silent=True) or {}
        api.append((response.status_code, data.get("reason", "")))
    tally("JSON API", api)
    form = []
    for text in typed_inputs + invalid_vectors()[:50]:
        response = client.post("/check", data={"code": text})
        body = response.get_data(as_text=True)
        marker = body.find('data-reason="')
        form.append((response.status_code, body[marker + 13 : body.find('"', marker + 13)] if marker >= 0 else ""))
    tally("manual form", form)
    runner = CliRunner()
    cli_out = []
    for text in url_inputs:
        result = runner.invoke(cli, ["verify", "--json", "--jwks", str(jwks_file), "--base-url", BASE, "--", text])
        try:
            reason = json.loads(result.stdout)["reason"]
        except (ValueError, KeyError, TypeError):
            reason = "usage-error" if result.exit_code == 2 else "crash"
        cli_out.append((500 if reason == "crash" or result.exit_code not in (0, 1, 2) else 200, reason))
    tally("verifier verify", cli_out)
    log_surface = log_outcomes(app)
    report["transparency log"] = {
        "tried": len(log_surface),
        "accepted": sum(1 for status, bad in log_surface if bad and status == 200),
        "server_errors": sum(status >= 500 for status, _ in log_surface),
        "valid_served": sum(1 for status, bad in log_surface if not bad and status == 200),
    }
    for surface, outcomes in lifecycle_outcomes(app, urls[: max(3, min(len(urls), 30))]).items():
        report[surface] = {
            "tried": len(outcomes),
            "accepted": sum(1 for status, bad in outcomes if bad and status in (200, 201)),
            "server_errors": sum(status >= 500 for status, _ in outcomes),
        }
    audit_api, audit_ui = audit_outcomes(app, tmp, args.audit_random)
    for surface, outcomes in (("audit API", audit_api), ("audit UI", audit_ui)):
        report[surface] = {
            "tried": len(outcomes),
            "accepted": sum(1 for status, bad in outcomes if bad and status == 200),
            "server_errors": sum(status >= 500 for status, _ in outcomes),
        }
    total = {k: sum(r[k] for r in report.values()) for k in ("tried", "accepted", "server_errors")}
    report["total"] = total
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for surface, r in report.items():
            if surface != "seconds":
                tried, accepted, errors = r["tried"], r["accepted"], r["server_errors"]
                print(f"{surface:<16} tried {tried:>9,}  accepted {accepted}  server errors {errors}")
        print(f"({report['seconds']} s, {args.codes} valid codes mutated)")
    return 0 if total["accepted"] == 0 and total["server_errors"] == 0 else 1


# --- the audit API and UI -------------------------------------------------------------------

HOSTILE = [
    "²",
    "¹²³",
    "１２",
    "٣",
    "߁",
    str(2**63),
    str(2**64),
    "9" * 30,
    "9" * 5000,
    "-1",
    "-0",
    "+1",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "1.0",
    "NaN",
    "2026-02-30",
    "2026-13-01",
    "2026-11-01T25:00",
    "2026-11-01T00:00+99:00",
    "0001-01-01T00:00:00+08:00",
    "9999-12-31T23:59:59-08:00",
    "２０２６-１１-０１",
    "2026-11-01\x00",
    "x" * 10000,
    "\x00",
    "a\x00b",
    "\x07",
    "\r\n",
    "\t",
    "\u202e",
    "=cmd|' /C calc'!A0",
    "+SUM(1)",
    "-2+3",
    "@A1",
    "../../etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "'; DROP TABLE scans; --",
    "ＣＮ",
    "cn",
    "<script>",
]
INT64_MAX = 2**63 - 1
REASONS = ("genuine", "genuine-repeat", "suspicious-repeat", "pin-reused", "pin-mismatch", "malformed", "bad-signature")


def _int_ok(low: int, high: int):
    return lambda v: bool(re.fullmatch(r"[0-9]{1,19}", v, re.ASCII)) and low <= int(v) <= high


def _time_ok(v: str) -> bool:
    if not re.fullmatch(r"\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?)?(Z|[+-]\d\d:\d\d)?", v, re.ASCII):
        return False
    try:
        value = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace(" ", "T"))
        (value if value.tzinfo else value.replace(tzinfo=dt.timezone(dt.timedelta(hours=8)))).astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return False
    return True


def _text_ok(limit: int):
    return lambda v: len(v) <= limit and not any(unicodedata.category(c).startswith("C") for c in v)


def _code_ok(v: str) -> bool:
    digits = v.replace(" ", "").replace("-", "")
    if len(v) > 40 or not re.fullmatch(r"[0-9]+", digits, re.ASCII):
        return False
    if len(digits) == 16:
        return True
    try:
        codes.parse_human_code(digits)
        return len(digits) == 17
    except codes.InvalidCode:
        return False


FILTERS = {
    "enterprise": _text_ok(200),
    "batch": _int_ok(1, INT64_MAX),
    "code": _code_ok,
    "reason": lambda v: v in REASONS,
    "channel": lambda v: v in ("qr", "manual", "api"),
    "country": lambda v: bool(re.fullmatch(r"[A-Z]{2}", v, re.ASCII)),
    "region": _text_ok(64),
    "since": _time_ok,
    "until": _time_ok,
}
PAGING = {"after": _int_ok(1, INT64_MAX), "limit": _int_ok(1, 500)}


def random_values(rng: random.Random, count: int) -> list[str]:
    """Seeded random strings from digits of many scripts, ASCII, controls, formula prefixes and CJK."""
    alphabet = "0123456789²³¹１２３٣߁०-+=@ :.T/\\%\x00\x1f\x7f\u200b\u202eZaé中"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(count)]


def audit_requests(values: list[str], batch_id: int, serial: str, ui: bool) -> list[tuple[str, str, dict, bool]]:
    """(method, path, options, invalid?) for every parameter of every audit route, with each value."""
    prefix = "/audit" if ui else "/api/v1/audit"
    scans = "/audit/" if ui else "/api/v1/audit/scans"
    out = []
    for value in values:
        for name, ok in {**FILTERS, **PAGING}.items():
            if name == "limit" and ui:
                continue
            out.append(("GET", scans, {"query_string": {name: value}}, value != "" and not ok(value)))
            if name in FILTERS:
                out.append(
                    ("GET", f"{prefix}/scans.csv", {"query_string": {name: value}}, value != "" and not ok(value))
                )
        out.append(
            (
                "GET",
                f"{prefix}/anomalies",
                {"query_string": {"days": value}},
                value != "" and not _int_ok(1, 3650)(value),
            )
        )
        path_value = quote(value, safe="")
        out.append(("GET", f"{prefix}/batches/{path_value}", {}, not _int_ok(1, INT64_MAX)(value)))
        out.append(("GET", f"{prefix}/codes/{path_value}", {}, not _code_ok(value)))
        if not _text_ok(500)(value):  # never a valid reason: nothing is recalled
            if ui:
                out.append(("POST", f"/audit/batches/{batch_id}", {"data": {"reason": value}}, True))
                out.append(("POST", f"/audit/codes/{serial}", {"data": {"note": value}}, True))
            else:
                out.append(("POST", f"/api/v1/audit/batches/{batch_id}/recall", {"json": {"reason": value}}, True))
    return out


def audit_outcomes(app, tmp: Path, random_count: int) -> tuple[list[tuple[int, bool]], list[tuple[int, bool]]]:
    """(status, invalid?) of every hostile audit request, API and UI, as an admin and as an enterprise."""
    from verifier import accounts, db

    now = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
    conn = db.connect(app.config["DATABASE"])  # the app's database: a file or a PostgreSQL URL
    with db.transaction(conn):
        enterprise, batch_id = conn.execute("SELECT enterprise_id, id FROM batches ORDER BY id LIMIT 1").fetchone()
        serial = f"{conn.execute('SELECT serial FROM codes LIMIT 1').fetchone()[0]:016d}"
        tokens = {}
        for name, role, owner in (("adv-admin", "admin", None), ("adv-enterprise", "enterprise", enterprise)):
            accounts.add_user(conn, name, role, "adversarial password", owner, "adversarial", now)
            tokens[name] = accounts.issue_token(conn, name, "adversarial", "adversarial", now)[1]
    conn.close()
    values = HOSTILE + random_values(random.Random(20261122), random_count)
    api, ui = [], []
    for name, token in tokens.items():
        client = app.test_client()
        for method, path, options, invalid in audit_requests(values, batch_id, serial, ui=False):
            response = client.open(path, method=method, headers={"Authorization": f"Bearer {token}"}, **options)
            response.get_data()  # a streamed export fails, if at all, while it is read
            api.append((response.status_code, invalid))
        browser = app.test_client()
        form = browser.get("/audit/login").get_data(as_text=True)  # its CSRF token is bound to a pre-login cookie
        login_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form).group(1)
        login = {"username": name, "password": "adversarial password", "csrf": login_csrf}
        assert browser.post("/audit/login", data=login).status_code == 302
        page = browser.get("/audit/batches").get_data(as_text=True)
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
        for method, path, options, invalid in audit_requests(values, batch_id, serial, ui=True):
            if "data" in options:
                options = {"data": {**options["data"], "csrf": csrf}}
            response = browser.open(path, method=method, **options)
            response.get_data()
            ui.append((response.status_code, invalid))
    return api, ui


# --- each code's life: EPCIS capture and the consumer's report form -------------------------


def _epcis_document(*events: dict) -> dict:
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-12-01T00:00:00.000Z",
        "epcisBody": {"eventList": list(events)},
    }


def _commissioning(epc: object, **fields: object) -> dict:
    return {
        "type": "ObjectEvent",
        "eventTime": "2026-12-01T00:00:00.000Z",
        "eventTimeZoneOffset": "+08:00",
        "action": "ADD",
        "bizStep": "commissioning",
        "epcList": [epc],
        **fields,
    }


def lifecycle_outcomes(app, urls: list[str]) -> dict[str, list[tuple[int, bool]]]:
    """(status, should have been refused?) of every hostile EPCIS capture and consumer report."""
    from verifier import accounts, db, epcis

    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    conn = db.connect(app.config["DATABASE"])
    with db.transaction(conn):
        enterprise = conn.execute("SELECT enterprise_id FROM batches ORDER BY id LIMIT 1").fetchone()[0]
        serials = {int(r[0]) for r in conn.execute("SELECT serial FROM codes").fetchall()}
        accounts.add_user(conn, "adv-epcis", "enterprise", "adversarial password", enterprise, "adversarial", now)
        token = accounts.issue_token(conn, "adv-epcis", "adversarial", "adversarial", now)[1]
    conn.close()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/ld+json"}

    labels = {(r.serial, r.batch, r.mark, r.kid) for r in (epcis.code_ref(url, [BASE]) for url in urls)}

    def names_ours(reference: object) -> bool:
        """Whether the reference names one of the enterprise's codes as its label does (a compact
        URL: the serial, batch, mark and key; not the signature, which capture does not check)."""
        try:
            ref = epcis.code_ref(reference, [BASE]) if isinstance(reference, str) else None
        except (codes.InvalidCode, ValueError):
            return False
        if ref is None or ref.serial not in serials:
            return False
        return ref.batch is None or (ref.serial, ref.batch, ref.mark, ref.kid) in labels

    captures: list[tuple[int, bool]] = []
    references = invalid_vectors() + [m for url in urls[:3] for m in mutations(url)] + HOSTILE
    for reference in references:
        body = json.dumps(_epcis_document(_commissioning(reference)))
        response = client.post("/epcis/capture", data=body, headers=headers)
        captures.append((response.status_code, not names_ours(reference)))
    fields = ("eventTime", "eventTimeZoneOffset", "action", "bizStep", "disposition", "eventID", "readPoint")
    for field in fields:
        for value in HOSTILE[:40] + [None, 7, [], {}, True]:
            event = _commissioning(urls[0])
            event[field] = {"id": value} if field == "readPoint" and isinstance(value, str) else value
            response = client.post("/epcis/capture", data=json.dumps(_epcis_document(event)), headers=headers)
            captures.append((response.status_code, True))
    for raw in ("", "{", "[]", "null", '{"type": "EPCISDocument"}', "\x00", "{" * 10000):
        response = client.post("/epcis/capture", data=raw, headers=headers)
        captures.append((response.status_code, True))
    reports: list[tuple[int, bool]] = []
    form = client.get("/report").get_data(as_text=True)
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', form)
    base = {"what": "fake", "bought_at": "a shop", "details": "a fake", "csrf": csrf.group(1) if csrf else ""}
    before = _attributed_reports(app)
    for field in ("code", "what", "bought_at", "details", "contact", "verdict", "token", "csrf"):
        for value in HOSTILE[:60]:
            response = client.post("/report", data={**base, field: value})
            reports.append((response.status_code, False))
    reports.append((200, _attributed_reports(app) > before))  # a hostile report routed to an enterprise
    return {"EPCIS capture": captures, "report form": reports}


def _attributed_reports(app) -> int:
    from verifier import db

    conn = db.connect(app.config["DATABASE"])
    try:
        return int(conn.execute("SELECT count(*) FROM consumer_reports WHERE enterprise_id IS NOT NULL").fetchone()[0])
    finally:
        conn.close()


# --- the transparency log ---------------------------------------------------------------------

LOG_SIGNER_SEED = bytes(range(32, 64))
WITNESS = note.SignerKey("witness.adversarial", note.COSIGNATURE_V1, Ed25519PrivateKey.from_private_bytes(bytes(32)))


def _mutated(text: str) -> list[str]:
    """Every character flipped (XOR 1), every truncation, three extensions, each hostile value appended."""
    flipped = [text[:i] + chr(ord(c) ^ 1) + text[i + 1 :] for i, c in enumerate(text)]
    return (
        flipped
        + [text[:i] for i in range(len(text))]
        + [text + x for x in ("A", "0", "/")]
        + [text + h for h in HOSTILE]
    )


def log_outcomes(app) -> list[tuple[int, bool]]:
    """(status, invalid?) of every hostile request to the served log: tile paths, receipt tokens,
    cosignatures. The log is first sequenced and signed, so valid originals exist to mutate."""
    from verifier import db, logtree, merkle, receipts, sequencer

    signer = logtree.LogSigner("adversarial/log", Ed25519PrivateKey.from_private_bytes(LOG_SIGNER_SEED))
    conn = db.connect(app.config["DATABASE"])
    try:
        sequencer.drain(conn, signer=signer)
        size = logtree.size(conn)
        scan_id = int(conn.execute("SELECT max(id) FROM scans").fetchone()[0])
        checkpoint = logtree.latest_checkpoint(conn)
    finally:
        conn.close()
    assert checkpoint is not None and size > 0
    client = app.test_client()
    outcomes: list[tuple[int, bool]] = []
    valid_tiles = {  # every tile the tree holds, partial ones of every width included (C2SP allows them)
        merkle.tile_path(merkle.Tile(tile.level, tile.index, width))
        for tile in merkle.tiles_for_size(size)
        for width in range(1, tile.width + 1)
    }
    for original in sorted(merkle.tile_path(tile) for tile in merkle.tiles_for_size(size)):
        for path in [original, *_mutated(original), *(original.rsplit("/", 1)[0] + "/" + h for h in HOSTILE)]:
            response = client.get("/log/" + quote(path, safe="/."))
            outcomes.append((response.status_code, path not in valid_tiles))
    token = receipts.token(b"adv", scan_id)
    for text in [token, *_mutated(token), *HOSTILE]:
        response = client.get("/receipt/" + quote(text, safe=""))
        outcomes.append((response.status_code, text != token))
    text = note.parse_note(checkpoint.note)[0]
    cosigned = note.format_note(
        text,
        [
            *note.parse_note(checkpoint.note)[1],
            note.cosign_text(text, WITNESS.name, WITNESS.private_key, 1_795_000_000),
        ],
    )
    witness_line = cosigned.splitlines(keepends=True)[-1]

    def intact(body: str) -> bool:
        """The checkpoint text and the witness's line unchanged (the log's own line is not what is added)."""
        return body.startswith(text + "\n") and witness_line in body[len(text) + 1 :].splitlines(keepends=True)

    for body in [cosigned, *_mutated(cosigned), *HOSTILE]:
        response = client.post(
            "/log/cosignature", data=body.encode("utf-8", "surrogatepass"), content_type="text/plain"
        )
        outcomes.append((response.status_code, not intact(body)))
    return outcomes


if __name__ == "__main__":
    sys.exit(main())
