#!/usr/bin/env python3
"""Make tests/vectors_legacy_log/: a database written by verifier before the Merkle log (the hash
chain of migration 003, schema up to 009), with a checkpoint the old code signed.

Run it with an old checkout's package first on the path, e.g.:
    git worktree add /tmp/oldv 25b865c
    PYTHONPATH=/tmp/oldv .venv/bin/python scripts/make_legacy_log.py
The vector is committed; tests/test_legacy_log.py upgrades it and checks the old checkpoint.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors_legacy_log"


def main() -> None:
    import verifier

    if "log_hashes" in Path(verifier.__file__).with_name("db").joinpath("sqlite_schema.py").read_text():
        sys.exit("Error: run this with the code from before the Merkle log first on PYTHONPATH (see the docstring)")
    work = Path(tempfile.mkdtemp(prefix="legacy-log-"))
    env = {
        **os.environ,
        "VERIFIER_INSTANCE": str(work / "instance"),
        "VERIFIER_KEY_PASSPHRASE": "legacy",
        "VERIFIER_PIN_SECRET": "legacy-pin-secret-not-secret",
        "VERIFIER_USER_PASSWORD": "correct horse battery",
        "VERIFIER_BASE_URL": "HTTPS://VERIFY.EXAMPLE.CN/",
    }

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "verifier", *args], env=env, capture_output=True, text=True, cwd=work
        )
        if done.returncode:
            sys.exit(f"verifier {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    cli("keys", "new", "dev")
    cli("keys", "new", "audit", "--purpose", "log")
    for n in (1, 2):
        cli(
            "batch",
            "issue",
            "--key",
            "dev",
            "--mark",
            "anti-counterfeit",
            "--enterprise",
            "旧版茶业",
            "--product",
            "绿茶",
            "--count",
            "4",
            "--format",
            "csv",
            "--out",
            str(work / f"b{n}"),
        )
    cli("batch", "recall", "2", "--reason", "legacy recall")
    cli("users", "add", "ada", "--role", "admin")
    urls = [line.split(",")[2] for line in (work / "b1" / "codes.csv").read_text().splitlines()[1:]]
    lookups = (
        "import sys; from verifier.web import create_app\n"
        "c = create_app().test_client()\n"
        "for u in sys.argv[1:]:\n"
        "    assert c.get('/' + u.split('/', 3)[3]).status_code == 200\n"
    )
    subprocess.run([sys.executable, "-c", lookups, *urls[:3], urls[0]], env=env, check=True, cwd=work)
    checkpoint = json.loads(cli("audit", "checkpoint", "--key", "audit"))
    keyring = json.loads((work / "instance" / "keys" / "keyring.json").read_text())
    OUT.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(work / "instance" / "verifier.db")
    (OUT / "verifier-009.sql").write_text("\n".join(conn.iterdump()) + "\n", "utf-8")
    conn.close()
    (OUT / "checkpoint.json").write_text(json.dumps(checkpoint, indent=2) + "\n", "utf-8")
    (OUT / "keyring.json").write_text(json.dumps(keyring, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT}: checkpoint at entry {checkpoint['seq']}")


if __name__ == "__main__":
    main()
