"""`verifier events` and `verifier dealers`: a case's life from the terminal (both engines)."""

from __future__ import annotations

import json

import pytest
from conftest import database_env

from verifier import codes
from verifier.cli import cli


@pytest.fixture
def terminal(trace_world, trace_copy, instance, runner, monkeypatch):
    for name, value in database_env(trace_copy).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("VERIFIER_BASE_URL", "https://verify.example.cn/")

    def run(*args, input=None):
        return runner.invoke(cli, list(args), input=input)

    case_row = trace_world["cases"][1][0]
    items = trace_world["items"][1][:24]
    return {
        "run": run,
        "case": case_row["code"],
        "items": [r["code"] for r in items],
        "urls": [r["url"] for r in items],
    }


def test_a_case_from_packing_to_sale_from_the_terminal(terminal):
    run, case, items = terminal["run"], terminal["case"], terminal["items"]
    packed = run("events", "pack", "--case", case, "-", input="\n".join(items) + "\n")
    assert packed.exit_code == 0, packed.output
    assert "Packed: 25 code changes in 1 event(s)" in packed.output  # 24 items and the case
    assert run("events", "release", case).exit_code == 0
    shipped = run("events", "ship", case, "--dealer", "SC-01", "--location", "urn:epc:id:sgln:6901234.00002.0")
    assert shipped.exit_code == 0 and "Shipped: 25 code changes" in shipped.output
    sold = run("events", "sell", terminal["urls"][0])  # a label's URL names the code too
    assert sold.exit_code == 0, sold.output
    again = run("events", "sell", items[0])
    assert again.exit_code == 2
    assert "already-sold" in again.stderr and again.stderr.strip().splitlines()[-1].startswith("Error: nothing")
    history = run("events", "history", items[0])
    assert history.exit_code == 0
    lines = history.output.splitlines()
    assert lines[0].endswith("sold, batch 2 (item)") or "sold" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == ["packing", "commissioning", "shipping", "retail_selling"]
    documents = json.loads(run("events", "history", items[0], "--json").output)
    assert documents[2]["destinationList"] == [{"type": "owning_party", "destination": "urn:verifier:dealer:SC-01"}]
    assert documents[2]["bizLocation"] == {"id": "urn:epc:id:sgln:6901234.00002.0"}  # where: with who and when


def test_a_blocked_code_is_red_on_the_cli(terminal):
    run = terminal["run"]
    blocked = run("events", "block", terminal["items"][0], "--reason", "counterfeit")
    assert blocked.exit_code == 0, blocked.output
    history = run("events", "history", terminal["items"][0])
    assert history.output.splitlines()[0].split(": ", 1)[1].startswith("blocked (counterfeit)")


@pytest.mark.parametrize(
    "args, message",
    [
        (("events", "ship", "12345", "--dealer", "SC-01"), "not a code"),
        (("events", "ship", "{case}", "--dealer", "NOPE"), "unknown-dealer"),
        (("events", "block", "{case}", "--reason", "bored"), "Invalid value"),
        (
            (
                "events",
                "release",
            ),
            "give either --batch or codes",
        ),
        (("dealers", "add", "--enterprise", "华茶集团", "--code", "X", "--name", "x", "--region", "999999"), "Error:"),
        (
            ("dealers", "add", "--enterprise", "Nobody", "--code", "X", "--name", "x", "--region", "510000"),
            "no enterprise",
        ),
    ],
)
def test_bad_arguments_are_one_line_errors(terminal, args, message):
    result = terminal["run"](*[a.replace("{case}", terminal["case"]) for a in args])
    assert result.exit_code != 0
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_dealers_are_registered_and_listed(terminal):
    run = terminal["run"]
    added = run(
        "dealers", "add", "--enterprise", "华茶集团", "--code", "CQ-01", "--name", "重庆茶行", "--region", "500000"
    )
    assert added.exit_code == 0 and "Chongqing" in added.output
    listing = json.loads(run("dealers", "list", "--enterprise", "华茶集团", "--json").output)
    assert [d["code"] for d in listing] == ["SC-01", "GD-01", "CQ-01"]


def test_an_inspection_report_is_attached(terminal, trace_world, tmp_path):
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 a report")
    result = terminal["run"]("batch", "attach-report", str(trace_world["items"][0]), str(report))
    assert result.exit_code == 0 and "SHA-256" in result.output
    bad = tmp_path / "report.txt"
    bad.write_bytes(b"hello")
    refused = terminal["run"]("batch", "attach-report", str(trace_world["items"][0]), str(bad))
    assert refused.exit_code == 2 and "PDF, JPEG or PNG" in refused.stderr


def test_codes_are_read_as_printed(terminal):
    assert codes.parse_human_code(terminal["items"][0])


def _document(*events):
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": "2026-11-26T09:00:00.000+08:00",
        "epcisBody": {"eventList": list(events)},
    }


def _packing(case_url, item_urls, **fields):
    return {
        "type": "AggregationEvent",
        "eventTime": "2026-11-26T09:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "ADD",
        "bizStep": "packing",
        "parentID": case_url,
        "childEPCs": item_urls,
        **fields,
    }


def test_an_epcis_document_is_captured_from_a_file(terminal, trace_world, tmp_path):
    case_url = trace_world["cases"][1][0]["url"]
    document = tmp_path / "packing.jsonld"
    document.write_text(json.dumps(_document(_packing(case_url, terminal["urls"]))), encoding="utf-8")
    result = terminal["run"]("events", "capture", str(document))
    assert result.exit_code == 0, result.output
    assert "Captured: 25 code changes in 1 event(s)" in result.output
    history = terminal["run"]("events", "history", terminal["items"][0])
    assert "packing" in history.output


def test_an_invalid_epcis_document_names_each_bad_event_and_records_nothing(terminal, trace_world, tmp_path):
    case_url = trace_world["cases"][1][0]["url"]
    bad_time = _packing(case_url, terminal["urls"][:2], eventTime="yesterday")
    transformation = {
        "type": "TransformationEvent",
        "eventTime": "2026-11-26T09:00:00Z",
        "eventTimeZoneOffset": "+00:00",
    }
    document = tmp_path / "bad.jsonld"
    document.write_text(json.dumps(_document(_packing(case_url, terminal["urls"][2:4]), bad_time, transformation)))
    result = terminal["run"]("events", "capture", str(document))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert any(line.startswith("  event 2") for line in lines), result.stderr
    assert any(line.startswith("  event 3") and "TransformationEvent" in line for line in lines), result.stderr
    assert lines[-1].startswith("Error: nothing was recorded")
    history = terminal["run"]("events", "history", terminal["items"][2])
    assert len(history.output.splitlines()) == 1  # no event at all
