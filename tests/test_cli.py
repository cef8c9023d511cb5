"""The `verifier` command as a user runs it: exit codes, one-line errors, help with examples."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest
import qrcode
from conftest import database_env, settle

from verifier import db
from verifier.cli import cli


def run(runner, *args, **kwargs):
    return runner.invoke(cli, list(args), **kwargs)


@pytest.fixture
def registry(instance, new_database, monkeypatch):
    """A database of the test's engine that the instance's commands use (on SQLite the instance's
    own file), made empty; its location."""
    location = new_database("instance/verifier.db")
    for name, value in database_env(location).items():
        monkeypatch.setenv(name, value)
    db.connect(location).close()
    return location


def logged(location, kind: str) -> list[dict]:
    """The bodies of the audit log's `kind` entries, in log order (chained first)."""
    settle(location)
    conn = db.connect(location)
    try:
        rows = conn.execute("SELECT body FROM audit_log WHERE kind = ? ORDER BY seq", (kind,)).fetchall()
    finally:
        conn.close()
    return [json.loads(body) for (body,) in rows]


@pytest.fixture
def signed(instance, runner) -> str:
    assert run(runner, "keys", "new", "dev").exit_code == 0
    result = run(runner, "sign", "--key", "dev", "--mark", "stable-qualified", "--batch", "9")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def all_commands(group: click.Group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from all_commands(command, prefix + (name,))


@pytest.mark.parametrize("path", [p for p, _ in all_commands(cli)], ids=" ".join)
def test_every_command_has_help_ending_with_an_example(runner, path):
    result = run(runner, *path, "--help")
    assert result.exit_code == 0
    command = dict(all_commands(cli))[path]
    last = (command.help or "").strip().splitlines()[-1].strip()
    assert last.startswith("Example: ") and "verifier " in last


def test_keys_new_list_and_export(instance, registry, runner):
    result = run(runner, "keys", "new", "factory")
    assert result.exit_code == 0 and "Created key factory" in result.stdout
    listing = json.loads(run(runner, "keys", "list", "--json").stdout)
    assert [(k["name"], k["status"]) for k in listing] == [("factory", "active")]
    jwks = json.loads(run(runner, "keys", "export-jwks").stdout)
    assert jwks["keys"][0]["kid"] == listing[0]["kid"]
    assert run(runner, "keys", "retire", "factory").stdout.strip().endswith("is now retired")
    assert run(runner, "keys", "revoke", listing[0]["kid"]).stdout.strip().endswith("is now revoked")
    assert json.loads(run(runner, "keys", "export-jwks", "--public").stdout) == {"keys": []}
    changes = [(body["kid"], body["status"]) for body in logged(registry, "key.status")]
    assert changes == [(listing[0]["kid"], "retired"), (listing[0]["kid"], "revoked")]


def test_verify_genuine_url_exits_0_and_prints_fields(signed, runner):
    result = run(runner, "verify", signed)
    assert result.exit_code == 0
    assert (
        result.stdout.startswith("GENUINE") and "stable-qualified" in result.stdout and "batch       9" in result.stdout
    )


def test_verify_json(signed, runner):
    result = run(runner, "verify", "--json", "  " + signed.lower() + "\n")
    data = json.loads(result.stdout)
    assert result.exit_code == 0 and data["reason"] == "genuine" and data["fields"]["batch"] == 9


def test_verify_forged_code_exits_1(signed, runner):
    forged = signed[:-5] + ("A" if signed[-5] != "A" else "B") + signed[-4:]
    result = run(runner, "verify", "--json", forged)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["reason"] in ("bad-signature", "malformed")


def test_verify_revoked_key_exits_1(signed, runner):
    run(runner, "keys", "revoke", "dev")
    result = run(runner, "verify", signed)
    assert result.exit_code == 1 and "revoked" in result.stdout


def test_verify_image_decodes_the_qr_code(signed, runner, tmp_path):
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=4)
    qr.add_data(signed)
    path = tmp_path / "label.png"
    qr.make_image().save(path)
    result = run(runner, "verify", "--json", str(path))
    assert result.exit_code == 0 and json.loads(result.stdout)["input"] == signed


def test_verify_image_without_qr_is_a_usage_error(instance, runner, tmp_path):
    from PIL import Image

    path = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(path)
    result = run(runner, "verify", str(path))
    assert result.exit_code == 2 and result.stderr.strip() == f"Error: no QR code found in {path}"


def test_verify_with_an_explicit_jwks(signed, runner, tmp_path):
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(run(runner, "keys", "export-jwks").stdout)
    assert run(runner, "verify", "--jwks", str(jwks_file), signed).exit_code == 0
    jwks_file.write_text('{"keys": []}')
    result = run(runner, "verify", "--jwks", str(jwks_file), "--json", signed)
    assert result.exit_code == 1 and json.loads(result.stdout)["reason"] == "unknown-key"


