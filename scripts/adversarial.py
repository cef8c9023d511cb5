#!/usr/bin/env python3
"""Adversarial inputs on every surface: the invalid vectors plus mutations of valid codes.

    .venv/bin/python scripts/adversarial.py [--codes 1000] [--json]

Every character of each valid URL and printed code is flipped (XOR 1, which never only changes
case or adds whitespace), each is truncated at every length and extended with 'A', '0' and '/'.
The inputs go through the consumer page, the JSON API, the manual-entry form and
`verifier verify`. Reported: inputs tried, accepted (any genuine verdict), server errors.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from verifier import codes, issue, keys
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
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="adversarial-"))
    record = keys.create_key(tmp / "keys", "adv", b"adv", dt.datetime.now(dt.timezone.utc))
    _, private = keys.load_private_key(tmp / "keys", "adv", b"adv")
    request = issue.BatchRequest(mark=codes.MARKS[0], enterprise="E", product="P", count=args.codes,
                                 out_dir=tmp / "batch", base_url=BASE, formats=("csv",))  # fmt: skip
    issue.issue_batch(tmp / "verifier.db", request, private, bytes.fromhex(record.kid))
    with open(tmp / "batch" / "codes.csv", encoding="utf-8", newline="") as fh:
        rows = list(issue.read_codes_csv(fh))
    urls, printed = [r["url"] for r in rows], [r["code"] for r in rows]
    app = create_app({"DATABASE": str(tmp / "verifier.db"), "KEYS_DIR": str(tmp / "keys"), "BASE_URLS": [BASE],
                      "RATELIMIT": "off", "INSTANCE": str(tmp), "SECRET_KEY": b"adv"})  # fmt: skip
    client = app.test_client()
    url_inputs = invalid_vectors() + [m for u in urls for m in mutations(u)]
    typed_inputs = [m for p in printed for m in mutations(p)]
    jwks_file = tmp / "jwks.json"
    jwks_file.write_text(json.dumps(keys.jwks(keys.read_keyring(tmp / "keys"))))
    report = {}
    started = time.perf_counter()

    def tally(surface: str, outcomes: list[tuple[int, str]]) -> None:
        report[surface] = {"tried": len(outcomes), "accepted": sum(r in GENUINE for _, r in outcomes),
                           "server_errors": sum(status >= 500 for status, _ in outcomes)}  # fmt: skip

    page = []
    for text in url_inputs:
        if text.upper().startswith(BASE) and "#" not in text:
            rest = text[len(BASE):]
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
    total = {k: sum(r[k] for r in report.values()) for k in ("tried", "accepted", "server_errors")}
    report["total"] = total
    report["seconds"] = round(time.perf_counter() - started, 1)
    if args.json:
        print(json.dumps(report))
    else:
        for surface, r in report.items():
            if surface != "seconds":
                print(f"{surface:<16} tried {r['tried']:>9,}  accepted {r['accepted']}  server errors {r['server_errors']}")
        print(f"({report['seconds']} s, {args.codes} valid codes mutated)")
    return 0 if total["accepted"] == 0 and total["server_errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
