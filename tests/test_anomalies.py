"""Anomaly rules on a scan log made by real lookups."""

from __future__ import annotations

import json

import pytest

from verifier.cli import cli
from verifier.web import create_app

from conftest import BASE_URL, PIN_SECRET


@pytest.fixture
def lookups(world, db_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("VERIFIER_DB", str(db_copy))
    app = create_app({"DATABASE": str(db_copy), "KEYS_DIR": str(world["keys_dir"]), "BASE_URLS": [BASE_URL],
                      "PIN_SECRET": PIN_SECRET, "SECRET_KEY": b"k", "RATELIMIT": "off", "INSTANCE": str(tmp_path),
                      "TRUST_GEO_HEADERS": True, "TRUSTED_PROXIES": 1})  # fmt: skip

    def scan(url, region="Guangdong", country="CN"):
        return app.test_client().get("/" + url.split("/", 3)[3], headers={"X-Geo-Country": country, "X-Geo-Region": region})

    def typed(code, pin):
        return app.test_client().post("/check", data={"code": code, "pin": pin})

    return scan, typed


def anomalies(runner, *args):
    result = runner.invoke(cli, ["audit", "anomalies", "--json", *args])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_each_rule_fires_on_its_pattern(lookups, world, runner):
    scan, typed = lookups
    clone = world["pin"][1][0]["url"]
    for _ in range(6):  # six phones: repeat checks and many sessions
        scan(clone)
    traveller = world["pin"][1][1]["url"]
    scan(traveller, region="Guangdong")
    scan(traveller, region="Heilongjiang")
    forged = BASE_URL + clone.rsplit("/", 1)[1][:-4] + "AAAA"
    for _ in range(3):
        scan(forged, region="Yunnan")
    scan(world["recalled"][1][0]["url"])
    row = world["pin"][1][2]
    typed(row["code"], row["pin"])
    typed(row["code"], row["pin"])
    found = anomalies(runner)
    rules = {(a["rule"], a["subject"]) for a in found}
    serial = world["pin"][1][0]["serial"]
    assert ("repeat-checks", f"code {serial}") in rules and ("many-sessions", f"code {serial}") in rules
    assert any(r == "distant-regions" and "CN/Guangdong -> CN/Heilongjiang" in s for r, s in rules)
    assert any(r == "counterfeit-cluster" and s.startswith("CN/Yunnan") for r, s in rules)
    assert ("scan-after-recall", f"batch {world['recalled'][0]}") in rules
    assert ("pin-reused", f"code {row['serial']}") in rules
    assert all(a["evidence"] for a in found)


def test_thresholds_are_configurable_and_quiet_logs_are_quiet(lookups, world, runner):
    scan, _ = lookups
    for _ in range(3):
        scan(world["pin"][1][3]["url"])
    assert anomalies(runner) == []
    assert [a["rule"] for a in anomalies(runner, "--repeat-checks", "2")] == ["repeat-checks"]
    text = runner.invoke(cli, ["audit", "anomalies"]).stdout
    assert text.startswith("No anomalies since")


def test_report_code_cli(lookups, world, runner):
    import sqlite3

    row = world["pin"][1][5]
    result = runner.invoke(cli, ["audit", "report-code", row["code"], "--note", "market stall"])
    assert result.exit_code == 0 and row["serial"] in result.stdout
    bad = runner.invoke(cli, ["audit", "report-code", "12"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: a code is a printed code")
    import os

    conn = sqlite3.connect(os.environ["VERIFIER_DB"])
    assert conn.execute("SELECT note FROM reported_codes WHERE serial = ?", (int(row["serial"]),)).fetchone() == ("market stall",)