def test_sign_gs1_form(instance, runner):
    run(runner, "keys", "new", "dev")
    url = run(
        runner, "sign", "--key", "dev", "--gtin", "9506000134352", "--lot", "L1", "--expiry", "2027-12-31"
    ).stdout.strip()
    assert url.startswith("https://verify.example.cn/01/09506000134352/10/L1/21/")
    assert run(runner, "verify", url).exit_code == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (("verify",), "Error: Missing argument 'CODE'."),
        (
            ("verify", "x", "--jwks", "/nonexistent.json"),
            "Error: cannot read /nonexistent.json: No such file or directory",
        ),
        (("bogus",), "Error: No such command 'bogus'."),
        (("sign", "--key", "nokey"), "Error: no key named 'nokey' in"),
        (("sign", "--key", "dev", "--gtin", "123"), "Error: a GS1 code needs --gtin, --lot and --expiry"),
        (
            ("sign", "--key", "dev", "--gtin", "09506000134353", "--lot", "L", "--expiry", "2027-01-01"),
            "Error: GTIN check digit is wrong",
        ),
        (("sign", "--key", "dev", "--batch", "0"), "Error: a batch number is 1 to 4294967295"),
        (("keys", "new", "dev"), "Error: a key named 'dev' already exists"),
        (("keys", "revoke", "ffff"), "Error: no key named 'ffff'"),
    ],
)
def test_bad_input_is_one_line_error(instance, runner, args, message):
    run(runner, "keys", "new", "dev")
    result = run(runner, *args)
    assert result.exit_code != 0
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(message)


def test_missing_passphrase_without_terminal_is_an_error(instance, runner, monkeypatch):
    monkeypatch.delenv("VERIFIER_KEY_PASSPHRASE")
    result = run(runner, "keys", "new", "dev", input="")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no key passphrase: set VERIFIER_KEY_PASSPHRASE or run in a terminal"


def test_wrong_passphrase_is_one_line(instance, runner, monkeypatch):
    run(runner, "keys", "new", "dev")
    monkeypatch.setenv("VERIFIER_KEY_PASSPHRASE", "wrong")
    result = run(runner, "sign", "--key", "dev")
    assert result.exit_code == 1 and "wrong passphrase?" in result.stderr and "Traceback" not in result.output


def test_installed_command_exit_codes_and_no_traceback(instance, tmp_path):
    """The real console script, as a shell runs it."""
    env = {**os.environ}
    exe = [sys.executable, "-m", "verifier"]
    bad = subprocess.run(exe + ["verify", "--no-such-flag"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and bad.stderr == "Error: No such option '--no-such-flag'.\n"
    forged = subprocess.run(
        exe + ["verify", "HTTPS://VERIFY.EXAMPLE.CN/" + "A" * 127], capture_output=True, text=True, env=env
    )
    assert forged.returncode == 1 and forged.stdout.startswith("NOT GENUINE") and forged.stderr == ""


def test_demo_honours_its_port_in_codes_links_and_server(tmp_path, new_database):
    """VERIFIER_DEMO_PORT=N ./scripts/demo: the issued codes, the printed links and the server all use port N."""
    import re
    import signal
    import threading
    import time
    import urllib.request
    from pathlib import Path

    from conftest import free_port

    root = Path(__file__).resolve().parent.parent
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFIER_")}
    env.update(
        VERIFIER_INSTANCE=str(tmp_path / "instance"),
        VERIFIER_DEMO_PORT=str(port),
        VERIFIER_SECRET_KEY="demo-test",
        VERIFIER_BASE_URL="HTTP://127.0.0.1:8000/",
    )
    location = new_database("instance/verifier.db")  # on SQLite the demo's own default
    env.update(database_env(location))
    proc = subprocess.Popen(
        ["bash", str(root / "scripts" / "demo")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    watchdog = threading.Timer(180, lambda: os.killpg(proc.pid, signal.SIGKILL))
    watchdog.start()
    try:
        lines = []
        for line in proc.stdout:  # until the links are printed (or the demo exits)
            lines.append(line.rstrip("\n"))
            if "manual entry:" in line:
                break
        output = "\n".join(lines)
        assert "manual entry:" in output, output + proc.stderr.read() if proc.poll() is not None else output
        base = f"HTTP://127.0.0.1:{port}/"
        assert f"Serving the lookup on http://127.0.0.1:{port}/" in output
        assert f"manual entry: http://127.0.0.1:{port}/  (code " in output
        link = re.search(r"^  (HTTP://\S+)$", output, re.M).group(1)
        assert link.startswith(base) and ":8000" not in output
        assert "GENUINE" in output
        conn = db.connect(location)
        assert {tuple(row) for row in conn.execute("SELECT base_url FROM batches").fetchall()} == {(base,)}
        conn.close()
        deadline = time.monotonic() + 60
        while True:  # the server the demo started, on that port
            try:
                with urllib.request.urlopen(link.replace("HTTP://", "http://", 1), timeout=5) as response:
                    page = response.read().decode("utf-8")
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the demo's server did not answer"
                time.sleep(0.1)
        assert response.status == 200 and ("真品" in page or "genuine" in page.lower()), page[:500]
    finally:
        watchdog.cancel()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_demo_refuses_a_port_that_is_not_a_number(tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "VERIFIER_INSTANCE": str(tmp_path / "instance"), "VERIFIER_DEMO_PORT": "80a"}
    result = subprocess.run(
        ["bash", str(root / "scripts" / "demo")], env=env, capture_output=True, text=True, timeout=120
    )
    assert (
        result.returncode == 2
        and result.stderr == "Error: VERIFIER_DEMO_PORT must be a port number (1-65535), not '80a'\n"
    )
    assert not (tmp_path / "instance").exists()
